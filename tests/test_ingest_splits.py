"""One large input file read in parts gives exactly what one reader gives: the same records, line
and row numbers, quarantine and counts, quoted line breaks and stray quotes included."""

import csv
import random

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from offline_recall.components.ingest import rows, sources

NOW = 2_000_000_000
HEADER = b"user_id,item_id,timestamp,extra"


@pytest.fixture
def small_field_limit():
    """A small csv field limit, so that a few hundred quote-free bytes make a safe cut and a
    file of a few kilobytes is cut many times."""
    old = csv.field_size_limit(40)
    yield
    csv.field_size_limit(old)


def _nasty_lines(rng: random.Random, count: int) -> list[bytes]:
    """Data lines of every awkward kind a reader must keep its place through."""
    out = []
    for i in range(count):
        kind = rng.random()
        row = b"u%d,i%d,%d,x" % (rng.randrange(50), rng.randrange(80), 1_600_000_000 + i)
        if kind < 0.04:
            out.append(b'u%d,i%d,%d,"two\nlines"' % (i, i, 1_600_000_000 + i))  # valid, 2 lines
        elif kind < 0.07:
            out.append(b'u%d,"i%d,%d,x' % (i, i, 1_600_000_000 + i))  # stray quote
        elif kind < 0.09:
            out.append(b'u%d,i%d,%d,"a ""quoted"", b"' % (i, i, 1_600_000_000 + i))
        elif kind < 0.11:
            out.append(b"")  # blank line
        elif kind < 0.13:
            out.append(row + b"\r")  # becomes \r\n
        elif kind < 0.14:
            out.append(b"u\xff%d,i1,%d,x" % (i, 1_600_000_000 + i))  # invalid UTF-8
        elif kind < 0.15:
            out.append(b"u%d,i1" % i)  # wrong column count
        elif kind < 0.16:
            out.append(b'u%d,i%d,%d,"runs on\n\nover\n' % (i, i, 1_600_000_000 + i))  # never closed
        else:
            out.append(row)
    return out


def _write(path, lines: list[bytes], lone_cr: bool = False) -> sources.InputFile:
    body = b"\n".join([HEADER, *lines]) + b"\n"
    if lone_cr:
        body = body.replace(b"x\n", b"x\r", 40)  # old Mac line ends in places
    path.write_bytes(b"\xef\xbb\xbf" + body)
    return sources.InputFile(str(path), sources.CSV, 0, 0)


def _row_ok(values: dict) -> bool:
    return rows.ReadAndValidateFn(256, NOW, "auto")._row_ok(values)


def _read_whole_and_split(f, split_bytes):
    whole = list(sources.read_file(f, _row_ok))
    splits = sources.plan_splits(f, split_bytes)
    parts = [r for s in splits for r in sources.read_file(s, _row_ok)]
    return whole, parts, splits


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lone_cr", [False, True])
def test_csv_parts_read_as_one_reader(tmp_path, small_field_limit, seed, lone_cr):
    rng = random.Random(seed)
    lines = _nasty_lines(rng, 1500)
    # Long quote-free stretches, where the cuts can go.
    for at in (300, 700, 1100):
        lines[at:at] = [b"q%d,i%d,%d,x" % (j, j, 1_600_000_000 + j) for j in range(40)]
    f = _write(tmp_path / "clicks.csv", lines, lone_cr)
    whole, parts, splits = _read_whole_and_split(f, split_bytes=2000)
    assert len(splits) >= 4, "the file should have been cut"
    assert parts == whole
    kinds = {r.get("error", {}).get("reason") for r in whole}
    assert {"unbalanced_quote", "wrong_column_count"} <= kinds
    assert any(r.get("lines", 1) > 1 for r in whole), "a record with quoted line breaks"
    assert any(r.get("blank") for r in whole)
    # Every cut is a line the whole reader starts a record on.
    starts = {r["row_number"] for r in whole}
    assert all(s.first_row in starts for s in splits[1:])


def test_csv_cut_line_numbers_count_every_kind_of_line_end(tmp_path):
    lines = [b"u%d,i%d,%d,x" % (i, i, 1_600_000_000 + i) for i in range(200_000)]
    f = _write(tmp_path / "clicks.csv", lines, lone_cr=True)
    whole, parts, splits = _read_whole_and_split(f, split_bytes=1 << 20)
    assert len(splits) >= 3
    assert parts == whole
    for s in splits[1:]:
        with open(f.path, "rb") as raw:
            before = raw.read(s.start)
        assert s.first_row == sources._line_breaks(before) + 1
        assert before.endswith(b"\n")


def test_quotes_everywhere_leave_the_file_whole(tmp_path, small_field_limit):
    lines = [b'"u%d","i%d",%d,"x"' % (i, i, 1_600_000_000 + i) for i in range(2000)]
    f = _write(tmp_path / "clicks.csv", lines)
    assert sources.plan_splits(f, split_bytes=500) == [sources.FileSplit(f)]


def test_gzip_and_small_files_are_not_cut(tmp_path, small_field_limit):
    f = _write(tmp_path / "clicks.csv", [b"u1,i1,1600000000,x"] * 50)
    assert sources.plan_splits(f, split_bytes=10**6) == [sources.FileSplit(f)]
    gz = sources.InputFile(str(tmp_path / "clicks.csv.gz"), sources.CSV, 0, 0)
    assert sources.plan_splits(gz, split_bytes=1) == [sources.FileSplit(gz)]


def test_parquet_parts_are_row_groups(tmp_path):
    n = 1000
    table = pa.table(
        {
            "user_id": [f"u{i % 37}" for i in range(n)],
            "item_id": [f"i{i % 91}" for i in range(n)],
            "timestamp": [1_600_000_000 + i for i in range(n)],
        }
    )
    path = tmp_path / "clicks.parquet"
    pq.write_table(table, path, row_group_size=64)
    f = sources.InputFile(str(path), sources.PARQUET, 0, 0)
    whole, parts, splits = _read_whole_and_split(f, split_bytes=1)
    assert len(splits) == 16  # ceil(1000 / 64) row groups, one a part
    assert parts == whole and [r["row_number"] for r in parts] == list(range(1, n + 1))


# Beam may pickle what a step holds, so results go to a module-level store.
_STORE: dict = {}


def _put(values, name):
    _STORE[name] = values


def test_ingest_of_parts_counts_and_quarantines_as_one(tmp_path, small_field_limit):
    lines = _nasty_lines(random.Random(7), 1200)
    for at in (200, 600, 1000):
        lines[at:at] = [b"q%d,i%d,%d,x" % (j, j, 1_600_000_000 + j) for j in range(40)]
    files = [_write(tmp_path / "clicks.csv", lines)]
    one, parts = _run(files, 10**9), _run(files, 1500)
    assert len(parts["file_tallies"]) >= 4 and len(one["file_tallies"]) == 1
    assert sorted(parts["examples"]) == sorted(one["examples"])
    key = lambda q: (q["row_number"], q["reason"])  # noqa: E731
    assert sorted(parts["quarantine"], key=key) == sorted(one["quarantine"], key=key)

    def summary(store):
        return rows.summarize(
            files,
            dict(store["valid_per_file"]),
            dict(store["quarantined_per_file"]),
            dict(store["reasons"]),
            store["duplicates"][0],
            store["blank"][0],
            store["file_tallies"],
        )

    whole, cut = summary(one), summary(parts)
    assert cut == whole
    assert whole["lines_read"] + 1 == len(open(files[0].path, "rb").read().splitlines())
    assert whole["rows_quarantined"] > 0 and whole["blank_lines"] > 0


def _run(files, split_bytes):
    _STORE.clear()
    with TestPipeline() as p:
        out = (
            p
            | beam.Create(files)
            | beam.FlatMap(sources.plan_splits, split_bytes)
            | beam.Reshuffle()
            | rows.IngestClicks(256, NOW)
        )
        for name in (
            "examples",
            "quarantine",
            "file_tallies",
            "valid_per_file",
            "quarantined_per_file",
            "reasons",
            "duplicates",
            "blank",
        ):
            _ = (
                out[name]
                | f"Collect{name}" >> beam.combiners.ToList()
                | f"Keep{name}" >> beam.Map(_put, name)
            )
    return dict(_STORE)
