"""`offline-recall compile`: write a Kubeflow v2 JSON spec or an Airflow DAG file."""

from __future__ import annotations

import os
import sys

from offline_recall.pipeline import config as config_lib


def cmd_compile(args, beam_args: list[str]) -> int:
    try:
        config = config_lib.load(args.config)
    except config_lib.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output_file = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output_file), exist_ok=True)
    if args.target == "airflow":
        from offline_recall.pipeline import airflow_runner

        text = airflow_runner.render_dag(
            _uri(args.input) if args.input else "",
            _uri(args.output_dir) if args.output_dir else "",
            config,
            beam_args,
            catchup=args.catchup,
        )
        tmp = f"{output_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, output_file)
        print(f"wrote {args.target} pipeline: {output_file}")
        return 0
    base = os.path.dirname(output_file)
    input_base = args.input or os.path.join(base, "input")
    output_dir = args.output_dir or os.path.join(base, "offline-recall-output")
    pipeline_root = args.pipeline_root or os.path.join(output_dir, "tfx", "pipeline_root")
    if args.target == "kubeflow":
        from offline_recall.pipeline import kubeflow_runner

        kubeflow_runner.compile_pipeline(
            output_file,
            input_base,
            output_dir,
            pipeline_root,
            config,
            beam_args,
            image=args.image or kubeflow_runner.DEFAULT_IMAGE,
        )
    print(f"wrote {args.target} pipeline: {output_file}")
    return 0


def _uri(path: str) -> str:
    """A URI as given; a local path made absolute (the DAG runs from another folder)."""
    return path if "://" in path else os.path.abspath(path)
