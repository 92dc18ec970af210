"""Report executor: unpack artifacts, run `logic.write_run_report`."""

from __future__ import annotations

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.report import logic
from offline_recall.core import contracts as C


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        common.make_output_dirs(output_dict)

        def uri(key: str) -> str:
            return artifact_utils.get_single_uri(input_dict[key])

        summary = logic.write_run_report(
            exec_properties[C.OUTPUT_DIR_KEY],
            exec_properties[C.INPUT_BASE_KEY],
            logic.StageOutputs(
                ingest_report=uri(C.INGEST_REPORT_KEY),
                quarantine=uri(C.QUARANTINE_KEY),
                sequences_report=uri(C.SEQUENCES_REPORT_KEY),
                model=uri(C.MODEL_KEY),
                eval_recall_report=uri(C.EVAL_RECALL_REPORT_KEY),
                metrics=uri(C.METRICS_KEY),
                serving_recall_report=uri(C.SERVING_RECALL_REPORT_KEY),
                serving_recalls=uri(C.RECALLS_KEY),
                release=uri(C.RELEASE_KEY),
                comparison=uri(C.COMPARISON_KEY),
            ),
        )
        summary.write(common.summary_path(artifact_utils.get_single_uri(output_dict[C.REPORT_KEY])))
