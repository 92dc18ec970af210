"""Evaluate executor: run `EvaluateRecalls`, write metrics.json, bless or not."""

from __future__ import annotations

import os

import apache_beam as beam
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.evaluate import logic
from offline_recall.components.recall.executor import RECALLS_DIR
from offline_recall.trainer import export
from offline_recall.trainer import features as F

METRICS_FILE = "metrics.json"
BLESSED_FILE, NOT_BLESSED_FILE = "BLESSED", "NOT_BLESSED"


def _write_raw(_, path, model, popularity, coverage):
    common.write_json(path, {"model": model, "popularity": popularity, "coverage_counts": coverage})


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        config = common.parse_config(exec_properties["custom_config"])
        eval_config = config.get("evaluate", config)
        ks = [int(k) for k in eval_config.get("ks", [10, 50, 100])]
        recalls_uri = artifact_utils.get_single_uri(input_dict["recalls"])
        sequences_uri = artifact_utils.get_single_uri(input_dict["sequences"])
        model_uri = artifact_utils.get_single_uri(input_dict["model"])
        metrics_uri = artifact_utils.get_single_uri(output_dict["metrics"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        raw_path = os.path.join(metrics_uri, "raw.json")

        with self._make_beam_pipeline() as pipeline:
            recalls = pipeline | "ReadRecalls" >> beam.io.ReadFromParquet(
                os.path.join(recalls_uri, RECALLS_DIR, "*.parquet")
            )
            eval_examples = pipeline | "ReadEvalExamples" >> beam.io.ReadFromTFRecord(
                common.split_pattern(sequences_uri, F.EVAL_SPLIT)
            )
            result = recalls | "EvaluateRecalls" >> logic.EvaluateRecalls(
                eval_examples, model_uri, ks
            )
            _ = (
                pipeline
                | "Once" >> beam.Create([None])
                | "WriteRawMetrics"
                >> beam.Map(
                    _write_raw,
                    raw_path,
                    beam.pvalue.AsSingleton(result["model"]),
                    beam.pvalue.AsSingleton(result["popularity"]),
                    beam.pvalue.AsSingleton(result["coverage"]),
                )
            )

        raw = common.read_json(raw_path)
        item_ids, _, _ = export.read_item_vectors(model_uri)
        catalog = len(item_ids)
        coverage_counts = {int(k): v for k, v in raw["coverage_counts"].items()}
        metrics = {
            "model": raw["model"],
            "popularity": raw["popularity"],
            "catalog_size": catalog,
            "ks": ks,
        }
        for k in ks:
            metrics["model"][f"recall@{k}"] = metrics["model"].get(f"hr@{k}", 0.0)
            metrics["model"][f"coverage@{k}"] = (
                coverage_counts.get(k, 0) / catalog if catalog else 0.0
            )
        previous = None
        published_dir = exec_properties.get("published_dir") or ""
        previous_path = os.path.join(published_dir, METRICS_FILE)
        if published_dir and tf.io.gfile.exists(previous_path):
            previous = common.read_json(previous_path)
        blessed, reasons = logic.bless(metrics, catalog, eval_config, previous)
        metrics["blessed"] = blessed
        metrics["not_blessed_because"] = reasons
        common.write_json(os.path.join(metrics_uri, METRICS_FILE), metrics)

        blessing.set_int_custom_property("blessed", int(blessed))
        with tf.io.gfile.GFile(
            os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), "w"
        ) as f:
            f.write("\n".join(reasons))
