"""What a Model artifact holds besides the SavedModel, read and written without TensorFlow's
model code: the item vector table (Parquet), the training summary, the PreviousRelease record,
the kept checkpoint's path and the serving model's folder. Every stage that only reads a Model
artifact imports this, not the trainer's export (which needs tft and the model_fn).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems

from offline_recall.core import contracts as C
from offline_recall.core import records, storage


def item_vectors_path(model_uri: str) -> str:
    """Where a Model artifact keeps its item vector table, beside Format-Serving."""
    return os.path.join(model_uri, C.ITEM_VECTORS_DIR, C.ITEM_VECTORS_FILE)


def write_item_vectors(model_uri: str, table: pa.Table) -> str:
    """Writes the item vector table into the Model artifact."""
    path = item_vectors_path(model_uri)
    tf.io.gfile.makedirs(os.path.dirname(path))
    storage.write_parquet(table, path)
    return path


def read_item_vector_table(model_uri: str) -> pa.Table:
    return storage.read_parquet(item_vectors_path(model_uri))


def read_item_vectors(model_uri: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Returns (item ids, [V, dim + 1] float32 vectors, [V] counts) from a Model artifact."""
    table = read_item_vector_table(model_uri)
    ids = table.column(C.ITEM_ID_COLUMN).to_pylist()
    lists = table.column(C.VECTOR_COLUMN).combine_chunks()
    flat = np.asarray(lists.flatten(), dtype=np.float32)
    vectors = flat.reshape(len(ids), -1) if ids else flat.reshape(0, 0)
    counts = np.asarray(table.column(C.COUNT_COLUMN), dtype=np.int64)
    return ids, vectors, counts


def read_item_ids(model_uri: str) -> list[str]:
    """The item ids of a Model artifact's item vector table, in catalog order (no vectors)."""
    table = storage.read_parquet(item_vectors_path(model_uri), columns=[C.ITEM_ID_COLUMN])
    return table.column(C.ITEM_ID_COLUMN).to_pylist()


def read_item_counts(model_uri: str) -> tuple[list[str], np.ndarray]:
    """(item ids, [V] training click counts) of a Model artifact, in catalog order (no vectors)."""
    table = storage.read_parquet(
        item_vectors_path(model_uri), columns=[C.ITEM_ID_COLUMN, C.COUNT_COLUMN]
    )
    ids = table.column(C.ITEM_ID_COLUMN).to_pylist()
    return ids, np.asarray(table.column(C.COUNT_COLUMN), dtype=np.int64)


def read_item_vector_rows(model_uri: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of the item vectors, [stop - start, dim + 1] float32.

    Streams the file's record batches and keeps only the range, so a worker that searches one
    item shard never holds the whole catalog's vectors.
    """
    kept = []
    seen = 0
    # Beam's FileSystems gives a seekable file object pyarrow can read row groups from (a GFile
    # lacks the `closed` pyarrow asks for).
    with FileSystems.open(item_vectors_path(model_uri), compression_type="uncompressed") as f:
        for batch in pq.ParquetFile(f).iter_batches(columns=[C.VECTOR_COLUMN]):
            lo, hi = max(start - seen, 0), min(stop - seen, batch.num_rows)
            if lo < hi:
                lists = batch.column(0).slice(lo, hi - lo)
                kept.append(np.asarray(lists.flatten(), dtype=np.float32).reshape(hi - lo, -1))
            seen += batch.num_rows
            if seen >= stop:
                break
    if seen < stop:
        raise ValueError(f"item vectors hold {seen} rows, rows [{start}, {stop}) were asked for")
    return np.concatenate(kept) if kept else np.empty((0, 0), np.float32)


def augment_user_vectors(user_vectors: np.ndarray) -> np.ndarray:
    """Appends the constant 1 that multiplies the folded-in bias: [n, dim] -> [n, dim + 1]."""
    ones = np.ones((user_vectors.shape[0], 1), dtype=np.float32)
    return np.concatenate([user_vectors.astype(np.float32), ones], axis=1)


def serving_model_dir(model_uri: str) -> str:
    """The Model artifact's Format-Serving folder: TFX's `path_utils.serving_model_dir`, which
    core cannot import (it stays TFX-free); tests/test_contracts.py checks the two agree."""
    return os.path.join(model_uri, C.SERVING_MODEL_DIR)


def serving_model_path(model_uri: str) -> str:
    """Returns the newest SavedModel folder under the Model artifact's Format-Serving."""
    root = serving_model_dir(model_uri)
    versions = sorted(v for v in tf.io.gfile.listdir(root) if v.rstrip("/").isdigit())
    if not versions:
        raise FileNotFoundError(f"no SavedModel under {root}")
    return os.path.join(root, versions[-1].rstrip("/"))


def kept_checkpoint(model_uri: str) -> str:
    """The prefix of the checkpoint `keep_checkpoint` copied into a Model artifact."""
    return os.path.join(model_uri, C.CHECKPOINT_DIR, C.CHECKPOINT_NAME)


def write_train_summary(model_uri: str, summary: records.TrainSummary) -> None:
    summary.write(records.TrainSummary.path_in(model_uri))


def read_train_summary(model_uri: str) -> records.TrainSummary:
    """How the trainer trained the Model artifact's model; RecordError names a wrong field."""
    return records.TrainSummary.read(records.TrainSummary.path_in(model_uri))


def read_previous(model_uri: str) -> records.PreviousRelease:
    """What a PreviousRelease Model artifact holds: which release it found, or why none."""
    return records.PreviousRelease.read(records.PreviousRelease.path_in(model_uri))


def has_serving_model(model_uri: str) -> bool:
    """Whether a Model artifact holds a serving SavedModel (a PreviousRelease may hold none)."""
    root = serving_model_dir(model_uri)
    return tf.io.gfile.isdir(root) and any(
        v.rstrip("/").isdigit() for v in tf.io.gfile.listdir(root)
    )
