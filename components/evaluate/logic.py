"""Holdout metrics of recall lists: HR@K, Recall@K, NDCG@K, coverage@K, and a popularity baseline.

Each eval user has one held-out item, so Recall@K equals HR@K; both are reported because users
read either name. NDCG@K with one relevant item is 1 / log2(rank + 1) for a hit at 1-based rank.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf

from offline_recall.components import common
from offline_recall.components.recall import logic as recall_logic
from offline_recall.core import contracts as C
from offline_recall.core import model_artifact, records, storage
from offline_recall.core.config import EvaluateConfig, RecallConfig
from offline_recall.core.contracts import BLESSING_K
from offline_recall.trainer import features as F

# The baseline's search (Evaluate gets no recall section): one catalog shard, the recall
# section's default batches and blocks.
BASELINE_SEARCH = recall_logic.Search(
    top_n=0,
    batch_size=RecallConfig.batch_size,
    block_items=RecallConfig.block_items,
    item_shards=1,
)


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
        metrics[C.metric_key("hr", k)] = 1.0 if hit else 0.0
        metrics[C.metric_key("ndcg", k)] = 1.0 / math.log2(rank + 1) if hit else 0.0
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
        ids, counts = model_artifact.read_item_counts(self._model_uri)
        order = np.argsort(-counts, kind="stable")
        self._popular = [ids[i] for i in order]

    def process(self, serialized: bytes):
        example = tf.train.Example.FromString(serialized)
        visited = {v.decode("utf-8") for v in common.bytes_values(example, F.VISITED)}
        target = common.bytes_values(example, F.LABEL)[0].decode("utf-8")
        ranked = popularity_top(self._popular, visited, max(self._ks))
        yield user_metrics(ranked, target, self._ks)


# --- Output health: what the lists look like, beyond whether they hit. ---
DECILES = 10


def gini(counts: Sequence[int], catalog_size: int) -> float:
    """The Gini index of how often each catalog item is recalled (0 = every item equally,
    1 = one item everywhere); items never recalled count as 0.

    Args:
        counts: appearances of each item that was recalled at least once.
        catalog_size: every recommendable item, recalled or not (>= len(counts)).
    """
    n = max(catalog_size, len(counts))
    if n == 0 or not sum(counts):
        return 0.0
    values = np.zeros(n, dtype=np.float64)
    values[n - len(counts) :] = np.sort(np.asarray(counts, dtype=np.float64))
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * values).sum() / (n * values.sum()))


def popularity_deciles(counts: np.ndarray) -> np.ndarray:
    """Each item's popularity decile by training clicks: 1 = the most clicked tenth of the
    catalog, 10 = the least (ties broken by index, as the vocabulary orders them)."""
    order = np.argsort(-counts, kind="stable")
    deciles = np.empty(len(counts), dtype=np.int64)
    deciles[order] = 1 + (np.arange(len(counts)) * DECILES) // max(len(counts), 1)
    return deciles


class DecileHitsFn(beam.DoFn):
    """(decile of the held-out item, hit at the blessing K) per eval user; decile 0 = an item the
    model does not know (OOV), which no list can hold."""

    def __init__(self, model_uri: str):
        self._model_uri = model_uri

    def setup(self):
        ids, counts = model_artifact.read_item_counts(self._model_uri)
        self._decile = dict(zip(ids, popularity_deciles(counts).tolist(), strict=True))

    def process(self, row: dict):
        target = row[C.HELD_OUT_COLUMN]
        hit = target in row[C.ITEM_IDS_COLUMN][:BLESSING_K]
        yield self._decile.get(target, 0), float(hit)


class HistoryOovFn(beam.DoFn):
    """{history_items, oov_items} of one serving history: the events whose item the model has
    no vector for (new since training, or below transform.min_count)."""

    def __init__(self, model_uri: str):
        self._model_uri = model_uri

    def setup(self):
        ids = model_artifact.read_item_ids(self._model_uri)
        self._known = set(ids)

    def process(self, serialized: bytes):
        example = tf.train.Example.FromString(serialized)
        items = common.bytes_values(example, F.VISITED)
        oov = sum(1 for v in items if v.decode("utf-8") not in self._known)
        yield {"history_items": len(items), "oov_items": oov}


def top_k_items(row: dict) -> list[str]:
    return row[C.ITEM_IDS_COLUMN][:BLESSING_K]


def is_short(row: dict, length: int) -> int:
    return int(len(row[C.ITEM_IDS_COLUMN]) < length)


def _count(pair):
    return pair[1]


def _decile_mean(pair):
    decile, (hits, users) = pair
    return str(decile), {"users": users, C.BLESSING_METRIC: hits / users if users else 0.0}


class MeanAndCountFn(beam.CombineFn):
    def create_accumulator(self):
        return 0.0, 0

    def add_input(self, acc, value):
        return acc[0] + value, acc[1] + 1

    def merge_accumulators(self, accs):
        return sum(a[0] for a in accs), sum(a[1] for a in accs)

    def extract_output(self, acc):
        return acc


@beam.ptransform_fn
def OutputHealth(recalls, serving_examples, model_uri: str, list_length: int):  # noqa: N802
    """Singleton PCollections: `recalled_counts` (appearances of each item in the first
    BLESSING_K, for the Gini index), `short_lists`, `deciles` ({decile: {users, hr@50}}) and
    `serving_oov` ({history_items, oov_items})."""
    recalled_counts = (
        recalls
        | "RecalledItems" >> beam.FlatMap(top_k_items)
        | "CountPerItem" >> beam.combiners.Count.PerElement()
        | "AppearanceCount" >> beam.Map(_count)
        | "CollectCounts" >> beam.combiners.ToList()
        | "SortCounts" >> beam.Map(sorted)
    )
    short = (
        recalls
        | "IsShort" >> beam.Map(is_short, list_length)
        | "CountShort" >> beam.CombineGlobally(sum)
    )
    deciles = (
        recalls
        | "DecileHits" >> beam.ParDo(DecileHitsFn(model_uri))
        | "MeanPerDecile" >> beam.CombinePerKey(MeanAndCountFn())
        | "DecileMetrics" >> beam.Map(_decile_mean)
        | "CollectDeciles" >> beam.combiners.ToDict()
    )
    oov = (
        serving_examples
        | "HistoryOov" >> beam.ParDo(HistoryOovFn(model_uri))
        | "SumOov" >> beam.CombineGlobally(common.SumDictsFn())
    )
    return {
        "recalled_counts": recalled_counts,
        "short_lists": short,
        "deciles": deciles,
        "serving_oov": oov,
    }


def health_metrics(raw: dict, catalog_size: int) -> dict:
    """The output health numbers from what `OutputHealth` computed."""
    users = raw["model"]["users"]
    counts = raw["recalled_counts"]
    oov = raw["serving_oov"]
    # The serving OOV counts are a sum of dicts: a count nothing added to is absent, and is 0.
    return records.Health(
        gini=gini(counts, catalog_size),
        coverage=len(counts) / catalog_size if catalog_size else 0.0,
        short_list_share=raw["short_lists"] / users if users else 0.0,
        hit_rate_by_popularity_decile=dict(
            sorted(raw["deciles"].items(), key=lambda kv: int(kv[0]))
        ),
        serving_history_items=oov.get("history_items", 0),
        serving_oov_rate=(
            oov.get("oov_items", 0) / oov["history_items"] if oov.get("history_items") else 0.0
        ),
    ).to_dict()


def recall_row_metrics(row: dict, ks: Sequence[int]) -> dict[str, float]:
    return user_metrics(row[C.ITEM_IDS_COLUMN], row[C.HELD_OUT_COLUMN], ks)


def recommended_at_k(row: dict, ks: Sequence[int]):
    """Yields (k, item) for every item in the first k of the row's list, for coverage@k."""
    for k in ks:
        for item in row[C.ITEM_IDS_COLUMN][:k]:
            yield k, item


def _k_of_counted(counted):
    (k, _), _ = counted
    return k


@beam.ptransform_fn
def CoverageAtK(recalls, ks: Sequence[int]):  # noqa: N802
    """Recall rows -> (k, number of distinct items in someone's first k)."""
    return (
        recalls
        | "RecommendedAtK" >> beam.FlatMap(recommended_at_k, ks)
        # Count.PerElement, not Distinct: it combines within a bundle before the shuffle, so a
        # popular item crosses it once per bundle, not once per user.
        | "DistinctRecommended" >> beam.combiners.Count.PerElement()
        | "KOfPair" >> beam.Map(_k_of_counted)
        | "CountPerK" >> beam.combiners.Count.PerElement()
    )


@beam.ptransform_fn
def EvaluateRecalls(recalls, eval_examples, model_uri: str, ks: Sequence[int]):  # noqa: N802
    """Returns {model, popularity}: singleton PCollections of metric dicts; {coverage}: (k, count)
    pairs, the distinct items recommended in the first k."""
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
    coverage = recalls | "CoverageAtK" >> CoverageAtK(ks)
    return {"model": model, "popularity": popularity, "coverage": coverage}


def raw_metrics(
    model: dict,
    popularity: dict,
    coverage: dict[int, int],
    baseline: dict | None = None,
    **health,
) -> dict:
    """What the Beam steps hand to `finalize_metrics`, as JSON; `health` is OutputHealth's."""
    return {
        "model": model,
        "popularity": popularity,
        "coverage_counts": coverage,
        "baseline": baseline,
        **health,
    }


@beam.ptransform_fn
def ScoreBaseline(eval_examples, baseline_uri: str, ks: Sequence[int]):  # noqa: N802
    """The previous release's model on today's holdout: its recalls, made by the same code as
    today's (`RecallUsers`, visited items excluded), scored like them. A singleton of metrics."""
    recalls = eval_examples | "RecallBaselineUsers" >> recall_logic.RecallUsers(
        baseline_uri, dataclasses.replace(BASELINE_SEARCH, top_n=max(ks))
    )
    return (
        recalls["recalls"]
        | "BaselineRows" >> beam.FlatMap(recall_logic.table_rows)
        | "BaselineUserMetrics" >> beam.Map(recall_row_metrics, ks)
        | "MeanBaselineMetrics" >> beam.CombineGlobally(MeanMetricsFn())
    )


def finalize_metrics(
    raw: dict,
    catalog_size: int,
    ks: Sequence[int],
    previous: records.PreviousRelease | None = None,
) -> dict:
    """Adds recall@k (= hr@k, one held-out item per user) and coverage@k to the raw metrics,
    and names the release the baseline metrics (if any) are of.

    Args:
        raw: what `raw_metrics` wrote.
        catalog_size: recommendable items.
        ks: the cut-offs.
        previous: PreviousRelease's record when it found a release.
    """
    coverage_counts = {int(k): v for k, v in raw["coverage_counts"].items()}
    model, popularity = dict(raw["model"]), dict(raw["popularity"])
    if model["users"] == 0:
        # No user has a holdout: nothing was scored, and the blessing refuses the run for it.
        unscored = {C.metric_key(name, k): 0.0 for k in ks for name in ("hr", "ndcg")}
        model.update(unscored)
        popularity.update(unscored)
    for k in ks:
        model[C.metric_key("recall", k)] = model[C.metric_key("hr", k)]
        model[C.metric_key("coverage", k)] = (
            coverage_counts.get(k, 0) / catalog_size if catalog_size else 0.0
        )
    baseline = None
    if raw["baseline"] is not None and previous:
        baseline = {
            "model": raw["baseline"],
            "run_id": previous.run_id,
            "run_date": previous.run_date,
            "release": previous.release,
            # What that release scored on its own day's holdout, for reference only.
            "own_holdout": previous.metrics.model,
        }
    return {
        "model": model,
        "popularity": popularity,
        "baseline": baseline,
        "health": health_metrics(raw, catalog_size) if "recalled_counts" in raw else None,
        "catalog_size": catalog_size,
        "ks": list(ks),
    }


def bless(metrics: dict, catalog_size: int, config: EvaluateConfig) -> tuple[bool, list[str]]:
    """Decides whether a run may be published; returns (blessed, reasons it was not).

    The regression rule compares like with like, as TFX's Evaluator does with a baseline model:
    the previous release's model scored on **today's** holdout. A first run (no baseline) is
    judged on the thresholds alone.

    Args:
        metrics: {"model": {...}, "popularity": {...}, "baseline": None or {"model": {...},
            "run_id", "run_date"}} with the blessing metric (hr@50) among the keys.
        catalog_size: number of recommendable items.
        config: the `evaluate` section.
    """
    reasons = []
    key = C.BLESSING_METRIC
    model, popular = metrics["model"], metrics["popularity"]
    if model["users"] == 0:
        return False, ["no eval users: no user has enough events for a holdout"]
    if catalog_size == 0:
        return False, ["empty catalog"]
    hr = model[key]
    if not math.isfinite(hr):
        reasons.append(f"{key} is {hr}")
    if hr < config.min_hr_at_50:
        reasons.append(f"{key} {hr:.4f} < evaluate.min_hr_at_50 {config.min_hr_at_50}")
    ratio = config.min_ratio_to_popularity
    if hr < ratio * popular[key]:
        reasons.append(f"{key} {hr:.4f} < {ratio} x popularity baseline {popular[key]:.4f}")
    health = metrics["health"]
    if health:
        reasons.extend(health_reasons(health, config))
    baseline = metrics["baseline"]
    if baseline:
        floor = (1.0 - config.max_regression) * baseline["model"][key]
        if hr < floor:
            reasons.append(
                f"{key} {hr:.4f} regressed below {floor:.4f}: the previous release "
                f"(run {baseline['run_id']}, date {baseline['run_date']}) scores "
                f"{baseline['model'][key]:.4f} on today's holdout "
                f"(evaluate.max_regression {config.max_regression})"
            )
    return not reasons, reasons


def health_reasons(health: dict, config: EvaluateConfig) -> list[str]:
    """Why the output's health stops the blessing (evaluate.min_coverage_at_50,
    max_gini_at_50, max_short_list_share, max_serving_oov_rate)."""
    reasons = []
    coverage, gini_key = C.metric_key("coverage", BLESSING_K), C.metric_key("gini", BLESSING_K)
    checks = (
        (health[coverage] < config.min_coverage_at_50, coverage, "<", "min_coverage_at_50"),
        (health[gini_key] > config.max_gini_at_50, gini_key, ">", "max_gini_at_50"),
        (
            health["short_list_share"] > config.max_short_list_share,
            "short_list_share",
            ">",
            "max_short_list_share",
        ),
        (
            health["serving_oov_rate"] > config.max_serving_oov_rate,
            "serving_oov_rate",
            ">",
            "max_serving_oov_rate",
        ),
    )
    for failed, name, sign, key in checks:
        if failed:
            reasons.append(
                f"{name} {health[name]:.4f} {sign} evaluate.{key} {getattr(config, key)}"
            )
    return reasons


def headline_metrics(evaluation: records.Evaluation) -> dict[str, float]:
    """{hr@K, ndcg@K, coverage@K, popularity_hr@K, baseline_hr@K ...} at every K, the health
    figures, and `blessed` as 0/1: what the ML Metadata and KFP UIs show on the artifacts."""
    headline = {"blessed": float(evaluation.blessed)}
    for k in evaluation.ks:
        for name in ("hr", "ndcg", "coverage"):
            key = C.metric_key(name, k)
            headline[key] = float(evaluation.model[key])
        key = C.metric_key("hr", k)
        headline[f"popularity_{key}"] = float(evaluation.popularity[key])
        if evaluation.baseline is not None:
            for name in ("hr", "ndcg"):
                key = C.metric_key(name, k)
                headline[f"baseline_{key}"] = float(evaluation.baseline.model[key])
    if evaluation.health is not None:
        health = evaluation.health.to_dict()
        for key in (C.metric_key("gini", BLESSING_K), "short_list_share", "serving_oov_rate"):
            headline[key] = float(health[key])
    return headline


def evaluate(
    make_pipeline: Callable[[], beam.Pipeline],
    recalls_pattern: str,
    eval_pattern: str,
    serving_pattern: str,
    model_uri: str,
    metrics_dir: str,
    blessing_dir: str,
    config: EvaluateConfig,
    previous_uri: str | None,
) -> dict:
    """Scores the eval recalls on the holdout, decides the blessing, and writes both.

    Args:
        make_pipeline: returns the Beam pipeline to run the steps in.
        recalls_pattern: glob of RecallEval's Parquet recall lists.
        eval_pattern: glob of the eval split's history examples.
        serving_pattern: glob of the serving split's history examples (for their OOV rate).
        model_uri: the Model artifact (item vectors and counts, for the popularity baseline).
        metrics_dir: where `metrics.json` goes.
        blessing_dir: where the BLESSED or NOT_BLESSED marker goes.
        config: the `evaluate` section.
        previous_uri: PreviousRelease's Model artifact: the baseline model, scored on the
            same holdout through the same recall code; None (or an artifact that found no
            release) for no baseline.

    Returns:
        What it wrote as metrics.json.
    """
    ks = config.metric_ks()
    raw_path = os.path.join(metrics_dir, C.RAW_METRICS_FILE)
    previous = model_artifact.read_previous(previous_uri) if previous_uri else None
    if previous and not previous.found:
        previous = None
    with make_pipeline() as pipeline:
        recalls = pipeline | "ReadRecalls" >> beam.io.ReadFromParquet(recalls_pattern)
        eval_examples = (
            pipeline
            | "ReadEvalExamples" >> beam.io.ReadFromTFRecord(eval_pattern)
            | "SampleEvalUsers" >> recall_logic.SampleUsers(config.max_users)
        )
        result = recalls | "EvaluateRecalls" >> EvaluateRecalls(eval_examples, model_uri, ks)
        serving_examples = pipeline | "ReadServingExamples" >> beam.io.ReadFromTFRecord(
            serving_pattern
        )
        health = recalls | "OutputHealth" >> OutputHealth(serving_examples, model_uri, max(ks))
        side = {name: beam.pvalue.AsSingleton(pcoll) for name, pcoll in health.items()}
        if previous:
            side["baseline"] = beam.pvalue.AsSingleton(
                eval_examples | "ScoreBaseline" >> ScoreBaseline(previous_uri, ks)
            )
        _ = pipeline | "WriteRawMetrics" >> common.WriteJsonOnce(
            raw_path,
            raw_metrics,
            model=beam.pvalue.AsSingleton(result["model"]),
            popularity=beam.pvalue.AsSingleton(result["popularity"]),
            coverage=beam.pvalue.AsDict(result["coverage"]),
            **side,
        )
    catalog_size = model_artifact.read_item_vector_table(model_uri).num_rows
    metrics = finalize_metrics(storage.read_json(raw_path), catalog_size, ks, previous)
    blessed, reasons = bless(metrics, catalog_size, config)
    evaluation = records.Evaluation.from_dict(
        {**metrics, "blessed": blessed, "not_blessed_because": reasons}, where=C.METRICS_FILE
    )
    evaluation.write(records.Evaluation.path_in(metrics_dir))
    marker = C.BLESSED_FILE if blessed else C.NOT_BLESSED_FILE
    with tf.io.gfile.GFile(os.path.join(blessing_dir, marker), "w") as f:
        f.write("\n".join(reasons))
    return evaluation
