"""Recall: exact top-N per user over the trained item vectors (a numba top-N selection over
blocked SGEMMs, visited items excluded; `exact.py`), optionally over item shards.

The pipeline runs it twice with the same code: on `eval` histories (what Evaluate scores) and on
`serving` histories (what Publish publishes).
"""

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from offline_recall.components import artifacts
from offline_recall.components.recall import executor
from offline_recall.core import contracts as C
from offline_recall.core.config import RecallConfig


class RecallSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        C.SPLIT_KEY: component_spec.ExecutionParameter(type=str),
        C.CONFIG_KEY: component_spec.ExecutionParameter(type=str),
        C.MAX_USERS_KEY: component_spec.ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        C.SEQUENCES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
        C.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {
        C.RECALLS_KEY: component_spec.ChannelParameter(type=artifacts.Recalls),
        C.REPORT_KEY: component_spec.ChannelParameter(type=artifacts.StageReport),
    }


class Recall(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = RecallSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self, sequences, model, split: str, config: RecallConfig, max_users: int | None = None
    ):
        """Args:
        sequences: Sequences' Examples (the split's history examples).
        model: the Trainer's Model.
        split: the split to recall.
        config: the `recall` section.
        max_users: recall only a stable sample of this many of the split's users
            (`logic.SampleUsers`); None = every user, as serving needs.
        """
        super().__init__(
            spec=RecallSpec(
                sequences=sequences,
                model=model,
                split=split,
                custom_config=config.to_json(),
                max_users=max_users,
                recalls=channel_utils.as_channel([artifacts.Recalls()]),
                report=channel_utils.as_channel([artifacts.StageReport()]),
            )
        )
