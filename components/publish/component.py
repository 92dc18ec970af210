"""Publish: the blessing gate and the atomic switch. A blessed run's tables become a release and
OUTPUT/published points to it, switched in one rename; an unblessed run changes nothing."""

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components import artifacts
from offline_recall.components.publish import executor
from offline_recall.core import contracts as C
from offline_recall.core.config import Config


class PublishSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        C.OUTPUT_DIR_KEY: component_spec.ExecutionParameter(type=str),
        C.INPUT_BASE_KEY: component_spec.ExecutionParameter(type=str),
        C.CONFIG_KEY: component_spec.ExecutionParameter(type=str),
        C.RUN_CONFIG_KEY: component_spec.ExecutionParameter(type=str),
        # The release's name: the run id the caller printed; empty = one from the clock.
        C.RUN_ID_KEY: component_spec.ExecutionParameter(type=str, optional=True),
        # What the input is, in words, when the path does not say (the built-in synthetic log).
        C.INPUT_NOTE_KEY: component_spec.ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        C.RECALLS_KEY: component_spec.ChannelParameter(type=artifacts.Recalls),
        C.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
        C.BLESSING_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing),
        C.METRICS_KEY: component_spec.ChannelParameter(type=artifacts.RecallMetrics),
        # Ingest's counts: the spans the release was built from go into its manifest.
        C.INGEST_REPORT_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
        # Compare's account of today against the previous release, for the manifest.
        C.COMPARISON_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
    }
    OUTPUTS = {
        C.RELEASE_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
    }


class Publish(base_component.BaseComponent):
    SPEC_CLASS = PublishSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        *,
        recalls,
        model,
        blessing,
        metrics,
        ingest_report,
        comparison,
        output_dir: str,
        input_base: str,
        config: Config,
        run_id: str = "",
        input_note: str = "",
    ):
        """`config` is the whole run's: Publish reads its `publish` section and records the
        rest in the release's manifest."""
        super().__init__(
            spec=PublishSpec(
                recalls=recalls,
                model=model,
                blessing=blessing,
                metrics=metrics,
                ingest_report=ingest_report,
                comparison=comparison,
                output_dir=output_dir,
                input_base=input_base,
                custom_config=config.publish.to_json(),
                run_config=config.to_json(),
                run_id=run_id,
                input_note=input_note,
                release=channel_utils.as_channel([artifacts.StageReport()]),
            )
        )
