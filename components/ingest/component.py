"""IngestExampleGen: reads a click log, quarantines bad rows, drops duplicates, emits Examples.

A custom ExampleGen because CsvExampleGen reads line by line (it splits quoted newlines) and
cannot quarantine a row; its output is a standard `Examples` artifact (split `clicks`, GZIP
TFRecords of tf.Example), so StatisticsGen and ExampleValidator work on it unchanged.
"""

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components import artifacts
from offline_recall.components.ingest import executor
from offline_recall.core import contracts as C
from offline_recall.core.config import IngestConfig


class IngestExampleGenSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        C.INPUT_BASE_KEY: component_spec.ExecutionParameter(type=str),
        C.CONFIG_KEY: component_spec.ExecutionParameter(type=str),
        # YYYY-MM-DD; empty: the newest day folder (or no end for a single file).
        C.RUN_DATE_KEY: component_spec.ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        C.EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
        C.QUARANTINE_KEY: component_spec.ChannelParameter(type=artifacts.Quarantine),
        C.REPORT_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
    }


class IngestExampleGen(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = IngestExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, input_base: str, config: IngestConfig, run_date=""):
        super().__init__(
            spec=IngestExampleGenSpec(
                input_base=input_base,
                custom_config=config.to_json(),
                run_date=run_date,
                examples=channel_utils.as_channel([standard_artifacts.Examples()]),
                quarantine=channel_utils.as_channel([artifacts.Quarantine()]),
                report=channel_utils.as_channel([artifacts.StageReport()]),
            )
        )
