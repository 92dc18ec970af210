"""Holdout metrics against hand-computed values, and the blessing rules."""

import math

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from offline_recall.components.evaluate import logic
from offline_recall.pipeline.config import EvaluateConfig


def test_user_metrics_hand_computed():
    m = logic.user_metrics(["a", "b", "c"], "c", [1, 2, 3])
    assert m == {
        "hr@1": 0,
        "ndcg@1": 0,
        "hr@2": 0,
        "ndcg@2": 0,
        "hr@3": 1.0,
        "ndcg@3": pytest.approx(1 / math.log2(4)),
    }
    assert logic.user_metrics(["a"], "a", [1])["ndcg@1"] == 1.0
    assert logic.user_metrics([], "a", [10])["hr@10"] == 0.0


def test_popularity_top_skips_visited():
    assert logic.popularity_top(["a", "b", "c", "d"], {"a", "c"}, 2) == ["b", "d"]


def test_mean_metrics_and_coverage_in_beam():
    rows = [
        {"user_id": "u1", "item_ids": ["a", "b"], "scores": [2.0, 1.0], "held_out_item": "b"},
        {"user_id": "u2", "item_ids": ["a", "c"], "scores": [2.0, 1.0], "held_out_item": "x"},
    ]
    with TestPipeline() as p:
        recalls = p | beam.Create(rows)
        mean = (
            recalls
            | beam.Map(logic.recall_row_metrics, [1, 2])
            | beam.CombineGlobally(logic.MeanMetricsFn())
        )
        assert_that(
            mean,
            equal_to(
                [
                    {
                        "hr@1": 0.0,
                        "ndcg@1": 0.0,
                        "hr@2": 0.5,
                        "ndcg@2": 0.5 / math.log2(3),
                        "users": 2,
                    }
                ]
            ),
            label="Mean",
        )
        coverage = (
            recalls
            | beam.FlatMap(logic.recommended_at_k, [1, 2])
            | beam.Distinct()
            | beam.Map(logic._k_of)
            | beam.combiners.Count.PerElement()
        )
        assert_that(coverage, equal_to([(1, 1), (2, 3)]), label="Coverage")


CONFIG = EvaluateConfig(min_hr_at_50=0.1, min_ratio_to_popularity=1.0, max_regression=0.1)


def _metrics(hr, pop):
    return {"model": {"hr@50": hr, "users": 10}, "popularity": {"hr@50": pop}}


def test_bless_rules():
    assert logic.bless(_metrics(0.3, 0.2), 100, CONFIG) == (True, [])
    blessed, why = logic.bless(_metrics(0.05, 0.01), 100, CONFIG)
    assert not blessed and "min_hr_at_50" in why[0]
    blessed, why = logic.bless(_metrics(0.3, 0.35), 100, CONFIG)
    assert not blessed and "popularity" in why[0]
    assert not logic.bless({"model": {"users": 0}, "popularity": {}}, 100, CONFIG)[0]


def test_the_regression_rule_compares_with_the_previous_model_on_todays_holdout():
    baseline = {"model": {"hr@50": 0.5}, "run_id": "r7", "run_date": "2024-01-02"}
    metrics = {**_metrics(0.3, 0.2), "baseline": baseline}
    blessed, why = logic.bless(metrics, 100, CONFIG)
    assert not blessed and "regressed below 0.4500" in why[0] and "r7" in why[0]
    assert logic.bless({**_metrics(0.46, 0.2), "baseline": baseline}, 100, CONFIG)[0]
    # A first run: thresholds alone.
    assert logic.bless({**_metrics(0.3, 0.2), "baseline": None}, 100, CONFIG)[0]


def test_finalize_names_the_baseline_release_and_headline_records_both():
    raw = {
        "model": {"hr@50": 0.5, "users": 4},
        "popularity": {"hr@50": 0.1},
        "coverage_counts": {"50": 8},
        "baseline": {"hr@50": 0.25, "ndcg@50": 0.125, "users": 4},
    }
    previous = {
        "found": True,
        "run_id": "r1",
        "run_date": "2024-01-01",
        "release": "/out/releases/r1",
        "metrics": {"model": {"hr@50": 0.75}},
    }
    metrics = logic.finalize_metrics(raw, 16, [50], previous)
    assert metrics["baseline"]["model"]["hr@50"] == 0.25
    assert metrics["baseline"]["own_holdout"] == {"hr@50": 0.75}
    headline = logic.headline_metrics({**metrics, "blessed": True})
    assert headline["hr@50"] == 0.5 and headline["baseline_hr@50"] == 0.25
    assert logic.finalize_metrics({**raw, "baseline": None}, 16, [50], None)["baseline"] is None


def test_finalize_adds_recall_and_coverage_at_every_k():
    raw = {
        "model": {"hr@10": 0.25, "hr@50": 0.5, "users": 4},
        "popularity": {"hr@10": 0.1},
        "coverage_counts": {"10": 3, "50": 8},
    }
    metrics = logic.finalize_metrics(raw, 16, [10, 50])
    assert metrics["model"]["recall@10"] == 0.25 and metrics["model"]["recall@50"] == 0.5
    assert metrics["model"]["coverage@10"] == 3 / 16 and metrics["model"]["coverage@50"] == 0.5
    assert metrics["ks"] == [10, 50] and metrics["catalog_size"] == 16


def test_blessing_k_is_always_evaluated():
    assert EvaluateConfig(ks=(5, 10)).metric_ks() == (5, 10, 50)
    assert EvaluateConfig(ks=(100, 50)).metric_ks() == (50, 100)


def test_headline_metrics_for_the_kfp_and_mlmd_uis():
    metrics = {
        "ks": [10, 50],
        "model": {"hr@10": 0.2, "ndcg@10": 0.1, "hr@50": 0.5, "coverage@50": 0.9, "users": 4},
        "popularity": {"hr@50": 0.3},
        "blessed": True,
    }
    assert logic.headline_metrics(metrics) == {
        "blessed": 1.0,
        "hr@10": 0.2,
        "ndcg@10": 0.1,
        "hr@50": 0.5,
        "coverage@50": 0.9,
        "popularity_hr@50": 0.3,
    }
