"""Exports: the serving SavedModel (raw item ids in, `user_vector` out) and the item vectors.

Scores are inner products with the bias folded in: an item vector is [kernel_i, bias_i] and a
published user vector is [user_vector, 1], so `user . item = u . w_i + b_i`, the model's logit.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tensorflow_transform as tft

from offline_recall.core import contracts as C
from offline_recall.core import model_artifact
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


def read_item_rows(checkpoint: str, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """The output kernel and bias of a checkpoint, every ensemble member's folded in.

    An ensemble's kernel row is its members' rows side by side and its bias the sum of theirs:
    against the members' user vectors side by side (what the model predicts) that is the sum of
    the members' logits, which is what training evaluated.

    With the item-item blend its item rows Q [num_classes, r] follow.

    Returns:
        (kernel [num_classes, ensemble_size * dim (+ r)], bias [num_classes]).
    """
    names = model_lib.item_row_names(params)
    kernels = [tf.train.load_variable(checkpoint, k) for k, _ in names]
    if params.get(model_lib.ITEM_ITEM_ITEM_ROWS) is not None:
        # The item-item blend's Q after the members' rows, as its part follows theirs in the
        # user vector.
        kernels.append(params[model_lib.ITEM_ITEM_ITEM_ROWS])
    kernel = np.concatenate(kernels, axis=1)
    bias = np.sum([tf.train.load_variable(checkpoint, b).reshape(-1) for _, b in names], axis=0)
    return kernel, bias


def export_model(estimator, checkpoint, serving_model_dir, tf_transform_output, params) -> str:
    """Exports the serving SavedModel and the item vectors of `checkpoint`; returns the Model URI.

    Item vectors are the output kernel rows (the input table when tied) with the softmax bias
    appended (an ensemble's members side by side, their biases summed), read from the same
    checkpoint the SavedModel is built from.
    """
    estimator.export_saved_model(
        serving_model_dir,
        serving_receiver_fn(tf_transform_output, params["user_embedding"]),
        checkpoint_path=checkpoint,
    )
    keys = tf_transform_output.vocabulary_by_name(F.ITEM_VOCAB)
    table = item_vectors_table(
        keys, *read_item_rows(checkpoint, params), read_vocabulary_counts(tf_transform_output)
    )
    model_uri = os.path.dirname(serving_model_dir.rstrip("/"))
    model_artifact.write_item_vectors(model_uri, table)
    return model_uri


def keep_checkpoint(checkpoint: str, model_uri: str) -> str:
    """Copies a checkpoint's files into the Model artifact; returns the copy's prefix.

    The Refit trainer warm-starts from it: the Model artifact is what a downstream Trainer gets
    (`base_model`), the model_run folder with the checkpoints is not.
    """
    prefix = model_artifact.kept_checkpoint(model_uri)
    tf.io.gfile.makedirs(os.path.dirname(prefix))
    for path in tf.io.gfile.glob(checkpoint + ".*"):
        tf.io.gfile.copy(path, prefix + path[len(checkpoint) :], overwrite=True)
    return prefix
