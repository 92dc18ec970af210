"""Report: OUTPUT/run_summary.json and OUTPUT/report/ from every stage's counts, after Publish.

It runs whether or not the run was blessed, so an unblessed run is explained too.
"""

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components import artifacts
from offline_recall.components.report import executor
from offline_recall.core import contracts as C


class ReportSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        C.OUTPUT_DIR_KEY: component_spec.ExecutionParameter(type=str),
        C.INPUT_BASE_KEY: component_spec.ExecutionParameter(type=str),
    }
    INPUTS = {
        C.INGEST_REPORT_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
        C.QUARANTINE_KEY: component_spec.ChannelParameter(type=artifacts.Quarantine),
        C.SEQUENCES_REPORT_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
        C.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
        C.EVAL_RECALL_REPORT_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
        C.METRICS_KEY: component_spec.ChannelParameter(type=artifacts.RecallMetrics),
        C.SERVING_RECALL_REPORT_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
        C.RECALLS_KEY: component_spec.ChannelParameter(type=artifacts.Recalls),
        C.RELEASE_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
        C.COMPARISON_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
    }
    OUTPUTS = {
        # The run summary again, as an artifact: the run's account in ML Metadata's lineage.
        C.REPORT_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
    }


class Report(base_component.BaseComponent):
    SPEC_CLASS = ReportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, output_dir: str, input_base: str, **stage_outputs):
        """`stage_outputs`: one channel per ReportSpec input key."""
        super().__init__(
            spec=ReportSpec(
                output_dir=output_dir,
                input_base=input_base,
                report=channel_utils.as_channel([artifacts.StageReport()]),
                **stage_outputs,
            )
        )
