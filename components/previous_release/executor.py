"""PreviousRelease executor: unpack artifacts, run `logic.materialize`, label the artifact."""

from __future__ import annotations

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.previous_release import logic
from offline_recall.core import contracts as C
from offline_recall.core import records


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        common.make_output_dirs(output_dict)
        ingest = records.IngestSummary.read(
            common.summary_path(artifact_utils.get_single_uri(input_dict[C.INGEST_REPORT_KEY]))
        )
        model = artifact_utils.get_single_instance(output_dict[C.PREVIOUS_KEY])
        found = logic.materialize(exec_properties[C.OUTPUT_DIR_KEY], ingest.run_date, model.uri)
        # Which release this is, where the ML Metadata and KFP UIs show it.
        model.set_int_custom_property("found", int(found.found))
        for key in ("run_id", "run_date", "release"):
            model.set_string_custom_property(key, getattr(found, key) or "")
