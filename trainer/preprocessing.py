"""The Transform `preprocessing_fn`: item ids -> vocabulary keys -> frequency-ordered indices.

Ids arrive as raw bytes. `tft.vocabulary` writes newline-delimited files and drops tokens with a
newline, so every id is first turned into its web-safe base64 key (see `features.encode_id`); the
same ops run inside the serving graph, so callers send raw ids.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from offline_recall.core import dates, options
from offline_recall.core.config import PreprocessingParams
from offline_recall.trainer import features as F


def id_to_key(ids: tf.Tensor) -> tf.Tensor:
    """Maps raw id bytes to vocabulary keys; same shape. Empty stays empty."""
    return tf.io.encode_base64(ids, pad=False)


def _single_value(sparse: tf.SparseTensor, default="") -> tf.Tensor:
    """Returns a [batch] dense tensor from a [batch, <=1] sparse one (`default` where absent)."""
    batch = sparse.dense_shape[0]
    reshaped = tf.SparseTensor(sparse.indices, sparse.values, tf.stack([batch, 1]))
    return tf.sparse.to_dense(reshaped, default_value=default)[:, 0]


def example_age(timestamps: tf.Tensor, newest: tf.Tensor) -> tf.Tensor:
    """log1p(days from each timestamp to `newest`), clipped at 0: YouTube DNN's example age.

    Args:
        timestamps: int64 epoch seconds, any shape.
        newest: int64 scalar, the newest training event's timestamp.

    Returns:
        float32, the shape of `timestamps`.
    """
    days = tf.cast(newest - timestamps, tf.float64) / dates.SECONDS_PER_DAY
    return tf.cast(tf.math.log1p(tf.maximum(days, 0.0)), tf.float32)


def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    """Builds the item vocabulary on training events and maps histories and labels to indices.

    The vocabulary is analyzed on the `train` split. With window examples (the last-position
    objective) its labels are each training event exactly once; with sequence pieces (the
    per-position objective) history plus label are. Either way the frequency order and counts
    are the items' training click counts, which the log-uniform sampler assumes and the unigram
    sampler and the logQ correction read.

    Args:
        inputs: `history_items` SparseTensor [batch, <=max_history] bytes, `label_item`
            SparseTensor [batch, <=1] bytes, `visited_items` SparseTensor [batch, <=n] bytes
            (plus features this function ignores).
        custom_config: a `PreprocessingParams` mapping (every key present).

    Returns:
        `history_idx` SparseTensor [batch, <=max_history] int64, `label_idx` [batch] int64 and
        `visited_idx` SparseTensor int64; out-of-vocabulary ids map to indices vocab_size ..
        vocab_size + num_oov_buckets - 1. With `user_vocabulary`, `user_idx` [batch] int64 (a
        user vocabulary over the train split, one OOV bucket). With `example_age`,
        `history_age` (sparse, aligned with `history_idx`) and `label_age` [batch] float32: the
        example age of each event against the newest training label (`tft.max`), in
        log1p(days).
    """
    params = PreprocessingParams.from_mapping(custom_config)
    num_oov_buckets = params.transform.num_oov_buckets

    label_keys = id_to_key(_single_value(inputs[F.LABEL]))
    history_keys = _keys(inputs[F.HISTORY])
    counted = (
        tf.concat([label_keys, history_keys.values], 0)
        if params.objective == options.PER_POSITION
        else label_keys
    )
    vocab = tft.vocabulary(
        counted, vocab_filename=F.ITEM_VOCAB, frequency_threshold=params.transform.min_count
    )
    # The counts live in a second file: apply_vocabulary reads only files without frequencies.
    tft.vocabulary(
        counted,
        vocab_filename=F.ITEM_VOCAB_COUNTS,
        frequency_threshold=params.transform.min_count,
        store_frequency=True,
    )

    def to_indices(keys):
        return tft.apply_vocabulary(keys, vocab, num_oov_buckets=num_oov_buckets)

    outputs = {
        F.HISTORY_IDX: to_indices(history_keys),
        F.LABEL_IDX: to_indices(label_keys),
        F.VISITED_IDX: to_indices(_keys(inputs[F.VISITED])),
    }
    if params.user_vocabulary:
        # The schema fixes user_id to one value per example, so it parses dense [batch, 1].
        user_keys = id_to_key(tf.reshape(inputs[F.USER_ID], [-1]))
        outputs[F.USER_IDX] = tft.compute_and_apply_vocabulary(
            user_keys, vocab_filename=F.USER_VOCAB, num_oov_buckets=1
        )
    if params.example_age:
        label_times = inputs[F.LABEL_TIME]
        newest = tft.max(label_times.values, reduce_instance_dims=True)
        times = inputs[F.HISTORY_TIMES]
        outputs[F.HISTORY_AGE] = tf.SparseTensor(
            times.indices, example_age(times.values, newest), times.dense_shape
        )
        outputs[F.LABEL_AGE] = example_age(_single_value(label_times, 0), newest)
    return outputs


def _keys(ids: tf.SparseTensor) -> tf.SparseTensor:
    """The vocabulary keys of a sparse tensor of raw ids, same indices."""
    return tf.SparseTensor(ids.indices, id_to_key(ids.values), ids.dense_shape)
