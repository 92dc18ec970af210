"""PreviousRelease: the last blessed release of an earlier date, as a Model artifact.

The Trainer warm-starts from it (`base_model`), Evaluate scores it on today's holdout as the
baseline, and Compare measures how today's lists differ from its. Resolving it is a component
of its own, not a lookup inside each consumer, so ML Metadata records which release a run
started from and was judged against, and every consumer sees the same one.
"""

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components import artifacts
from offline_recall.components.previous_release import executor
from offline_recall.core import contracts as C


class PreviousReleaseSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        # The output folder whose releases/ are searched.
        C.OUTPUT_DIR_KEY: component_spec.ExecutionParameter(type=str),
    }
    INPUTS = {
        # Ingest's counts name the run date.
        C.INGEST_REPORT_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
    }
    OUTPUTS = {
        C.PREVIOUS_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
    }


class PreviousRelease(base_component.BaseComponent):
    SPEC_CLASS = PreviousReleaseSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, ingest_report, output_dir: str):
        super().__init__(
            spec=PreviousReleaseSpec(
                ingest_report=ingest_report,
                output_dir=output_dir,
                previous=channel_utils.as_channel([standard_artifacts.Model()]),
            )
        )
