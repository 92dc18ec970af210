"""Faults around a run, with real processes: a second run on the same folder, SIGINT and SIGTERM,
kill -9 while training, and what a run leaves behind. (kill -9 at each step of publishing is
tests/test_publish.py's: Publish's failpoints live in its logic, which a subprocess runs.)

Every case ends with the published set whole: `published` points to a release whose files match
its manifest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from offline_recall.components.publish import logic as publish
from offline_recall.core.config import SyntheticConfig
from offline_recall.pipeline import synthetic

pytestmark = pytest.mark.e2e


def _start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "offline_recall.pipeline.cli", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _wait_for_line(process: subprocess.Popen, needle: str, timeout: float = 300) -> list[str]:
    """Reads the run's stdout until a line holds `needle`; returns the lines read."""
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} never came: {''.join(lines)}")


def _published_is_whole(out) -> str:
    release = publish.current_release(str(out))
    assert release is not None
    publish.verify_release(release)
    return os.path.basename(release)


@pytest.fixture(scope="module")
def run_args(tmp_path_factory, small_log, small_config):
    folder = tmp_path_factory.mktemp("faults")
    clicks = folder / "clicks.csv"
    synthetic.generate_clicks(str(clicks), SyntheticConfig(**small_log))
    config = small_config(
        folder / "config.json",
        trainer={"refit_on_holdout": False},
        publish={"keep_runs": 2},
    )
    return folder, ["--input", str(clicks), "--config", config]


@pytest.fixture(scope="module")
def published_out(run_args, cli):
    folder, args = run_args
    out = folder / "out"
    result = cli("run", *args, "--output", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_a_second_run_on_the_folder_exits_2_and_sigterm_ends_the_first(run_args, published_out):
    _, args = run_args
    before = _published_is_whole(published_out)
    first = _start(*args, "--output", str(published_out))
    _wait_for_line(first, "IngestExampleGen")
    second = _start(*args, "--output", str(published_out))
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2
    assert err.count("\n") == 1 and "in use by another offline-recall run" in err
    assert f"pid {first.pid} " in err
    _wait_for_line(first, "Transform")
    time.sleep(5)  # the Trainer runs now (its first epochs take longer than this)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 143, err
    assert "interrupted by SIGTERM during Trainer" in err
    summary = json.loads((published_out / "run_summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["failed_stage"] == "Trainer"
    assert _published_is_whole(published_out) == before


def test_sigint_ends_the_run_with_130_and_the_next_run_starts_clean(run_args, published_out, cli):
    _, args = run_args
    before = _published_is_whole(published_out)
    run = _start(*args, "--output", str(published_out))
    _wait_for_line(run, "Sequences ")
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, out + err
    assert "interrupted by SIGINT" in err
    assert _published_is_whole(published_out) == before
    log = sorted((published_out / "logs").iterdir())[-1].read_text()
    assert "interrupted by SIGINT" in log


def test_kill_9_while_training_leaves_the_published_set(run_args, published_out):
    _, args = run_args
    before = _published_is_whole(published_out)
    run = _start(*args, "--output", str(published_out))
    _wait_for_line(run, "Transform")
    time.sleep(3)
    run.kill()
    run.communicate(timeout=120)
    assert run.returncode == -signal.SIGKILL
    assert _published_is_whole(published_out) == before


def test_the_next_run_takes_over_and_leaves_nothing_behind(run_args, published_out, tmp_path):
    _, args = run_args
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run = _start(*args, "--output", str(published_out), env={"TMPDIR": str(scratch)})
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, out + err
    # The kill -9 while training left its lock and a RUNNING execution in ML Metadata.
    assert "took over a stale lock of pid" in out
    assert "CANCELED in ML Metadata" in out
    _published_is_whole(published_out)
    assert list(scratch.iterdir()) == [] and not (published_out / "tmp").exists()
    pipeline_root = published_out / "tfx" / "pipeline_root"
    for node in ("Trainer", "Transform", "IngestExampleGen"):
        for key in (pipeline_root / node).iterdir():
            if key.name != ".system":
                assert len(list(key.iterdir())) <= 2, key  # publish.keep_runs
    summary = json.loads((published_out / "run_summary.json").read_text())
    assert summary["housekeeping"]["artifact_folders_removed"] > 0
    assert summary["housekeeping"]["output_bytes"] > 0
    assert summary["run_id"] == os.path.basename(publish.current_release(str(published_out)))
