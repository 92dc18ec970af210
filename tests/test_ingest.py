"""Ingest: parsing rules, preflight errors, every bad-row kind counted exactly, all formats."""

import csv
import json
import os

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from offline_recall.components import common
from offline_recall.components.errors import IngestError
from offline_recall.components.ingest import rows, sources
from offline_recall.trainer import features as F

NOW = 1_800_000_000


T = 1_600_000_000  # 2020-09-13T12:26:40Z
US = 1_000_000


def test_parse_timestamp_epochs_and_iso_8601():
    assert rows.parse_timestamp("1600000000") == (T * US, "s")
    assert rows.parse_timestamp("1600000000.9") == (T * US + 900_000, "s")
    assert rows.parse_timestamp(1600000000) == (T * US, "s")
    assert rows.parse_timestamp(1600000000.25) == (T * US + 250_000, "s")
    assert rows.parse_timestamp("2020-09-13T12:26:40Z") == (T * US, "iso8601")
    assert rows.parse_timestamp("2020-09-13T14:26:40+02:00") == (T * US, "iso8601")
    assert rows.parse_timestamp("2020-09-13T12:26:40") == (T * US, "iso8601")  # naive = UTC
    # The basic form, and a bare 8-digit date: 20200101 is 2020-01-01, not 1970-08-23.
    assert rows.parse_timestamp("20200913T122640Z") == (T * US, "iso8601")
    assert rows.parse_timestamp("20200913T142640+0200") == (T * US, "iso8601")
    assert rows.parse_timestamp("20200101") == (1_577_836_800 * US, "iso8601")
    # ... unless the unit is given: then digits are digits.
    assert rows.parse_timestamp("20200101", "s") == (20_200_101 * US, "s")
    for bad in (
        "yesterday",
        "nan",
        "inf",
        "",
        None,
        True,
        "1_600_000_000",
        "1.6e9",
        "\u0661\u0662",
    ):
        with pytest.raises(rows.RowError) as e:
            rows.parse_timestamp(bad)
        assert e.value.reason == "bad_timestamp", bad


def test_timestamp_units_auto_and_given():
    assert rows.parse_timestamp("1600000000123") == (T * US + 123_000, "ms")
    assert rows.parse_timestamp(1600000000123456) == (T * US + 123_456, "us")
    assert rows.parse_timestamp("1600000000123", "ms") == (T * US + 123_000, "ms")
    assert rows.parse_timestamp("1600000000", "us") == (1600 * US, "us")
    with pytest.raises(rows.RowError, match="too large"):
        rows.parse_timestamp(10**18)
    # Read as seconds on purpose, a millisecond epoch lies in the future, and the row says why.
    with pytest.raises(rows.RowError, match="timestamp_unit") as e:
        rows.validate(
            {
                "values": {"user_id": "u", "item_id": "i", "timestamp": "1600000000123"},
                "input_order": 0,
            },
            256,
            NOW,
            "s",
        )
    assert e.value.reason == "future_timestamp"


def test_ids_are_strings_or_integers():
    def check(value):
        record = {"values": {"user_id": value, "item_id": "i", "timestamp": T}, "input_order": 0}
        return rows.validate(record, 256, NOW)[F.USER_ID]

    assert check("u1") == b"u1" and check(42) == b"42" and check(b"caf\xc3\xa9") == "café".encode()
    for value, reason in (
        (None, "missing_field"),
        (float("nan"), "missing_field"),
        (4.0, "bad_id_type"),
        (["a", "b"], "bad_id_type"),
        (True, "bad_id_type"),
        ({"a": 1}, "bad_id_type"),
        (b"\xff", "invalid_utf8"),
    ):
        with pytest.raises(rows.RowError) as e:
            check(value)
        assert e.value.reason == reason, value


def test_id_length_counts_utf8_bytes():
    record = {
        "input_order": 0,
        "values": {"user_id": "\u00e9" * 3, "item_id": "i", "timestamp": "1"},
    }
    assert rows.validate(record, 6, NOW)[F.USER_ID] == "\u00e9\u00e9\u00e9".encode()
    with pytest.raises(rows.RowError) as e:
        rows.validate(record, 5, NOW)
    assert (e.value.reason, e.value.field) == ("id_too_long", "user_id")


def _write_csv(path, header, body):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body)


def test_preflight_errors_name_the_file(tmp_path):
    with pytest.raises(IngestError, match="does not exist"):
        sources.preflight(str(tmp_path / "nope.csv"))
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(IngestError, match="no data files"):
        sources.preflight(str(empty_dir))
    missing = tmp_path / "missing.csv"
    _write_csv(missing, ["user_id", "item_id"], [["u", "i"]])
    with pytest.raises(IngestError, match=r"missing\.csv: missing required column 'timestamp'"):
        sources.preflight(str(missing))
    header_only = tmp_path / "header_only.csv"
    _write_csv(header_only, ["user_id", "item_id", "timestamp"], [])
    with pytest.raises(IngestError, match="input has no rows"):
        sources.preflight(str(header_only))
    fake = tmp_path / "fake.parquet"
    fake.write_text("user_id,item_id,timestamp\n")
    with pytest.raises(IngestError, match=r"fake\.parquet: not a Parquet file"):
        sources.preflight(str(fake))
    fake_tfr = tmp_path / "fake.tfrecord"
    fake_tfr.write_bytes(b"\x01\x02garbage" * 10)
    with pytest.raises(IngestError, match=r"fake\.tfrecord"):
        sources.preflight(str(fake_tfr))
    unknown = tmp_path / "clicks.json"
    unknown.write_text("{}")
    with pytest.raises(IngestError, match="unknown input format"):
        sources.preflight(str(unknown))
    unreadable = tmp_path / "dir.csv"
    unreadable.mkdir()
    with pytest.raises(IngestError, match=r"dir\.csv"):
        sources.preflight_file(sources.InputFile(str(unreadable), "csv", 0, 0))


def _bad_input(tmp_path, user, item):
    """A CSV feeding every bad-row kind once (twice for one), plus nasty valid ids."""
    path = tmp_path / "clicks.csv"
    header = ["user_id", "item_id", "timestamp", "extra"]
    good = [
        [user, item, "1600000000", "x"],  # line 2-4 (two embedded newlines)
        ["u1", "i1", "2020-09-13T12:26:41Z", ""],
        ["u1", "i1", "1600000001", ""],  # same instant as the ISO row: duplicate
        ["u1", "i2", "1600000002", "tab\there"],
    ]
    bad = [
        ["", "i1", "1600000000", ""],  # empty_field user_id
        ["u2", "   ", "1600000000", ""],  # empty_field item_id (whitespace only)
        ["u2", "i1", "soon", ""],  # bad_timestamp
        ["u2", "i1", "NaN", ""],  # bad_timestamp
        ["u2", "i1", "-5", ""],  # negative_timestamp
        ["u2", "i1", str(NOW + 10), ""],  # future_timestamp
        ["u2", "i" * 300, "1600000000", ""],  # id_too_long
    ]
    _write_csv(path, header, good + bad)
    with open(path, "ab") as f:
        f.write(b"u3,i3\n")  # wrong_column_count
        f.write(b"\n")  # blank line: skipped and counted, not a row
        f.write(b"u3,i3,1600000000,x,y\n")  # wrong_column_count
        f.write(b"u\xff\xfe,i3,1600000000,x\n")  # invalid_utf8
        f.write(b"u4,i4,1600000003,ok\n")  # valid, after the bad ones
    return str(path)


def _run_ingest(files, max_id_bytes=256):
    results = {}
    with TestPipeline() as p:
        out = p | beam.Create(files) | rows.IngestClicks(max_id_bytes, NOW)
        for name in (
            "examples",
            "quarantine",
            "valid_per_file",
            "quarantined_per_file",
            "reasons",
            "duplicates",
            "blank",
            "file_tallies",
        ):
            _ = (
                out[name]
                | f"Collect{name}" >> beam.combiners.ToList()
                | f"Keep{name}" >> beam.Map(_keep, results, name)
            )
    return results


_STORE = {}


def _keep(values, results, name):
    _STORE[name] = values
    return values


def test_every_bad_row_kind_is_counted_exactly(tmp_path, awkward_user, awkward_item):
    files, _ = sources.preflight(_bad_input(tmp_path, awkward_user, awkward_item))
    _STORE.clear()
    _run_ingest(files)
    reasons = dict(_STORE["reasons"])
    assert reasons == {
        "empty_field": 2,
        "bad_timestamp": 2,
        "negative_timestamp": 1,
        "future_timestamp": 1,
        "id_too_long": 1,
        "wrong_column_count": 2,
        "invalid_utf8": 1,
    }
    summary = rows.summarize(
        files,
        dict(_STORE["valid_per_file"]),
        dict(_STORE["quarantined_per_file"]),
        reasons,
        _STORE["duplicates"][0],
        _STORE["blank"][0],
        _STORE["file_tallies"],
    )
    assert summary["rows_read"] == 15
    # In lines: the awkward row takes 3 (two quoted line breaks); with the header, 19 in all.
    assert summary["lines_valid"] == 7 and summary["lines_quarantined"] == 10
    assert summary["blank_lines"] == 1 and summary["lines_read"] == 18
    assert summary["lines_read"] + 1 == len(open(files[0].path, "rb").read().splitlines())
    assert summary["file_errors"] == [] and summary["timestamp_units"] == {"iso8601": 1, "s": 4}
    assert summary["rows_valid"] == 5 and summary["rows_quarantined"] == 10
    assert summary["rows_read"] == summary["rows_valid"] + summary["rows_quarantined"]
    assert summary["duplicates_dropped"] == 1 and summary["rows_written"] == 4
    assert summary["blank_lines_skipped"] == 1
    quarantine = {q["row_number"]: q for q in _STORE["quarantine"]}
    # Lines: header 1, the nasty row 2-4 (two quoted line breaks), then one line each; the
    # blank line is 16.
    assert quarantine[8]["reason"] == "empty_field" and quarantine[8]["field"] == "user_id"
    assert quarantine[9]["field"] == "item_id"
    assert quarantine[15]["reason"] == "wrong_column_count"
    assert quarantine[17]["reason"] == "wrong_column_count"
    assert quarantine[18]["reason"] == "invalid_utf8"
    assert sorted(quarantine) == [8, 9, 10, 11, 12, 13, 14, 15, 17, 18]
    assert all(q["source_file"] == files[0].path for q in quarantine.values())
    json.dumps(_STORE["quarantine"])  # every quarantine record is JSON-writable
    examples = [tf.train.Example.FromString(s) for s in _STORE["examples"]]
    users = {common.bytes_values(e, F.USER_ID)[0] for e in examples}
    items = {common.bytes_values(e, F.ITEM_ID)[0] for e in examples}
    assert awkward_user.encode() in users and awkward_item.encode() in items
    # Of the duplicate pair (the ISO row on line 5, the epoch row on line 6) the first is kept.
    u1_i1 = [
        common.int_values(e, F.INPUT_ORDER)[0] & ((1 << sources.ROW_BITS) - 1)
        for e in examples
        if common.bytes_values(e, F.USER_ID) == [b"u1"]
        and common.bytes_values(e, F.ITEM_ID) == [b"i1"]
    ]
    assert u1_i1 == [5]
    with pytest.raises(IngestError, match=r"10 of 15 rows \(66\.67%\) are bad"):
        rows.check_counts(summary, 0.01, "q")
    rows.check_counts(summary, 0.7, "q")


def test_parquet_tfrecord_and_spans(tmp_path):
    day1, day2 = tmp_path / "logs" / "2024-01-01", tmp_path / "logs" / "2024-01-02"
    day1.mkdir(parents=True)
    day2.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "user_id": ["u1", "u2"],
                "item_id": [1, 2],
                "timestamp": pa.array([1600000000, -1], pa.int64()),
            }
        ),
        day1 / "a.parquet",
    )
    with tf.io.TFRecordWriter(str(day2 / "b.tfrecord.gz"), options="GZIP") as w:
        w.write(
            common.make_example(
                {"user_id": [b"u1"], "item_id": [b"i9"]}, {"timestamp": [1600000005]}
            ).SerializeToString()
        )
    (day2 / "_SUCCESS").write_text("")
    files, _ = sources.preflight(str(tmp_path / "logs"))
    assert [(os.path.basename(f.path), f.span) for f in files] == [
        ("a.parquet", 19723),
        ("b.tfrecord.gz", 19724),
    ]
    assert [f.path for f in sources.discover(str(tmp_path / "logs"), max_spans=1)[0]] == [
        files[1].path
    ]
    _STORE.clear()
    _run_ingest(files)
    assert dict(_STORE["reasons"]) == {"negative_timestamp": 1}
    items = sorted(
        common.bytes_values(tf.train.Example.FromString(s), F.ITEM_ID)[0]
        for s in _STORE["examples"]
    )
    assert items == [b"1", b"i9"]


def test_input_order_follows_file_rank_then_row(tmp_path):
    record_a = sources._record(sources.InputFile("a", "csv", 0, 0), 99)
    record_b = sources._record(sources.InputFile("b", "csv", 0, 1), 2)
    assert record_a["input_order"] < record_b["input_order"]


def test_beam_transform_assert_that(tmp_path):
    path = tmp_path / "c.csv"
    _write_csv(path, ["user_id", "item_id", "timestamp"], [["u", "i", "5"], ["u", "i", "5"]])
    files, _ = sources.preflight(str(path))
    with TestPipeline() as p:
        out = p | beam.Create(files) | rows.IngestClicks(256, NOW)
        assert_that(out["duplicates"], equal_to([1]), label="Dups")
        assert_that(out["reasons"], equal_to([]), label="Reasons")
