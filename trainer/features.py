"""Every feature, split and vocabulary name, owned in one place.

Ingest, sequences, transform, trainer, recall and publish import these constants; nobody spells a
name twice.

Ids are carried as their raw UTF-8 bytes in every Examples artifact, so the serving model takes
ids exactly as a caller has them. Vocabulary files, though, are newline-delimited and
`tft.vocabulary` drops tokens that hold a newline, so inside the Transform graph an id becomes a
*vocabulary key*: its web-safe base64 without padding (`tf.io.encode_base64(ids, pad=False)`,
mirrored here by `encode_id`). Keys are decoded back byte for byte when results are published
(`decode_id`).
"""

from __future__ import annotations

import base64

# --- Ingest: one tf.Example per click (the `Examples` artifact ingest emits). ---
USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"  # int64 epoch seconds, UTC (floored).
# int64 epoch microseconds, UTC: the exact instant, which orders a user's events and tells two
# clicks apart (two clicks 0.8 s apart are not duplicates).
TIMESTAMP_MICROS = "timestamp_micros"
INPUT_ORDER = "input_order"  # int64, position of the row in the input (file rank, row).
EXTRAS = "extras"  # bytes: JSON object of optional extra columns, carried but not required.
REQUIRED_COLUMNS = (USER_ID, ITEM_ID, TIMESTAMP)
INGEST_SPLIT = "clicks"

# --- Sequences: examples built from per-user, time-ordered histories. ---
HISTORY = "history_items"  # VarLen bytes: item keys, oldest first, at most max_history.
LABEL = "label_item"  # bytes: the next item key (train) or the held-out item key (eval).
VISITED = "visited_items"  # VarLen bytes: every item key the user has touched before the target.
HISTORY_TIMES = "history_timestamps"  # VarLen int64: epoch seconds of each history item.
LABEL_TIME = "label_timestamp"  # int64 (absent when serving): epoch seconds of the label event.
TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
SERVING_SPLIT = "serving"
SEQUENCE_SPLITS = (TRAIN_SPLIT, EVAL_SPLIT, SERVING_SPLIT)
# Training examples over every event, the held-out one included: written only when
# `trainer.refit_on_holdout` is on, for the Refit trainer that runs after blessing.
REFIT_SPLIT = "refit"
ALL_SPLITS = (*SEQUENCE_SPLITS, REFIT_SPLIT)


def sequence_splits(refit: bool) -> tuple[str, ...]:
    """The splits Sequences writes: train, eval, serving, plus refit when refitting."""
    return SEQUENCE_SPLITS + ((REFIT_SPLIT,) if refit else ())


# --- Transform outputs. ---
ITEM_VOCAB = "items"  # tft vocabulary (frequency order) used to map keys to indices.
ITEM_VOCAB_COUNTS = "items_counts"  # the same vocabulary with its counts stored.
HISTORY_IDX = "history_idx"  # VarLen int64 item indices.
LABEL_IDX = "label_idx"  # int64 item index.
USER_VOCAB = "users"  # tft vocabulary of user ids (trainer.user_embedding).
USER_IDX = "user_idx"  # int64 user index (trainer.user_embedding).
# trainer.recency_feature: log1p(days from the event to the newest training event); the
# "example age" of YouTube DNN. Serving predicts for "now", age 0.
HISTORY_AGE = "history_age"  # VarLen float32, aligned with history_idx.
LABEL_AGE = "label_age"  # float32.
# Eval examples: the user's visited item indices, which holdout ranking excludes as Evaluate does.
VISITED_IDX = "visited_idx"  # VarLen int64.

# --- Model outputs. ---
USER_VECTOR = "user_vector"
SOFTMAX_KERNEL = "softmax/kernel"  # [num_classes, embedding_dim]
SOFTMAX_BIAS = "softmax/bias"  # [num_classes, 1]


def encode_id(raw: bytes | str) -> bytes:
    """Returns the vocabulary key of an id, as `tf.io.encode_base64(raw, pad=False)` computes it.

    Args:
        raw: the id as it arrived (bytes, or str encoded as UTF-8).

    Returns:
        ASCII bytes from [A-Za-z0-9_-]; `decode_id(encode_id(x)) == x` for every byte string x.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def decode_id(key: bytes | str) -> bytes:
    """Inverse of `encode_id`: returns the original id bytes."""
    if isinstance(key, str):
        key = key.encode("ascii")
    return base64.urlsafe_b64decode(key + b"=" * (-len(key) % 4))
