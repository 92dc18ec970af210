"""Holdout metrics against hand-computed values, and the blessing rules."""

import math

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from offline_recall.components.evaluate import logic
from offline_recall.core import model_artifact, records
from offline_recall.core.config import EvaluateConfig


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
        coverage = recalls | logic.CoverageAtK([1, 2])
        assert_that(coverage, equal_to([(1, 1), (2, 3)]), label="Coverage")


CONFIG = EvaluateConfig(min_hr_at_50=0.1, min_ratio_to_popularity=1.0, max_regression=0.1)


def _metrics(hr, pop):
    return {
        "model": {"hr@50": hr, "users": 10},
        "popularity": {"hr@50": pop},
        "health": None,
        "baseline": None,
    }


def test_bless_rules():
    assert logic.bless(_metrics(0.3, 0.2), 100, CONFIG) == (True, [])
    blessed, why = logic.bless(_metrics(0.05, 0.01), 100, CONFIG)
    assert not blessed and "min_hr_at_50" in why[0]
    blessed, why = logic.bless(_metrics(0.3, 0.35), 100, CONFIG)
    assert not blessed and "popularity" in why[0]
    assert not logic.bless({**_metrics(0, 0), "model": {"users": 0}}, 100, CONFIG)[0]


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
        "model": {"hr@50": 0.5, "ndcg@50": 0.25, "users": 4},
        "popularity": {"hr@50": 0.1, "ndcg@50": 0.05, "users": 4},
        "coverage_counts": {"50": 8},
        "baseline": {"hr@50": 0.25, "ndcg@50": 0.125, "users": 4},
    }
    previous = records.PreviousRelease(
        found=True,
        why="the newest release",
        why_not=None,
        run_id="r1",
        run_date="2024-01-01",
        release="/out/releases/r1",
        metrics=records.ReleaseMetrics({"hr@50": 0.75}, True),
    )
    metrics = logic.finalize_metrics(raw, 16, [50], previous)
    assert metrics["baseline"]["model"]["hr@50"] == 0.25
    assert metrics["baseline"]["own_holdout"] == {"hr@50": 0.75}
    headline = logic.headline_metrics(_evaluation(metrics))
    assert headline["hr@50"] == 0.5 and headline["baseline_hr@50"] == 0.25
    assert logic.finalize_metrics({**raw, "baseline": None}, 16, [50], None)["baseline"] is None


def test_finalize_adds_recall_and_coverage_at_every_k():
    raw = {
        "model": {"hr@10": 0.25, "hr@50": 0.5, "users": 4},
        "popularity": {"hr@10": 0.1},
        "coverage_counts": {"10": 3, "50": 8},
        "baseline": None,
    }
    metrics = logic.finalize_metrics(raw, 16, [10, 50])
    assert metrics["model"]["recall@10"] == 0.25 and metrics["model"]["recall@50"] == 0.5
    assert metrics["model"]["coverage@10"] == 3 / 16 and metrics["model"]["coverage@50"] == 0.5
    assert metrics["ks"] == [10, 50] and metrics["catalog_size"] == 16


def test_blessing_k_is_always_evaluated():
    assert EvaluateConfig(ks=(5, 10)).metric_ks() == (5, 10, 50)
    assert EvaluateConfig(ks=(100, 50)).metric_ks() == (50, 100)


def _evaluation(metrics: dict, blessed: bool = True) -> records.Evaluation:
    return records.Evaluation.from_dict({**metrics, "blessed": blessed, "not_blessed_because": []})


def test_headline_metrics_for_the_kfp_and_mlmd_uis():
    raw = {
        "model": {"hr@10": 0.2, "ndcg@10": 0.1, "hr@50": 0.5, "ndcg@50": 0.2, "users": 4},
        "popularity": {"hr@10": 0.1, "ndcg@10": 0.05, "hr@50": 0.3, "ndcg@50": 0.1, "users": 4},
        "coverage_counts": {"10": 4, "50": 9},
        "baseline": None,
    }
    assert logic.headline_metrics(_evaluation(logic.finalize_metrics(raw, 10, [10, 50]))) == {
        "blessed": 1.0,
        "hr@10": 0.2,
        "ndcg@10": 0.1,
        "coverage@10": 0.4,
        "popularity_hr@10": 0.1,
        "hr@50": 0.5,
        "ndcg@50": 0.2,
        "coverage@50": 0.9,
        "popularity_hr@50": 0.3,
    }


def test_metrics_json_missing_a_field_or_a_metric_at_k_is_an_error():
    raw = {
        "model": {"hr@10": 0.2, "ndcg@10": 0.1, "users": 4},
        "popularity": {"hr@10": 0.1, "users": 4},
        "coverage_counts": {"10": 4},
        "baseline": None,
    }
    metrics = {**logic.finalize_metrics(raw, 10, [10]), "blessed": True}
    with pytest.raises(records.RecordError, match="missing the field 'not_blessed_because'"):
        records.Evaluation.from_dict(metrics, where="metrics.json")
    del metrics["model"]["ndcg@10"]
    with pytest.raises(records.RecordError, match="lack 'ndcg@10'"):
        records.Evaluation.from_dict({**metrics, "not_blessed_because": []})


def test_gini_against_hand_values():
    # Everyone gets the same items: 0. One item in every list out of 4: (2*4 - 4 - 1) / 4 = 0.75.
    assert logic.gini([5, 5, 5, 5], 4) == 0.0
    assert logic.gini([8], 4) == pytest.approx(0.75)
    # Counts 1, 3 over a catalog of 3 (one never recalled): sorted 0, 1, 3;
    # sum((2i - n - 1) x_i) / (n sum x) = (-2*0 + 0*1 + 2*3) / (3 * 4) = 0.5.
    assert logic.gini([3, 1], 3) == pytest.approx(0.5)
    assert logic.gini([], 10) == 0.0


def test_popularity_deciles_rank_items_by_training_clicks():
    counts = np.array([1, 50, 7, 50, 3, 9, 2, 8, 4, 6])
    # Ten items: one per decile; ties keep vocabulary order.
    assert logic.popularity_deciles(counts).tolist() == [10, 1, 5, 2, 8, 3, 9, 4, 7, 6]
    assert logic.popularity_deciles(np.arange(20, 0, -1))[:4].tolist() == [1, 1, 2, 2]


def test_output_health_in_beam_and_at_blessing(tmp_path):
    from offline_recall.components import common
    from offline_recall.core import contracts as C
    from offline_recall.trainer import export
    from offline_recall.trainer import features as F

    model_uri = str(tmp_path / "model")
    keys = [F.encode_id(i) for i in ("a", "b", "c", "d")]
    model_artifact.write_item_vectors(
        model_uri,
        export.item_vectors_table(
            keys, np.ones((4, 2)), np.zeros(4), dict(zip(keys, [40, 30, 20, 10], strict=True))
        ),
    )
    rows = [
        {"user_id": "u1", "item_ids": ["a", "b"], "scores": [2.0, 1.0], "held_out_item": "b"},
        {"user_id": "u2", "item_ids": ["a"], "scores": [2.0], "held_out_item": "zzz"},
    ]
    serving = [
        common.make_example({F.VISITED: [b"a", b"new", b"c"]}).SerializeToString(),
        common.make_example({F.VISITED: [b"d"]}).SerializeToString(),
    ]
    with TestPipeline() as p:
        health = (p | "Recalls" >> beam.Create(rows)) | logic.OutputHealth(
            p | "Serving" >> beam.Create(serving), model_uri, 2
        )
        assert_that(health["recalled_counts"], equal_to([[1, 2]]), label="Counts")
        assert_that(health["short_lists"], equal_to([1]), label="Short")
        deciles = {"3": {"users": 1, "hr@50": 1.0}, "0": {"users": 1, "hr@50": 0.0}}
        assert_that(health["deciles"], equal_to([deciles]), label="Deciles")
        oov = {"history_items": 4, "oov_items": 1}
        assert_that(health["serving_oov"], equal_to([oov]), label="Oov")

    raw = {
        "model": {"users": 2},
        "recalled_counts": [2, 1],
        "short_lists": 1,
        "deciles": {"3": {"users": 1, "hr@50": 1.0}},
        "serving_oov": {"history_items": 4, "oov_items": 1},
    }
    health = logic.health_metrics(raw, 4)
    assert health["coverage@50"] == 0.5 and health["short_list_share"] == 0.5
    # Sorted counts 0, 0, 1, 2: (-3*0 - 1*0 + 1*1 + 3*2) / (4 * 3).
    assert health["serving_oov_rate"] == 0.25 and health["gini@50"] == pytest.approx(7 / 12)
    strict = EvaluateConfig(max_short_list_share=0.1, max_serving_oov_rate=0.2)
    reasons = logic.health_reasons(health, strict)
    assert [r.split()[0] for r in reasons] == ["short_list_share", "serving_oov_rate"]
    assert "evaluate.max_serving_oov_rate 0.2" in reasons[1]
    assert logic.health_reasons(health, EvaluateConfig()) == []
    full_raw = {**raw, "popularity": {"users": 2}, "coverage_counts": {}, "baseline": None}
    evaluation = _evaluation(logic.finalize_metrics(full_raw, 4, []))
    assert evaluation.health.gini == pytest.approx(7 / 12)
    assert logic.headline_metrics(evaluation)[C.metric_key("gini", 50)] == pytest.approx(7 / 12)
