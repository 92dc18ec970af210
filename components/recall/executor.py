"""Recall executor: unpack artifacts, run `logic.recall`."""

from __future__ import annotations

from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.recall import logic
from offline_recall.core import contracts as C
from offline_recall.core.config import RecallConfig


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        common.make_output_dirs(output_dict)
        split = exec_properties[C.SPLIT_KEY]
        logic.recall(
            self._make_beam_pipeline,
            common.split_files(artifact_utils.get_split_uri(input_dict[C.SEQUENCES_KEY], split)),
            artifact_utils.get_single_uri(input_dict[C.MODEL_KEY]),
            artifact_utils.get_single_uri(output_dict[C.RECALLS_KEY]),
            common.summary_path(artifact_utils.get_single_uri(output_dict[C.REPORT_KEY])),
            split,
            RecallConfig.from_json(exec_properties[C.CONFIG_KEY]),
            exec_properties.get(C.MAX_USERS_KEY),
        )
