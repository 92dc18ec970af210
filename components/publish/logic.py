"""Atomic publishing of a release, the run summary, and pruning of old releases.

Layout under the output folder:
    releases/<run_id>/{recalls,user_vectors,item_vectors}/*.parquet, metrics.json, manifest.json
    published -> releases/<run_id>      (a relative symlink)
A release is written under `releases/.staging-<run_id>`, renamed into place, and then `published`
is switched with one `os.replace` of a fresh symlink, which is atomic on POSIX: a reader sees the
old set or the new one, never a mix, and a run that fails before the switch changes nothing.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

PUBLISHED = "published"
RELEASES = "releases"
STAGING_PREFIX = ".staging-"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"

RECALLS_COLUMNS = ("user_id", "item_ids", "scores")
USER_VECTORS_COLUMNS = ("user_id", "vector")
ITEM_VECTORS_COLUMNS = ("item_id", "vector", "count")


class PublishError(RuntimeError):
    """The output folder is not in a state publishing can safely switch."""


def copy_parquet(src_files: list[str], dst_dir: str, columns: tuple[str, ...]) -> int:
    """Rewrites Parquet files keeping only `columns` (in that order); returns the row count."""
    os.makedirs(dst_dir, exist_ok=True)
    rows = 0
    for i, src in enumerate(sorted(src_files)):
        table = pq.read_table(src, columns=list(columns))
        rows += table.num_rows
        pq.write_table(table, os.path.join(dst_dir, f"part-{i:05d}.parquet"))
    if not src_files:
        # An empty table still carries the schema, so readers find the columns.
        raise PublishError(f"nothing to publish into {dst_dir}: no source files")
    return rows


def write_json_atomic(path: str, payload: Any) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True, ensure_ascii=False)
    os.replace(tmp, path)


def current_release(output_dir: str) -> str | None:
    """Returns the release folder `published` points to, or None."""
    link = os.path.join(output_dir, PUBLISHED)
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
    keep_releases: int = 2,
) -> str:
    """Writes a release aside and switches `published` to it in one rename.

    Returns:
        The new release folder.
    """
    current_release(output_dir)  # refuses a layout it cannot switch atomically
    releases = os.path.join(output_dir, RELEASES)
    os.makedirs(releases, exist_ok=True)
    staging = os.path.join(releases, f"{STAGING_PREFIX}{run_id}")
    final = os.path.join(releases, run_id)
    if os.path.exists(final):
        raise PublishError(f"release {final} exists already")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    counts = {
        "recalls": copy_parquet(recalls_files, os.path.join(staging, "recalls"), RECALLS_COLUMNS),
        "user_vectors": copy_parquet(
            user_vector_files, os.path.join(staging, "user_vectors"), USER_VECTORS_COLUMNS
        ),
    }
    os.makedirs(os.path.join(staging, "item_vectors"))
    pq.write_table(
        item_vectors.select(list(ITEM_VECTORS_COLUMNS)),
        os.path.join(staging, "item_vectors", "part-00000.parquet"),
    )
    counts["item_vectors"] = item_vectors.num_rows
    write_json_atomic(os.path.join(staging, METRICS_FILE), metrics)
    write_json_atomic(os.path.join(staging, MANIFEST_FILE), {**manifest, "rows": counts})
    os.rename(staging, final)

    tmp_link = os.path.join(output_dir, f".{PUBLISHED}.tmp-{os.getpid()}")
    if os.path.lexists(tmp_link):
        os.remove(tmp_link)
    os.symlink(os.path.join(RELEASES, run_id), tmp_link)
    os.replace(tmp_link, os.path.join(output_dir, PUBLISHED))
    prune_releases(output_dir, keep_releases)
    return final


def prune_releases(output_dir: str, keep: int) -> list[str]:
    """Removes all but the newest `keep` releases (never the published one) and stale staging."""
    releases = os.path.join(output_dir, RELEASES)
    current = current_release(output_dir)
    removed = []
    for stale in glob.glob(os.path.join(releases, f"{STAGING_PREFIX}*")):
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
