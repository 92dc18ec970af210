"""Every stage's `Executor.Do` in DAG order, as `create_pipeline` wires it (fast tier).

The components come from `create_pipeline` itself, so their channels, exec_properties and output
keys are the real ones. Each executor runs in this process on a small synthetic log, its inputs
the upstream artifacts its channels name, its exec_properties serialised as TFX's launchers
serialise them (protos and dicts as JSON). No orchestrator and no ML Metadata: what this catches
that the pure tests cannot is an executor reading a key, a property or a split its component does
not provide, or writing what the next stage cannot read, and it does so in under a minute.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from conftest import make_outputs
from google.protobuf import message
from tensorflow.python.framework import config as tf_config
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import json_utils, proto_utils

from offline_recall.components import common
from offline_recall.core import contracts as C
from offline_recall.core import model_artifact, records, storage
from offline_recall.core.config import Config
from offline_recall.pipeline import pipeline as pipeline_lib
from offline_recall.pipeline import synthetic

# The smallest run in which every stage has something to do: a trained, blessed, refit model.
TINY = {
    "synthetic": {
        "seed": 3,
        "num_users": 60,
        "num_items": 80,
        "num_clusters": 6,
        "mean_events_per_user": 8,
        "days": 1,
    },
    "trainer": {
        "epochs": 2,
        "eval_every_epochs": 1,
        "early_stopping_patience": 1,
        "embedding_dim": 8,
        "num_blocks": 1,
        "refit_epochs": 1,
        # The item-item blend, off by default, on here so that its export path runs.
        "item_item_weights": [0.1, 0.3, 1.0],
        "item_item_rank": 16,
    },
    "recall": {"top_n": 50},
    "evaluate": {"ks": [10, 50], "min_ratio_to_popularity": 0.0},
    "ingest": {"max_bad_fraction": 0.05},
}


def _serialised(value):
    """An exec property as a launcher hands it to `Do`: protos and containers as JSON."""
    if isinstance(value, message.Message):
        return proto_utils.proto_to_json(value)
    if isinstance(value, dict | list):
        return json_utils.dumps(value)
    return value


def _run_in_process(pipeline, root: str) -> dict:
    """Runs every component's Do in order; returns {component id: {output key: artifacts}}."""
    produced: dict[str, dict] = {}
    for component in pipeline.components:
        inputs = {}
        for key, channel in component.inputs.items():
            upstream = produced[channel.producer_component_id][channel.output_key]
            inputs[key] = upstream
        outputs = make_outputs(component, root)
        properties = {k: _serialised(v) for k, v in component.exec_properties.items()}
        context = base_beam_executor.BaseBeamExecutor.Context(
            beam_pipeline_args=["--direct_num_workers=1"],
            tmp_dir=os.path.join(root, component.id, ".temp") + "/",
            unique_id=component.id,
        )
        executor = component.executor_spec.executor_class(context)
        executor.Do(inputs, outputs, properties)
        produced[component.id] = outputs
    return produced


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dag"))
    config = Config.from_mapping(TINY, partial=True)
    log = os.path.join(root, "clicks.csv")
    synthetic.generate_clicks(log, config.synthetic)
    output_dir = os.path.join(root, "out")
    pipeline = pipeline_lib.create_pipeline(
        pipeline_root=os.path.join(root, "tfx"),
        input_base=log,
        output_dir=output_dir,
        config=config,
        run_id="r1",
    )
    assert sorted(c.id for c in pipeline.components) == sorted(pipeline_lib.stages(config))
    determinism = tf_config.is_op_determinism_enabled()
    try:
        yield _run_in_process(pipeline, os.path.join(root, "artifacts")), output_dir, config
    finally:
        # The trainer turns TensorFlow's op determinism on for its process, which is this one:
        # other tests build unseeded graphs.
        if not determinism:
            tf_config.disable_op_determinism()


def test_every_stage_runs_and_the_run_publishes(dag):
    produced, output_dir, _ = dag
    release = artifact_utils.get_single_uri(produced["Publish"][C.RELEASE_KEY])
    summary = records.PublishSummary.read(common.summary_path(release))
    assert summary.published and summary.run_id == "r1", summary
    assert storage.read_latest(output_dir)["release"] == summary.release
    manifest = records.Manifest.read(records.Manifest.path_in(summary.release))
    assert manifest.rows[C.RECALLS_DIR] > 0


def test_evaluate_scores_the_eval_recalls_and_blesses(dag):
    produced, _, config = dag
    metrics = artifact_utils.get_single_uri(produced["Evaluate"][C.METRICS_KEY])
    evaluation = records.Evaluation.read(records.Evaluation.path_in(metrics))
    assert evaluation.blessed
    assert set(evaluation.ks) == set(config.evaluate.ks)
    blessing = artifact_utils.get_single_instance(produced["Evaluate"][C.BLESSING_KEY])
    assert blessing.get_int_custom_property(C.BLESSED_PROPERTY) == 1


def test_the_refit_model_is_the_one_served_and_published(dag):
    produced, _, _ = dag
    refit = artifact_utils.get_single_uri(produced["Refit"][C.MODEL_KEY])
    facts = model_artifact.read_train_summary(refit).refit
    assert facts is not None
    # `refit_lr_decay: auto` says what it chose from the refit split, and why.
    assert facts.lr_decay_rule.startswith("auto: ")
    assert facts.lr_decay_rule.endswith("so true" if facts.lr_decay else "so false")
    assert model_artifact.has_serving_model(refit)
    served = artifact_utils.get_single_instance(produced["Compare"][C.COMPARISON_KEY])
    assert served.uri  # Compare ran on the refit model's recalls
    release = storage.read_latest(dag[1])["release"]
    published = pq.read_table(
        storage.parquet_files(os.path.join(release, C.ITEM_VECTORS_DIR)),
        columns=[C.ITEM_ID_COLUMN, C.VECTOR_COLUMN],
    ).to_pydict()
    published = dict(zip(published[C.ITEM_ID_COLUMN], published[C.VECTOR_COLUMN], strict=True))
    fit = artifact_utils.get_single_uri(produced["Trainer"][C.MODEL_KEY])
    for model, served in ((refit, True), (fit, False)):
        ids, vectors, _ = model_artifact.read_item_vectors(model)
        same = all(np.allclose(published[i], v) for i, v in zip(ids, vectors, strict=True))
        assert same == served, model


def test_the_item_item_blend_reaches_the_served_vectors(dag):
    produced, _, config = dag
    fit = model_artifact.read_train_summary(
        artifact_utils.get_single_uri(produced["Trainer"][C.MODEL_KEY])
    )
    refit_uri = artifact_utils.get_single_uri(produced["Refit"][C.MODEL_KEY])
    refit = model_artifact.read_train_summary(refit_uri)
    # On this log the holdout takes a weight (the run is seeded, so it always does).
    assert fit.item_item["used"] and fit.item_item["weight"] > 0, fit.item_item
    assert set(fit.item_item["holdout_ndcg10"]) == {"0.0", "0.1", "0.3", "1.0"}
    assert refit.item_item["used"] and refit.item_item["weight"] == fit.item_item["weight"]
    width = config.trainer.ensemble_size * config.trainer.embedding_dim + 16 + 1
    _, vectors, _ = model_artifact.read_item_vectors(refit_uri)
    assert vectors.shape[1] == width
    release = storage.read_latest(dag[1])["release"]
    users = pq.read_table(
        storage.parquet_files(os.path.join(release, C.USER_VECTORS_DIR)), columns=[C.VECTOR_COLUMN]
    ).column(C.VECTOR_COLUMN)
    assert {len(v) for v in users.to_pylist()} == {width}


def test_the_report_is_written(dag):
    produced, output_dir, _ = dag
    assert tf.io.gfile.exists(os.path.join(output_dir, C.REPORT_DIR, C.REPORT_PAGE))
    summary = records.RunSummary.read(records.RunSummary.path_in(output_dir))
    assert summary.ingest.rows_read > 0
    assert summary.sequences.refit_examples is not None and summary.trainer.refit is not None
    # The Report artifact's record is the same run summary.
    report = artifact_utils.get_single_uri(produced["Report"][C.REPORT_KEY])
    assert records.RunSummary.read(common.summary_path(report)) == summary
