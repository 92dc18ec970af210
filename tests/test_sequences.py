"""Sequences: ordering, holdout, sliding windows, visited sets; pure function and Beam."""

import apache_beam as beam
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from offline_recall.components import common
from offline_recall.components.sequences import logic
from offline_recall.trainer import features as F


def _decode(example):
    return {
        "user": common.bytes_values(example, F.USER_ID)[0],
        "history": common.bytes_values(example, F.HISTORY),
        "label": common.bytes_values(example, F.LABEL),
        "visited": common.bytes_values(example, F.VISITED),
    }


def _by_split(user, events, max_history=2, min_events=3):
    out = {}
    for split, example in logic.build_user_examples(
        user, events, max_history, min_events, "last_position"
    ):
        out.setdefault(split, []).append(_decode(example))
    return out


def test_orders_by_timestamp_then_input_order_and_holds_out_last():
    # Given out of order; ties at t=20 break by input order (5 before 7).
    events = [(30, 1, b"d"), (10, 9, b"a"), (20, 7, b"c"), (20, 5, b"b")]
    out = _by_split(b"u1", events)
    assert [e["label"] for e in out["train"]] == [[b"a"], [b"b"], [b"c"]]
    assert [e["history"] for e in out["train"]] == [[], [b"a"], [b"a", b"b"]]
    (ev,) = out["eval"]
    assert ev["label"] == [b"d"] and ev["history"] == [b"b", b"c"]
    assert ev["visited"] == [b"a", b"b", b"c"]
    (serving,) = out["serving"]
    assert serving["history"] == [b"c", b"d"]  # truncated to max_history, newest last
    assert serving["visited"] == [b"a", b"b", b"c", b"d"] and serving["label"] == []


def test_short_users_get_no_holdout_but_train_and_serve():
    out = _by_split(b"u2", [(1, 1, b"x"), (2, 2, b"y")])
    assert "eval" not in out
    assert [e["label"] for e in out["train"]] == [[b"x"], [b"y"]]
    assert out["serving"][0]["visited"] == [b"x", b"y"]


def test_repeated_items_are_visited_once():
    out = _by_split(b"u3", [(1, 1, b"x"), (2, 2, b"x"), (3, 3, b"y"), (4, 4, b"z")])
    assert out["eval"][0]["visited"] == [b"x", b"y"]


def _click(user, item, ts, order):
    return common.make_example(
        {F.USER_ID: [user], F.ITEM_ID: [item]},
        {F.TIMESTAMP: [ts], F.TIMESTAMP_MICROS: [ts * 1_000_000], F.INPUT_ORDER: [order]},
    ).SerializeToString()


def _label_of(serialized):
    example = tf.train.Example.FromString(serialized)
    return (
        common.bytes_values(example, F.USER_ID)[0],
        tuple(common.bytes_values(example, F.LABEL)),
    )


def test_build_sequences_transform():
    clicks = [
        _click(b"u,1", b"i\n1", 10, 0),
        _click(b"u,1", b"i2", 11, 1),
        _click(b"u,1", b"i3", 12, 2),
        _click(b"u2", b"i2", 5, 3),
    ]
    with TestPipeline() as p:
        out = (
            p
            | beam.Create(clicks)
            | logic.BuildSequences(
                max_history=5, min_events_for_holdout=3, objective="last_position"
            )
        )
        assert_that(
            out[F.TRAIN_SPLIT] | "TrainLabels" >> beam.Map(_label_of),
            equal_to([(b"u,1", (b"i\n1",)), (b"u,1", (b"i2",)), (b"u2", (b"i2",))]),
            label="Train",
        )
        assert_that(
            out[F.EVAL_SPLIT] | "EvalLabels" >> beam.Map(_label_of),
            equal_to([(b"u,1", (b"i3",))]),
            label="Eval",
        )
        assert_that(
            out[F.SERVING_SPLIT] | "ServingLabels" >> beam.Map(_label_of),
            equal_to([(b"u,1", ()), (b"u2", ())]),
            label="Serving",
        )
        assert_that(out["histogram"], equal_to([{"1": 1, "3": 1}]), label="Histogram")
        assert_that(out["distinct_items"], equal_to([3]), label="Items")


def test_sequence_pieces_cover_each_training_event_once_newest_piece_longest():
    items = [bytes([ord("a") + i]) for i in range(10)]
    pieces = list(logic.training_pieces(items, 3, "per_position"))
    assert pieces == [
        (items[6:9], items[9]),
        (items[2:5], items[5]),
        (items[0:1], items[1]),
    ]
    counted = [i for history, label in pieces for i in [*history, label]]
    assert sorted(counted) == items


def test_sequence_mode_user_with_one_training_event_gets_an_empty_history():
    out = {}
    for split, example in logic.build_user_examples(
        b"u", [(1, 1, b"x")], 5, 3, objective="per_position"
    ):
        out.setdefault(split, []).append(_decode(example))
    assert [(e["history"], e["label"]) for e in out["train"]] == [([], [b"x"])]


def test_unknown_objective_is_rejected():
    import pytest

    with pytest.raises(ValueError, match="objective"):
        list(logic.training_pieces([b"a"], 3, "bags"))


def test_refit_split_cuts_pieces_from_every_event_the_holdout_included():
    events = [(t, t, bytes([ord("a") + t])) for t in range(6)]  # a..f, f is held out
    out = {}
    for split, example in logic.build_user_examples(
        b"u", events, 2, 3, objective="per_position", refit=True
    ):
        out.setdefault(split, []).append(_decode(example))
    pairs = {s: [(e["history"], e["label"]) for e in out[s]] for s in ("train", "refit")}
    # Train stops before the held-out f; refit ends on it, so the pieces shift by one event.
    assert pairs["train"] == [([b"c", b"d"], [b"e"]), ([b"a"], [b"b"])]
    assert pairs["refit"] == [([b"d", b"e"], [b"f"]), ([b"a", b"b"], [b"c"])]
    assert out["eval"][0]["label"] == [b"f"]
    without = {s for s, _ in logic.build_user_examples(b"u", events, 2, 3, "per_position")}
    assert without == {"train", "eval", "serving"}


def test_build_sequences_writes_the_refit_split():
    clicks = [_click(b"u1", bytes([ord("a") + t]), t, t) for t in range(4)]
    with TestPipeline() as p:
        out = (
            p
            | beam.Create(clicks)
            | logic.BuildSequences(
                max_history=5, min_events_for_holdout=3, objective="per_position", refit=True
            )
        )
        assert_that(
            out[F.REFIT_SPLIT] | "RefitLabels" >> beam.Map(_label_of),
            equal_to([(b"u1", (b"d",))]),
            label="Refit",
        )
        assert_that(
            out[F.TRAIN_SPLIT] | "TrainLabels" >> beam.Map(_label_of),
            equal_to([(b"u1", (b"c",))]),
            label="Train",
        )


def test_events_before_the_training_window_are_history_never_targets():
    # a, b before the window (t < 25); c, d, e in it.
    events = [(10, 0, b"a"), (20, 1, b"b"), (30, 2, b"c"), (40, 3, b"d"), (50, 4, b"e")]
    out = {}
    for split, example in logic.build_user_examples(
        b"u1", events, 3, 3, "last_position", refit=True, train_from_micros=25
    ):
        out.setdefault(split, []).append(_decode(example))
    assert [e["label"] for e in out["train"]] == [[b"c"], [b"d"]]
    assert out["train"][0]["history"] == [b"a", b"b"]  # history reaches before the window
    assert [e["label"] for e in out["refit"]] == [[b"c"], [b"d"], [b"e"]]
    (ev,) = out["eval"]
    assert ev["label"] == [b"e"] and ev["visited"] == [b"a", b"b", b"c", b"d"]
    (serving,) = out["serving"]
    assert serving["visited"] == [b"a", b"b", b"c", b"d", b"e"]
    # A user with no event in the window: served from their history, no target at all.
    quiet = dict.fromkeys(["train", "eval", "serving"], 0)
    for split, _ in logic.build_user_examples(
        b"u2", events[:2], 3, 2, "per_position", train_from_micros=25
    ):
        quiet[split] += 1
    assert quiet == {"train": 0, "eval": 0, "serving": 1}


def test_check_anomalies_names_each_split_and_feature(tmp_path):
    import pytest
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from offline_recall.components.errors import StageError

    clean, broken = tmp_path / "Split-a", tmp_path / "Split-b"
    clean.mkdir()
    broken.mkdir()
    (clean / "SchemaDiff.pb").write_bytes(anomalies_pb2.Anomalies().SerializeToString())
    found = anomalies_pb2.Anomalies()
    found.anomaly_info["item_id"].short_description = "Out-of-range values"
    (broken / "SchemaDiff.pb").write_bytes(found.SerializeToString())
    logic.check_anomalies({"a": str(clean)})
    with pytest.raises(StageError, match="clicks/item_id: Out-of-range values"):
        logic.check_anomalies({"a": str(clean), "clicks": str(broken)})
