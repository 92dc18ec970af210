"""Ingest on broken input: stray quotes, broken files and headers, counted or named in one line."""

from __future__ import annotations

import glob
import gzip
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from offline_recall.components import common
from offline_recall.components.errors import IngestError
from offline_recall.components.ingest import logic, sources
from offline_recall.core import storage
from offline_recall.core.config import IngestConfig

NOW = 1_800_000_000


def _preflight(path, max_spans=None, run_date=None, window_days=None, allow_missing_day=False):
    """`sources.preflight` with the ingest keys it reads given one by one."""
    config = IngestConfig(
        max_spans=max_spans, window_days=window_days, allow_missing_run_date=allow_missing_day
    )
    return sources.preflight(path, config, run_date)


def _ingest(tmp_path, path, **config):
    """Runs the real ingest function on `path`; returns (summary, quarantined records)."""
    files, window = _preflight(str(path), None)
    out = tmp_path / "out"
    summary = logic.ingest_clicks(
        beam.Pipeline,
        files,
        window,
        IngestConfig(**{"now": NOW, "max_bad_fraction": 0.5, **config}),
        str(out / "examples"),
        str(out / "quarantine"),
        str(out / "summary.json"),
    )
    quarantined = [
        json.loads(line)
        for name in glob.glob(str(out / "quarantine" / "*.jsonl"))
        for line in open(name, encoding="utf-8")
    ]
    return summary, quarantined


def _clicks(n, start=0):
    return [f"u{i % 7},i{i},{1_600_000_000 + i}\n" for i in range(start, start + n)]


def _physical_lines(path) -> int:
    return len(open(path, "rb").read().splitlines())


@pytest.mark.parametrize(
    "stray",
    [
        'u1,"i-stray,1600000500\n',  # a quote opens the item and never closes on its line
        'u1,i-stray,"1600000500\n',  # ... the last column
        '"u1,i-stray,1600000500\n',  # ... the first
    ],
)
def test_a_stray_quote_costs_exactly_its_own_row(tmp_path, stray):
    # A later quote closes the runaway field 40 lines on: a reader without recovery would swallow
    # those 40 rows into one bad record.
    lines = ["user_id,item_id,timestamp\n", *_clicks(20), stray, *_clicks(40, 100)]
    lines += ['u2,"quoted, fine",1600000999\n', *_clicks(30, 200)]
    path = tmp_path / "clicks.csv"
    path.write_text("".join(lines), encoding="utf-8")
    summary, quarantined = _ingest(tmp_path, path)
    assert summary["rows_quarantined"] == 1 and summary["rows_valid"] == 91
    (bad,) = quarantined
    assert bad["reason"] == "unbalanced_quote" and bad["row_number"] == 22
    assert "i-stray" in json.dumps(bad["raw"])
    assert summary["lines_read"] == summary["lines_valid"] + summary["lines_quarantined"]
    assert summary["lines_read"] + 1 == _physical_lines(path) == 93


def test_a_quote_that_never_closes_costs_its_row_only(tmp_path):
    path = tmp_path / "clicks.csv"
    body = [
        "user_id,item_id,timestamp\n",
        *_clicks(5),
        'u9,"runaway,1600000100\n',
        *_clicks(50, 10),
    ]
    path.write_text("".join(body), encoding="utf-8")
    summary, quarantined = _ingest(tmp_path, path)
    assert [q["row_number"] for q in quarantined] == [7]
    assert summary["rows_valid"] == 55 and summary["lines_read"] == 56


def test_quoted_line_breaks_in_valid_rows_still_read(tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text(
        'user_id,item_id,timestamp\n"u\nwith break",i1,1600000000\nu2,"i\r\n2",1600000001\n',
        encoding="utf-8",
        newline="",
    )
    summary, quarantined = _ingest(tmp_path, path)
    assert quarantined == [] and summary["rows_valid"] == 2
    assert summary["lines_valid"] == 4 and summary["lines_read"] + 1 == _physical_lines(path)


def test_timestamps_to_the_microsecond_tell_clicks_apart(tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text(
        "user_id,item_id,timestamp\n"
        "u1,i1,1600000000.1\nu1,i1,1600000000.9\n"  # 0.8 s apart: two clicks
        "u1,i2,2020-09-13T12:26:40Z\nu1,i2,1600000000\n",  # one instant written twice
        encoding="utf-8",
    )
    summary, _ = _ingest(tmp_path, path)
    assert summary["rows_valid"] == 4 and summary["duplicates_dropped"] == 1
    assert summary["timestamp_units"] == {"iso8601": 1, "s": 3}


def test_a_truncated_gzip_names_the_file_and_where_it_broke(tmp_path):
    text = "".join(["user_id,item_id,timestamp\n", *_clicks(5000)]).encode()
    data = gzip.compress(text)
    path = tmp_path / "clicks.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match=r"clicks\.csv\.gz: unreadable after line \d+"):
        _ingest(tmp_path, path)


def test_a_corrupt_tfrecord_names_the_record(tmp_path, broken_files):
    path = tmp_path / "clicks.tfrecord"
    broken_files.corrupt_tfrecord(path)
    with pytest.raises(IngestError, match=r"clicks\.tfrecord: unreadable after record \d+"):
        _ingest(tmp_path, path)


def test_a_torn_parquet_file_is_named(tmp_path, broken_files):
    path = tmp_path / "clicks.parquet"
    broken_files.torn_parquet(path)
    with pytest.raises(IngestError, match=r"clicks\.parquet: unreadable"):
        _ingest(tmp_path, path)


def test_header_faults_name_file_and_column(tmp_path):
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("user_id,item_id,timestamp,item_id\nu,i,1600000000,j\n")
    with pytest.raises(IngestError, match=r"repeated\.csv: column 'item_id' appears twice"):
        _preflight(str(repeated), None)
    binary_name = tmp_path / "binary_name.csv"
    binary_name.write_bytes(b"user_id,item_id,timestamp,ex\xfftra\nu,i,1600000000,x\n")
    with pytest.raises(IngestError, match=r"binary_name\.csv: header column 4 .* not UTF-8"):
        _preflight(str(binary_name), None)
    missing = tmp_path / "missing.parquet"
    pq.write_table(pa.table({"user_id": ["u"], "ts": [1]}), missing)
    with pytest.raises(IngestError, match=r"missing\.parquet: missing required column 'item_id'"):
        _preflight(str(missing), None)


def test_parquet_ids_that_are_not_ids_are_quarantined_by_reason(tmp_path):
    path = tmp_path / "clicks.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["u1", None, "u3", "u4", "u5", "u6"],
                "item_id": pa.array([[1], [2], None, [4, 5], [], [6]], pa.list_(pa.int64())),
                "timestamp": [1_600_000_000] * 6,
            }
        ),
        path,
    )
    with pytest.raises(IngestError, match="no valid rows left of 6"):
        _ingest(tmp_path, path, max_bad_fraction=1.0)
    quarantined = [
        json.loads(line)
        for name in glob.glob(str(tmp_path / "out" / "quarantine" / "*.jsonl"))
        for line in open(name, encoding="utf-8")
    ]
    reasons = sorted((q["row_number"], q["reason"], q["field"]) for q in quarantined)
    assert reasons == [
        (1, "bad_id_type", "item_id"),
        (2, "missing_field", "user_id"),
        (3, "missing_field", "item_id"),
        (4, "bad_id_type", "item_id"),
        (5, "bad_id_type", "item_id"),
        (6, "bad_id_type", "item_id"),  # a list of one is still a list
    ]


def test_float_and_nan_ids_are_not_ids(tmp_path):
    path = tmp_path / "clicks.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["u1", "u2", "u3"],
                "item_id": pa.array([1.0, float("nan"), 3.5]),
                "timestamp": [1_600_000_000] * 3,
            }
        ),
        path,
    )
    with pytest.raises(IngestError, match="no valid rows left of 3"):
        _ingest(tmp_path, path, max_bad_fraction=1.0)


def test_preflight_and_reading_work_off_the_local_disk(tmp_path):
    """TF's in-memory ram:// stands in for gs:// and s3://: spans, every format, gzip."""
    import uuid

    root = f"ram://ingest-{uuid.uuid4().hex}/logs"
    text = 'user_id,item_id,timestamp\nu1,i1,1600000000\nu2,"i\n2",1600000001\n'
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        tf.io.gfile.makedirs(f"{root}/{day}")  # ram:// lists only folders it was told of
    with tf.io.gfile.GFile(f"{root}/2024-01-01/a.csv", "w") as f:
        f.write(text)
    with tf.io.gfile.GFile(f"{root}/2024-01-02/b.csv.gz", "wb") as f:
        f.write(gzip.compress(text.encode()))
    storage.write_parquet(
        pa.table({"user_id": ["u3"], "item_id": ["i3"], "timestamp": [1600000002]}),
        f"{root}/2024-01-02/c.parquet",
    )
    with tf.io.TFRecordWriter(f"{root}/2024-01-03/d.tfrecord") as writer:
        writer.write(
            common.make_example(
                {"user_id": [b"u4"], "item_id": [b"i4"]}, {"timestamp": [1600000003]}
            ).SerializeToString()
        )
    files, _ = _preflight(root, None)
    assert [(f.path.rsplit("/", 1)[1], f.span) for f in files] == [
        ("a.csv", 19723),
        ("b.csv.gz", 19724),
        ("c.parquet", 19724),
        ("d.tfrecord", 19725),
    ]
    records = [r for f in files for r in sources.read_file(f)]
    assert [r["values"]["item_id"] for r in records] == ["i1", "i\n2", "i1", "i\n2", "i3", "i4"]
    assert [r["lines"] for r in records] == [1, 2, 1, 2, 1, 1]
    with pytest.raises(IngestError, match="input does not exist"):
        _preflight(f"{root}/nope", None)


def _day_folders(root, days: dict[str, str]) -> str:
    for day, body in days.items():
        (root / day).mkdir(parents=True)
        (root / day / "clicks.csv").write_text("user_id,item_id,timestamp\n" + body)
    return str(root)


def test_the_run_date_picks_the_day_folders_of_its_window(tmp_path):
    root = _day_folders(
        tmp_path / "logs",
        {
            "2024-01-01": "u1,i1,1704067200\n",
            "2024-01-02": "u1,i2,1704153600\n",
            "2024-01-03": "u1,i3,1704240000\n",
        },
    )
    files, window = _preflight(root, None)
    assert window.run_date == "2024-01-03" and window.first_day is None  # the newest folder
    assert [f.span for f in files] == [19723, 19724, 19725]
    # Every day up to the run date is read (history); the window says which days train.
    files, window = _preflight(root, None, "2024-01-02", 1)
    assert [f.span for f in files] == [19723, 19724] and window.first_day == "2024-01-02"
    files, window = _preflight(root, None, "2024-01-03", 2)
    assert [f.span for f in files] == [19723, 19724, 19725] and window.first_day == "2024-01-02"
    assert [f.span for f in _preflight(root, 2, "2024-01-03")[0]] == [19724, 19725]
    with pytest.raises(IngestError, match=r"no day folder 2024-01-05/ for the run date"):
        _preflight(root, None, "2024-01-05")
    with pytest.raises(IngestError, match=r"--date '2024-1-5': not a date"):
        _preflight(root, None, "2024-1-5")
    (tmp_path / "logs" / "2024-01-04").mkdir()
    with pytest.raises(IngestError, match=r"2024-01-04: the run date's day folder holds no data"):
        _preflight(root, None, "2024-01-04")
    # ingest.allow_missing_run_date: the days before it (the window still ends at the date).
    for date in ("2024-01-04", "2024-01-05"):
        files, window = _preflight(root, None, date, 3, allow_missing_day=True)
        assert [f.span for f in files] == [19723, 19724, 19725] and window.run_date == date
    with pytest.raises(IngestError, match=r"no day folder 2023-12-30/ for the run date"):
        _preflight(root, None, "2023-12-30", 2, allow_missing_day=True)


def test_events_after_the_run_date_are_out_of_the_window_not_quarantined(tmp_path):
    day = 1_704_067_200  # 2024-01-01T00:00:00Z
    root = _day_folders(
        tmp_path / "logs",
        {
            "2024-01-01": f"u1,i1,{day}\nu1,i2,{day + 86_399}\n",
            # A late file: one event of the next day, one of the day after the run date.
            "2024-01-02": f"u1,i3,{day + 86_400}\nu2,i4,{day + 2 * 86_400}\n",
        },
    )
    files, window = _preflight(root, None, "2024-01-02")
    out = tmp_path / "out"
    summary = logic.ingest_clicks(
        beam.Pipeline,
        files,
        window,
        IngestConfig(now=0),  # with a run date, nothing is "future"
        str(out / "examples"),
        str(out / "quarantine"),
        str(out / "summary.json"),
    )
    assert summary["rows_read"] == 4 and summary["rows_valid"] == 4
    assert summary["rows_quarantined"] == 0 and summary["rows_out_of_window"] == 1
    assert summary["rows_written"] == 3 and summary["run_date"] == "2024-01-02"
    assert summary["rows_before_window"] == 0
    # A one-day window: the first day's events are history, written and counted as such.
    files, window = _preflight(root, None, "2024-01-02", 1)
    summary = logic.ingest_clicks(
        beam.Pipeline,
        files,
        window,
        IngestConfig(now=0),
        str(out / "examples1"),
        str(out / "quarantine1"),
        str(out / "summary1.json"),
    )
    assert summary["rows_written"] == 3 and summary["rows_before_window"] == 2
    assert summary["rows_out_of_window"] == 1 and summary["window_first_day"] == "2024-01-02"
