"""Publish executor: gather every stage's counts, publish if blessed, write summary and report."""

from __future__ import annotations

import datetime
import glob
import os

import numpy as np
import pyarrow.parquet as pq
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.evaluate.executor import METRICS_FILE
from offline_recall.components.publish import logic, report
from offline_recall.components.recall.executor import RECALLS_DIR, USER_VECTORS_DIR
from offline_recall.trainer import export, task

RUN_SUMMARY_FILE = "run_summary.json"
REPORT_DIR = "report"


def _uri(input_dict, key):
    return artifact_utils.get_single_uri(input_dict[key])


def _top1_scores(files: list[str], limit: int = 200_000) -> np.ndarray:
    scores = []
    for path in sorted(files):
        for lst in pq.read_table(path, columns=["scores"]).column("scores").to_pylist():
            if lst:
                scores.append(lst[0])
        if len(scores) >= limit:
            break
    return np.asarray(scores, dtype=np.float32)


def _histogram_to_lengths(histogram: dict[str, int]) -> np.ndarray:
    if not histogram:
        return np.empty(0, np.int64)
    keys = np.asarray([int(k) for k in histogram], np.int64)
    return np.repeat(keys, [histogram[k] for k in histogram])


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        config = common.parse_config(exec_properties["custom_config"])
        output_dir = os.path.abspath(exec_properties["output_dir"])
        os.makedirs(output_dir, exist_ok=True)
        model_uri = _uri(input_dict, "model")
        recalls_uri = _uri(input_dict, "recalls")
        metrics = common.read_json(os.path.join(_uri(input_dict, "metrics"), METRICS_FILE))
        blessing = artifact_utils.get_single_instance(input_dict["blessing"])
        blessed = bool(blessing.get_int_custom_property("blessed"))
        ingest = common.read_summary(_uri(input_dict, "ingest_report"))
        ingest["quarantine_path"] = _uri(input_dict, "quarantine")
        sequences = common.read_summary(_uri(input_dict, "sequences_report"))
        train = common.read_json(os.path.join(model_uri, task.TRAIN_SUMMARY_FILE))
        run_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")

        item_vectors = pq.read_table(
            os.path.join(model_uri, "item_vectors", export.ITEM_VECTORS_FILE)
        )
        recall_files = glob.glob(os.path.join(recalls_uri, RECALLS_DIR, "*.parquet"))
        publish = {"published": False, "run_id": run_id}
        if blessed:
            release = logic.publish_release(
                output_dir,
                run_id,
                recall_files,
                glob.glob(os.path.join(recalls_uri, USER_VECTORS_DIR, "*.parquet")),
                item_vectors,
                metrics,
                {"run_id": run_id, "input": exec_properties["input_base"], "config": config},
                keep_releases=int(config.get("publish", {}).get("keep_releases", 2)),
            )
            publish.update(published=True, release=release)
        else:
            publish["not_blessed_because"] = metrics.get("not_blessed_because", [])
            publish["kept"] = logic.current_release(output_dir)

        summary = {
            "status": "published" if blessed else "not_blessed",
            "run_id": run_id,
            "finished_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "input": exec_properties["input_base"],
            "output": output_dir,
            "ingest": ingest,
            "sequences": sequences,
            "transform": {
                "vocab_size": train["vocab_size"],
                "num_classes": train["num_classes"],
                **config.get("transform", {}),
            },
            "trainer": train,
            "recall": {
                "serving": common.read_summary(_uri(input_dict, "recall_report")),
                "eval": common.read_summary(_uri(input_dict, "eval_recall_report")),
            },
            "evaluate": metrics,
            "publish": publish,
        }
        logic.write_json_atomic(os.path.join(output_dir, RUN_SUMMARY_FILE), summary)
        ks = metrics.get("ks", [10, 50, 100])
        report.write_report(
            os.path.join(output_dir, REPORT_DIR),
            summary,
            item_counts=np.asarray(item_vectors.column("count").to_pylist(), np.int64),
            history_lengths=_histogram_to_lengths(sequences.get("events_per_user_histogram", {})),
            metrics_at_k={k: _at_k(metrics["model"], k) for k in ks},
            popularity_metrics_at_k={k: _at_k(metrics["popularity"], k) for k in ks},
            top1_scores=_top1_scores(recall_files),
        )
        common.write_summary(_uri(output_dict, "release"), publish)


def _at_k(metrics: dict, k: int) -> dict[str, float]:
    return {
        name: metrics[f"{name}@{k}"]
        for name in ("hr", "ndcg", "coverage")
        if f"{name}@{k}" in metrics
    }
