"""Bad input through the CLI: exit 2 and one line on stderr naming the file (and where), for every
kind of broken file tried; nothing published."""

from __future__ import annotations

import gzip
import re

import pytest
from conftest import write_corrupt_tfrecord, write_torn_parquet

pytestmark = pytest.mark.e2e

HEADER = "user_id,item_id,timestamp\n"


def _rows(n: int) -> str:
    return "".join(f"u{i % 9},i{i % 50},{1_600_000_000 + i}\n" for i in range(n))


def _truncated_gzip(folder):
    path = folder / "clicks.csv.gz"
    data = gzip.compress((HEADER + _rows(20000)).encode())
    path.write_bytes(data[: len(data) // 2])
    return path, r"clicks\.csv\.gz: unreadable after line \d+"


def _binary_header_name(folder):
    path = folder / "clicks.csv"
    path.write_bytes(b"user_id,item_id,timestamp,s\xe9ssion\n" + _rows(50).encode())
    return path, r"clicks\.csv: header column 4 .* is not UTF-8 text"


def _repeated_column(folder):
    path = folder / "clicks.csv"
    path.write_text("user_id,item_id,timestamp,user_id\n" + "u,i,1600000000,v\n")
    return path, r"clicks\.csv: column 'user_id' appears twice"


def _torn_parquet(folder):
    path = folder / "clicks.parquet"
    write_torn_parquet(path)
    return path, r"clicks\.parquet: unreadable"


def _corrupt_tfrecord(folder):
    path = folder / "clicks.tfrecord"
    write_corrupt_tfrecord(path)
    return path, r"clicks\.tfrecord: unreadable after record \d+"


def _not_a_parquet(folder):
    path = folder / "clicks.parquet"
    path.write_text(HEADER + _rows(10))
    return path, r"clicks\.parquet: not a Parquet file"


@pytest.mark.parametrize(
    "make",
    [
        _truncated_gzip,
        _binary_header_name,
        _repeated_column,
        _torn_parquet,
        _corrupt_tfrecord,
        _not_a_parquet,
    ],
)
def test_broken_input_exits_2_with_one_line(make, tmp_path, cli, small_config):
    path, pattern = make(tmp_path)
    config = small_config(tmp_path / "config.json")
    out = tmp_path / "out"
    result = cli("run", "--input", str(path), "--output", str(out), "--config", config)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert not (out / "published").exists()


def test_output_that_is_a_file_exits_2(tmp_path, cli):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    result = cli("run", "--output", str(target), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --output {target} is a file, not a folder"


def test_an_object_store_output_for_run_exits_2_and_says_to_compile(cli):
    result = cli("run", "--output", "gs://bucket/out", timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--output gs://bucket/out" in line and "offline-recall compile" in line
