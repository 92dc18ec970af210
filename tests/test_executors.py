"""Each custom stage's `Executor.Do` as the pipeline wires it, on small artifacts (fast tier).

The components are built as `create_pipeline` builds them, so their exec_properties and channel
keys are the real ones; their output artifacts get folders under tmp_path, and each stage's
outputs are the next one's inputs. What this catches that the pure tests cannot: an executor
reading a key, a property or a split its component does not provide.
"""

from __future__ import annotations

import csv
import json
import os

import pytest
import tensorflow as tf
from conftest import make_outputs
from tfx.types import artifact_utils

from offline_recall.components import common
from offline_recall.components.ingest.component import IngestExampleGen
from offline_recall.components.sequences.component import Sequences
from offline_recall.core import contracts as C
from offline_recall.core.config import Config
from offline_recall.trainer import features as F

# Three users; u2 has one event too few for a holdout; one row lacks its item and one repeats.
ROWS = [
    ("u1", "a", 100),
    ("u1", "b", 200),
    ("u1", "c", 300),
    ("u1", "d", 400),
    ("u2", "a", 150),
    ("u2", "c", 250),
    ("u3", "b", 120),
    ("u3", "", 130),
    ("u3", "c", 140),
    ("u3", "d", 160),
    ("u3", "d", 160),
]


def _do(component, inputs: dict, root) -> dict:
    """Runs the component's executor `Do` in this process; returns its output artifacts."""
    outputs = make_outputs(component, root)
    executor = component.executor_spec.executor_class()
    executor.Do(inputs, outputs, dict(component.exec_properties))
    return outputs


def _records(pattern: str) -> list[tf.train.Example]:
    files = tf.io.gfile.glob(pattern)
    assert files, pattern
    return [
        tf.train.Example.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
    ]


def _bytes(example: tf.train.Example, name: str) -> list[str]:
    return [v.decode() for v in example.features.feature[name].bytes_list.value]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Ingest's and Sequences' Do on a hand-written log, wired as in create_pipeline."""
    root = tmp_path_factory.mktemp("executors")
    log = root / "clicks.csv"
    with open(log, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([F.USER_ID, F.ITEM_ID, F.TIMESTAMP])
        writer.writerows(ROWS)
    config = Config.from_mapping({"ingest": {"max_bad_fraction": 0.5}}, partial=True)
    ingest = IngestExampleGen(input_base=str(log), config=config.ingest)
    ingested = _do(ingest, {}, str(root))
    sequences = Sequences(
        examples=ingest.outputs[C.EXAMPLES_KEY], anomalies=None, params=config.sequences_params()
    )
    built = _do(sequences, {C.EXAMPLES_KEY: ingested[C.EXAMPLES_KEY]}, str(root))
    return ingested, built


def test_ingest_do_writes_examples_quarantine_and_counts(chain):
    ingested, _ = chain
    examples = artifact_utils.get_single_instance(ingested[C.EXAMPLES_KEY])
    assert artifact_utils.decode_split_names(examples.split_names) == [F.INGEST_SPLIT]
    assert examples.get_string_custom_property(C.INPUT_BASE_KEY).endswith("clicks.csv")
    clicks = _records(common.split_files(artifact_utils.get_split_uri([examples], F.INGEST_SPLIT)))
    assert len(clicks) == len(ROWS) - 2
    report = artifact_utils.get_single_uri(ingested[C.REPORT_KEY])
    with tf.io.gfile.GFile(common.summary_path(report)) as f:
        counts = json.load(f)
    assert counts["rows_read"] == len(ROWS)
    assert counts["rows_quarantined"] == 1 and counts["duplicates_dropped"] == 1
    assert counts["rows_valid"] == len(ROWS) - 1
    quarantine = artifact_utils.get_single_uri(ingested[C.QUARANTINE_KEY])
    assert tf.io.gfile.listdir(quarantine), "the quarantined row is kept, not dropped"


def test_sequences_do_reads_ingest_output_and_writes_every_split(chain):
    _, built = chain
    sequences = artifact_utils.get_single_instance(built[C.SEQUENCES_KEY])
    splits = artifact_utils.decode_split_names(sequences.split_names)
    # The defaults refit on the holdout, so the refit split (every event) is written too.
    assert set(splits) == set(F.SEQUENCE_SPLITS) | {F.REFIT_SPLIT}
    serving = {
        _bytes(e, F.USER_ID)[0]: _bytes(e, F.HISTORY)
        for e in _records(
            common.split_files(artifact_utils.get_split_uri([sequences], F.SERVING_SPLIT))
        )
    }
    # Serving histories hold every valid event, oldest first; the duplicate counts once.
    assert serving == {"u1": ["a", "b", "c", "d"], "u2": ["a", "c"], "u3": ["b", "c", "d"]}
    held_out = {
        _bytes(e, F.USER_ID)[0]: _bytes(e, F.LABEL)[0]
        for e in _records(
            common.split_files(artifact_utils.get_split_uri([sequences], F.EVAL_SPLIT))
        )
    }
    # Each user with enough events is held out at their last one; u2 has too few.
    assert held_out == {"u1": "d", "u3": "d"}
    report = artifact_utils.get_single_uri(built[C.REPORT_KEY])
    assert tf.io.gfile.exists(common.summary_path(report))


def test_schema_import_do_writes_the_packaged_schema(tmp_path):
    from offline_recall.components.schema_import.component import PackagedSchemaGen

    for name in ("schema.pbtxt", "sequences.pbtxt"):
        component = PackagedSchemaGen(schema_name=name).with_id(f"Schema{len(name)}")
        schema = artifact_utils.get_single_uri(_do(component, {}, str(tmp_path))[C.SCHEMA_KEY])
        (written,) = tf.io.gfile.listdir(schema)
        with tf.io.gfile.GFile(os.path.join(schema, written)) as f:
            assert "feature" in f.read()


def test_previous_release_do_says_why_none_on_an_empty_output(chain, tmp_path):
    from offline_recall.components.previous_release.component import PreviousRelease
    from offline_recall.core import records

    ingested, _ = chain
    component = PreviousRelease(
        ingest_report=IngestExampleGen(input_base="x", config=Config().ingest).outputs[
            C.REPORT_KEY
        ],
        output_dir=str(tmp_path / "out"),
    )
    out = _do(component, {C.INGEST_REPORT_KEY: ingested[C.REPORT_KEY]}, str(tmp_path))
    model = artifact_utils.get_single_instance(out[C.PREVIOUS_KEY])
    found = records.PreviousRelease.read(records.PreviousRelease.path_in(model.uri))
    assert not found.found and found.why_not
    assert model.get_int_custom_property("found") == 0


def test_publish_do_publishes_a_blessed_run_from_its_artifacts(chain, tmp_path):
    """Publish's Do on hand-made upstream artifacts: Recalls (Parquet), a Model (item vectors, a
    serving-model folder, a train summary), Evaluate's metrics and blessing, Compare's summary,
    and Ingest's real report."""
    import numpy as np
    import pyarrow as pa
    from conftest import make_evaluation, make_train_summary
    from tfx.types import channel_utils, standard_artifacts

    from offline_recall.components import artifacts
    from offline_recall.components.publish.component import Publish
    from offline_recall.core import model_artifact, records, storage
    from offline_recall.trainer import export

    ingested, _ = chain
    root = tmp_path / "upstream"

    def artifact(kind, name):
        made = kind()
        made.uri = str(root / name)
        tf.io.gfile.makedirs(made.uri)
        return [made]

    recalls = artifact(artifacts.Recalls, "recalls")
    for table, rows in (
        (C.RECALLS_DIR, {"user_id": ["u1"], "item_ids": [["b"]], "scores": [[1.5]]}),
        (C.USER_VECTORS_DIR, {"user_id": ["u1"], "vector": [[1.0, 0.5, 1.0]]}),
    ):
        tf.io.gfile.makedirs(os.path.join(recalls[0].uri, table))
        storage.write_parquet(pa.table(rows), os.path.join(recalls[0].uri, table, "p.parquet"))
    model = artifact(standard_artifacts.Model, "model")
    keys = [F.encode_id(i) for i in ("a", "b")]
    model_artifact.write_item_vectors(
        model[0].uri,
        export.item_vectors_table(keys, np.array([[1.0, 0.0], [1.0, 0.5]]), np.zeros(2), {}),
    )
    serving = os.path.join(model[0].uri, C.SERVING_MODEL_DIR, "1")
    tf.io.gfile.makedirs(serving)
    with tf.io.gfile.GFile(os.path.join(serving, "saved_model.pb"), "wb") as f:
        f.write(b"not a real model: Publish only copies it")
    model_artifact.write_train_summary(model[0].uri, make_train_summary())
    metrics = artifact(artifacts.RecallMetrics, "metrics")
    make_evaluation().write(records.Evaluation.path_in(metrics[0].uri))
    blessing = artifact(standard_artifacts.ModelBlessing, "blessing")
    blessing[0].set_int_custom_property(C.BLESSED_PROPERTY, 1)
    comparison = artifact(artifacts.StageReport, "comparison")
    records.CompareSummary.not_compared("a test").write(common.summary_path(comparison[0].uri))

    out = tmp_path / "out"
    config = Config()
    component = Publish(
        comparison=channel_utils.as_channel(comparison),
        recalls=channel_utils.as_channel(recalls),
        model=channel_utils.as_channel(model),
        blessing=channel_utils.as_channel(blessing),
        metrics=channel_utils.as_channel(metrics),
        ingest_report=channel_utils.as_channel(ingested[C.REPORT_KEY]),
        output_dir=str(out),
        input_base="clicks.csv",
        config=config,
        run_id="r1",
    )
    published = _do(
        component,
        {
            C.RECALLS_KEY: recalls,
            C.MODEL_KEY: model,
            C.BLESSING_KEY: blessing,
            C.METRICS_KEY: metrics,
            C.INGEST_REPORT_KEY: ingested[C.REPORT_KEY],
            C.COMPARISON_KEY: comparison,
        },
        str(tmp_path),
    )
    summary = records.PublishSummary.read(
        common.summary_path(artifact_utils.get_single_uri(published[C.RELEASE_KEY]))
    )
    assert summary.published and summary.run_id == "r1" and summary.pointed
    manifest = records.Manifest.read(records.Manifest.path_in(summary.release))
    assert manifest.input == "clicks.csv" and manifest.rows[C.RECALLS_DIR] == 1
    assert manifest.compared_with_previous["why_not"] == "a test"
    assert storage.read_latest(str(out))["release"] == summary.release
