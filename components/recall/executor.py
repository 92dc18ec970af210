"""Recall executor: unpack artifacts, run `RecallUsers`, write Parquet and a summary."""

from __future__ import annotations

import os

import apache_beam as beam
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.recall import logic

RECALLS_DIR = "recalls"
USER_VECTORS_DIR = "user_vectors"


def _summarize(_, report_uri, split, top_n, users, lengths):
    summary = {
        "split": split,
        "top_n": top_n,
        "users": users,
        "users_full": sum(v for k, v in lengths.items() if k >= top_n),
        "users_short": sum(v for k, v in lengths.items() if k < top_n),
        "list_length_histogram": {str(k): v for k, v in sorted(lengths.items())},
    }
    common.write_summary(report_uri, summary)


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        config = common.parse_config(exec_properties["custom_config"])
        recall_config = config.get("recall", config)
        split = exec_properties["split"]
        top_n = int(recall_config.get("top_n", 100))
        sequences_uri = artifact_utils.get_single_uri(input_dict["sequences"])
        model_uri = artifact_utils.get_single_uri(input_dict["model"])
        recalls_uri = artifact_utils.get_single_uri(output_dict["recalls"])
        report_uri = artifact_utils.get_single_uri(output_dict["report"])

        with self._make_beam_pipeline() as pipeline:
            histories = pipeline | "ReadHistories" >> beam.io.ReadFromTFRecord(
                common.split_pattern(sequences_uri, split)
            )
            result = histories | "RecallUsers" >> logic.RecallUsers(
                model_uri, top_n, int(recall_config.get("batch_size", 512))
            )
            _ = result["recalls"] | "WriteRecalls" >> beam.io.WriteToParquet(
                os.path.join(recalls_uri, RECALLS_DIR, "part"),
                logic.RECALLS_SCHEMA,
                file_name_suffix=".parquet",
            )
            _ = result["user_vectors"] | "WriteUserVectors" >> beam.io.WriteToParquet(
                os.path.join(recalls_uri, USER_VECTORS_DIR, "part"),
                logic.USER_VECTORS_SCHEMA,
                file_name_suffix=".parquet",
            )
            users = result["recalls"] | "CountUsers" >> beam.combiners.Count.Globally()
            lengths = (
                result["recalls"]
                | "ListLength" >> beam.Map(logic.list_length)
                | "CountPerLength" >> beam.combiners.Count.PerElement()
                | "LengthCounts" >> beam.combiners.ToList()
                | "LengthHistogram" >> beam.Map(dict)
            )
            _ = (
                pipeline
                | "Once" >> beam.Create([None])
                | "WriteSummary"
                >> beam.Map(
                    _summarize,
                    report_uri,
                    split,
                    top_n,
                    beam.pvalue.AsSingleton(users),
                    beam.pvalue.AsSingleton(lengths),
                )
            )
