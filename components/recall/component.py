"""Recall: exact faiss top-N per user over the trained item vectors, visited items excluded.

The pipeline runs it twice with the same code: on `eval` histories (what Evaluate scores) and on
`serving` histories (what Publish publishes).
"""

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components import artifacts
from offline_recall.components.recall import executor


class RecallSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        "split": component_spec.ExecutionParameter(type=str),
        "custom_config": component_spec.ExecutionParameter(type=str),
    }
    INPUTS = {
        "sequences": component_spec.ChannelParameter(type=standard_artifacts.Examples),
        "model": component_spec.ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {
        "recalls": component_spec.ChannelParameter(type=artifacts.Recalls),
        "report": component_spec.ChannelParameter(type=artifacts.StageReport),
    }


class Recall(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = RecallSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, sequences, model, split: str, custom_config: str):
        super().__init__(
            spec=RecallSpec(
                sequences=sequences,
                model=model,
                split=split,
                custom_config=custom_config,
                recalls=channel_utils.as_channel([artifacts.Recalls()]),
                report=channel_utils.as_channel([artifacts.StageReport()]),
            )
        )
