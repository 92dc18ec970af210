"""Compare executor: unpack artifacts, run `logic.compare`, write the comparison."""

from __future__ import annotations

import os

from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.compare import logic
from offline_recall.core import contracts as C
from offline_recall.core import records


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        common.make_output_dirs(output_dict)
        del exec_properties

        def uri(key: str) -> str:
            return artifact_utils.get_single_uri(input_dict[key])

        logic.compare(
            self._make_beam_pipeline,
            os.path.join(uri(C.RECALLS_KEY), C.RECALLS_DIR),
            uri(C.MODEL_KEY),
            uri(C.PREVIOUS_KEY),
            records.Evaluation.read(records.Evaluation.path_in(uri(C.METRICS_KEY))),
            common.summary_path(artifact_utils.get_single_uri(output_dict[C.COMPARISON_KEY])),
        )
