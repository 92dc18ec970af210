"""The Transform `preprocessing_fn`: item ids -> vocabulary keys -> frequency-ordered indices.

Ids arrive as raw bytes. `tft.vocabulary` writes newline-delimited files and drops tokens with a
newline, so every id is first turned into its web-safe base64 key (see `features.encode_id`); the
same ops run inside the serving graph, so callers send raw ids.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from offline_recall.trainer import features as F


def id_to_key(ids: tf.Tensor) -> tf.Tensor:
    """Maps raw id bytes to vocabulary keys; same shape. Empty stays empty."""
    return tf.io.encode_base64(ids, pad=False)


def _single_value(sparse: tf.SparseTensor, default="") -> tf.Tensor:
    """Returns a [batch] dense tensor from a [batch, <=1] sparse one (`default` where absent)."""
    batch = sparse.dense_shape[0]
    reshaped = tf.SparseTensor(sparse.indices, sparse.values, tf.stack([batch, 1]))
    return tf.sparse.to_dense(reshaped, default_value=default)[:, 0]


SECONDS_PER_DAY = 86400.0


def example_age(timestamps: tf.Tensor, newest: tf.Tensor) -> tf.Tensor:
    """log1p(days from each timestamp to `newest`), clipped at 0: YouTube DNN's example age.

    Args:
        timestamps: int64 epoch seconds, any shape.
        newest: int64 scalar, the newest training event's timestamp.

    Returns:
        float32, the shape of `timestamps`.
    """
    days = tf.cast(newest - timestamps, tf.float64) / SECONDS_PER_DAY
    return tf.cast(tf.math.log1p(tf.maximum(days, 0.0)), tf.float32)


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """Builds the item vocabulary on training events and maps histories and labels to indices.

    The vocabulary is analyzed on the `train` split. With window examples (the last-position
    objective) its labels are each training event exactly once; with sequence pieces (the
    per-position objective) history plus label are. Either way the frequency order and counts
    are the items' training click counts, which the log-uniform sampler assumes and the unigram
    sampler and the logQ correction read.

    Args:
        inputs: `history_items` SparseTensor [batch, <=max_history] bytes, `label_item`
            SparseTensor [batch, <=1] bytes (plus features this function ignores).
        custom_config: {"transform": {"min_count", "num_oov_buckets"},
            "trainer": {"objective", "user_embedding", "recency_feature"}}.

    Returns:
        `history_idx` SparseTensor [batch, <=max_history] int64 and `label_idx` [batch] int64;
        out-of-vocabulary ids map to indices vocab_size .. vocab_size + num_oov_buckets - 1.
        With `trainer.user_embedding`, `user_idx` [batch] int64 (a user vocabulary over the
        train split, one OOV bucket). With `trainer.recency_feature`, `history_age` (sparse,
        aligned with `history_idx`) and `label_age` [batch] float32: the example age of each
        event against the newest training label (`tft.max`), in log1p(days).
    """
    config = (custom_config or {}).get("transform", {})
    min_count = int(config.get("min_count", 1))
    num_oov_buckets = int(config.get("num_oov_buckets", 1))

    per_position = (custom_config or {}).get("trainer", {}).get("objective") == "per_position"

    label_keys = id_to_key(_single_value(inputs[F.LABEL]))
    history = inputs[F.HISTORY]
    history_keys = tf.SparseTensor(history.indices, id_to_key(history.values), history.dense_shape)
    counted = tf.concat([label_keys, history_keys.values], 0) if per_position else label_keys
    vocab = tft.vocabulary(counted, vocab_filename=F.ITEM_VOCAB, frequency_threshold=min_count)
    # The counts live in a second file: apply_vocabulary reads only files without frequencies.
    tft.vocabulary(
        counted,
        vocab_filename=F.ITEM_VOCAB_COUNTS,
        frequency_threshold=min_count,
        store_frequency=True,
    )
    outputs = {
        F.HISTORY_IDX: tft.apply_vocabulary(history_keys, vocab, num_oov_buckets=num_oov_buckets),
        F.LABEL_IDX: tft.apply_vocabulary(label_keys, vocab, num_oov_buckets=num_oov_buckets),
    }
    trainer_config = (custom_config or {}).get("trainer", {})
    if trainer_config.get("user_embedding", False):
        # The schema fixes user_id to one value per example, so it parses dense [batch, 1].
        user_keys = id_to_key(tf.reshape(inputs[F.USER_ID], [-1]))
        outputs[F.USER_IDX] = tft.compute_and_apply_vocabulary(
            user_keys, vocab_filename=F.USER_VOCAB, num_oov_buckets=1
        )
    if trainer_config.get("recency_feature", False):
        label_times = inputs[F.LABEL_TIME]
        newest = tft.max(label_times.values, reduce_instance_dims=True)
        times = inputs[F.HISTORY_TIMES]
        outputs[F.HISTORY_AGE] = tf.SparseTensor(
            times.indices, example_age(times.values, newest), times.dense_shape
        )
        outputs[F.LABEL_AGE] = example_age(_single_value(label_times, 0), newest)
    return outputs
