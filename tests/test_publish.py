"""Atomic publishing: the switch, pruning, and a failure that leaves the published set alone."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offline_recall.components.publish import logic


def _sources(tmp_path, tag):
    src = tmp_path / f"src-{tag}"
    src.mkdir()
    pq.write_table(
        pa.table(
            {
                "user_id": ["u1"],
                "item_ids": [[f"i-{tag}"]],
                "scores": [[1.0]],
                "held_out_item": [""],
            }
        ),
        src / "recalls.parquet",
    )
    pq.write_table(pa.table({"user_id": ["u1"], "vector": [[1.0, 1.0]]}), src / "uv.parquet")
    items = pa.table(
        {"item_index": [0], "item_id": [f"i-{tag}"], "vector": [[0.5, 0.1]], "count": [3]}
    )
    return [str(src / "recalls.parquet")], [str(src / "uv.parquet")], items


def _publish(out, tmp_path, tag, **kw):
    recalls, uvs, items = _sources(tmp_path, tag)
    kw.setdefault("keep_releases", 2)
    return logic.publish_release(str(out), tag, recalls, uvs, items, {"tag": tag}, {}, **kw)


def test_publish_switches_symlink_and_keeps_contract_columns(tmp_path):
    out = tmp_path / "out"
    _publish(out, tmp_path, "r1")
    published = out / "published"
    assert published.is_symlink()
    recalls = pq.read_table(published / "recalls")
    assert recalls.column_names == ["user_id", "item_ids", "scores"]
    assert recalls.column("item_ids").to_pylist() == [["i-r1"]]
    assert pq.read_table(published / "item_vectors").column_names == ["item_id", "vector", "count"]
    _publish(out, tmp_path, "r2")
    assert pq.read_table(published / "recalls").column("item_ids").to_pylist() == [["i-r2"]]


def test_failed_publish_leaves_previous_set(tmp_path):
    out = tmp_path / "out"
    _publish(out, tmp_path, "r1")
    recalls, uvs, items = _sources(tmp_path, "r2")
    with pytest.raises(logic.PublishError):
        # No user vectors.
        logic.publish_release(str(out), "r2", recalls, [], items, {}, {}, keep_releases=2)
    assert os.readlink(out / "published") == os.path.join("releases", "r1")
    assert pq.read_table(out / "published" / "recalls").column("item_ids").to_pylist() == [["i-r1"]]


def test_prune_keeps_published_and_newest(tmp_path):
    out = tmp_path / "out"
    for i, tag in enumerate(["r1", "r2", "r3", "r4"]):
        _publish(out, tmp_path, tag, keep_releases=2)
        os.utime(out / "releases" / tag, (1000 + i, 1000 + i))
    remaining = sorted(os.listdir(out / "releases"))
    assert remaining == ["r3", "r4"]


def test_refuses_real_published_folder(tmp_path):
    out = tmp_path / "out"
    (out / "published").mkdir(parents=True)
    with pytest.raises(logic.PublishError, match="real folder"):
        _publish(out, tmp_path, "r1")
