"""The blessing gate and the atomic switch of a release, and pruning of old releases.

Layout under the output folder:
    releases/<run_id>/{recalls,user_vectors,item_vectors}/*.parquet, metrics.json, manifest.json
    published -> releases/<run_id>      (a relative symlink)
A release is written under `releases/.staging-<run_id>`, renamed into place, and then `published`
is switched with one `os.replace` of a fresh symlink, which is atomic on POSIX: a reader sees the
old set or the new one, never a mix, and a run that fails before the switch changes nothing.
"""

from __future__ import annotations

import datetime
import glob
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq

from offline_recall.components import common
from offline_recall.components import contracts as C
from offline_recall.pipeline.config import PublishConfig
from offline_recall.trainer import export


class PublishError(RuntimeError):
    """The output folder is not in a state publishing can safely switch."""


def copy_parquet(src_files: list[str], dst_dir: str, columns: tuple[str, ...]) -> int:
    """Rewrites Parquet files keeping only `columns` (in that order); returns the row count."""
    os.makedirs(dst_dir, exist_ok=True)
    rows = 0
    for i, src in enumerate(sorted(src_files)):
        table = pq.read_table(src, columns=list(columns))
        rows += table.num_rows
        pq.write_table(table, os.path.join(dst_dir, f"part-{i:05d}{C.PARQUET_SUFFIX}"))
    if not src_files:
        # An empty table still carries the schema, so readers find the columns.
        raise PublishError(f"nothing to publish into {dst_dir}: no source files")
    return rows


def describe_files(folder: str) -> dict[str, dict]:
    """{relative path: {bytes, sha256, rows (Parquet only)}} of every file in a release."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if relative == C.MANIFEST_FILE:
                continue
            entry = {"bytes": os.path.getsize(path), "sha256": common.sha256_of(path)}
            if name.endswith(C.PARQUET_SUFFIX):
                entry["rows"] = pq.ParquetFile(path).metadata.num_rows
            files[relative] = entry
    return dict(sorted(files.items()))


def verify_release(folder: str) -> None:
    """Checks a release against its manifest: every table and file there, with its rows and bytes.

    Raises:
        PublishError: naming what is missing or differs; the release is then not switched to.
    """
    manifest = common.read_json(os.path.join(folder, C.MANIFEST_FILE))
    on_disk = describe_files(folder)
    for relative, entry in manifest["files"].items():
        found = on_disk.get(relative)
        if found is None:
            raise PublishError(f"release {folder}: {relative} is in the manifest but not on disk")
        if found != entry:
            raise PublishError(
                f"release {folder}: {relative} is {found}, the manifest says {entry}"
            )
    for table, rows in manifest["rows"].items():
        parts = [e for r, e in on_disk.items() if r.startswith(f"{table}/") and "rows" in e]
        if not parts or sum(e["rows"] for e in parts) != rows:
            raise PublishError(
                f"release {folder}: table {table} has {sum(e['rows'] for e in parts)} rows in "
                f"{len(parts)} files, the manifest says {rows}"
            )
    if extra := sorted(set(on_disk) - set(manifest["files"])):
        raise PublishError(f"release {folder}: {extra[0]} is on disk but not in the manifest")


def current_release(output_dir: str) -> str | None:
    """Returns the release folder `published` points to, or None."""
    link = os.path.join(output_dir, C.PUBLISHED_LINK)
    if not os.path.lexists(link):
        return None
    if not os.path.islink(link):
        raise PublishError(
            f"{link} is a real folder, not the symlink publishing switches; move it away first"
        )
    return os.path.realpath(link)


def publish_release(
    output_dir: str,
    run_id: str,
    recalls_files: list[str],
    user_vector_files: list[str],
    item_vectors: pa.Table,
    metrics: dict,
    manifest: dict,
    *,
    keep_releases: int,
) -> str:
    """Writes a release aside and switches `published` to it in one rename.

    Returns:
        The new release folder.
    """
    current_release(output_dir)  # refuses a layout it cannot switch atomically
    releases = os.path.join(output_dir, C.RELEASES_DIR)
    os.makedirs(releases, exist_ok=True)
    staging = os.path.join(releases, f"{C.STAGING_PREFIX}{run_id}")
    final = os.path.join(releases, run_id)
    if os.path.exists(final):
        raise PublishError(f"release {final} exists already")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    columns = C.PUBLISHED_COLUMNS
    counts = {
        table: copy_parquet(files, os.path.join(staging, table), columns[table])
        for table, files in (
            (C.RECALLS_DIR, recalls_files),
            (C.USER_VECTORS_DIR, user_vector_files),
        )
    }
    os.makedirs(os.path.join(staging, C.ITEM_VECTORS_DIR))
    pq.write_table(
        item_vectors.select(list(columns[C.ITEM_VECTORS_DIR])),
        os.path.join(staging, C.ITEM_VECTORS_DIR, f"part-00000{C.PARQUET_SUFFIX}"),
    )
    counts[C.ITEM_VECTORS_DIR] = item_vectors.num_rows
    common.write_json(os.path.join(staging, C.METRICS_FILE), metrics)
    manifest = {**manifest, "rows": counts, "files": describe_files(staging)}
    common.write_json(os.path.join(staging, C.MANIFEST_FILE), manifest)
    verify_release(staging)
    common.failpoint("publish:staged")
    os.rename(staging, final)
    common.failpoint("publish:renamed")

    tmp_link = os.path.join(output_dir, f".{C.PUBLISHED_LINK}.tmp-{os.getpid()}")
    if os.path.lexists(tmp_link):
        os.remove(tmp_link)
    os.symlink(os.path.join(C.RELEASES_DIR, run_id), tmp_link)
    os.replace(tmp_link, os.path.join(output_dir, C.PUBLISHED_LINK))
    common.failpoint("publish:switched")
    prune_releases(output_dir, keep_releases)
    return final


def prune_releases(output_dir: str, keep: int) -> list[str]:
    """Removes all but the newest `keep` releases (never the published one) and stale staging."""
    releases = os.path.join(output_dir, C.RELEASES_DIR)
    current = current_release(output_dir)
    removed = []
    for stale in glob.glob(os.path.join(releases, f"{C.STAGING_PREFIX}*")):
        shutil.rmtree(stale, ignore_errors=True)
        removed.append(stale)
    finished = sorted(
        (d for d in glob.glob(os.path.join(releases, "*")) if os.path.isdir(d)),
        key=os.path.getmtime,
    )
    for old in finished[: max(0, len(finished) - keep)]:
        if current and os.path.realpath(old) == current:
            continue
        shutil.rmtree(old)
        removed.append(old)
    return removed


def new_run_id() -> str:
    """A release id that sorts by time: UTC, microseconds."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def publish_if_blessed(
    output_dir: str,
    run_id: str,
    blessed: bool,
    recalls_dir: str,
    model_uri: str,
    metrics: dict,
    manifest: dict,
    config: PublishConfig,
) -> dict:
    """Publishes the run's tables as a new release when blessed; keeps the current one if not.

    Args:
        output_dir: the output folder (`releases/`, `published`).
        run_id: the release's name; empty = a new one from the clock.
        blessed: Evaluate's verdict.
        recalls_dir: the serving Recalls artifact's folder (`recalls/`, `user_vectors/`).
        model_uri: the serving Model artifact (its item vectors).
        metrics: Evaluate's metrics.json, copied into the release.
        manifest: what the release was built from (input, config); the run id and row counts
            are added.
        config: the `publish` section.

    Returns:
        What happened: {published, run_id, and release or kept + not_blessed_because}.
    """
    output_dir = os.path.abspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    run_id = run_id or new_run_id()
    if not blessed:
        return {
            "published": False,
            "run_id": run_id,
            "not_blessed_because": metrics.get("not_blessed_because", []),
            "kept": current_release(output_dir),
        }
    release = publish_release(
        output_dir,
        run_id,
        common.parquet_files(os.path.join(recalls_dir, C.RECALLS_DIR)),
        common.parquet_files(os.path.join(recalls_dir, C.USER_VECTORS_DIR)),
        export.read_item_vector_table(model_uri),
        metrics,
        {"run_id": run_id, **manifest},
        keep_releases=config.keep_releases,
    )
    return {"published": True, "run_id": run_id, "release": release}
