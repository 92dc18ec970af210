"""Evaluate executor: unpack artifacts, run `logic.evaluate`, record the blessing on the artifact."""

from __future__ import annotations

import os

from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.evaluate import logic
from offline_recall.core import contracts as C
from offline_recall.core.config import EvaluateConfig
from offline_recall.trainer import features as F


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        common.make_output_dirs(output_dict)
        recalls_uri = artifact_utils.get_single_uri(input_dict[C.RECALLS_KEY])
        sequences = input_dict[C.SEQUENCES_KEY]
        blessing = artifact_utils.get_single_instance(output_dict[C.BLESSING_KEY])
        metrics = logic.evaluate(
            self._make_beam_pipeline,
            os.path.join(recalls_uri, C.RECALLS_DIR, f"*{C.PARQUET_SUFFIX}"),
            common.split_files(artifact_utils.get_split_uri(sequences, F.EVAL_SPLIT)),
            common.split_files(artifact_utils.get_split_uri(sequences, F.SERVING_SPLIT)),
            artifact_utils.get_single_uri(input_dict[C.MODEL_KEY]),
            artifact_utils.get_single_uri(output_dict[C.METRICS_KEY]),
            blessing.uri,
            EvaluateConfig.from_json(exec_properties[C.CONFIG_KEY]),
            artifact_utils.get_single_uri(input_dict[C.PREVIOUS_KEY]),
        )
        blessing.set_int_custom_property(C.BLESSED_PROPERTY, int(metrics.blessed))
        # The headline numbers where the KFP and ML Metadata UIs show them.
        for artifact_key in (C.METRICS_KEY, C.SCALAR_METRICS_KEY):
            artifact = artifact_utils.get_single_instance(output_dict[artifact_key])
            for name, value in logic.headline_metrics(metrics).items():
                artifact.set_float_custom_property(name, value)
