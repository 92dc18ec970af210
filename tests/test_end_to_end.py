"""The real pipeline, end to end: `offline-recall run` with LocalDagRunner on small generated data.

One run on a synthetic log with nasty ids and bad rows checks the published tables, the exclusion
invariant, scores as inner products of the published vectors, ids byte for byte, and that the
counts reconcile. A second run into the same folder that cannot be blessed must leave the
published set untouched, and a run over the bad-row limit must fail with one clear line.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from offline_recall.pipeline import synthetic

pytestmark = pytest.mark.e2e

NASTY_USER = 'user, "quoted"\nwith newline \u00e9'
NASTY_ITEM = 'item,\t"tab" \u5546\u54c1\r\nline'


def _cli(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "offline_recall.pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _write_config(path, **sections):
    base = {
        "synthetic": {"num_users": 150, "num_items": 120, "mean_events_per_user": 12},
        "trainer": {
            "epochs": 4,
            "eval_every_epochs": 2,
            "early_stopping_patience": 1,
            "embedding_dim": 16,
            "num_blocks": 1,
            "refit_on_holdout": True,
            "refit_epochs": 1,
        },
        "recall": {"top_n": 20},
        "evaluate": {"ks": [5, 10, 20], "min_ratio_to_popularity": 0.0},
        "ingest": {"max_bad_fraction": 0.05},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    path.write_text(json.dumps(base))
    return str(path)


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("input")
    path = folder / "clicks.csv"
    synthetic.generate_clicks(
        str(path), seed=3, num_users=150, num_items=120, mean_events_per_user=12
    )
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    t0 = int(body[0][2])
    extra = [
        [NASTY_USER, NASTY_ITEM, str(t0 + 1), "s"],
        [NASTY_USER, "i0001", str(t0 + 2), "s"],
        [NASTY_USER, "i0002", str(t0 + 3), "s"],
        [NASTY_USER, "i0002", str(t0 + 3), "s"],  # exact duplicate
        ["u_bad", "i0001", "not-a-time", "s"],  # bad timestamp
        ["", "i0001", str(t0), "s"],  # empty user
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body + extra)
    return {"path": str(path), "rows": len(body) + len(extra)}


@pytest.fixture(scope="module")
def first_run(clicks, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    config = _write_config(out.parent / "e2e-config.json")
    result = _cli("run", "--input", clicks["path"], "--output", str(out), "--config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"out": out, "stdout": result.stdout, "config": config}


def test_summary_counts_reconcile(first_run, clicks):
    summary = json.loads((first_run["out"] / "run_summary.json").read_text())
    ingest = summary["ingest"]
    assert summary["status"] == "published"
    assert ingest["rows_read"] == clicks["rows"]
    assert ingest["rows_read"] == ingest["rows_valid"] + ingest["rows_quarantined"]
    assert ingest["rows_quarantined"] == 2 and ingest["duplicates_dropped"] == 1
    assert summary["sequences"]["events"] == ingest["rows_valid"] - ingest["duplicates_dropped"]
    for k in (5, 10, 20):
        assert 0.0 <= summary["evaluate"]["model"][f"hr@{k}"] <= 1.0
    assert "HR" in first_run["stdout"] and "published" in first_run["stdout"]
    assert (first_run["out"] / "report" / "index.html").exists()
    trainer = summary["trainer"]
    assert trainer["embeddings_tied"] and trainer["params"]["loss"] == "full_softmax"
    assert 1 <= len(trainer["eval_history"]) <= 2
    assert trainer["best_epochs"] in (2, 4)
    # Refit after blessing: one more epoch over every event, held-out ones included.
    assert trainer["refit"]["epochs"] == 1 and trainer["refit"]["warm_start"]
    assert "refit: the metrics above are the fit's" in first_run["stdout"]
    sequences = summary["sequences"]
    assert sequences["refit_examples"] >= sequences["train_examples"]
    published = pq.read_table(first_run["out"] / "published" / "item_vectors")
    (fit,) = _model_item_vectors(first_run["out"], "Trainer")
    assert fit.column("item_id").to_pylist() == published.column("item_id").to_pylist()
    assert not np.allclose(_vectors(fit), _vectors(published))  # the refit did train


def _model_item_vectors(out, node):
    """The item vector tables of every Model artifact `node` wrote into out, oldest first."""
    root = out / "tfx" / "pipeline_root" / node / "model"
    runs = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [pq.read_table(run / "item_vectors") for run in runs]


def _vectors(table):
    return np.asarray(table.column("vector").to_pylist(), np.float32)


def test_published_recalls_exclude_visited_and_are_inner_products(first_run, clicks):
    published = first_run["out"] / "published"
    recalls = pq.read_table(published / "recalls").to_pylist()
    users = {
        r["user_id"]: r["vector"] for r in pq.read_table(published / "user_vectors").to_pylist()
    }
    items = {
        r["item_id"]: r["vector"] for r in pq.read_table(published / "item_vectors").to_pylist()
    }
    visited = {}
    with open(clicks["path"], newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            visited.setdefault(row["user_id"], set()).add(row["item_id"])
    valid_users = {u for u in visited if u not in ("", "u_bad")}
    assert {r["user_id"] for r in recalls} == valid_users
    assert NASTY_USER in users and NASTY_ITEM in items  # ids byte for byte
    for row in recalls:
        assert len(row["item_ids"]) == 20
        assert not set(row["item_ids"]) & visited[row["user_id"]]
        assert row["scores"] == sorted(row["scores"], reverse=True)
        u = np.asarray(users[row["user_id"]])
        expected = [float(u @ np.asarray(items[i])) for i in row["item_ids"]]
        np.testing.assert_allclose(row["scores"], expected, rtol=1e-4, atol=1e-4)


def test_unblessed_run_keeps_published_set(first_run, clicks):
    out = first_run["out"]
    before = os.readlink(out / "published")
    config = _write_config(out.parent / "strict-config.json", evaluate={"min_hr_at_50": 1.01})
    result = _cli("run", "--input", clicks["path"], "--output", str(out), "--config", config)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "NOT published" in result.stdout
    assert os.readlink(out / "published") == before
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["status"] == "not_blessed" and summary["publish"]["kept"]
    # Same data, same seed: the fit and the refit come out bit for bit the same.
    for node in ("Trainer", "Refit"):
        first, second = _model_item_vectors(out, node)
        assert first.equals(second), node


def test_too_many_bad_rows_fails_with_one_line(clicks, tmp_path):
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "item_id", "timestamp"])
        for i in range(50):
            writer.writerow([f"u{i % 5}", f"i{i}", str(1_700_000_000 + i)])
        writer.writerow(["u1", "i1", "yesterday"])
    config = _write_config(tmp_path / "c.json", ingest={"max_bad_fraction": 0.01})
    result = _cli("run", "--input", str(bad), "--output", str(tmp_path / "o"), "--config", config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "max_bad_fraction" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o" / "published").exists()


def test_mean_mlp_with_extras_and_sampled_loss(clicks, tmp_path):
    """YouTube DNN with the user-id embedding and example age, trained with NCE."""
    config = _write_config(
        tmp_path / "mlp.json",
        trainer={
            "encoder": "mean_mlp",
            "user_embedding": True,
            "recency_feature": True,
            "loss": "nce",
            "num_sampled": 20,
            "refit_on_holdout": False,
        },
    )
    out = tmp_path / "o"
    result = _cli("run", "--input", clicks["path"], "--output", str(out), "--config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "run_summary.json").read_text())
    params = summary["trainer"]["params"]
    assert params["user_embedding"] and params["recency_feature"] and params["loss"] == "nce"
    assert "refit" not in summary["trainer"]
    assert not (out / "tfx" / "pipeline_root" / "Refit").exists()
    published = out / "published"
    users = {
        r["user_id"]: r["vector"] for r in pq.read_table(published / "user_vectors").to_pylist()
    }
    items = {
        r["item_id"]: r["vector"] for r in pq.read_table(published / "item_vectors").to_pylist()
    }
    # The serving model reads the user id: one history, two users, two vectors.
    import tensorflow as tf

    from offline_recall.components import common
    from offline_recall.trainer import export

    (model_dir,) = (out / "tfx" / "pipeline_root" / "Trainer" / "model").iterdir()
    serve = tf.saved_model.load(export.serving_model_path(str(model_dir)))
    some_users = sorted(users)[:2]
    batch = [
        common.make_example(
            {"user_id": [u.encode()], "history_items": [b"i0001"]}
        ).SerializeToString()
        for u in [*some_users, some_users[0]]
    ]
    got = serve.signatures["serving_default"](examples=tf.constant(batch))["user_vector"].numpy()
    assert np.abs(got[0] - got[1]).max() > 1e-5
    np.testing.assert_allclose(got[0], got[2])
    for row in pq.read_table(published / "recalls").to_pylist()[:20]:
        u = np.asarray(users[row["user_id"]])
        expected = [float(u @ np.asarray(items[i])) for i in row["item_ids"]]
        np.testing.assert_allclose(row["scores"], expected, rtol=1e-4, atol=1e-4)
