"""Publishing: a release written whole, checked against its manifest, then LATEST pointed at it;
on the local disk and on a filesystem that is not (TF's in-memory ram://)."""

import json
import os
import signal
import subprocess
import sys
import uuid

import faiss
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from conftest import make_evaluation, make_provenance, report_summary

from offline_recall.components import common, releases
from offline_recall.components.publish import logic
from offline_recall.components.report import logic as report
from offline_recall.core import contracts as C
from offline_recall.core import storage


def _sources(root, tag):
    src = os.path.join(root, f"src-{tag}")
    tf.io.gfile.makedirs(src)
    storage.write_parquet(
        pa.table(
            {
                "user_id": ["u1"],
                "item_ids": [[f"i-{tag}"]],
                "scores": [[1.0]],
                "held_out_item": [""],
            }
        ),
        os.path.join(src, "recalls.parquet"),
    )
    storage.write_parquet(
        pa.table({"user_id": ["u1"], "vector": [[1.0, 1.0]]}), os.path.join(src, "uv.parquet")
    )
    items = pa.table(
        {"item_index": [0], "item_id": [f"i-{tag}"], "vector": [[0.5, 0.1]], "count": [3]}
    )
    return [os.path.join(src, "recalls.parquet")], [os.path.join(src, "uv.parquet")], items


def _publish(out, root, tag, run_date=None, **kw):
    recalls, uvs, items = _sources(root, tag)
    kw.setdefault("keep_releases", 2)
    metrics = make_evaluation(0.5)
    manifest = make_provenance(tag, run_date)
    return logic.publish_release(out, tag, recalls, uvs, items, metrics, manifest, **kw)["release"]


def test_publish_points_latest_and_the_link_and_keeps_contract_columns(tmp_path):
    out = str(tmp_path / "out")
    release = _publish(out, str(tmp_path), "r1")
    assert storage.read_latest(out)["release"] == release == os.path.join(out, "releases", "r1")
    published = tmp_path / "out" / "published"
    assert published.is_symlink() and os.readlink(published) == os.path.join("releases", "r1")
    recalls = storage.read_parquet(os.path.join(release, "recalls", "part-00000.parquet"))
    assert recalls.column_names == ["user_id", "item_ids", "scores"]
    items = storage.read_parquet(os.path.join(release, "item_vectors", "part-00000.parquet"))
    assert items.column_names == ["item_id", "vector", "count"]
    manifest = json.loads((tmp_path / "out" / "releases" / "r1" / "manifest.json").read_text())
    assert manifest["rows"] == {"recalls": 1, "user_vectors": 1, "item_vectors": 1}
    assert manifest["files"]["recalls/part-00000.parquet"]["rows"] == 1
    assert manifest["metrics"]["model"]["hr@50"] == 0.5 and manifest["metrics"]["blessed"]
    _publish(out, str(tmp_path), "r2")
    assert storage.read_latest(out)["run_id"] == "r2"


def test_failed_publish_leaves_latest_alone(tmp_path):
    out = str(tmp_path / "out")
    _publish(out, str(tmp_path), "r1")
    recalls, _, items = _sources(str(tmp_path), "r2")
    with pytest.raises(logic.PublishError):
        # No user vectors.
        logic.publish_release(
            out, "r2", recalls, [], items, make_evaluation(), make_provenance("r2"), keep_releases=2
        )
    assert storage.read_latest(out)["run_id"] == "r1"
    assert os.readlink(tmp_path / "out" / "published") == os.path.join("releases", "r1")


def test_a_release_that_differs_from_its_manifest_is_refused(tmp_path):
    out = str(tmp_path / "out")
    release = _publish(out, str(tmp_path), "r1")
    (tmp_path / "out" / "releases" / "r1" / "metrics.json").write_text("{}")
    with pytest.raises(logic.PublishError, match="metrics.json"):
        logic.verify_release(release)


def test_prune_keeps_current_and_newest_and_drops_partial_releases(tmp_path):
    out = str(tmp_path / "out")
    for tag in ["r1", "r2", "r3", "r4"]:
        _publish(out, str(tmp_path), tag, keep_releases=2)
    assert sorted(os.listdir(tmp_path / "out" / "releases")) == ["r2", "r3", "r4"]
    (tmp_path / "out" / "releases" / "r5-killed").mkdir()  # no manifest: a killed run's
    logic.prune_releases(out, 2)
    assert sorted(os.listdir(tmp_path / "out" / "releases")) == ["r2", "r3", "r4"]


def test_refuses_real_published_folder(tmp_path):
    (tmp_path / "out" / "published").mkdir(parents=True)
    with pytest.raises(logic.PublishError, match="real folder"):
        _publish(str(tmp_path / "out"), str(tmp_path), "r1")


def test_a_lagging_link_is_pointed_at_latest_again(tmp_path):
    out = str(tmp_path / "out")
    _publish(out, str(tmp_path), "r1")
    _publish(out, str(tmp_path), "r2")
    link = tmp_path / "out" / "published"
    os.remove(link)
    os.symlink(os.path.join("releases", "r1"), link)  # a kill between LATEST and the link
    assert logic.sync_published_link(out)
    assert os.readlink(link) == os.path.join("releases", "r2")
    assert not logic.sync_published_link(out)


def test_publish_report_and_baseline_on_a_filesystem_that_is_not_the_local_disk(tmp_path):
    root = f"ram://offline-recall-{uuid.uuid4().hex}"
    out = f"{root}/out"
    release = _publish(out, root, "r1")
    _publish(out, root, "r2")
    latest = storage.read_latest(out)
    assert latest["run_id"] == "r2" and latest["release"] == f"{out}/releases/r2"
    assert release == f"{out}/releases/r1"
    logic.verify_release(latest["release"])
    assert not logic.sync_published_link(out)  # no symlinks off the local disk
    # The next run starts from, and is compared with, the release LATEST names.
    release, _ = releases.previous_release(out, None)
    assert release.run_id == "r2"
    assert releases.previous_release(f"{root}/empty", None)[0] is None
    # The report goes there too.
    summary = {**report_summary(), "ingest": {"rows_read": 3}}
    page = report.page.write_report(
        f"{out}/{C.REPORT_DIR}",
        summary,
        item_counts=np.array([5, 2, 1]),
        history_lengths=np.array([1, 3]),
        metrics_at_k={50: {"hr": 0.5, "ndcg": 0.25, "coverage": 0.5}},
        popularity_metrics_at_k={50: {"hr": 0.1, "ndcg": 0.05}},
        top1_scores=np.array([1.0, 2.0]),
    )
    names = set(tf.io.gfile.listdir(f"{out}/{C.REPORT_DIR}"))
    assert "index.html" in names and len([n for n in names if n.endswith(".png")]) == 4
    with tf.io.gfile.GFile(page) as f:
        assert "0.5000" in f.read()
    assert not os.path.exists("ram:")


def test_the_model_fingerprint_follows_the_model_files():
    files = {
        "user_model/saved_model.pb": {"sha256": "a"},
        "user_model/variables/v": {"sha256": "b"},
        "recalls/part-00000.parquet": {"sha256": "c"},
    }
    fingerprint = logic.model_fingerprint(files)
    assert fingerprint == logic.model_fingerprint(dict(reversed(list(files.items()))))
    changed = {**files, "user_model/variables/v": {"sha256": "x"}}
    assert logic.model_fingerprint(changed) != fingerprint
    assert logic.model_fingerprint({"recalls/p": {"sha256": "c"}}) is None


def test_a_rerun_of_a_date_replaces_that_dates_release(tmp_path):
    out = str(tmp_path / "out")
    _publish(out, str(tmp_path), "r1", run_date="2024-01-01")
    _publish(out, str(tmp_path), "r2", run_date="2024-01-02")
    rerun = _publish(out, str(tmp_path), "r3", run_date="2024-01-02")
    assert storage.read_latest(out)["release"] == rerun
    assert sorted(os.listdir(tmp_path / "out" / "releases")) == ["r1", "r3"]
    assert storage.read_latest(out)["run_date"] == "2024-01-02"


def test_a_backfill_writes_its_day_but_leaves_latest_on_the_newest_day(tmp_path):
    out = str(tmp_path / "out")
    _publish(out, str(tmp_path), "r1", run_date="2024-01-01")
    newest = _publish(out, str(tmp_path), "r2", run_date="2024-01-03")
    recalls, uvs, items = _sources(str(tmp_path), "r3")
    done = logic.publish_release(
        out,
        "r3",
        recalls,
        uvs,
        items,
        make_evaluation(),
        make_provenance("r3", "2024-01-01"),
        keep_releases=2,
    )
    assert not done["pointed"] and done["current"] == newest
    assert done["replaced"] == [os.path.join(out, "releases", "r1")]
    assert storage.read_latest(out)["release"] == newest
    assert os.readlink(tmp_path / "out" / "published") == os.path.join("releases", "r2")
    assert sorted(os.listdir(tmp_path / "out" / "releases")) == ["r2", "r3"]


def test_prune_orders_releases_by_date_not_by_when_they_ran(tmp_path):
    out = str(tmp_path / "out")
    _publish(out, str(tmp_path), "r1", run_date="2024-01-05")
    # Backfills, run later: older days.
    for tag, day in [("r2", "2024-01-02"), ("r3", "2024-01-03"), ("r4", "2024-01-04")]:
        _publish(out, str(tmp_path), tag, run_date=day, keep_releases=1)
    assert sorted(os.listdir(tmp_path / "out" / "releases")) == ["r1", "r4"]


@pytest.mark.parametrize("root", ["local", "ram"])
def test_copying_a_table_streams_it_in_bounded_row_groups(tmp_path, root):
    base = str(tmp_path) if root == "local" else f"ram://copy-{uuid.uuid4().hex}"
    rows = storage.PARQUET_COPY_ROWS + 1234
    rng = np.random.default_rng(7)
    table = pa.table(
        {
            "extra": np.arange(rows),
            "scores": [rng.random(3).astype(np.float32).tolist() for _ in range(rows)],
            "user_id": [f"u{i}" for i in range(rows)],
        }
    )
    src, dst = os.path.join(base, "src.parquet"), os.path.join(base, "dst.parquet")
    storage.write_parquet(table, src)
    assert storage.copy_parquet_columns(src, dst, ["user_id", "scores"]) == rows
    copied = storage.open_parquet(dst)
    assert copied.schema_arrow.names == ["user_id", "scores"]
    assert copied.num_row_groups == 2
    assert max(copied.metadata.row_group(g).num_rows for g in range(2)) == storage.PARQUET_COPY_ROWS
    assert copied.read().equals(table.select(["user_id", "scores"]))
    with pytest.raises(ValueError, match="has no column 'item_ids'"):
        storage.copy_parquet_columns(src, dst, ["user_id", "item_ids"])


def test_release_item_index_searches_to_the_published_recalls(tmp_path):
    # Recall's own exact search, with nothing visited, must equal a search of the release's
    # faiss index by the published user vectors: online serving gets the same lists.
    from offline_recall.components.recall import exact

    rng = np.random.default_rng(5)
    items = rng.normal(size=(400, 9)).astype(np.float32)
    users = rng.normal(size=(30, 9)).astype(np.float32)
    item_ids = [f"item {i}" for i in range(400)]
    user_ids = [f"user {u}" for u in range(30)]
    index, scores = exact.top_n_excluding(
        exact.build_catalog(items, 64), users, [[]] * len(users), 20
    )
    src = tmp_path / "src"
    src.mkdir()
    storage.write_parquet(
        pa.table(
            {
                "user_id": user_ids,
                "item_ids": [[item_ids[i] for i in row] for row in index],
                "scores": [list(map(float, row)) for row in scores],
                "held_out_item": [""] * len(users),
            }
        ),
        str(src / "recalls.parquet"),
    )
    storage.write_parquet(
        pa.table({"user_id": user_ids, "vector": [list(map(float, u)) for u in users]}),
        str(src / "uv.parquet"),
    )
    table = pa.table(
        {
            "item_index": list(range(400)),
            "item_id": item_ids,
            "vector": [list(map(float, v)) for v in items],
            "count": [1] * 400,
        }
    )
    out = str(tmp_path / "out")
    release = logic.publish_release(
        out,
        "r1",
        [str(src / "recalls.parquet")],
        [str(src / "uv.parquet")],
        table,
        make_evaluation(),
        make_provenance("r1"),
        keep_releases=1,
    )["release"]
    manifest = storage.read_json(os.path.join(release, "manifest.json"))
    assert {"item_index/index.faiss", "item_index/item_ids.parquet"} <= set(manifest["files"])
    flat, ids = logic.read_item_index(os.path.join(release, "item_index"))
    assert isinstance(flat, faiss.IndexFlatIP) and flat.ntotal == 400
    published = storage.read_parquet(os.path.join(release, "user_vectors", "part-00000.parquet"))
    vectors = np.array(published.column("vector").to_pylist(), np.float32)
    got_scores, got = flat.search(vectors, 20)
    recalls = storage.read_parquet(os.path.join(release, "recalls", "part-00000.parquet"))
    assert [[ids[i] for i in row] for row in got] == recalls.column("item_ids").to_pylist()
    np.testing.assert_allclose(
        got_scores, recalls.column("scores").to_pylist(), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("point", ["publish:written", "publish:pointed", "publish:switched"])
def test_kill_9_at_each_step_of_publishing_leaves_a_whole_published_set(tmp_path, point):
    """kill -9 inside Publish, where its failpoints are: a subprocess publishes release r2 over
    r1 and is killed at `point`. The published set stays whole at every point: before LATEST
    is written the old release stays current; after it the new one is, and `published` follows
    once switched. (Three whole-pipeline runs proved this before; the logic is the same.)"""
    out = str(tmp_path / "out")
    before = os.path.basename(_publish(out, str(tmp_path), "r1"))
    code = (
        "import sys\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "import test_publish\n"
        f"test_publish._publish({out!r}, {str(tmp_path)!r}, 'r2')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, common.FAILPOINT_ENV: point},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    current = logic.current_release(out)
    logic.verify_release(current)
    after = os.path.basename(current)
    assert (after == before) == (point == "publish:written")
    link = os.readlink(os.path.join(out, "published"))
    assert (link == os.path.join("releases", after)) == (point != "publish:pointed")
