"""The run's account: `run_summary.json` (every stage's counts) and `report/` (HTML + plots).

Knows nothing of TFX: the executor hands it the folders of each stage's artifacts.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import numpy as np
import pyarrow.compute as pc

from offline_recall.components import common
from offline_recall.components.report import page
from offline_recall.core import contracts as C
from offline_recall.core import model_artifact, records, storage

# The report's score histogram reads at most this many top-1 scores.
TOP1_SCORES_LIMIT = 200_000
# Users per read of a recall file: the scores of this many lists are in memory at once.
TOP1_READ_ROWS = 65_536


@dataclasses.dataclass(frozen=True)
class StageOutputs:
    """The artifact folders the report reads, one per stage output."""

    ingest_report: str
    quarantine: str
    sequences_report: str
    model: str
    eval_recall_report: str
    metrics: str
    serving_recall_report: str
    serving_recalls: str
    release: str
    comparison: str


def top1_scores(
    recall_files: list[str], limit: int = TOP1_SCORES_LIMIT, read_rows: int = TOP1_READ_ROWS
) -> np.ndarray:
    """The best score of each user's list, from the first files up to `limit` users.

    Reads `read_rows` lists at a time and takes their first scores in Arrow: a recall file can
    hold every user's list (600k users x 100 scores at 5M events), which as Python floats took
    the Report stage to 4.9 GiB.

    Returns:
        [min(limit, users with a non-empty list)] float32, in file order.
    """
    parts: list[np.ndarray] = []
    found = 0
    for path in recall_files:
        with storage.open_parquet(path) as f:
            for batch in f.iter_batches(batch_size=read_rows, columns=[C.SCORES_COLUMN]):
                lists = batch.column(0)
                lists = lists.filter(pc.greater(pc.list_value_length(lists), 0))
                firsts = pc.list_element(lists, 0).to_numpy(zero_copy_only=False)
                parts.append(firsts.astype(np.float32)[: limit - found])
                found += len(parts[-1])
                if found >= limit:
                    return np.concatenate(parts)
    return np.concatenate(parts) if parts else np.empty(0, np.float32)


def history_lengths(histogram: dict[str, int]) -> np.ndarray:
    """Expands {events per user: users} into one length per user."""
    if not histogram:
        return np.empty(0, np.int64)
    keys = np.asarray([int(k) for k in histogram], np.int64)
    return np.repeat(keys, [histogram[k] for k in histogram])


def metrics_at_k(metrics: dict, k: int, names: tuple[str, ...]) -> dict[str, float]:
    """{name: the metric at k} for each of `names`."""
    return {n: metrics[C.metric_key(n, k)] for n in names}


def run_summary(output_dir: str, input_base: str, stages: StageOutputs) -> records.RunSummary:
    """Every stage's record, the metrics and what Publish did, as run_summary.json holds them."""
    ingest = records.IngestSummary.read(common.summary_path(stages.ingest_report))
    train = model_artifact.read_train_summary(stages.model)
    publish = records.PublishSummary.read(common.summary_path(stages.release))
    return records.RunSummary(
        status=C.STATUS_PUBLISHED if publish.published else C.STATUS_NOT_BLESSED,
        run_id=publish.run_id,
        finished_at=datetime.datetime.now(datetime.UTC).isoformat(),
        input=input_base,
        output=output_dir,
        ingest=records.IngestReport(**ingest.field_values(), quarantine_path=stages.quarantine),
        sequences=records.SequencesSummary.read(common.summary_path(stages.sequences_report)),
        transform=records.TransformSizes(train.vocab_size, train.num_classes),
        trainer=train,
        recall=records.RecallReports(
            serving=records.RecallSummary.read(common.summary_path(stages.serving_recall_report)),
            eval=records.RecallSummary.read(common.summary_path(stages.eval_recall_report)),
        ),
        evaluate=records.Evaluation.read(records.Evaluation.path_in(stages.metrics)),
        compare=records.CompareSummary.read(common.summary_path(stages.comparison)),
        publish=publish,
    )


def write_run_report(output_dir: str, input_base: str, stages: StageOutputs) -> records.RunSummary:
    """Writes OUTPUT/run_summary.json and OUTPUT/report/; returns the summary."""
    if storage.is_local(output_dir):
        output_dir = os.path.abspath(output_dir)
    summary = run_summary(output_dir, input_base, stages)
    summary.write(records.RunSummary.path_in(output_dir))
    metrics = summary.evaluate
    _, item_counts = model_artifact.read_item_counts(stages.model)
    page.write_report(
        os.path.join(output_dir, C.REPORT_DIR),
        summary.to_dict(),
        item_counts=item_counts,
        history_lengths=history_lengths(summary.sequences.events_per_user_histogram),
        metrics_at_k={
            k: metrics_at_k(metrics.model, k, ("hr", "ndcg", "coverage")) for k in metrics.ks
        },
        popularity_metrics_at_k={
            k: metrics_at_k(metrics.popularity, k, ("hr", "ndcg")) for k in metrics.ks
        },
        top1_scores=top1_scores(
            storage.parquet_files(os.path.join(stages.serving_recalls, C.RECALLS_DIR))
        ),
    )
    return summary
