"""`create_pipeline`: the whole offline-recall DAG as a pure function of paths and config."""

from __future__ import annotations

import json
import os

from tfx import v1 as tfx
from tfx.proto import transform_pb2

from offline_recall import schema as schema_package
from offline_recall.components.evaluate.component import Evaluate
from offline_recall.components.ingest.component import IngestExampleGen
from offline_recall.components.publish.component import Publish
from offline_recall.components.recall.component import Recall
from offline_recall.components.sequences.component import Sequences
from offline_recall.trainer import features as F

SCHEMA_DIR = os.path.dirname(os.path.abspath(schema_package.__file__))
CLICKS_SCHEMA = os.path.join(SCHEMA_DIR, "schema.pbtxt")
SEQUENCES_SCHEMA = os.path.join(SCHEMA_DIR, "sequences.pbtxt")
PREPROCESSING_FN = "offline_recall.trainer.preprocessing.preprocessing_fn"
RUN_FN = "offline_recall.trainer.task.run_fn"
REFIT_RUN_FN = "offline_recall.trainer.task.refit_run_fn"

# The order LocalDagRunner runs them in; the CLI numbers its progress lines with it.
STAGES = (
    "IngestExampleGen",
    "StatisticsGen",
    "ImportSchemaGen",
    "ExampleValidator",
    "Sequences",
    "SequencesSchemaGen",
    "Transform",
    "Trainer",
    "RecallEval",
    "Evaluate",
    "Refit",
    "RecallServing",
    "Publish",
)


def stages(config: dict) -> tuple[str, ...]:
    """The stages a run with this config has: Refit only when `trainer.refit_on_holdout`."""
    refit = bool(config.get("trainer", {}).get("refit_on_holdout", False))
    return tuple(s for s in STAGES if refit or s != "Refit")


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    input_base: str,
    output_dir: str,
    config: dict,
    metadata_connection_config=None,
    beam_pipeline_args: list[str] | None = None,
) -> tfx.dsl.Pipeline:
    """Returns the offline-recall pipeline.

    Args:
        pipeline_name: name in ML Metadata (Kubeflow needs [a-z0-9][a-z0-9-]*).
        pipeline_root: where TFX writes artifacts.
        input_base: the click log: one file, or a folder of daily YYYY-MM-DD/ spans.
        output_dir: where `published/`, `run_summary.json` and `report/` go.
        config: the full run config (see pipeline/config.py); each component gets it as
            `custom_config`.
        metadata_connection_config: ML Metadata connection (SQLite for local runs).
        beam_pipeline_args: Beam options (runner, workers...).
    """
    config_json = json.dumps(config, sort_keys=True)
    refit = bool(config["trainer"].get("refit_on_holdout", False))
    ingest = IngestExampleGen(input_base=input_base, custom_config=json.dumps(config["ingest"]))
    statistics = tfx.components.StatisticsGen(examples=ingest.outputs["examples"])
    clicks_schema = tfx.components.ImportSchemaGen(schema_file=CLICKS_SCHEMA)
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=clicks_schema.outputs["schema"]
    )
    sequences = Sequences(
        examples=ingest.outputs["examples"],
        anomalies=validator.outputs["anomalies"],
        custom_config=config_json,
    )
    sequences_schema = tfx.components.ImportSchemaGen(schema_file=SEQUENCES_SCHEMA).with_id(
        "SequencesSchemaGen"
    )
    transform = tfx.components.Transform(
        examples=sequences.outputs["sequences"],
        schema=sequences_schema.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=transform_pb2.SplitsConfig(
            analyze=[F.TRAIN_SPLIT],
            transform=[F.TRAIN_SPLIT, F.EVAL_SPLIT] + ([F.REFIT_SPLIT] if refit else []),
        ),
        # The Estimator builds TF1 graphs; a TF1 transform graph applies inside them.
        force_tf_compat_v1=True,
        custom_config=config,
    )
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        train_args=tfx.proto.TrainArgs(splits=[F.TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[F.EVAL_SPLIT]),
        custom_config=config,
    )
    recall_eval = Recall(
        sequences=sequences.outputs["sequences"],
        model=trainer.outputs["model"],
        split=F.EVAL_SPLIT,
        custom_config=config_json,
    ).with_id("RecallEval")
    evaluate = Evaluate(
        recalls=recall_eval.outputs["recalls"],
        sequences=sequences.outputs["sequences"],
        model=trainer.outputs["model"],
        custom_config=config_json,
        published_dir=os.path.join(output_dir, "published"),
    )
    serving_model = trainer.outputs["model"]
    refit_nodes = []
    if refit:
        # Refit on every event once the fit is judged: the holdout has done its job (early
        # stopping and blessing), and the published model should know each user's latest event.
        refitter = tfx.components.Trainer(
            run_fn=REFIT_RUN_FN,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            base_model=trainer.outputs["model"],
            train_args=tfx.proto.TrainArgs(splits=[F.REFIT_SPLIT]),
            eval_args=tfx.proto.EvalArgs(splits=[F.EVAL_SPLIT]),
            custom_config=config,
        ).with_id("Refit")
        # Not a data dependency (Trainer takes no blessing), but the refit belongs after Evaluate.
        refitter.add_upstream_node(evaluate)
        serving_model = refitter.outputs["model"]
        refit_nodes = [refitter]
    recall_serving = Recall(
        sequences=sequences.outputs["sequences"],
        model=serving_model,
        split=F.SERVING_SPLIT,
        custom_config=config_json,
    ).with_id("RecallServing")
    publish = Publish(
        output_dir=output_dir,
        input_base=input_base,
        custom_config=config_json,
        recalls=recall_serving.outputs["recalls"],
        model=serving_model,
        blessing=evaluate.outputs["blessing"],
        metrics=evaluate.outputs["metrics"],
        ingest_report=ingest.outputs["report"],
        quarantine=ingest.outputs["quarantine"],
        sequences_report=sequences.outputs["report"],
        recall_report=recall_serving.outputs["report"],
        eval_recall_report=recall_eval.outputs["report"],
    )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[
            ingest,
            statistics,
            clicks_schema,
            validator,
            sequences,
            sequences_schema,
            transform,
            trainer,
            recall_eval,
            evaluate,
            *refit_nodes,
            recall_serving,
            publish,
        ],
        enable_cache=False,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
