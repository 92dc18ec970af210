"""Three consecutive days through the real CLI: each run reads the day folders up to its date and
says so, each release names its date and spans, days 2-3
warm-start from the day before (rows follow their item by id), are judged against the previous
release on their own holdout, and a rerun of a day is byte-identical and replaces that day's
release."""

from __future__ import annotations

import datetime
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from offline_recall.core import config as config_lib
from offline_recall.core.config import SyntheticConfig
from offline_recall.pipeline import synthetic
from offline_recall.trainer import features as F
from offline_recall.trainer import hparams, warm_start
from offline_recall.trainer import model as model_lib

pytestmark = pytest.mark.e2e

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]


@pytest.fixture(scope="module")
def days(tmp_path_factory, small_log, small_config, cli):
    root = tmp_path_factory.mktemp("daily")
    logs = root / "logs"
    # Day 2 and 3 release 20 new items each, and tastes drift: frequencies reorder.
    shape = SyntheticConfig(**{**small_log, "days": 3, "new_items_per_day": 20})
    synthetic.generate_days(str(logs), shape, datetime.date.fromisoformat(DAYS[-1]))
    config = small_config(root / "config.json", trainer={"warm_start": True})
    out = root / "out"
    releases, printed, ingest = {}, {}, {}
    for day in DAYS:
        result = cli(
            "run", "--input", str(logs), "--date", day, "--output", str(out), "--config", config
        )
        assert result.returncode == 0, result.stdout + result.stderr
        releases[day] = json.loads((out / "LATEST").read_text())["release"]
        printed[day] = result.stdout
        ingest[day] = json.loads((out / "run_summary.json").read_text())["ingest"]
    return {
        "logs": logs,
        "out": out,
        "config": config,
        "releases": releases,
        "printed": printed,
        "ingest": ingest,
    }


def _manifest(release: str) -> dict:
    with open(os.path.join(release, "manifest.json")) as f:
        return json.load(f)


def _parts(release: str, table: str) -> list[bytes]:
    folder = os.path.join(release, table)
    out = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out.append(f.read())
    return out


def test_each_release_names_its_date_spans_and_warm_start_source(days):
    epoch = datetime.date(1970, 1, 1)
    for n, day in enumerate(DAYS):
        # A run date reads the day folders up to it, and says so.
        assert f"run date {day} (given)" in days["printed"][day]
        assert f"{n + 1} span(s)" in days["printed"][day]
        assert days["ingest"][day]["run_date"] == day
        assert days["ingest"][day]["rows_out_of_window"] == 0
        manifest = _manifest(days["releases"][day])
        assert manifest["run_date"] == day
        assert manifest["input_span_dates"] == [DAYS[0], day]
        assert [str(epoch + datetime.timedelta(days=s)) for s in manifest["input_spans"]] == DAYS[
            : n + 1
        ]
        warm = manifest["warm_start"]
        if n == 0:
            assert not warm["used"] and "no release of a date before" in warm["why_not"]
            assert not manifest["compared_with_previous"]["compared"]
        else:
            assert warm["used"] and warm["source"]["run_date"] == DAYS[n - 1]
            assert warm["source"]["release"] == days["releases"][DAYS[n - 1]]
            assert warm["items_new"] > 0
            compared = manifest["compared_with_previous"]
            assert compared["compared"] and compared["previous"]["run_date"] == DAYS[n - 1]
            assert compared["new_items"] > 0 and 0 <= compared["share_changed"] <= 1
            today = compared["metrics"]["hr@50"]
            assert today["today"] == manifest["metrics"]["model"]["hr@50"]
            assert today["previous"] is not None


def test_day3_starts_from_day2s_rows_by_item_id(days):
    """Before training starts, a carried-over item's row is yesterday's, wherever its index
    moved, and a new item's is freshly initialised."""
    before, today = days["releases"][DAYS[1]], days["releases"][DAYS[2]]
    old_vocab = os.path.join(before, "warm_start", "item_vocab.txt")
    new_vocab = os.path.join(today, "warm_start", "item_vocab.txt")
    old_keys = warm_start.read_vocabulary(old_vocab)
    new_keys = warm_start.read_vocabulary(new_vocab)
    moved = [k for i, k in enumerate(new_keys) if k in old_keys and old_keys.index(k) != i]
    new = [k for k in new_keys if k not in old_keys]
    assert moved and new, "day 3 must reorder frequencies and add items"

    config = config_lib.load(days["config"])
    num_classes = len(new_keys) + config.transform.num_oov_buckets
    params = hparams.with_data_rules(
        hparams.build_params(config.trainer, len(new_keys), num_classes, np.ones(num_classes)),
        dropout=0.0,
        future_targets=1,
    )
    warm, facts = warm_start.settings(before, new_vocab, len(new_keys), params)
    assert facts["items_carried"] == len(new_keys) - len(new)
    start = warm_start.initial_values(warm, params, [model_lib.ITEM_EMBEDDINGS, F.SOFTMAX_BIAS])
    checkpoint = os.path.join(before, "warm_start", "model.ckpt")
    old_rows = tf.train.load_variable(checkpoint, model_lib.ITEM_EMBEDDINGS)
    old_bias = tf.train.load_variable(checkpoint, F.SOFTMAX_BIAS)
    for key in moved:
        i, j = new_keys.index(key), old_keys.index(key)
        np.testing.assert_array_equal(start[model_lib.ITEM_EMBEDDINGS][i], old_rows[j])
        assert start[F.SOFTMAX_BIAS][i] == old_bias[j]
    dim = config.trainer.embedding_dim
    for key in new:
        i = new_keys.index(key)
        row = start[model_lib.ITEM_EMBEDDINGS][i]
        assert np.all(np.abs(row) <= 2.0 / dim**0.5) and np.any(row != 0)
        assert start[F.SOFTMAX_BIAS][i] == 0.0
    # And that is what day 3's trainer did.
    trainer = _manifest(today)["warm_start"]
    assert trainer["items_carried"] == facts["items_carried"]


def test_the_report_compares_with_the_previous_release(days):
    page = (days["out"] / "report" / "index.html").read_text()
    assert "Compared with the previous release" in page and DAYS[1] in page
    summary = json.loads((days["out"] / "run_summary.json").read_text())
    assert summary["evaluate"]["baseline"]["run_date"] == DAYS[1]


def test_rerunning_a_day_is_identical_and_replaces_its_release(days, cli):
    out, last = days["out"], DAYS[-1]
    first = days["releases"][last]
    before = {table: _parts(first, table) for table in ("recalls", "user_vectors", "item_vectors")}
    source = _manifest(first)["warm_start"]["source"]
    result = cli(
        "run",
        "--input",
        str(days["logs"]),
        "--date",
        last,
        "--output",
        str(out),
        "--config",
        days["config"],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    again = json.loads((out / "LATEST").read_text())["release"]
    assert again != first and not os.path.exists(first)
    for table, parts in before.items():
        assert _parts(again, table) == parts, table
    dates = [_manifest(str(r))["run_date"] for r in (out / "releases").iterdir()]
    assert sorted(dates) == DAYS, dates
    # The rerun started from the same model as the first run of that day.
    assert _manifest(again)["warm_start"]["source"] == source


def test_a_day_without_its_folder_exits_2_and_publishes_nothing(days, cli):
    out = days["out"]
    latest = (out / "LATEST").read_text()
    result = cli(
        "run",
        "--input",
        str(days["logs"]),
        "--date",
        "2024-03-05",
        "--output",
        str(out),
        "--config",
        days["config"],
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "2024-03-05" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (out / "LATEST").read_text() == latest
