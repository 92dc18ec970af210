"""Compare against hand-computed churn: Jaccard per user, users new and gone, new items recalled."""

from __future__ import annotations

import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from conftest import make_evaluation

from offline_recall.components.compare import logic
from offline_recall.core import contracts as C
from offline_recall.core import model_artifact, records, storage
from offline_recall.trainer import export
from offline_recall.trainer import features as F


def test_jaccard_hand_values():
    assert logic.jaccard(["a", "b", "c"], ["b", "c", "d"]) == pytest.approx(2 / 4)
    assert logic.jaccard([], []) == 1.0 and logic.jaccard(["a"], []) == 0.0
    assert logic.churn_of_user(("u", {"today": [["a"]], "before": []})) == {
        "users_new": 1,
        "users_gone": 0,
    }


def _model(folder, ids):
    keys = [F.encode_id(i) for i in ids]
    n = len(ids)
    model_artifact.write_item_vectors(
        str(folder), export.item_vectors_table(keys, np.ones((n, 2)), np.zeros(n), {})
    )
    return str(folder)


def _recalls(folder, lists: dict[str, list[str]]):
    os.makedirs(folder, exist_ok=True)
    table = pa.table(
        {"user_id": list(lists), "item_ids": list(lists.values())},
    )
    storage.write_parquet(table, os.path.join(folder, f"part-0{C.PARQUET_SUFFIX}"))
    return str(folder)


def test_compare_counts_churn_and_new_items(tmp_path):
    release = tmp_path / "releases" / "r1"
    _recalls(release / "recalls", {"u1": ["a", "b"], "u2": ["a", "c"], "u3": ["c"]})
    previous = _model(tmp_path / "previous", ["a", "b", "c", "old"])
    records.PreviousRelease(
        True, "the newest", None, "r1", "2024-01-01", str(release), records.ReleaseMetrics({}, True)
    ).write(records.PreviousRelease.path_in(previous))
    today = _model(tmp_path / "today", ["a", "b", "c", "new1", "new2"])
    # u1 unchanged, u2 half changed (a, new1 vs a, c: 1/3), u3 gone, u4 new.
    recalls = _recalls(
        tmp_path / "today_recalls",
        {"u1": ["b", "a"], "u2": ["a", "new1"], "u4": ["new1", "b"]},
    )
    metrics = make_evaluation(0.5, baseline_hr=0.4)
    out = logic.compare(
        beam.Pipeline, recalls, today, previous, metrics, str(tmp_path / "summary.json")
    )
    assert out.users_compared == 2 and out.users_changed == 1
    assert out.share_changed == 0.5 and out.mean_jaccard == pytest.approx((1 + 1 / 3) / 2)
    assert out.users_new == 1 and out.users_gone == 1
    assert out.new_items == 2 and out.new_items_recalled == 1 and out.dropped_items == 1
    assert out.metrics == {
        "hr@50": {"today": 0.5, "previous": 0.4},
        "ndcg@50": {"today": 0.25, "previous": 0.2},
    }
    assert out.previous.run_date == "2024-01-01"
    assert records.CompareSummary.read(str(tmp_path / "summary.json")) == out


def test_compare_says_why_not_without_a_previous_release(tmp_path):
    previous = str(tmp_path / "previous")
    records.PreviousRelease.none_found("x").write(records.PreviousRelease.path_in(previous))
    out = logic.compare(
        beam.Pipeline,
        "unused",
        "unused",
        previous,
        make_evaluation(),
        str(tmp_path / "summary.json"),
    )
    assert out == records.CompareSummary.not_compared("x")
    assert not out.compared and out.why_not == "x" and out.users_compared is None
