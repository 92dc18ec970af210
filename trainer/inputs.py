"""The trainer's input: canonical copies of the transformed splits, counts, and input_fns.

Transform writes `tf.Example`s with `history_idx` (VarLen int64), `label_idx`, and, when the
options ask for them, `user_idx`, `history_age` / `label_age`; eval examples also carry
`visited_idx`, the user's visited items, which evaluation excludes from ranking.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import tensorflow as tf

from offline_recall.core import options
from offline_recall.trainer import encoders
from offline_recall.trainer import features as F

# Padding of each model feature in a length bucket (scalars are never padded).
PADDING = {
    F.HISTORY_IDX: (encoders.PAD, tf.int64),
    F.HISTORY_AGE: (0.0, tf.float32),
    F.USER_IDX: (0, tf.int64),
    F.LABEL_AGE: (0.0, tf.float32),
}
# Read only by evaluation: what the holdout metric excludes besides the (truncated) history.
EVAL_ONLY = (F.VISITED_IDX,)


def _files(patterns: list[str]) -> list[str]:
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no training files match {patterns}")
    return files


def _dataset(patterns: list[str]) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP")


def _without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """The dataset without tf.data's autotuning, which no stage here asks for (every buffer and
    parallelism is fixed). With it on, destroying the iterator waits for the autotune model's
    thread to wake from its sleep (`Model::OptimizeLoop`, up to a minute): MovieLens-100K's fit
    and refit sat 17 to 53 s each in `TF_CloseSession` after their input ran out."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def model_features(feature_spec: dict) -> list[str]:
    """The transformed features the model reads: the history plus the optional extras."""
    return [k for k in PADDING if k in feature_spec]


def _record_hash(record: bytes) -> bytes:
    return hashlib.blake2b(record, digest_size=8).digest()


def canonical_copy(
    patterns: list[str], path: str, keep: list[str], max_records: int | None = None
) -> list[str]:
    """Writes the examples of `patterns` in a canonical order into one GZIP file; returns [path].

    Beam writes a split's records in no fixed order, and a seeded shuffle of differently ordered
    input gives different batches. Sorting the examples by their deterministic serialization
    (map keys sorted; the bytes Transform wrote are not canonical from run to run) makes a seed
    reproduce the same training run. The trainer caches the whole split in memory anyway, so
    holding it once more to sort is in scale.

    Args:
        patterns: globs of the split's GZIP TFRecord files.
        path: the file to write.
        keep: the features the copy keeps (what its reader parses); the rest are dropped.
        max_records: keep at most this many examples (None = all): those of the smallest hash of
            their canonical bytes, a uniform sample that is the same in every run.
    """
    wanted = set(keep)
    records = []
    for record in _dataset(patterns):
        example = tf.train.Example.FromString(record.numpy())
        for name in list(example.features.feature):
            if name not in wanted:
                del example.features.feature[name]
        records.append(example.SerializeToString(deterministic=True))
    if max_records is not None and len(records) > max_records:
        records = sorted(records, key=_record_hash)[:max_records]
    records.sort()
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)
    return [path]


def train_features(feature_spec: dict) -> list[str]:
    """What a training copy keeps: the model's features and the label."""
    return [*model_features(feature_spec), F.LABEL_IDX]


def eval_features(feature_spec: dict) -> list[str]:
    """What an evaluation copy keeps: the training features and the visited items."""
    return train_features(feature_spec) + [k for k in EVAL_ONLY if k in feature_spec]


def bucket_boundaries(max_history: int) -> list[int]:
    """Upper length bounds (exclusive) of the length buckets: 9, 17, 33, ... <= max_history."""
    bounds, b = [], 8
    while b < max_history:
        bounds.append(b + 1)
        b *= 2
    return bounds


def _padding_value(key: str) -> tf.Tensor:
    value, dtype = PADDING[key]
    return tf.constant(value, dtype)


def _parse_one(feature_spec):
    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, feature_spec)
        features = {}
        for key in model_features(feature_spec):
            value = parsed[key]
            if isinstance(value, tf.SparseTensor):
                value = tf.sparse.to_dense(value, default_value=_padding_value(key))
            else:
                value = tf.reshape(value, [])
            features[key] = value
        return features, tf.reshape(parsed[F.LABEL_IDX], [])

    return parse


def _history_length(features, label):
    del label
    return tf.shape(features[F.HISTORY_IDX], out_type=tf.int32)[0]


def _split_label(feature_spec):
    def split(parsed):
        wanted = model_features(feature_spec) + [k for k in EVAL_ONLY if k in feature_spec]
        features = {k: parsed[k] for k in wanted}
        for key in (F.USER_IDX, F.LABEL_AGE):
            if key in features:
                features[key] = tf.reshape(features[key], [-1])
        return features, parsed[F.LABEL_IDX]

    return split


def train_input_fn(files, feature_spec, batch_size, epochs, seed, max_history):
    """Returns the shuffled, length-bucketed training input_fn: (features, label_idx [batch]).

    Examples are bucketed by history length (powers of two up to `max_history`) and padded with
    PAD only to their bucket's longest, so attention over short sequences does not pay for the
    longest one in a random batch; histories come dense [batch, bucket length]. Features:
    `history_idx`, plus `user_idx` [batch] and `history_age` / `label_age` when Transform
    produced them.
    """

    def fn():
        ds = _dataset(files).map(_parse_one(feature_spec)).cache()
        ds = ds.shuffle(200_000, seed=seed, reshuffle_each_iteration=True)
        boundaries = bucket_boundaries(max_history)
        ds = ds.repeat(epochs).bucket_by_sequence_length(
            _history_length,
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=(
                {k: _padding_value(k) for k in model_features(feature_spec)},
                tf.constant(0, tf.int64),
            ),
        )
        return _without_autotune(ds.prefetch(2))

    return fn


EVAL_BATCH_SIZE = 1024
# The holdout evaluation scores every catalog item for each user of a batch, and holds several
# [batch, num_classes] tensors at once (logits, the visited mask, the ranked scores, the softmax):
# the batch shrinks as the catalog grows, so that each stays near this many elements (128 MiB of
# float32). 1024 users a batch up to 32k classes; 79 at 424k.
EVAL_SCORES_PER_BATCH = 2**25


def eval_batch_size(num_classes: int) -> int:
    """Holdout users scored together: EVAL_BATCH_SIZE, fewer for a large catalog."""
    return max(1, min(EVAL_BATCH_SIZE, EVAL_SCORES_PER_BATCH // max(1, num_classes)))


def eval_input_fn(files, feature_spec, num_classes: int):
    """Returns the holdout input_fn, one pass in file order: histories come as a SparseTensor,
    with `visited_idx` (SparseTensor) when the examples carry it; `eval_batch_size` users a
    batch."""

    def fn():
        ds = _dataset(files).batch(eval_batch_size(num_classes))
        ds = ds.map(lambda s: tf.io.parse_example(s, feature_spec))
        return _without_autotune(ds.map(_split_label(feature_spec)).prefetch(2))

    return fn


def count_records(patterns: list[str]) -> int:
    return sum(1 for _ in _dataset(patterns))


@dataclasses.dataclass(frozen=True)
class HistoryStats:
    """What one pass over training examples counts."""

    examples: int
    # History items over all examples, each counted at least once (an empty history still
    # predicts one target).
    slots: int

    def positions(self, objective: str) -> int:
        """Training targets per epoch: one per example, or every history slot (per_position)."""
        return self.slots if objective == options.PER_POSITION else self.examples

    @property
    def mean_history(self) -> float:
        """History items per training example: short on sparse logs."""
        return self.slots / max(self.examples, 1)


def history_stats(patterns: list[str], feature_spec: dict) -> HistoryStats:
    """Counts the training examples of `patterns` and their history items, in one pass."""
    examples = slots = 0
    for batch in _dataset(patterns).batch(4096):
        parsed = tf.io.parse_example(batch, {F.HISTORY_IDX: feature_spec[F.HISTORY_IDX]})
        lengths = tf.sparse.reduce_sum(
            tf.sparse.map_values(tf.ones_like, parsed[F.HISTORY_IDX]), axis=1
        )
        examples += int(tf.size(lengths))
        slots += int(tf.reduce_sum(tf.maximum(lengths, 1)))
    return HistoryStats(examples, slots)


def read_holdout(patterns: list[str], feature_spec: dict) -> tuple[np.ndarray, np.ndarray, list]:
    """The holdout examples of `patterns`, in file order, as numpy.

    Returns:
        (histories [users, max_len] int64 padded with PAD, labels [users] int64, visited: one
        int64 array of item indices per user).
    """
    spec = {k: feature_spec[k] for k in (F.HISTORY_IDX, F.LABEL_IDX, F.VISITED_IDX)}
    histories, labels, visited = [], [], []
    for batch in _dataset(patterns).batch(4096):
        parsed = tf.io.parse_example(batch, spec)
        histories.extend(tf.sparse.to_dense(parsed[F.HISTORY_IDX], encoders.PAD).numpy())
        labels.append(tf.reshape(parsed[F.LABEL_IDX], [-1]).numpy())
        visited.extend(_rows(parsed[F.VISITED_IDX]))
    width = max((len(h) for h in histories), default=0)
    dense = np.full((len(histories), width), encoders.PAD, np.int64)
    for n, history in enumerate(histories):
        dense[n, : len(history)] = history
    label_array = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return dense, label_array, visited


def item_sets(patterns: list[str], feature_spec: dict, with_label: bool) -> list[np.ndarray]:
    """Each holdout user's training items (`visited_idx`), with the held-out item too when
    `with_label`: the rows the item-item model learns from."""
    spec = {k: feature_spec[k] for k in (F.LABEL_IDX, F.VISITED_IDX)}
    rows = []
    for batch in _dataset(patterns).batch(4096):
        parsed = tf.io.parse_example(batch, spec)
        labels = tf.reshape(parsed[F.LABEL_IDX], [-1]).numpy()
        for row, label in zip(_rows(parsed[F.VISITED_IDX]), labels, strict=True):
            rows.append(np.append(row, label) if with_label else row)
    return rows


def _rows(values: tf.SparseTensor) -> list[np.ndarray]:
    """The rows of a [batch, n] SparseTensor as int64 arrays (empty rows included)."""
    indices = values.indices.numpy()
    data = values.values.numpy()
    batch = int(values.dense_shape[0])
    bounds = np.searchsorted(indices[:, 0], np.arange(batch + 1))
    return [data[bounds[r] : bounds[r + 1]] for r in range(batch)]
