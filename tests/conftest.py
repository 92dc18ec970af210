"""Fixtures the test modules share: awkward ids, the CLI as a subprocess, small run configs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Ids a CSV export and a vocabulary file both get wrong: delimiters, quotes, a tab, CR LF and LF
# line breaks, non-ASCII. Each holds exactly one line break (the CRLF item one CR and one LF), so
# a CSV row holding both spans three physical lines.
AWKWARD_USER = 'user, "quoted"\nwith newline \u00e9'
AWKWARD_ITEM = 'item,\t"tab" \u5546\u54c1\r\nline'


@pytest.fixture(scope="session")
def awkward_user() -> str:
    return AWKWARD_USER


@pytest.fixture(scope="session")
def awkward_item() -> str:
    return AWKWARD_ITEM


@pytest.fixture(scope="session")
def awkward_ids() -> list[bytes]:
    """Raw ids, as bytes, that vocabulary keys must round-trip byte for byte."""
    return [
        b"plain",
        b"with,comma",
        b'with "quotes"',
        b"with\nnewline",
        b"with\r\ncrlf",
        b"tab\there",
        b" leading and trailing ",
        "caf\u00e9 \u5546\u54c1".encode(),
        b"%41",
        b"=",
        b"a" * 256,
        AWKWARD_USER.encode(),
        AWKWARD_ITEM.encode(),
    ]


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Runs `offline-recall ARGS` as a user would, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "offline_recall.pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def cli():
    return run_cli


# The log the end-to-end runs read: big enough a catalog that HR@50 tells a trained model (about
# 0.55) from popularity (0.15) and from an untrained one (0.10).
SMALL_LOG = {
    "seed": 3,
    "num_users": 200,
    "num_items": 400,
    "num_clusters": 20,
    "mean_events_per_user": 15,
}

# A config small enough for an end-to-end run in under a minute on 2 cores. Recall lists are as
# long as the blessing K, so the blessing metric (HR@50) is a real one.
SMALL_RUN = {
    "synthetic": SMALL_LOG,
    "trainer": {
        "epochs": 30,
        "eval_every_epochs": 10,
        "early_stopping_patience": 1,
        "embedding_dim": 16,
        "num_blocks": 1,
        "learning_rate": 0.01,
        "refit_on_holdout": True,
        "refit_epochs": 1,
    },
    "recall": {"top_n": 50},
    # Blessing thresholds off: the tests that need them set them.
    "evaluate": {"ks": [5, 10, 50], "min_ratio_to_popularity": 0.0},
    "ingest": {"max_bad_fraction": 0.05},
}


def write_small_config(path, **sections) -> str:
    """Writes SMALL_RUN with `sections` merged over it (key by key) as JSON; returns the path."""
    config = json.loads(json.dumps(SMALL_RUN))
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path.write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="session")
def small_config():
    return write_small_config


@pytest.fixture(scope="session")
def small_log() -> dict:
    return dict(SMALL_LOG)


def write_torn_parquet(path, rows: int = 20000) -> None:
    """A Parquet file whose footer is intact but a page in the middle is scribbled over."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {
                "user_id": [f"u{i % 9}" for i in range(rows)],
                "item_id": [f"i{i % 50}" for i in range(rows)],
                "timestamp": list(range(1_600_000_000, 1_600_000_000 + rows)),
            }
        ),
        path,
        row_group_size=2000,
    )
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 4000] = b"\x55" * 4000
    path.write_bytes(bytes(data))


def write_corrupt_tfrecord(path, records: int = 200) -> None:
    """A TFRecord file of clicks with one byte flipped mid-file: a CRC mismatch there."""
    import tensorflow as tf

    from offline_recall.components import common

    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(records):
            writer.write(
                common.make_example(
                    {"user_id": [f"u{i % 9}".encode()], "item_id": [f"i{i % 50}".encode()]},
                    {"timestamp": [1_600_000_000 + i]},
                ).SerializeToString()
            )
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="session")
def broken_files():
    """Writers of files that break off mid-way: torn_parquet(path), corrupt_tfrecord(path)."""
    import types

    return types.SimpleNamespace(
        torn_parquet=write_torn_parquet, corrupt_tfrecord=write_corrupt_tfrecord
    )


def make_evaluation(
    hr: float = 0.5, ks=(50,), blessed: bool = True, baseline_hr: float | None = None
):
    """A valid metrics.json record: hr@K = `hr` at every K, ndcg half of it, 4 users."""
    from offline_recall.core import records
    from offline_recall.core.contracts import metric_key

    model, popularity, baseline = {"users": 4}, {"users": 4}, {}
    for k in ks:
        model.update({metric_key("hr", k): hr, metric_key("ndcg", k): hr / 2})
        model.update({metric_key("recall", k): hr, metric_key("coverage", k): 0.5})
        popularity.update({metric_key("hr", k): 0.1, metric_key("ndcg", k): 0.05})
        if baseline_hr is not None:
            baseline.update(
                {metric_key("hr", k): baseline_hr, metric_key("ndcg", k): baseline_hr / 2}
            )
    return records.Evaluation(
        model=model,
        popularity=popularity,
        baseline=records.Baseline(baseline, "r0", None, "/out/releases/r0", {})
        if baseline
        else None,
        health=None,
        catalog_size=16,
        ks=tuple(ks),
        blessed=blessed,
        not_blessed_because=() if blessed else ("a test said no",),
    )


@pytest.fixture(scope="session")
def evaluation():
    return make_evaluation


def make_train_summary(refit: bool = False):
    """A valid train_summary.json record of a fit of two evaluations (and a refit after it)."""
    from offline_recall.core import records

    point = records.EvalPoint(epochs=2, seconds=1.5, eval_loss=3.0, hit_rate=0.4, ndcg=0.2)
    return records.TrainSummary(
        vocab_size=10,
        num_classes=12,
        global_step=40,
        epochs_trained=4,
        max_epochs=8,
        positions_per_epoch=100,
        best_epochs=2,
        train_seconds=3.25,
        eval_loss=3.0,
        eval_users=5,
        eval_history=(point, records.EvalPoint(4, 3.0, 3.5, 0.35, 0.15)),
        warm_start={"used": False, "why_not": "a test"},
        params={
            "embedding_dim": 8,
            "dropout": 0.3,
            "future_targets": 1,
            "loss_context": {"num_sampled": 4},
        },
        dropout_rule="trainer.dropout is 0.3",
        future_targets_rule="trainer.future_targets is 1",
        item_item={"used": False, "why_not": "a test"},
        embeddings_tied=False,
        ensemble_size=1,
        item_vector="softmax kernel row with the softmax bias appended",
        user_vector="user_vector with a constant 1 appended",
        refit=records.RefitFacts(True, 1, "refit_epochs", 120, 50, 0.5, 3.25, False, "x")
        if refit
        else None,
    )


def make_recall_summary(users: int, sampled_from_users: int | None):
    """RecallEval's `records.RecallSummary` for `users` full lists (of `sampled_from_users`, when
    sampled)."""
    from offline_recall.core import records

    return records.RecallSummary(
        split="eval",
        top_n=50,
        users=users,
        sampled_from_users=sampled_from_users,
        users_full=users,
        users_short=0,
        list_length_histogram={"50": users},
    )


def report_summary(status: str = "published", users: int = 4) -> dict:
    """The run_summary.json sections the report page reads, for a run that compared nothing."""
    return {
        "status": status,
        "finished_at": "2024-01-02T00:00:00+00:00",
        "evaluate": {**make_evaluation().to_dict(), "model": {"users": users}},
        "recall": {"eval": make_recall_summary(users, users).to_dict()},
        "compare": {"compared": False, "why_not": "nothing published yet"},
    }


def make_provenance(run_id: str = "r1", run_date: str | None = None) -> dict:
    """What Publish's executor hands `publish_release` for the manifest, for a test release."""
    return {
        "run_id": run_id,
        "input": "/in/clicks.csv",
        "input_note": "",
        "run_date": run_date,
        "input_spans": [],
        "input_span_dates": None,
        "window_first_day": None,
        "warm_start": {"used": False, "why_not": "a test"},
        "compared_with_previous": {"compared": False, "why_not": "a test"},
        "config": {},
    }


def make_outputs(component, root: str) -> dict:
    """A fresh artifact per output channel of `component`, each in its own folder under `root`:
    the output dict a launcher hands an executor's `Do`."""
    import os

    import tensorflow as tf

    outputs = {}
    for key, channel in component.outputs.items():
        artifact = channel.type()
        artifact.uri = os.path.join(root, component.id, key)
        tf.io.gfile.makedirs(artifact.uri)
        outputs[key] = [artifact]
    return outputs
