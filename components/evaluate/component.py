"""Evaluate: holdout metrics of the eval recalls, the popularity and previous-release baselines
on the same holdout, and the blessing."""

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts
from tfx.types.experimental import simple_artifacts

from offline_recall.components import artifacts
from offline_recall.components.evaluate import executor
from offline_recall.core import contracts as C
from offline_recall.core.config import EvaluateConfig


class EvaluateSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        C.CONFIG_KEY: component_spec.ExecutionParameter(type=str),
    }
    INPUTS = {
        C.RECALLS_KEY: component_spec.ChannelParameter(type=artifacts.Recalls),
        C.SEQUENCES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
        C.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
        # The baseline: the previous release's model, scored on the same holdout.
        C.PREVIOUS_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {
        C.METRICS_KEY: component_spec.ChannelParameter(type=artifacts.RecallMetrics),
        C.BLESSING_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing),
        C.SCALAR_METRICS_KEY: component_spec.ChannelParameter(type=simple_artifacts.Metrics),
    }


class Evaluate(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = EvaluateSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, recalls, sequences, model, previous, config: EvaluateConfig):
        super().__init__(
            spec=EvaluateSpec(
                recalls=recalls,
                sequences=sequences,
                model=model,
                previous=previous,
                custom_config=config.to_json(),
                metrics=channel_utils.as_channel([artifacts.RecallMetrics()]),
                blessing=channel_utils.as_channel([standard_artifacts.ModelBlessing()]),
                scalar_metrics=channel_utils.as_channel([simple_artifacts.Metrics()]),
            )
        )
