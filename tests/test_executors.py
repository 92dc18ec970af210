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


def _outputs(component, root) -> dict:
    """A fresh artifact per output channel, each in its own folder under `root`."""
    outputs = {}
    for key, channel in component.outputs.items():
        artifact = channel.type()
        artifact.uri = os.path.join(root, component.id, key)
        tf.io.gfile.makedirs(artifact.uri)
        outputs[key] = [artifact]
    return outputs


def _do(component, inputs: dict, root) -> dict:
    """Runs the component's executor `Do` in this process; returns its output artifacts."""
    outputs = _outputs(component, root)
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
    clicks = _records(common.split_pattern(examples.uri, F.INGEST_SPLIT))
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
    assert set(splits) == set(F.SEQUENCE_SPLITS)
    serving = {
        _bytes(e, F.USER_ID)[0]: _bytes(e, F.HISTORY)
        for e in _records(common.split_pattern(sequences.uri, F.SERVING_SPLIT))
    }
    # Serving histories hold every valid event, oldest first; the duplicate counts once.
    assert serving == {"u1": ["a", "b", "c", "d"], "u2": ["a", "c"], "u3": ["b", "c", "d"]}
    held_out = {
        _bytes(e, F.USER_ID)[0]: _bytes(e, F.LABEL)[0]
        for e in _records(common.split_pattern(sequences.uri, F.EVAL_SPLIT))
    }
    # Each user with enough events is held out at their last one; u2 has too few.
    assert held_out == {"u1": "d", "u3": "d"}
    report = artifact_utils.get_single_uri(built[C.REPORT_KEY])
    assert tf.io.gfile.exists(common.summary_path(report))
