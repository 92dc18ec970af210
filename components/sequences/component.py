"""Sequences: per-user time-ordered histories -> train / eval / serving Examples."""

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components import artifacts
from offline_recall.components.sequences import executor


class SequencesSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        "custom_config": component_spec.ExecutionParameter(type=str),
    }
    INPUTS = {
        "examples": component_spec.ChannelParameter(type=standard_artifacts.Examples),
        # ExampleValidator's output: the run stops here when ingest broke the schema.
        "anomalies": component_spec.ChannelParameter(
            type=standard_artifacts.ExampleAnomalies, optional=True
        ),
    }
    OUTPUTS = {
        "sequences": component_spec.ChannelParameter(type=standard_artifacts.Examples),
        "report": component_spec.ChannelParameter(type=artifacts.StageReport),
    }


class Sequences(base_beam_component.BaseBeamComponent):
    """Builds histories and the train / eval / serving splits from ingest's click Examples."""

    SPEC_CLASS = SequencesSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples, custom_config: str, anomalies=None):
        super().__init__(
            spec=SequencesSpec(
                examples=examples,
                anomalies=anomalies,
                custom_config=custom_config,
                sequences=channel_utils.as_channel([standard_artifacts.Examples()]),
                report=channel_utils.as_channel([artifacts.StageReport()]),
            )
        )
