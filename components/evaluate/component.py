"""Evaluate: holdout metrics of the eval recalls, a popularity baseline, and the blessing."""

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components import artifacts
from offline_recall.components.evaluate import executor


class EvaluateSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        "custom_config": component_spec.ExecutionParameter(type=str),
        # Where the last published set lives, to refuse a regression against it.
        "published_dir": component_spec.ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "recalls": component_spec.ChannelParameter(type=artifacts.Recalls),
        "sequences": component_spec.ChannelParameter(type=standard_artifacts.Examples),
        "model": component_spec.ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {
        "metrics": component_spec.ChannelParameter(type=artifacts.RecallMetrics),
        "blessing": component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class Evaluate(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = EvaluateSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, recalls, sequences, model, custom_config: str, published_dir: str = ""):
        super().__init__(
            spec=EvaluateSpec(
                recalls=recalls,
                sequences=sequences,
                model=model,
                custom_config=custom_config,
                published_dir=published_dir,
                metrics=channel_utils.as_channel([artifacts.RecallMetrics()]),
                blessing=channel_utils.as_channel([standard_artifacts.ModelBlessing()]),
            )
        )
