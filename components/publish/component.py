"""Publish: if blessed, switch OUTPUT/published to this run's tables in one rename; always write
OUTPUT/run_summary.json and OUTPUT/report/."""

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components import artifacts
from offline_recall.components.publish import executor


class PublishSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        "output_dir": component_spec.ExecutionParameter(type=str),
        "input_base": component_spec.ExecutionParameter(type=str),
        "custom_config": component_spec.ExecutionParameter(type=str),
    }
    INPUTS = {
        "recalls": component_spec.ChannelParameter(type=artifacts.Recalls),
        "model": component_spec.ChannelParameter(type=standard_artifacts.Model),
        "blessing": component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing),
        "metrics": component_spec.ChannelParameter(type=artifacts.RecallMetrics),
        "ingest_report": component_spec.ChannelParameter(type=artifacts.StageReport),
        "quarantine": component_spec.ChannelParameter(type=artifacts.Quarantine),
        "sequences_report": component_spec.ChannelParameter(type=artifacts.StageReport),
        "recall_report": component_spec.ChannelParameter(type=artifacts.StageReport),
        "eval_recall_report": component_spec.ChannelParameter(type=artifacts.StageReport),
    }
    OUTPUTS = {
        "release": component_spec.ChannelParameter(type=artifacts.StageReport),
    }


class Publish(base_component.BaseComponent):
    SPEC_CLASS = PublishSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, output_dir: str, input_base: str, custom_config: str, **inputs):
        super().__init__(
            spec=PublishSpec(
                output_dir=output_dir,
                input_base=input_base,
                custom_config=custom_config,
                release=channel_utils.as_channel([artifacts.StageReport()]),
                **inputs,
            )
        )
