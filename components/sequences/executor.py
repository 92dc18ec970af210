"""Sequences executor: unpack artifacts, run `logic.build_sequences`, name the output splits."""

from __future__ import annotations

from typing import Any

from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.sequences import logic
from offline_recall.core import contracts as C
from offline_recall.core.config import SequencesParams
from offline_recall.trainer import features as F


def split_uris(artifacts: list) -> dict[str, str]:
    """{split: folder} for every split of a single-artifact channel (Examples, Anomalies)."""
    names = artifact_utils.get_single_instance(artifacts).split_names
    return {
        split: artifact_utils.get_split_uri(artifacts, split)
        for split in artifact_utils.decode_split_names(names)
    }


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties: dict[str, Any]) -> None:  # noqa: N802
        common.make_output_dirs(output_dict)
        params = SequencesParams.from_json(exec_properties[C.CONFIG_KEY])
        clicks = input_dict[C.EXAMPLES_KEY]
        anomalies = input_dict.get(C.ANOMALIES_KEY)
        output = artifact_utils.get_single_instance(output_dict[C.SEQUENCES_KEY])
        output.split_names = artifact_utils.encode_split_names(
            list(F.sequence_splits(params.write_refit_split))
        )
        examples_utils.set_payload_format(output, example_gen_pb2.FORMAT_TF_EXAMPLE)
        first_day = artifact_utils.get_single_instance(clicks).get_string_custom_property(
            C.WINDOW_FIRST_DAY_KEY
        )
        logic.build_sequences(
            self._make_beam_pipeline,
            {split: common.split_files(folder) for split, folder in split_uris(clicks).items()},
            split_uris(output_dict[C.SEQUENCES_KEY]),
            common.summary_path(artifact_utils.get_single_uri(output_dict[C.REPORT_KEY])),
            params,
            split_uris(anomalies) if anomalies else None,
            first_day or None,
        )
