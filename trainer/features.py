"""Every feature, split and vocabulary name, owned in one place.

Ingest, sequences, transform, trainer, recall and publish import these constants; nobody spells a
name twice.

Ids are carried as raw UTF-8 bytes through ingest. From the sequences stage on they are carried as
*vocabulary keys*: `tft.vocabulary` writes newline-delimited files and drops tokens that hold a
newline, so an id is percent-encoded into a key made only of printable ASCII without spaces
(`encode_id`), and decoded back byte for byte when results are published (`decode_id`).
"""
from __future__ import annotations

import urllib.parse

# --- Ingest: one tf.Example per click (the `Examples` artifact ingest emits). ---
USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"  # int64 epoch seconds, UTC.
INPUT_ORDER = "input_order"  # int64, position of the row in the input (file rank, row).
EXTRAS = "extras"  # bytes: JSON object of optional extra columns, carried but not required.
REQUIRED_COLUMNS = (USER_ID, ITEM_ID, TIMESTAMP)
INGEST_SPLIT = "clicks"

# --- Sequences: examples built from per-user, time-ordered histories. ---
HISTORY = "history_items"  # VarLen bytes: item keys, oldest first, at most max_history.
LABEL = "label_item"  # bytes: the next item key (train) or the held-out item key (eval).
VISITED = "visited_items"  # VarLen bytes: every item key the user has touched before the target.
TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
SERVING_SPLIT = "serving"
SEQUENCE_SPLITS = (TRAIN_SPLIT, EVAL_SPLIT, SERVING_SPLIT)

# --- Transform outputs. ---
ITEM_VOCAB = "items"  # tft vocabulary (frequency order) used to map keys to indices.
ITEM_VOCAB_COUNTS = "items_counts"  # the same vocabulary with its counts stored.
HISTORY_IDX = "history_idx"  # VarLen int64 item indices.
LABEL_IDX = "label_idx"  # int64 item index.

# --- Model outputs. ---
USER_VECTOR = "user_vector"
SOFTMAX_KERNEL = "softmax/kernel"  # [num_classes, embedding_dim]
SOFTMAX_BIAS = "softmax/bias"  # [num_classes]
ITEM_VECTORS_DIR = "item_vectors"  # inside the Model artifact, beside Format-Serving.

# Printable ASCII except space and '%': every other byte is percent-encoded.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def encode_id(raw: bytes | str) -> bytes:
    """Returns a vocabulary-safe key for an id: no whitespace, no newline, never empty.

    Args:
        raw: the id as it arrived (bytes, or str encoded as UTF-8).

    Returns:
        ASCII bytes; `decode_id(encode_id(x)) == x` for every byte string x.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    return urllib.parse.quote_from_bytes(raw, safe=_SAFE).encode("ascii")


def decode_id(key: bytes | str) -> bytes:
    """Inverse of `encode_id`: returns the original id bytes."""
    if isinstance(key, bytes):
        key = key.decode("ascii")
    return urllib.parse.unquote_to_bytes(key)
