"""Vocabulary keys: byte-exact round trip, and the Python encoder matches the in-graph one."""

import tensorflow as tf

from offline_recall.trainer import features as F


def test_round_trip_is_byte_exact(awkward_ids):
    for raw in awkward_ids:
        key = F.encode_id(raw)
        assert F.decode_id(key) == raw
        assert b"\n" not in key and b" " not in key and key


def test_python_key_matches_tf_encode_base64(awkward_ids):
    graph_keys = tf.io.encode_base64(tf.constant(awkward_ids), pad=False).numpy().tolist()
    assert graph_keys == [F.encode_id(raw) for raw in awkward_ids]


def test_distinct_ids_get_distinct_keys(awkward_ids):
    assert len({F.encode_id(raw) for raw in awkward_ids}) == len(awkward_ids)
