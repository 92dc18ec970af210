"""The blessing gate and the publishing of a release, and pruning of old releases.

Layout under the output folder (local, gs://, s3://: every file goes through tf.io.gfile):
    releases/<run_id>/{recalls,user_vectors,item_vectors}/*.parquet   the tables
    releases/<run_id>/user_model/                 the serving SavedModel (history -> user_vector)
    releases/<run_id>/item_index/{index.faiss, item_ids.parquet}  (faiss IndexFlatIP + id map)
    releases/<run_id>/metrics.json, manifest.json  (manifest: every file's bytes, sha256, rows)
    LATEST                                         {"run_id", "release", "published_at"}
    published -> releases/<run_id>                 (local only: a convenience symlink)
A release is written whole and checked against its manifest, and only then is LATEST written, in
one object write: a consumer that reads LATEST sees the old release or the new one, never a mix,
and a run that fails or is killed before that changes nothing a consumer reads.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os

import faiss
import numpy as np
import pyarrow as pa
import tensorflow as tf

from offline_recall.components import common, releases
from offline_recall.core import contracts as C
from offline_recall.core import dates, model_artifact, records, storage
from offline_recall.core.config import PublishConfig


class PublishError(RuntimeError):
    """The output folder is not in a state publishing can safely switch."""


def write_item_index(item_vectors: pa.Table, folder: str) -> None:
    """Writes the item vectors as a faiss IndexFlatIP and its id map (row i = faiss id i).

    Searching it with a published user vector scores items exactly as Recall did (the inner
    product of the published vectors), before Recall's exclusion of visited items.
    """
    vectors = np.asarray(
        item_vectors.column(C.VECTOR_COLUMN).combine_chunks().flatten().to_numpy(), np.float32
    ).reshape(item_vectors.num_rows, -1)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(os.path.join(folder, C.ITEM_INDEX_FILE), "wb") as f:
        f.write(faiss.serialize_index(index).tobytes())
    storage.write_parquet(
        item_vectors.select([C.ITEM_ID_COLUMN]), os.path.join(folder, C.ITEM_INDEX_IDS_FILE)
    )


def read_item_index(folder: str) -> tuple[faiss.Index, list[str]]:
    """(the faiss index, item id of each faiss id) of a release's `item_index/`."""
    with tf.io.gfile.GFile(os.path.join(folder, C.ITEM_INDEX_FILE), "rb") as f:
        index = faiss.deserialize_index(np.frombuffer(f.read(), np.uint8))
    ids = storage.read_parquet(os.path.join(folder, C.ITEM_INDEX_IDS_FILE))
    return index, ids.column(C.ITEM_ID_COLUMN).to_pylist()


def copy_parquet(src_files: list[str], dst_dir: str, columns: tuple[str, ...]) -> int:
    """Rewrites Parquet files keeping only `columns` (in that order); returns the row count."""
    if not src_files:
        raise PublishError(f"nothing to publish into {dst_dir}: no source files")
    tf.io.gfile.makedirs(dst_dir)
    rows = 0
    for i, src in enumerate(sorted(src_files)):
        dst = os.path.join(dst_dir, f"part-{i:05d}{C.PARQUET_SUFFIX}")
        rows += storage.copy_parquet_columns(src, dst, list(columns))
    return rows


def describe_files(folder: str) -> dict[str, dict]:
    """{relative path: {bytes, sha256, rows (Parquet only)}} of every file in a release."""
    files = {}
    for root, _, names in tf.io.gfile.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if relative == C.MANIFEST_FILE:
                continue
            entry = {"bytes": tf.io.gfile.stat(path).length, "sha256": storage.sha256_of(path)}
            if name.endswith(C.PARQUET_SUFFIX):
                with storage.open_parquet(path) as table:
                    entry["rows"] = table.metadata.num_rows
            files[relative] = entry
    return dict(sorted(files.items()))


def model_fingerprint(files: dict[str, dict]) -> str | None:
    """sha256 over the user model's files (path and content hash), or None without one."""
    prefix = f"{C.RELEASE_MODEL_DIR}/"
    entries = sorted((p, e["sha256"]) for p, e in files.items() if p.startswith(prefix))
    if not entries:
        return None
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def verify_release(folder: str) -> None:
    """Checks a release against its manifest: every table and file there, with its rows and bytes.

    Raises:
        PublishError: naming what is missing or differs; the release is then not switched to.
    """
    manifest = records.Manifest.read(records.Manifest.path_in(folder))
    on_disk = describe_files(folder)
    for relative, entry in manifest.files.items():
        found = on_disk.get(relative)
        if found is None:
            raise PublishError(f"release {folder}: {relative} is in the manifest but not on disk")
        if found != entry:
            raise PublishError(
                f"release {folder}: {relative} is {found}, the manifest says {entry}"
            )
    for table, rows in manifest.rows.items():
        parts = [e for r, e in on_disk.items() if r.startswith(f"{table}/") and "rows" in e]
        if not parts or sum(e["rows"] for e in parts) != rows:
            raise PublishError(
                f"release {folder}: table {table} has {sum(e['rows'] for e in parts)} rows in "
                f"{len(parts)} files, the manifest says {rows}"
            )
    if extra := sorted(set(on_disk) - set(manifest.files)):
        raise PublishError(f"release {folder}: {extra[0]} is on disk but not in the manifest")


def span_facts(ingest: records.IngestSummary) -> dict:
    """What a release's manifest says of its input's days: the run date, the TFX span numbers
    (days since 1970-01-01) and the dates they cover; from Ingest's summary."""
    spans = list(ingest.spans)
    dated = ingest.run_date is not None and bool(spans)
    return {
        "run_date": ingest.run_date,
        "input_spans": spans,
        "input_span_dates": (
            [dates.date_of_span(s).isoformat() for s in (spans[0], spans[-1])] if dated else None
        ),
        "window_first_day": ingest.window_first_day,
    }


def current_release(output_dir: str) -> str | None:
    """Returns the release folder LATEST points to, or None before the first publish."""
    latest = storage.read_latest(output_dir)
    return latest["release"] if latest else None


def _check_link(output_dir: str) -> None:
    link = os.path.join(output_dir, C.PUBLISHED_LINK)
    if storage.is_local(output_dir) and os.path.lexists(link) and not os.path.islink(link):
        raise PublishError(
            f"{link} is a real folder, not the symlink publishing switches; move it away first"
        )


def _switch_link(output_dir: str, run_id: str) -> None:
    """Points the local `published` symlink at the release, in one rename."""
    tmp_link = os.path.join(output_dir, f".{C.PUBLISHED_LINK}.tmp-{os.getpid()}")
    if os.path.lexists(tmp_link):
        os.remove(tmp_link)
    os.symlink(os.path.join(C.RELEASES_DIR, run_id), tmp_link)
    os.replace(tmp_link, os.path.join(output_dir, C.PUBLISHED_LINK))


def _current_run_date(output_dir: str) -> tuple[str | None, str | None]:
    """(the current release's folder, its run date) from LATEST and that release's manifest."""
    latest = storage.read_latest(output_dir)
    if latest is None:
        return None, None
    if "run_date" in latest:
        return latest["release"], latest["run_date"]
    manifest_path = records.Manifest.path_in(latest["release"])
    if not tf.io.gfile.exists(manifest_path):
        return latest["release"], None
    return latest["release"], records.Manifest.read(manifest_path).run_date


def should_point(new_date: str | None, current_date: str | None) -> bool:
    """LATEST moves to a new release unless that release is of an older date than the current
    one's (a backfill): consumers keep reading the newest day."""
    return new_date is None or current_date is None or new_date >= current_date


def publish_release(
    output_dir: str,
    run_id: str,
    recalls_files: list[str],
    user_vector_files: list[str],
    item_vectors: pa.Table,
    evaluation: records.Evaluation,
    manifest: dict,
    *,
    keep_releases: int,
    serving_model_dir: str | None = None,
    warm_start_dir: str | None = None,
) -> dict:
    """Writes a release, checks it against its manifest, then points LATEST at it.

    The release replaces any earlier release of the same run date (a rerun of a day leaves one
    release for that day). LATEST moves to it unless the current release is of a later date
    (a backfill writes its day's release and leaves LATEST on the newest day).

    Args:
        output_dir: the output folder.
        run_id: the release's name.
        recalls_files, user_vector_files: the Recalls artifact's Parquet files.
        item_vectors: the Model artifact's item vector table.
        evaluation: Evaluate's record, copied as metrics.json.
        manifest: what the release was built from (with `run_date`, None when undated); rows
            and files are added.
        keep_releases: releases kept beside the current one.
        serving_model_dir: the serving SavedModel, copied as user_model/.
        warm_start_dir: the model's warm-start source, copied as warm_start/.

    Returns:
        {release, pointed (whether LATEST now names it), current, replaced (same-date releases
        removed), pruned}.
    """
    _check_link(output_dir)
    release = os.path.join(output_dir, C.RELEASES_DIR, run_id)
    if tf.io.gfile.exists(release):
        raise PublishError(f"release {release} exists already")
    run_date = manifest["run_date"]
    columns = C.PUBLISHED_COLUMNS
    counts = {
        table: copy_parquet(files, os.path.join(release, table), columns[table])
        for table, files in (
            (C.RECALLS_DIR, recalls_files),
            (C.USER_VECTORS_DIR, user_vector_files),
        )
    }
    tf.io.gfile.makedirs(os.path.join(release, C.ITEM_VECTORS_DIR))
    storage.write_parquet(
        item_vectors.select(list(columns[C.ITEM_VECTORS_DIR])),
        os.path.join(release, C.ITEM_VECTORS_DIR, f"part-00000{C.PARQUET_SUFFIX}"),
    )
    counts[C.ITEM_VECTORS_DIR] = item_vectors.num_rows
    write_item_index(item_vectors, os.path.join(release, C.ITEM_INDEX_DIR))
    if serving_model_dir:
        storage.copy_tree(serving_model_dir, os.path.join(release, C.RELEASE_MODEL_DIR))
    if warm_start_dir and tf.io.gfile.isdir(warm_start_dir):
        storage.copy_tree(warm_start_dir, os.path.join(release, C.WARM_START_DIR))
    evaluation.write(records.Evaluation.path_in(release))
    files = describe_files(release)
    records.Manifest.from_dict(
        {
            **manifest,
            "metrics": evaluation.release_metrics().to_dict(),
            "rows": counts,
            "files": files,
            "model_fingerprint": model_fingerprint(files),
        },
        where=records.Manifest.path_in(release),
    ).write(records.Manifest.path_in(release))
    verify_release(release)
    common.failpoint("publish:written")
    current, current_date = _current_run_date(output_dir)
    pointed = should_point(run_date, current_date)
    if pointed:
        storage.write_json(
            os.path.join(output_dir, C.LATEST_FILE),
            {
                "run_id": run_id,
                "release": release,
                "run_date": run_date,
                "published_at": datetime.datetime.now(datetime.UTC).isoformat(),
            },
        )
        common.failpoint("publish:pointed")
        if storage.is_local(output_dir):
            _switch_link(output_dir, run_id)
        common.failpoint("publish:switched")
        current = release
    replaced = []
    if run_date is not None:
        # Only after the switch: until then the old copy may be what LATEST names.
        for old in releases.list_releases(output_dir):
            if old.run_date == run_date and old.folder not in (release, current):
                tf.io.gfile.rmtree(old.folder)
                replaced.append(old.folder)
    return {
        "release": release,
        "pointed": pointed,
        "current": current,
        "replaced": replaced,
        "pruned": prune_releases(output_dir, keep_releases),
    }


def sync_published_link(output_dir: str) -> bool:
    """Points the local `published` link where LATEST points (a run killed between the two
    leaves them apart); returns whether it moved."""
    latest = storage.read_latest(output_dir)
    if latest is None or not storage.is_local(output_dir):
        return False
    _check_link(output_dir)
    link = os.path.join(output_dir, C.PUBLISHED_LINK)
    target = os.path.join(C.RELEASES_DIR, latest["run_id"])
    if os.path.islink(link) and os.readlink(link) == target:
        return False
    _switch_link(output_dir, latest["run_id"])
    return True


def prune_releases(output_dir: str, keep: int) -> list[str]:
    """Removes all but the newest `keep` releases beside the current one.

    Releases order by run date, then run id (time), so a backfilled day counts as old. A folder
    without a manifest is what a run killed while writing left: it is removed whatever its age
    (one run per output folder at a time).
    """
    root = os.path.join(output_dir, C.RELEASES_DIR)
    if not tf.io.gfile.isdir(root):
        return []
    current = current_release(output_dir)
    complete = [r.folder for r in releases.list_releases(output_dir) if r.folder != current]
    names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(root))
    folders = [os.path.join(root, n) for n in names]
    incomplete = [f for f in folders if f != current and f not in complete and tf.io.gfile.isdir(f)]
    doomed = incomplete + complete[: max(0, len(complete) - keep)]
    for folder in doomed:
        tf.io.gfile.rmtree(folder)
    return doomed


def publish_if_blessed(
    output_dir: str,
    run_id: str,
    blessed: bool,
    recalls_dir: str,
    model_uri: str,
    evaluation: records.Evaluation,
    manifest: dict,
    config: PublishConfig,
) -> records.PublishSummary:
    """Publishes the run's tables as a new release when blessed; keeps the current one if not.

    Args:
        output_dir: the output folder (`releases/`, `published`).
        run_id: the release's name; empty = a new one from the clock.
        blessed: Evaluate's verdict.
        recalls_dir: the serving Recalls artifact's folder (`recalls/`, `user_vectors/`).
        model_uri: the serving Model artifact (its item vectors).
        evaluation: Evaluate's record, copied into the release as metrics.json.
        manifest: what the release was built from (input, config); the run id and row counts
            are added.
        config: the `publish` section.

    Returns:
        What happened: the release, where LATEST points, what was replaced and pruned (see
        `publish_release`); or the release kept and why not.
    """
    if storage.is_local(output_dir):
        output_dir = os.path.abspath(output_dir)
    tf.io.gfile.makedirs(output_dir)
    run_id = run_id or dates.new_run_id()
    if not blessed:
        return records.PublishSummary(
            published=False,
            run_id=run_id,
            release=None,
            pointed=None,
            current=None,
            replaced=(),
            pruned=(),
            not_blessed_because=evaluation.not_blessed_because,
            kept=current_release(output_dir),
        )
    done = publish_release(
        output_dir,
        run_id,
        storage.parquet_files(os.path.join(recalls_dir, C.RECALLS_DIR)),
        storage.parquet_files(os.path.join(recalls_dir, C.USER_VECTORS_DIR)),
        model_artifact.read_item_vector_table(model_uri),
        evaluation,
        {"run_id": run_id, **manifest},
        keep_releases=config.keep_releases,
        serving_model_dir=model_artifact.serving_model_path(model_uri),
        warm_start_dir=os.path.join(model_uri, C.WARM_START_DIR),
    )
    return records.PublishSummary(
        published=True,
        run_id=run_id,
        release=done["release"],
        pointed=done["pointed"],
        current=done["current"],
        replaced=tuple(done["replaced"]),
        pruned=tuple(done["pruned"]),
        not_blessed_because=(),
        kept=None,
    )
