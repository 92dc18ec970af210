"""`create_pipeline`: the whole offline-recall DAG as a pure function of paths and config."""

from __future__ import annotations

from tfx import v1 as tfx
from tfx.proto import transform_pb2
from tfx.types import standard_component_specs as specs

from offline_recall.components.compare.component import Compare
from offline_recall.components.evaluate.component import Evaluate
from offline_recall.components.ingest.component import IngestExampleGen
from offline_recall.components.previous_release.component import PreviousRelease
from offline_recall.components.publish.component import Publish
from offline_recall.components.recall.component import Recall
from offline_recall.components.report.component import Report
from offline_recall.components.schema_import.component import PackagedSchemaGen
from offline_recall.components.sequences.component import Sequences
from offline_recall.core import contracts as C
from offline_recall.core.config import Config
from offline_recall.trainer import features as F

# The schemas the package ships (schema/), by name.
CLICKS_SCHEMA = "schema.pbtxt"
SEQUENCES_SCHEMA = "sequences.pbtxt"
PREPROCESSING_FN = "offline_recall.trainer.preprocessing.preprocessing_fn"
RUN_FN = "offline_recall.trainer.task.run_fn"
REFIT_RUN_FN = "offline_recall.trainer.task.refit_run_fn"

# The stages in the order they run; the CLI numbers its progress lines with it.
STAGES = (
    "IngestExampleGen",
    "PreviousRelease",
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
    "Compare",
    "Publish",
    "Report",
)


def stages(config: Config) -> tuple[str, ...]:
    """The stages a run with this config has: Refit only when `trainer.refit_on_holdout`."""
    return tuple(s for s in STAGES if config.trainer.refit_on_holdout or s != "Refit")


def create_pipeline(
    *,
    pipeline_root: str,
    input_base: str,
    output_dir: str,
    config: Config,
    metadata_connection_config=None,
    beam_pipeline_args: list[str] | None = None,
    run_id: str = "",
    input_note: str = "",
    run_date="",
) -> tfx.dsl.Pipeline:
    """Returns the offline-recall pipeline.

    Args:
        pipeline_root: where TFX writes artifacts.
        input_base: the click log: one file, or a folder of daily YYYY-MM-DD/ spans.
        output_dir: where `published/`, `run_summary.json` and `report/` go.
        config: the run config; each component gets its own section.
        metadata_connection_config: ML Metadata connection (SQLite for local runs).
        beam_pipeline_args: Beam options (runner, workers...).
        run_id: the name of the release a blessed run publishes; empty = one from the clock
            when Publish runs.
        input_note: what the input is, in words, for the manifest (the synthetic log).
        run_date: YYYY-MM-DD (a str or a RuntimeParameter); empty: the newest day folder.
    """
    refit = config.trainer.refit_on_holdout
    ingest = IngestExampleGen(input_base=input_base, config=config.ingest, run_date=run_date)
    # The last blessed release of an earlier date: warm start, baseline and churn all use it.
    previous = PreviousRelease(ingest_report=ingest.outputs[C.REPORT_KEY], output_dir=output_dir)
    statistics = tfx.components.StatisticsGen(examples=ingest.outputs[C.EXAMPLES_KEY])
    clicks_schema = PackagedSchemaGen(schema_name=CLICKS_SCHEMA).with_id("ImportSchemaGen")
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs[specs.STATISTICS_KEY],
        schema=clicks_schema.outputs[C.SCHEMA_KEY],
    )
    sequences = Sequences(
        examples=ingest.outputs[C.EXAMPLES_KEY],
        anomalies=validator.outputs[specs.ANOMALIES_KEY],
        params=config.sequences_params(),
    )
    sequences_schema = PackagedSchemaGen(schema_name=SEQUENCES_SCHEMA).with_id("SequencesSchemaGen")
    transform = tfx.components.Transform(
        examples=sequences.outputs[C.SEQUENCES_KEY],
        schema=sequences_schema.outputs[C.SCHEMA_KEY],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=transform_pb2.SplitsConfig(
            analyze=[F.TRAIN_SPLIT],
            transform=[F.TRAIN_SPLIT, F.EVAL_SPLIT] + ([F.REFIT_SPLIT] if refit else []),
        ),
        # The Estimator builds TF1 graphs; a TF1 transform graph applies inside them.
        force_tf_compat_v1=True,
        custom_config=config.preprocessing_params().to_dict(),
    )
    trainer_params = config.trainer_params().to_dict()
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs[specs.TRANSFORMED_EXAMPLES_KEY],
        transform_graph=transform.outputs[specs.TRANSFORM_GRAPH_KEY],
        # TFX's warm-start input: trainer.warm_start starts from it when it holds a model.
        base_model=previous.outputs[C.PREVIOUS_KEY],
        train_args=tfx.proto.TrainArgs(splits=[F.TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[F.EVAL_SPLIT]),
        custom_config=trainer_params,
    )
    recall_eval = Recall(
        sequences=sequences.outputs[C.SEQUENCES_KEY],
        model=trainer.outputs[C.MODEL_KEY],
        split=F.EVAL_SPLIT,
        config=config.recall,
        # Scoring a user costs a pass over the catalog: the holdout is a sample, as in training.
        max_users=config.evaluate.max_users,
    ).with_id("RecallEval")
    evaluate = Evaluate(
        recalls=recall_eval.outputs[C.RECALLS_KEY],
        sequences=sequences.outputs[C.SEQUENCES_KEY],
        model=trainer.outputs[C.MODEL_KEY],
        previous=previous.outputs[C.PREVIOUS_KEY],
        config=config.evaluate,
    )
    serving_model = trainer.outputs[C.MODEL_KEY]
    refit_nodes = []
    if refit:
        # Refit on every event once the fit is judged: the holdout has done its job (early
        # stopping and blessing), and the published model should know each user's latest event.
        refitter = tfx.components.Trainer(
            run_fn=REFIT_RUN_FN,
            examples=transform.outputs[specs.TRANSFORMED_EXAMPLES_KEY],
            transform_graph=transform.outputs[specs.TRANSFORM_GRAPH_KEY],
            base_model=trainer.outputs[C.MODEL_KEY],
            train_args=tfx.proto.TrainArgs(splits=[F.REFIT_SPLIT]),
            eval_args=tfx.proto.EvalArgs(splits=[F.EVAL_SPLIT]),
            custom_config=trainer_params,
        ).with_id("Refit")
        # Not a data dependency (Trainer takes no blessing), but the refit belongs after Evaluate.
        refitter.add_upstream_node(evaluate)
        serving_model = refitter.outputs[C.MODEL_KEY]
        refit_nodes = [refitter]
    recall_serving = Recall(
        sequences=sequences.outputs[C.SEQUENCES_KEY],
        model=serving_model,
        split=F.SERVING_SPLIT,
        config=config.recall,
    ).with_id("RecallServing")
    compare = Compare(
        recalls=recall_serving.outputs[C.RECALLS_KEY],
        model=serving_model,
        previous=previous.outputs[C.PREVIOUS_KEY],
        metrics=evaluate.outputs[C.METRICS_KEY],
    )
    publish = Publish(
        comparison=compare.outputs[C.COMPARISON_KEY],
        recalls=recall_serving.outputs[C.RECALLS_KEY],
        model=serving_model,
        blessing=evaluate.outputs[C.BLESSING_KEY],
        metrics=evaluate.outputs[C.METRICS_KEY],
        ingest_report=ingest.outputs[C.REPORT_KEY],
        output_dir=output_dir,
        input_base=input_base,
        config=config,
        run_id=run_id,
        input_note=input_note,
    )
    report = Report(
        output_dir=output_dir,
        input_base=input_base,
        **{
            C.INGEST_REPORT_KEY: ingest.outputs[C.REPORT_KEY],
            C.QUARANTINE_KEY: ingest.outputs[C.QUARANTINE_KEY],
            C.SEQUENCES_REPORT_KEY: sequences.outputs[C.REPORT_KEY],
            C.MODEL_KEY: serving_model,
            C.EVAL_RECALL_REPORT_KEY: recall_eval.outputs[C.REPORT_KEY],
            C.METRICS_KEY: evaluate.outputs[C.METRICS_KEY],
            C.SERVING_RECALL_REPORT_KEY: recall_serving.outputs[C.REPORT_KEY],
            C.RECALLS_KEY: recall_serving.outputs[C.RECALLS_KEY],
            C.RELEASE_KEY: publish.outputs[C.RELEASE_KEY],
            C.COMPARISON_KEY: compare.outputs[C.COMPARISON_KEY],
        },
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root,
        components=[
            ingest,
            previous,
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
            compare,
            publish,
            report,
        ],
        enable_cache=False,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
