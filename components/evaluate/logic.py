"""Holdout metrics of recall lists: HR@K, Recall@K, NDCG@K, coverage@K, and a popularity baseline.

Each eval user has one held-out item, so Recall@K equals HR@K; both are reported because users
read either name. NDCG@K with one relevant item is 1 / log2(rank + 1) for a hit at 1-based rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf

from offline_recall.components import common
from offline_recall.trainer import export
from offline_recall.trainer import features as F


def user_metrics(ranked: Sequence[str], target: str, ks: Sequence[int]) -> dict[str, float]:
    """Returns hr@k and ndcg@k for one user's ranked list against their held-out item."""
    rank = None
    for position, item in enumerate(ranked):
        if item == target:
            rank = position + 1
            break
    metrics = {}
    for k in ks:
        hit = rank is not None and rank <= k
        metrics[f"hr@{k}"] = 1.0 if hit else 0.0
        metrics[f"ndcg@{k}"] = 1.0 / math.log2(rank + 1) if hit else 0.0
    return metrics


class MeanMetricsFn(beam.CombineFn):
    """Averages dicts of metrics over users; also reports the user count."""

    def create_accumulator(self):
        return {}, 0

    def add_input(self, acc, metrics):
        sums, n = acc
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + value
        return sums, n + 1

    def merge_accumulators(self, accs):
        total, count = {}, 0
        for sums, n in accs:
            for key, value in sums.items():
                total[key] = total.get(key, 0.0) + value
            count += n
        return total, count

    def extract_output(self, acc):
        sums, n = acc
        out = {key: value / n for key, value in sums.items()} if n else {}
        out["users"] = n
        return out


def popularity_top(popular: Sequence[str], visited: set[str], n: int) -> list[str]:
    """Returns the n most popular items the user has not visited."""
    out = []
    for item in popular:
        if item not in visited:
            out.append(item)
            if len(out) == n:
                break
    return out


class PopularityMetricsFn(beam.DoFn):
    """Scores the popularity baseline (training counts, visited excluded) on one eval example."""

    def __init__(self, model_uri: str, ks: Sequence[int]):
        self._model_uri = model_uri
        self._ks = list(ks)

    def setup(self):
        ids, _, counts = export.read_item_vectors(self._model_uri)
        order = np.argsort(-counts, kind="stable")
        self._popular = [ids[i] for i in order]

    def process(self, serialized: bytes):
        example = tf.train.Example.FromString(serialized)
        visited = {v.decode("utf-8") for v in common.bytes_values(example, F.VISITED)}
        target = common.bytes_values(example, F.LABEL)[0].decode("utf-8")
        ranked = popularity_top(self._popular, visited, max(self._ks))
        yield user_metrics(ranked, target, self._ks)


def recall_row_metrics(row: dict, ks: Sequence[int]) -> dict[str, float]:
    return user_metrics(row["item_ids"], row["held_out_item"], ks)


def recommended_at_k(row: dict, ks: Sequence[int]):
    """Yields (k, item) for every item in the first k of the row's list, for coverage@k."""
    for k in ks:
        for item in row["item_ids"][:k]:
            yield k, item


def _k_of(pair):
    return pair[0]


@beam.ptransform_fn
def EvaluateRecalls(recalls, eval_examples, model_uri: str, ks: Sequence[int]):  # noqa: N802
    """Returns singleton PCollections {model, popularity, coverage} of metric dicts."""
    model = (
        recalls
        | "ModelUserMetrics" >> beam.Map(recall_row_metrics, ks)
        | "MeanModelMetrics" >> beam.CombineGlobally(MeanMetricsFn())
    )
    popularity = (
        eval_examples
        | "PopularityUserMetrics" >> beam.ParDo(PopularityMetricsFn(model_uri, ks))
        | "MeanPopularityMetrics" >> beam.CombineGlobally(MeanMetricsFn())
    )
    coverage = (
        recalls
        | "RecommendedAtK" >> beam.FlatMap(recommended_at_k, ks)
        | "DistinctRecommended" >> beam.Distinct()
        | "KOfPair" >> beam.Map(_k_of)
        | "CountPerK" >> beam.combiners.Count.PerElement()
        | "CoverageCounts" >> beam.combiners.ToList()
        | "CoverageDict" >> beam.Map(dict)
    )
    return {"model": model, "popularity": popularity, "coverage": coverage}


def bless(
    metrics: dict, catalog_size: int, config: dict, previous: dict | None
) -> tuple[bool, list[str]]:
    """Decides whether a run may be published; returns (blessed, reasons it was not).

    Args:
        metrics: {"model": {...}, "popularity": {...}} with hr@50 among the keys.
        catalog_size: number of recommendable items.
        config: the `evaluate` config section.
        previous: the last published run's metrics, if any.
    """
    reasons = []
    model, popular = metrics["model"], metrics["popularity"]
    if model.get("users", 0) == 0:
        return False, ["no eval users: no user has enough events for a holdout"]
    if catalog_size == 0:
        return False, ["empty catalog"]
    hr50 = model.get("hr@50", 0.0)
    if not math.isfinite(hr50):
        reasons.append(f"hr@50 is {hr50}")
    if hr50 < config.get("min_hr_at_50", 0.0):
        reasons.append(f"hr@50 {hr50:.4f} < evaluate.min_hr_at_50 {config['min_hr_at_50']}")
    ratio = config.get("min_ratio_to_popularity", 0.0)
    if hr50 < ratio * popular.get("hr@50", 0.0):
        reasons.append(
            f"hr@50 {hr50:.4f} < {ratio} x popularity baseline {popular.get('hr@50', 0.0):.4f}"
        )
    if previous and "hr@50" in previous.get("model", {}):
        floor = (1.0 - config.get("max_regression", 1.0)) * previous["model"]["hr@50"]
        if hr50 < floor:
            reasons.append(
                f"hr@50 {hr50:.4f} regressed below {floor:.4f} (last published "
                f"{previous['model']['hr@50']:.4f}, evaluate.max_regression "
                f"{config.get('max_regression')})"
            )
    return not reasons, reasons
