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

from offline_recall.trainer import features as F

ITEM_VECTORS_FILE = "item_vectors.parquet"


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
    return pa.table(
        {
            "item_index": pa.array(np.arange(n, dtype=np.int64)),
            "item_id": pa.array(item_ids, pa.string()),
            "vector": pa.array(list(vectors), pa.list_(pa.float32())),
            "count": pa.array([counts.get(k, 0) for k in keys], pa.int64()),
        }
    )


def write_item_vectors(model_uri: str, table: pa.Table) -> str:
    """Writes the item vector table into the Model artifact, beside Format-Serving."""
    folder = os.path.join(model_uri, F.ITEM_VECTORS_DIR)
    tf.io.gfile.makedirs(folder)
    path = os.path.join(folder, ITEM_VECTORS_FILE)
    pq.write_table(table, path)
    return path


def read_item_vectors(model_uri: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Returns (item ids, [V, dim + 1] float32 vectors, [V] counts) from a Model artifact."""
    table = pq.read_table(os.path.join(model_uri, F.ITEM_VECTORS_DIR, ITEM_VECTORS_FILE))
    ids = table.column("item_id").to_pylist()
    vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
    if not ids:
        vectors = vectors.reshape(0, 0)
    counts = np.asarray(table.column("count").to_pylist(), dtype=np.int64)
    return ids, vectors, counts


def augment_user_vectors(user_vectors: np.ndarray) -> np.ndarray:
    """Appends the constant 1 that multiplies the folded-in bias: [n, dim] -> [n, dim + 1]."""
    ones = np.ones((user_vectors.shape[0], 1), dtype=np.float32)
    return np.concatenate([user_vectors.astype(np.float32), ones], axis=1)


def serving_model_path(model_uri: str) -> str:
    """Returns the newest SavedModel folder under the Model artifact's Format-Serving."""
    root = os.path.join(model_uri, "Format-Serving")
    versions = sorted(v for v in tf.io.gfile.listdir(root) if v.rstrip("/").isdigit())
    if not versions:
        raise FileNotFoundError(f"no SavedModel under {root}")
    return os.path.join(root, versions[-1].rstrip("/"))
