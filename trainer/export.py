"""Exports: the serving SavedModel (raw item ids in, `user_vector` out) and the item vectors.

Scores are inner products with the bias folded in: an item vector is [kernel_i, bias_i] and a
published user vector is [user_vector, 1], so `user . item = u . w_i + b_i`, the model's logit.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
import tensorflow_transform as tft
from apache_beam.io.filesystems import FileSystems

from offline_recall.components import common
from offline_recall.components import contracts as C
from offline_recall.trainer import features as F
from offline_recall.trainer import model as model_lib


def serving_receiver_fn(tf_transform_output: tft.TFTransformOutput, with_user: bool = False):
    """Returns a receiver that takes serialized tf.Examples holding raw `history_items` ids.

    With `with_user` (trainer.user_embedding) the examples also carry the raw `user_id`.
    Serving predicts for "now": the recency feature is 0, so no timestamps are read.
    """

    def receiver():
        serialized = tf.compat.v1.placeholder(tf.string, shape=[None], name="examples")
        spec = {F.HISTORY: tf.io.VarLenFeature(tf.string)}
        if with_user:
            # Dense [batch, 1], as the schema parses it for Transform; a missing id is the OOV user.
            spec[F.USER_ID] = tf.io.FixedLenFeature([1], tf.string, default_value=[""])
        raw = tf.io.parse_example(serialized, spec)
        transformed = tf_transform_output.transform_raw_features(raw, drop_unused_features=True)
        features = {F.HISTORY_IDX: transformed[F.HISTORY_IDX]}
        if with_user:
            features[F.USER_IDX] = transformed[F.USER_IDX]
        return tf.estimator.export.ServingInputReceiver(features, {"examples": serialized})

    return receiver


def read_vocabulary_counts(tf_transform_output: tft.TFTransformOutput) -> dict[bytes, int]:
    """Returns {vocabulary key: training count} from the vocabulary stored with frequencies."""
    path = tf_transform_output.vocabulary_file_by_name(F.ITEM_VOCAB_COUNTS)
    counts = {}
    with tf.io.gfile.GFile(path, "rb") as f:
        for line in f:
            count, key = line.rstrip(b"\n").split(b" ", 1)
            counts[key] = int(count)
    return counts


def item_vectors_table(
    keys: list[bytes], kernel: np.ndarray, bias: np.ndarray, counts: dict[bytes, int]
) -> pa.Table:
    """Builds the item vector table for the in-vocabulary items (OOV buckets are not items).

    Args:
        keys: vocabulary keys in index order, length V.
        kernel: [num_classes >= V, dim] softmax kernel.
        bias: [num_classes] softmax bias.
        counts: training click count per key.

    Returns:
        Table with item_index int64, item_id string (the original id), vector list<float32>
        [dim + 1] (bias folded in as the last component) and count int64.
    """
    n = len(keys)
    vectors = np.concatenate([kernel[:n], bias[:n, None]], axis=1).astype(np.float32)
    item_ids = [F.decode_id(k).decode("utf-8") for k in keys]
    width = vectors.shape[1]
    return pa.table(
        [
            pa.array(np.arange(n, dtype=np.int64)),
            pa.array(item_ids, pa.string()),
            pa.ListArray.from_arrays(
                pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32)),
                pa.array(vectors.reshape(-1)),
            ),
            pa.array([counts.get(k, 0) for k in keys], pa.int64()),
        ],
        schema=C.ITEM_VECTORS_SCHEMA,
    )


def item_vectors_path(model_uri: str) -> str:
    """Where a Model artifact keeps its item vector table, beside Format-Serving."""
    return os.path.join(model_uri, C.ITEM_VECTORS_DIR, C.ITEM_VECTORS_FILE)


def write_item_vectors(model_uri: str, table: pa.Table) -> str:
    """Writes the item vector table into the Model artifact."""
    path = item_vectors_path(model_uri)
    tf.io.gfile.makedirs(os.path.dirname(path))
    common.write_parquet(table, path)
    return path


def read_item_vector_table(model_uri: str) -> pa.Table:
    return common.read_parquet(item_vectors_path(model_uri))


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
    table = common.read_parquet(item_vectors_path(model_uri), columns=[C.ITEM_ID_COLUMN])
    return table.column(C.ITEM_ID_COLUMN).to_pylist()


def read_item_counts(model_uri: str) -> tuple[list[str], np.ndarray]:
    """(item ids, [V] training click counts) of a Model artifact, in catalog order (no vectors)."""
    table = common.read_parquet(
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


def serving_model_path(model_uri: str) -> str:
    """Returns the newest SavedModel folder under the Model artifact's Format-Serving."""
    root = os.path.join(model_uri, C.SERVING_MODEL_DIR)
    versions = sorted(v for v in tf.io.gfile.listdir(root) if v.rstrip("/").isdigit())
    if not versions:
        raise FileNotFoundError(f"no SavedModel under {root}")
    return os.path.join(root, versions[-1].rstrip("/"))


def export_model(estimator, checkpoint, serving_model_dir, tf_transform_output, params) -> str:
    """Exports the serving SavedModel and the item vectors of `checkpoint`; returns the Model URI.

    Item vectors are the output kernel rows (the input table when tied) with the softmax bias
    appended, read from the same checkpoint the SavedModel is built from.
    """
    estimator.export_saved_model(
        serving_model_dir,
        serving_receiver_fn(tf_transform_output, params["user_embedding"]),
        checkpoint_path=checkpoint,
    )
    keys = tf_transform_output.vocabulary_by_name(F.ITEM_VOCAB)
    table = item_vectors_table(
        keys,
        tf.train.load_variable(checkpoint, model_lib.output_kernel_name(params)),
        tf.train.load_variable(checkpoint, F.SOFTMAX_BIAS).reshape(-1),
        read_vocabulary_counts(tf_transform_output),
    )
    model_uri = os.path.dirname(serving_model_dir.rstrip("/"))
    write_item_vectors(model_uri, table)
    return model_uri


def keep_checkpoint(checkpoint: str, model_uri: str) -> str:
    """Copies a checkpoint's files into the Model artifact; returns the copy's prefix.

    The Refit trainer warm-starts from it: the Model artifact is what a downstream Trainer gets
    (`base_model`), the model_run folder with the checkpoints is not.
    """
    prefix = kept_checkpoint(model_uri)
    tf.io.gfile.makedirs(os.path.dirname(prefix))
    for path in tf.io.gfile.glob(checkpoint + ".*"):
        tf.io.gfile.copy(path, prefix + path[len(checkpoint) :], overwrite=True)
    return prefix


def kept_checkpoint(model_uri: str) -> str:
    """The prefix of the checkpoint `keep_checkpoint` copied into a Model artifact."""
    return os.path.join(model_uri, C.CHECKPOINT_DIR, C.CHECKPOINT_NAME)


def write_train_summary(model_uri: str, summary: dict) -> None:
    common.write_json(os.path.join(model_uri, C.TRAIN_SUMMARY_FILE), summary)


def read_train_summary(model_uri: str) -> dict:
    return common.read_json(os.path.join(model_uri, C.TRAIN_SUMMARY_FILE))


def read_previous(model_uri: str) -> dict:
    """What a PreviousRelease Model artifact holds: {found, run_id, run_date, release, why_not}."""
    return common.read_json(os.path.join(model_uri, C.PREVIOUS_FILE))


def has_serving_model(model_uri: str) -> bool:
    """Whether a Model artifact holds a serving SavedModel (a PreviousRelease may hold none)."""
    root = os.path.join(model_uri, C.SERVING_MODEL_DIR)
    return tf.io.gfile.isdir(root) and any(
        v.rstrip("/").isdigit() for v in tf.io.gfile.listdir(root)
    )
