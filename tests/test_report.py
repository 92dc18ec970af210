"""The run report: PNGs are real, the page references them and escapes what it shows."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_recall_summary, report_summary

from offline_recall.components.report import logic
from offline_recall.components.report import page as report
from offline_recall.core import contracts as C


def test_report_files_and_escaping(tmp_path):
    summary = {
        **report_summary(),
        "ingest": {"rows_read": 10, "reasons": {"<script>alert(1)</script>": 1}},
    }
    page = report.write_report(
        str(tmp_path / "report"),
        summary,
        item_counts=np.array([50, 20, 5, 1]),
        history_lengths=np.array([1, 2, 2, 9]),
        metrics_at_k={
            10: {"hr": 0.1234, "ndcg": 0.05, "coverage": 0.3},
            50: {"hr": 0.4321, "ndcg": 0.1, "coverage": 0.6},
        },
        popularity_metrics_at_k={10: {"hr": 0.01, "ndcg": 0.005}, 50: {"hr": 0.02, "ndcg": 0.01}},
        top1_scores=np.array([1.0, 2.0]),
    )
    text = open(page, encoding="utf-8").read()
    pngs = [n for n in os.listdir(tmp_path / "report") if n.endswith(".png")]
    assert len(pngs) == 4
    for name in pngs:
        data = (tmp_path / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        assert f'src="{name}"' in text
    assert "0.4321" in text and "<script>" not in text and "&lt;script&gt;" in text


def test_report_with_empty_inputs(tmp_path):
    page = report.write_report(
        str(tmp_path / "r"),
        report_summary("x"),
        item_counts=np.array([]),
        history_lengths=np.array([]),
        metrics_at_k={},
        popularity_metrics_at_k={},
        top1_scores=np.array([]),
    )
    assert "no items" in open(page, encoding="utf-8").read()
    # Rewriting replaces the folder whole.
    report.write_report(
        str(tmp_path / "r"),
        report_summary("y"),
        item_counts=np.array([3, 1]),
        history_lengths=np.array([2]),
        metrics_at_k={},
        popularity_metrics_at_k={},
    )
    assert set(os.listdir(tmp_path / "r")) == {
        "item_popularity.png",
        "history_length.png",
        "index.html",
    }


def test_comparison_and_health_sections_say_what_they_show_or_why_not():
    from offline_recall.components.report import page

    assert "Nothing to compare with: no release" in page.comparison_section(
        {"compared": False, "why_not": "no release of a date before 2024-01-01"}
    )
    html = page.comparison_section(
        {
            "compared": True,
            "previous": {"run_id": "r1", "run_date": "2024-01-01", "release": "/x"},
            "metrics": {"hr@50": {"today": 0.5, "previous": 0.25}},
            "users_compared": 4,
            "users_changed": 1,
            "share_changed": 0.25,
            "mean_jaccard": 0.9,
            "users_new": 2,
            "users_gone": 0,
            "catalog_items": 10,
            "new_items": 3,
            "new_items_recalled": 2,
            "dropped_items": 1,
        }
    )
    assert "<td>0.5000</td><td>0.2500</td>" in html and "1 (25.0%)" in html and "3 / 2" in html
    health = {
        "coverage@50": 0.5,
        "gini@50": 0.25,
        "short_list_share": 0.0,
        "serving_oov_rate": 0.125,
        "hr@50_by_popularity_decile": {"0": {"users": 2, "hr@50": 0.0}},
    }
    html = page.health_section(health)
    assert "12.5%" in html and "<td>OOV</td><td>2</td>" in html
    assert page.health_section(None) == ""


def test_holdout_note_says_when_the_metrics_are_a_sample():
    every = {
        "evaluate": {"model": {"users": 200}},
        "recall": {"eval": make_recall_summary(200, 200).to_dict()},
    }
    assert "every holdout user: 200" in report.holdout_note(every)
    sample = {
        "evaluate": {"model": {"users": 60}},
        "recall": {"eval": make_recall_summary(60, 200).to_dict()},
    }
    assert "60 of 200 holdout users" in report.holdout_note(sample)
    # evaluate.max_users: null: RecallEval scores every user and writes no sampled_from_users.
    unsampled = {
        "evaluate": {"model": {"users": 200}},
        "recall": {"eval": make_recall_summary(200, None).to_dict()},
    }
    assert "sampled_from_users" not in unsampled["recall"]["eval"]
    assert "every holdout user: 200" in report.holdout_note(unsampled)
    with pytest.raises(KeyError, match="evaluate"):
        report.holdout_note({"status": "failed"})


def _recall_file(path, scores: list[list[float]]) -> str:
    table = pa.table(
        {
            C.USER_ID_COLUMN: [f"u{i}" for i in range(len(scores))],
            C.ITEM_IDS_COLUMN: [[f"i{j}" for j in range(len(s))] for s in scores],
            C.SCORES_COLUMN: scores,
            C.HELD_OUT_COLUMN: [""] * len(scores),
        },
        schema=C.RECALLS_SCHEMA,
    )
    pq.write_table(table, str(path), row_group_size=3)
    return str(path)


def test_top1_scores_streams_each_users_best_score_up_to_the_limit(tmp_path):
    rng = np.random.default_rng(0)
    files, want = [], []
    for f in range(3):
        lists = [sorted(rng.random(rng.integers(0, 4)).tolist(), reverse=True) for _ in range(7)]
        files.append(_recall_file(tmp_path / f"part-{f}.parquet", lists))
        want += [s[0] for s in lists if s]  # empty lists (a catalog that ran out) have none
    want = np.array(want, np.float32)
    for limit in (1, 5, len(want) - 1, len(want), len(want) + 10):
        for read_rows in (2, 1000):
            got = logic.top1_scores(files, limit=limit, read_rows=read_rows)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want[:limit])
    assert logic.top1_scores([]).shape == (0,)
