"""Today's recalls against the previous release's: metrics on the same holdout, list churn, new
items. Pure Beam and pyarrow; knows nothing of TFX."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable

import apache_beam as beam
import tensorflow as tf

from offline_recall.components import common
from offline_recall.core import contracts as C
from offline_recall.core import model_artifact, records


def jaccard(today: Iterable[str], before: Iterable[str]) -> float:
    """|A ∩ B| / |A ∪ B| of two recall lists as sets; 1.0 when both are empty."""
    a, b = set(today), set(before)
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def user_and_items(row: dict) -> tuple[str, list[str]]:
    return row[C.USER_ID_COLUMN], row[C.ITEM_IDS_COLUMN]


def churn_of_user(joined: tuple[str, dict]) -> dict[str, float]:
    """One user's contribution to the churn counts, from both days' lists (CoGroupByKey)."""
    _, lists = joined
    today, before = list(lists["today"]), list(lists["before"])
    if today and before:
        similarity = jaccard(today[0], before[0])
        return {"users_compared": 1, "users_changed": int(similarity < 1.0), "jaccard": similarity}
    return {"users_new": int(bool(today)), "users_gone": int(bool(before))}


def new_items_in_list(row: dict, new_items: set[str]) -> Iterable[str]:
    for item in row[C.ITEM_IDS_COLUMN]:
        if item in new_items:
            yield item


def churn_summary(counts: dict, new_recalled: int, facts: dict) -> dict:
    """The comparison's counts, with the shares a reader wants. A count no user added to is
    absent from the sum (Beam's sum of nothing is {}), and is 0."""
    compared = counts.get("users_compared", 0)
    return {
        **facts,
        "why_not": None,
        "users_compared": compared,
        "users_changed": counts.get("users_changed", 0),
        "share_changed": counts.get("users_changed", 0) / compared if compared else 0.0,
        "mean_jaccard": counts.get("jaccard", 0.0) / compared if compared else None,
        "users_new": counts.get("users_new", 0),
        "users_gone": counts.get("users_gone", 0),
        "new_items_recalled": new_recalled,
    }


def metrics_side_by_side(evaluation: records.Evaluation) -> dict[str, dict[str, float | None]]:
    """{"hr@50": {"today", "previous"}, ...}: both models on today's holdout, at every K;
    "previous" is None where no baseline was scored (a previous release without a model)."""
    out = {}
    for k in evaluation.ks:
        for name in ("hr", "ndcg"):
            key = C.metric_key(name, k)
            previous = evaluation.baseline.model[key] if evaluation.baseline else None
            out[key] = {"today": evaluation.model[key], "previous": previous}
    return out


def compare(
    make_pipeline: Callable[[], beam.Pipeline],
    recalls_dir: str,
    model_uri: str,
    previous_uri: str,
    metrics: records.Evaluation,
    summary_path: str,
) -> records.CompareSummary:
    """Compares today's serving recalls with the previous release's and writes the summary.

    Args:
        make_pipeline: returns the Beam pipeline to run the steps in.
        recalls_dir: today's serving recalls (Parquet).
        model_uri: today's serving Model artifact (its item vectors: today's catalog).
        previous_uri: PreviousRelease's Model artifact.
        metrics: Evaluate's metrics.json (today's model and the baseline on today's holdout).
        summary_path: where the comparison goes.

    Returns:
        What it wrote: `compared` False and why not, without a previous release (or one whose
        recalls are gone); otherwise the previous release's name and date, `metrics` side by
        side, the churn counts and the catalog's change.
    """
    previous = model_artifact.read_previous(previous_uri)
    release = previous.release
    if not previous.found:
        result = records.CompareSummary.not_compared(previous.why_not)
    elif not tf.io.gfile.isdir(os.path.join(release, C.RECALLS_DIR)):
        result = records.CompareSummary.not_compared(f"{release} has no recalls/ any more")
    else:
        today_items = set(
            model_artifact.read_item_vector_table(model_uri).column(C.ITEM_ID_COLUMN).to_pylist()
        )
        before_items = set(
            model_artifact.read_item_vector_table(previous_uri).column(C.ITEM_ID_COLUMN).to_pylist()
        )
        new_items = today_items - before_items
        facts = {
            "compared": True,
            "previous": {k: getattr(previous, k) for k in ("run_id", "run_date", "release")},
            "metrics": metrics_side_by_side(metrics),
            "catalog_items": len(today_items),
            "new_items": len(new_items),
            "dropped_items": len(before_items - today_items),
        }
        with make_pipeline() as pipeline:
            today = pipeline | "ReadTodayRecalls" >> beam.io.ReadFromParquet(
                os.path.join(recalls_dir, f"*{C.PARQUET_SUFFIX}"),
                columns=[C.USER_ID_COLUMN, C.ITEM_IDS_COLUMN],
            )
            before = pipeline | "ReadPreviousRecalls" >> beam.io.ReadFromParquet(
                os.path.join(release, C.RECALLS_DIR, f"*{C.PARQUET_SUFFIX}"),
                columns=[C.USER_ID_COLUMN, C.ITEM_IDS_COLUMN],
            )
            counts = (
                {
                    "today": today | "KeyToday" >> beam.Map(user_and_items),
                    "before": before | "KeyBefore" >> beam.Map(user_and_items),
                }
                | "JoinUsers" >> beam.CoGroupByKey()
                | "ChurnOfUser" >> beam.Map(churn_of_user)
                | "SumChurn" >> beam.CombineGlobally(common.SumDictsFn())
            )
            recalled_new = (
                today
                | "NewItemsRecalled" >> beam.FlatMap(new_items_in_list, new_items)
                | "DistinctNewItems" >> beam.Distinct()
                | "CountNewItems" >> beam.combiners.Count.Globally()
            )
            _ = pipeline | "WriteComparison" >> common.WriteJsonOnce(
                summary_path,
                functools.partial(churn_summary, facts=facts),
                counts=beam.pvalue.AsSingleton(counts),
                new_recalled=beam.pvalue.AsSingleton(recalled_new),
            )
        return records.CompareSummary.read(summary_path)
    result.write(summary_path)
    return result
