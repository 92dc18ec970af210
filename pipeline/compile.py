"""`offline-recall compile`: write a Kubeflow v2 package or an Airflow DAG file.

A compiled pipeline runs elsewhere: Kubeflow tasks in containers that see object stores only, an
Airflow task on a worker. So `compile` refuses what would not run there, with one line and exit
2: a Kubeflow package needs an image with a tag or digest and object-store input, output and
pipeline root (or an explicit `--local`, for a package that runs where it was compiled), and an
option that does not apply to the target is an error rather than silently ignored.
"""

from __future__ import annotations

import os
import re
import sys

from offline_recall.core import config as config_lib

# Options that mean something for one target only, by their argparse names.
_ONLY_FOR = {
    "image": "kubeflow",
    "pipeline_root": "kubeflow",
    "local": "kubeflow",
    "catchup": "airflow",
}
# A tag after the last path component's colon, or a digest: `repo/name:tag`, `name@sha256:...`.
_TAG_OR_DIGEST = re.compile(r"^[^@\s]+(?::[\w][\w.-]{0,127}|@[a-z0-9]+:[0-9a-f]{32,})$")


class CompileError(ValueError):
    """An option the compiled pipeline could not run with; the message names the option."""


def is_object_store(uri: str) -> bool:
    """Whether `uri` names an object store (gs://, s3://, ...), not a path of this machine."""
    scheme, sep, _ = uri.partition("://")
    return bool(sep) and scheme not in ("", "file")


def check_image(image: str | None) -> str:
    """The image, if it names a tag or digest (the tag after the last '/', not a port)."""
    if not image:
        raise CompileError(
            "--image is required for --target kubeflow: the container every task runs, with a "
            "tag or digest (e.g. registry.example/offline-recall:0.1.0)"
        )
    name = image.rsplit("/", 1)[-1]
    if not _TAG_OR_DIGEST.match(image) or (":" not in name and "@" not in name):
        raise CompileError(
            f"--image {image!r} needs a tag or a digest (name:tag or name@sha256:...): without "
            "one every task pulls whatever 'latest' is that day"
        )
    return image


def _flag(option: str) -> str:
    """The command-line spelling of an argparse option name."""
    return "--" + option.replace("_", "-")


def check_args(args) -> None:
    """Raises CompileError for an option that does not apply to, or would not run on, the target."""
    for option, target in _ONLY_FOR.items():
        if getattr(args, option, None) and args.target != target:
            raise CompileError(
                f"{_flag(option)} applies to --target {target} only, not {args.target}"
            )
    if args.target == "kubeflow":
        check_image(args.image)
        if args.local:
            return
        for option in ("input", "output_dir", "pipeline_root"):
            value = getattr(args, option)
            if not value or not is_object_store(value):
                got = f" (got {value!r})" if value else ""
                raise CompileError(
                    f"{_flag(option)} must be an object-store URI (gs://, s3://...) for --target "
                    f"kubeflow{got}: its tasks do not see this machine's files; pass --local "
                    "for a package that runs here"
                )
    else:
        if args.input and not is_object_store(args.input) and not os.path.isabs(args.input):
            raise CompileError(
                f"--input {args.input!r} must be absolute or an object-store URI: the DAG runs on "
                "a worker, not in this folder"
            )
        # The DAG's task is `offline-recall run`, whose output folder holds the run's ML
        # Metadata store, lock and log: a folder of the worker's (or a mounted bucket).
        if args.output_dir and not os.path.isabs(args.output_dir):
            raise CompileError(
                f"--output-dir {args.output_dir!r} must be an absolute folder of the worker for "
                "--target airflow (a mounted bucket will do): the DAG's task runs `offline-recall "
                "run`, which writes there; for an object store use --target kubeflow"
            )


def cmd_compile(args, beam_args: list[str]) -> int:
    try:
        check_args(args)
        config = config_lib.load(args.config)
    except (CompileError, config_lib.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output_file = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output_file), exist_ok=True)
    if args.target == "airflow":
        from offline_recall.pipeline import airflow_runner

        text = airflow_runner.render_dag(
            args.input or "", args.output_dir or "", config, beam_args, catchup=args.catchup
        )
        tmp = f"{output_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, output_file)
        print(f"wrote {args.target} pipeline: {output_file}")
        return 0
    # Only with --local may these be local paths, or defaults beside the package.
    base = os.path.dirname(output_file)
    input_base = _uri(args.input or os.path.join(base, "input"))
    output_dir = _uri(args.output_dir or os.path.join(base, "offline-recall-output"))
    pipeline_root = _uri(args.pipeline_root or os.path.join(output_dir, "tfx", "pipeline_root"))
    from offline_recall.pipeline import kubeflow_runner

    kubeflow_runner.compile_pipeline(
        output_file, input_base, output_dir, pipeline_root, config, beam_args, image=args.image
    )
    print(f"wrote {args.target} pipeline: {output_file}")
    return 0


def _uri(path: str) -> str:
    """A URI as given; a local path made absolute."""
    return path if "://" in path else os.path.abspath(path)
