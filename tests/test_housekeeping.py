"""Housekeeping of a local run: the output lock, the run's temp folder, artifact retention."""

from __future__ import annotations

import os
import tempfile

import pytest

from offline_recall.pipeline import housekeeping


def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    first = housekeeping.OutputLock(str(tmp_path)).acquire("run-a")
    with pytest.raises(housekeeping.OutputBusyError, match=rf"pid {os.getpid()} .*run run-a"):
        housekeeping.OutputLock(str(tmp_path)).acquire("run-b")
    first.release()
    again = housekeeping.OutputLock(str(tmp_path)).acquire("run-c")
    assert again.stale is None  # a clean release leaves no holder behind
    again.release()


def test_a_dead_holders_lock_is_taken_over_and_reported(tmp_path):
    # What a killed run leaves: the file names it, but nobody holds the flock.
    (tmp_path / housekeeping.LOCK_FILE).write_text(
        '{"pid": 999999, "host": "h", "run_id": "dead", "started_at": "t"}'
    )
    lock = housekeeping.OutputLock(str(tmp_path)).acquire("run-new")
    assert lock.stale["run_id"] == "dead"
    assert "pid 999999" in housekeeping.OutputLock.describe(lock.stale)
    lock.release()


def test_run_temp_dir_redirects_and_removes_scratch(tmp_path):
    before = tempfile.gettempdir()
    with housekeeping.run_temp_dir(str(tmp_path), "r1") as path:
        assert tempfile.gettempdir() == path == os.environ["TMPDIR"]
        scratch = tempfile.mkdtemp()
        assert scratch.startswith(path)
    assert tempfile.gettempdir() == before
    assert not (tmp_path / housekeeping.TMP_DIR).exists()


def test_prune_keeps_the_newest_executions_of_each_node(tmp_path):
    root = tmp_path / "pipeline_root"
    for node, key, ids in (
        ("Trainer", "model", [3, 11, 19]),
        ("Trainer", ".system/executor_execution", [3, 11, 19]),
        ("ImportSchemaGen", "schema", [1]),
    ):
        for i in ids:
            (root / node / key / str(i)).mkdir(parents=True)
    removed = housekeeping.prune_pipeline_root(str(root), str(tmp_path / "none.sqlite"), 2)
    assert sorted(os.path.relpath(r, root) for r in removed) == [
        "Trainer/.system/executor_execution/3",
        "Trainer/model/3",
    ]
    assert sorted(os.listdir(root / "Trainer" / "model")) == ["11", "19"]
    assert os.listdir(root / "ImportSchemaGen" / "schema") == ["1"]


def test_folder_size_skips_the_run_temp_dir(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / housekeeping.TMP_DIR).mkdir()
    (tmp_path / housekeeping.TMP_DIR / "big").write_bytes(b"x" * 1000)
    assert housekeeping.folder_size(str(tmp_path)) == 10
