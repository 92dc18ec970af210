"""Publish executor: unpack artifacts, run `logic.publish_if_blessed`, record what happened."""

from __future__ import annotations

import json

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.publish import logic
from offline_recall.core import contracts as C
from offline_recall.core import model_artifact, records
from offline_recall.core.config import PublishConfig


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        common.make_output_dirs(output_dict)
        blessing = artifact_utils.get_single_instance(input_dict[C.BLESSING_KEY])
        ingest = records.IngestSummary.read(
            common.summary_path(artifact_utils.get_single_uri(input_dict[C.INGEST_REPORT_KEY]))
        )
        metrics_uri = artifact_utils.get_single_uri(input_dict[C.METRICS_KEY])
        model_uri = artifact_utils.get_single_uri(input_dict[C.MODEL_KEY])
        comparison = records.CompareSummary.read(
            common.summary_path(artifact_utils.get_single_uri(input_dict[C.COMPARISON_KEY]))
        )
        record = logic.publish_if_blessed(
            exec_properties[C.OUTPUT_DIR_KEY],
            exec_properties.get(C.RUN_ID_KEY) or "",
            bool(blessing.get_int_custom_property(C.BLESSED_PROPERTY)),
            artifact_utils.get_single_uri(input_dict[C.RECALLS_KEY]),
            model_uri,
            records.Evaluation.read(records.Evaluation.path_in(metrics_uri)),
            {
                "input": exec_properties[C.INPUT_BASE_KEY],
                "input_note": exec_properties.get(C.INPUT_NOTE_KEY) or "",
                **logic.span_facts(ingest),
                "warm_start": model_artifact.read_train_summary(model_uri).warm_start,
                "compared_with_previous": comparison.to_dict(),
                "config": json.loads(exec_properties[C.RUN_CONFIG_KEY]),
            },
            PublishConfig.from_json(exec_properties[C.CONFIG_KEY]),
        )
        record.write(common.summary_path(artifact_utils.get_single_uri(output_dict[C.RELEASE_KEY])))
