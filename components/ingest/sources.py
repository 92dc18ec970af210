"""Finding, checking and reading click-log files (CSV, Parquet, TFRecord). Imports without TFX.

A reader yields one *raw record* per data row: a dict with `source_file`, `row_number` (the 1-based
physical line a CSV record starts on, or the 1-based record index), `input_order`, and either
`values` ({column: raw value}) or `error` ({reason, field, detail}) when the row could not even be
split into columns. Validation happens later, in `rows.py`.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow.parquet as pq
import tensorflow as tf

from offline_recall.components.errors import IngestError
from offline_recall.trainer import features as F

CSV, PARQUET, TFRECORD = "csv", "parquet", "tfrecord"
_SPAN_DIR = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_EPOCH = datetime.date(1970, 1, 1)
ROW_BITS = 40  # input_order = file_rank << ROW_BITS | row_number


@dataclass(frozen=True)
class InputFile:
    path: str
    format: str
    span: int
    rank: int


def file_format(path: str) -> str:
    """Returns csv, parquet or tfrecord from the file name; IngestError for anything else."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".csv"):
        return CSV
    if name.endswith(".parquet"):
        return PARQUET
    if name.endswith((".tfrecord", ".tfrecords")):
        return TFRECORD
    raise IngestError(f"{path}: unknown input format (expected .csv, .parquet or .tfrecord[.gz])")


def _data_files(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, n)
        for n in os.listdir(folder)
        if not n.startswith((".", "_")) and os.path.isfile(os.path.join(folder, n))
    )


def discover(input_base: str, max_spans: int | None = None) -> list[InputFile]:
    """Lists the input files in read order: one file, a folder of files, or daily span folders.

    Daily folders `YYYY-MM-DD/` are spans numbered as days since 1970-01-01 (as TFX's
    `{YYYY}-{MM}-{DD}` pattern does); `max_spans` keeps only the newest ones.
    """
    if not os.path.exists(input_base):
        raise IngestError(f"{input_base}: input does not exist")
    if os.path.isfile(input_base):
        return [InputFile(input_base, file_format(input_base), 0, 0)]
    spans = []
    for name in sorted(os.listdir(input_base)):
        match = _SPAN_DIR.match(name)
        if match and os.path.isdir(os.path.join(input_base, name)):
            try:
                day = datetime.date(*(int(g) for g in match.groups()))
            except ValueError as e:
                raise IngestError(f"{os.path.join(input_base, name)}: not a valid date: {e}") from e
            spans.append(((day - _EPOCH).days, os.path.join(input_base, name)))
    if spans:
        if max_spans:
            spans = spans[-int(max_spans) :]
        pairs = [(span, path) for span, folder in spans for path in _data_files(folder)]
    else:
        pairs = [(0, path) for path in _data_files(input_base)]
    if not pairs:
        raise IngestError(f"{input_base}: input folder holds no data files")
    return [InputFile(p, file_format(p), span, rank) for rank, (span, p) in enumerate(pairs)]


def _open_binary(path: str):
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block
    return gzip.GzipFile(fileobj=raw) if path.lower().endswith(".gz") else raw


def _csv_text(path: str) -> io.TextIOWrapper:
    # surrogateescape keeps invalid UTF-8 readable so that one bad row is quarantined, not the file.
    return io.TextIOWrapper(
        _open_binary(path), encoding="utf-8", errors="surrogateescape", newline=""
    )


def _csv_header(path: str, reader) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise IngestError(f"{path}: empty file, no header row") from None
    except csv.Error as e:
        raise IngestError(f"{path}: not a readable CSV header: {e}") from e
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    return [h.strip() for h in header]


def _check_columns(path: str, columns: list[str]) -> None:
    missing = [c for c in F.REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise IngestError(
            f"{path}: missing required column '{missing[0]}' (columns are: {', '.join(columns)})"
        )


def preflight_file(f: InputFile) -> bool:
    """Checks one file can be read as its format with the required columns; True if it has rows."""
    try:
        if f.format == CSV:
            with _csv_text(f.path) as text:
                try:
                    header = _csv_header(f.path, csv.reader(text))
                except UnicodeDecodeError as e:
                    raise IngestError(f"{f.path}: not a text CSV file: {e}") from e
                if any("\x00" in h or "\udc80" <= h[:1] <= "\udcff" for h in header if h):
                    raise IngestError(f"{f.path}: not a text CSV file (binary header)")
                _check_columns(f.path, header)
                return any(line.strip() for line in text)
        if f.format == PARQUET:
            try:
                parquet = pq.ParquetFile(f.path)
            except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad files
                raise IngestError(f"{f.path}: not a Parquet file: {e}") from e
            _check_columns(f.path, parquet.schema_arrow.names)
            return parquet.metadata.num_rows > 0
        first = next(iter(_tfrecords(f.path)), None)
        if first is None:
            return False
        try:
            example = tf.train.Example.FromString(first)
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError
            raise IngestError(f"{f.path}: record 1 is not a tf.Example: {e}") from e
        _check_columns(f.path, list(example.features.feature.keys()))
        return True
    except PermissionError as e:
        raise IngestError(f"{f.path}: cannot read file: {e.strerror}") from e
    except IsADirectoryError as e:
        raise IngestError(f"{f.path}: cannot read file: is a directory") from e
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise IngestError(f"{f.path}: cannot read file: {e}") from e
    except tf.errors.OpError as e:
        raise IngestError(f"{f.path}: not a TFRecord file: {e.message}") from e


def preflight(input_base: str, max_spans: int | None) -> list[InputFile]:
    """Fails fast, with one line naming the file, on input that cannot be ingested at all.

    Args:
        input_base: one file, a folder of files, or a folder of daily YYYY-MM-DD/ spans.
        max_spans: with spans, read only the newest this many (None = all).
    """
    files = discover(input_base, max_spans)
    has_rows = [preflight_file(f) for f in files]
    if not any(has_rows):
        raise IngestError(f"{input_base}: input has no rows")
    return files


def _tfrecords(path: str) -> Iterator[bytes]:
    compression = "GZIP" if path.lower().endswith(".gz") else ""
    for record in tf.data.TFRecordDataset(path, compression_type=compression):
        yield record.numpy()


def _record(f: InputFile, row_number: int, **payload) -> dict:
    return {
        "source_file": f.path,
        "row_number": row_number,
        "input_order": (f.rank << ROW_BITS) | row_number,
        **payload,
    }


def read_csv(f: InputFile) -> Iterator[dict]:
    """Yields raw records of an RFC 4180 CSV; quoted fields may hold commas, quotes, newlines."""
    with _csv_text(f.path) as text:
        # One reader for header and rows, so line_num counts physical lines from the top.
        reader = csv.reader(text)
        header = _csv_header(f.path, reader)
        while True:
            start_line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield _record(
                    f,
                    start_line,
                    error={"reason": "csv_parse_error", "field": None, "detail": str(e)},
                    raw=None,
                )
                continue
            if not row:
                yield _record(f, start_line, blank=True)
                continue
            if len(row) != len(header):
                yield _record(
                    f,
                    start_line,
                    error={
                        "reason": "wrong_column_count",
                        "field": None,
                        "detail": f"{len(row)} columns, header has {len(header)}",
                    },
                    raw=row,
                )
                continue
            yield _record(f, start_line, values=dict(zip(header, row, strict=True)))


def read_parquet(f: InputFile) -> Iterator[dict]:
    row_number = 0
    for batch in pq.ParquetFile(f.path).iter_batches(batch_size=65536):
        for values in batch.to_pylist():
            row_number += 1
            yield _record(f, row_number, values=values)


def _feature_value(feature):
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if len(values) != 1:
        return values if values else None
    value = values[0]
    return value.decode("utf-8", errors="surrogateescape") if isinstance(value, bytes) else value


def read_tfrecord(f: InputFile) -> Iterator[dict]:
    for row_number, record in enumerate(_tfrecords(f.path), start=1):
        try:
            example = tf.train.Example.FromString(record)
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError
            yield _record(
                f,
                row_number,
                error={
                    "reason": "unparseable_row",
                    "field": None,
                    "detail": f"not a tf.Example: {e}",
                },
                raw=None,
            )
            continue
        values = {k: _feature_value(v) for k, v in example.features.feature.items()}
        yield _record(f, row_number, values=values)


READERS = {CSV: read_csv, PARQUET: read_parquet, TFRECORD: read_tfrecord}


def read_file(f: InputFile) -> Iterator[dict]:
    """Yields every raw record of one input file."""
    return READERS[f.format](f)
