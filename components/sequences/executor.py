"""Sequences executor: unpack artifacts, gate on anomalies, run `BuildSequences`."""

from __future__ import annotations

import os
from typing import Any

import apache_beam as beam
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils

from offline_recall.components import common
from offline_recall.components.errors import StageError
from offline_recall.components.sequences import logic
from offline_recall.trainer import features as F


def check_anomalies(anomalies_uri: str) -> None:
    """Raises StageError listing every anomaly ExampleValidator found in the click splits."""
    problems = []
    for root, _, files in os.walk(anomalies_uri):
        for name in files:
            if not name.endswith(".pb"):
                continue
            anomalies = anomalies_pb2.Anomalies()
            anomalies.ParseFromString(io_utils.read_bytes_file(os.path.join(root, name)))
            split = os.path.basename(root).replace("Split-", "")
            for feature, info in anomalies.anomaly_info.items():
                problems.append(f"{split}/{feature}: {info.short_description or info.description}")
            if anomalies.HasField("dataset_anomaly_info"):
                problems.append(f"{split}: {anomalies.dataset_anomaly_info.description}")
    if problems:
        raise StageError(
            "ingest output breaks schema/schema.pbtxt (ExampleValidator): " + "; ".join(problems)
        )


def train_examples_mode(config: dict) -> str:
    """The trainer's objective decides the train examples: per_position -> whole sequences."""
    objective = config.get("trainer", {}).get("objective", "last_position")
    return "sequences" if objective == "per_position" else "windows"


def refit_enabled(config: dict) -> bool:
    """Whether the run refits on the holdout, so Sequences must write the `refit` split."""
    return bool(config.get("trainer", {}).get("refit_on_holdout", False))


def _write_summary(_, report_uri, histogram, distinct_items, full_config, **split_counts):
    config = full_config.get("sequences", full_config)
    summary = logic.summarize(
        histogram,
        split_counts,
        distinct_items,
        config["max_history"],
        config["min_events_for_holdout"],
        train_examples_mode(full_config),
    )
    if summary["users"] == 0:
        raise StageError("sequences: the click examples hold no users")
    common.write_summary(report_uri, summary)
    return summary


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties: dict[str, Any]) -> None:  # noqa: N802
        config = common.parse_config(exec_properties["custom_config"])
        seq_config = config.get("sequences", config)
        if config.get("validation", {}).get("fail_on_anomalies", True) and input_dict.get(
            "anomalies"
        ):
            check_anomalies(artifact_utils.get_single_uri(input_dict["anomalies"]))

        clicks = artifact_utils.get_single_instance(input_dict["examples"])
        click_splits = artifact_utils.decode_split_names(clicks.split_names)
        output = artifact_utils.get_single_instance(output_dict["sequences"])
        splits = F.sequence_splits(refit_enabled(config))
        output.split_names = artifact_utils.encode_split_names(list(splits))
        examples_utils.set_payload_format(output, example_gen_pb2.FORMAT_TF_EXAMPLE)
        report_uri = artifact_utils.get_single_uri(output_dict["report"])

        with self._make_beam_pipeline() as pipeline:
            clicks_pcolls = [
                pipeline
                | f"ReadClicks[{split}]"
                >> beam.io.ReadFromTFRecord(common.split_pattern(clicks.uri, split))
                for split in click_splits
            ]
            merged = clicks_pcolls | "FlattenClickSplits" >> beam.Flatten()
            built = merged | "BuildSequences" >> logic.BuildSequences(
                seq_config["max_history"],
                seq_config["min_events_for_holdout"],
                train_examples_mode(config),
                refit_enabled(config),
            )
            counts = {}
            for split in splits:
                _ = built[split] | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                    os.path.join(common.split_uri(output.uri, split), "data_tfrecord"),
                    file_name_suffix=".gz",
                )
                counts[split] = built[split] | f"Count[{split}]" >> beam.combiners.Count.Globally()
            _ = (
                pipeline
                | "Once" >> beam.Create([None])
                | "WriteSummary"
                >> beam.Map(
                    _write_summary,
                    report_uri,
                    beam.pvalue.AsSingleton(built["histogram"]),
                    beam.pvalue.AsSingleton(built["distinct_items"]),
                    config,
                    **{split: beam.pvalue.AsSingleton(counts[split]) for split in splits},
                )
            )
