"""Vocabulary keys: byte-exact round trip, and the Python encoder matches the in-graph one."""

import tensorflow as tf

from offline_recall.trainer import features as F

NASTY_IDS = [
    b"plain",
    b"with,comma",
    b'with "quotes"',
    b"with\nnewline",
    b"with\r\ncrlf",
    b"tab\there",
    b" leading and trailing ",
    "caf\u00e9 \u5546\u54c1".encode(),
    b"%41",
    b"=",
    b"a" * 256,
]


def test_round_trip_is_byte_exact():
    for raw in NASTY_IDS:
        key = F.encode_id(raw)
        assert F.decode_id(key) == raw
        assert b"\n" not in key and b" " not in key and key


def test_python_key_matches_tf_encode_base64():
    graph_keys = tf.io.encode_base64(tf.constant(NASTY_IDS), pad=False).numpy().tolist()
    assert graph_keys == [F.encode_id(raw) for raw in NASTY_IDS]


def test_distinct_ids_get_distinct_keys():
    assert len({F.encode_id(raw) for raw in NASTY_IDS}) == len(NASTY_IDS)
