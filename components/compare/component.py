"""Compare: today's serving recalls against the previous release's, before Publish.

Records what a reviewer of a daily job asks first: how today's model scores against the previous
release's on the same holdout, how many users' lists changed (Jaccard churn of each top-N), and
which items are new to the catalog and whether any were recalled. Publish writes it into the
release's manifest; Report shows it.
"""

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components import artifacts
from offline_recall.components.compare import executor
from offline_recall.core import contracts as C


class CompareSpec(component_spec.ComponentSpec):
    PARAMETERS = {}
    INPUTS = {
        C.RECALLS_KEY: component_spec.ChannelParameter(type=artifacts.Recalls),
        C.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
        C.PREVIOUS_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
        C.METRICS_KEY: component_spec.ChannelParameter(type=artifacts.RecallMetrics),
    }
    OUTPUTS = {
        C.COMPARISON_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
    }


class Compare(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = CompareSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, *, recalls, model, previous, metrics):
        super().__init__(
            spec=CompareSpec(
                recalls=recalls,
                model=model,
                previous=previous,
                metrics=metrics,
                comparison=channel_utils.as_channel([artifacts.StageReport()]),
            )
        )
