"""Sequences: per-user time-ordered histories -> train / eval / serving Examples."""

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components import artifacts
from offline_recall.components.sequences import executor
from offline_recall.core import contracts as C
from offline_recall.core.config import SequencesParams


class SequencesSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        C.CONFIG_KEY: component_spec.ExecutionParameter(type=str),
    }
    INPUTS = {
        C.EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
        # ExampleValidator's output: the run stops here when ingest broke the schema.
        C.ANOMALIES_KEY: component_spec.ChannelParameter(
            type=standard_artifacts.ExampleAnomalies, optional=True
        ),
    }
    OUTPUTS = {
        C.SEQUENCES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
        C.REPORT_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
    }


class Sequences(base_beam_component.BaseBeamComponent):
    """Builds histories and the train / eval / serving splits from ingest's click Examples."""

    SPEC_CLASS = SequencesSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples, params: SequencesParams, anomalies=None):
        super().__init__(
            spec=SequencesSpec(
                examples=examples,
                anomalies=anomalies,
                custom_config=params.to_json(),
                sequences=channel_utils.as_channel([standard_artifacts.Examples()]),
                report=channel_utils.as_channel([artifacts.StageReport()]),
            )
        )
