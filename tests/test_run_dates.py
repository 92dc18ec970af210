"""A run date on daily folders, through the CLI: the spans it reads, what the manifest says, and
a date with no folder."""

from __future__ import annotations

import csv
import datetime
import json

import pytest

from offline_recall.pipeline import synthetic
from offline_recall.pipeline.config import SyntheticConfig

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def day_folders(tmp_path_factory, small_log):
    """The small log cut into three daily folders; each folder's date is at or after its events."""
    root = tmp_path_factory.mktemp("days")
    flat = root / "flat.csv"
    synthetic.generate_clicks(str(flat), SyntheticConfig(**small_log))
    with open(flat, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    times = sorted(int(r[2]) for r in rows)
    cuts = [times[len(times) // 3], times[2 * len(times) // 3], times[-1]]
    days = [datetime.datetime.fromtimestamp(c, datetime.UTC).date() for c in cuts]
    logs = root / "logs"
    for i, day in enumerate(days):
        low = cuts[i - 1] if i else -1
        folder = logs / day.isoformat()
        folder.mkdir(parents=True)
        with open(folder / "clicks.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(r for r in rows if low < int(r[2]) <= cuts[i])
    return logs, days


def test_a_run_date_reads_the_days_up_to_it_and_says_so(day_folders, tmp_path, cli, small_config):
    logs, days = day_folders
    config = small_config(tmp_path / "c.json", trainer={"refit_on_holdout": False})
    out = tmp_path / "out"
    date = days[1].isoformat()
    result = cli(
        "run", "--input", str(logs), "--output", str(out), "--config", config, "--date", date
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"run date {date} (given)" in result.stdout
    latest = json.loads((out / "LATEST").read_text())
    manifest = json.loads((out / "releases" / latest["run_id"] / "manifest.json").read_text())
    epoch = datetime.date(1970, 1, 1)
    assert manifest["run_date"] == date
    assert manifest["input_spans"] == [(d - epoch).days for d in days[:2]]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["ingest"]["run_date"] == date and summary["ingest"]["rows_out_of_window"] == 0


def test_a_run_date_without_its_day_folder_exits_2(day_folders, tmp_path, cli):
    logs, days = day_folders
    missing = (days[-1] + datetime.timedelta(days=1)).isoformat()
    result = cli("run", "--input", str(logs), "--output", str(tmp_path / "o"), "--date", missing)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"no day folder {missing}/ for the run date" in lines[0]
    assert not (tmp_path / "o" / "LATEST").exists()
