"""Finding, checking and reading click-log files (CSV, Parquet, TFRecord). Imports without TFX.

A reader yields one *raw record* per data row: a dict with `source_file`, `row_number` (the 1-based
physical line a CSV record starts on, or the 1-based record index), `input_order`, and either
`values` ({column: raw value}) or `error` ({reason, field, detail}) when the row could not even be
split into columns. Validation happens later, in `rows.py`.
"""

from __future__ import annotations

import collections
import csv
import datetime
import gzip
import io
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import tensorflow as tf

from offline_recall.components.errors import IngestError
from offline_recall.core import dates, storage
from offline_recall.core.config import IngestConfig
from offline_recall.trainer import features as F

CSV, PARQUET, TFRECORD = "csv", "parquet", "tfrecord"
_SPAN_DIR = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
ROW_BITS = 40  # input_order = file_rank << ROW_BITS | row_number


@dataclass(frozen=True)
class InputFile:
    path: str
    format: str
    span: int
    rank: int


@dataclass(frozen=True)
class FileSplit:
    """A part of one input file that one worker reads; `plan_splits` makes them.

    Attributes:
        file: the input file.
        start: CSV: the byte offset of the split's first line, a line that certainly starts a
            record (0 = the file's start, header included). Parquet: the first row group.
        stop: CSV: the line number the next split starts on. Parquet: the row group after the
            split's last. None = to the end of the file.
        first_row: CSV: the line number of the line at `start`. Parquet: the row number of the
            first row of row group `start`. Both 1-based, as the whole file numbers them.
    """

    file: InputFile
    start: int = 0
    stop: int | None = None
    first_row: int = 1


def as_split(source: InputFile | FileSplit) -> FileSplit:
    """A split as is; a file as the one split that is all of it."""
    return source if isinstance(source, FileSplit) else FileSplit(source)


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


def _names(folder: str) -> list[str]:
    # Object stores list sub-folders with a trailing slash.
    return sorted(n.rstrip("/") for n in tf.io.gfile.listdir(folder))


def _data_files(folder: str) -> list[str]:
    return [
        os.path.join(folder, n)
        for n in _names(folder)
        if not n.startswith((".", "_")) and not tf.io.gfile.isdir(os.path.join(folder, n))
    ]


@dataclass(frozen=True)
class Window:
    """The days a run covers: [first_day, run_date], both inclusive, UTC.

    Attributes:
        run_date: the run's date, YYYY-MM-DD, or None (no end: all events count).
        first_day: the window's first day, or None (all history).
    """

    run_date: str | None = None
    first_day: str | None = None

    def bounds_micros(self) -> tuple[int | None, int | None]:
        """(start inclusive, end exclusive) in epoch microseconds; None where open."""
        start = end = None
        if self.first_day:
            start = dates.day_start_micros(self.first_day)
        if self.run_date:
            end = dates.day_end_micros(self.run_date)
        return start, end


def parse_run_date(text: str) -> datetime.date:
    """A run date from YYYY-MM-DD; IngestError naming the value otherwise."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text, re.ASCII):
            raise ValueError("not YYYY-MM-DD")
        return datetime.date.fromisoformat(text)
    except ValueError as e:
        raise IngestError(f"--date {text!r}: not a date (YYYY-MM-DD): {e}") from None


def _span_folders(input_base: str) -> list[tuple[datetime.date, str]]:
    spans = []
    for name in _names(input_base):
        match = _SPAN_DIR.match(name)
        if match and tf.io.gfile.isdir(os.path.join(input_base, name)):
            try:
                day = datetime.date(*(int(g) for g in match.groups()))
            except ValueError as e:
                raise IngestError(f"{os.path.join(input_base, name)}: not a valid date: {e}") from e
            spans.append((day, os.path.join(input_base, name)))
    return spans


def discover(
    input_base: str,
    max_spans: int | None = None,
    run_date: str | None = None,
    window_days: int | None = None,
    allow_missing_day: bool = False,
) -> tuple[list[InputFile], Window]:
    """Lists the input files in read order and the window of days the run covers.

    One file or a folder of files: every file; the window ends at `run_date` if one is given.
    Daily folders `YYYY-MM-DD/` are spans, numbered as days since 1970-01-01 (as TFX's
    `{YYYY}-{MM}-{DD}` pattern and `StaticRange` number them): the run date defaults to the
    newest folder, and the run reads every folder up to it, at most the newest `max_spans`;
    `window_days` (the days ending at the run date a model trains on) only sets the window. The run date's own folder must
    exist and hold data files, unless `allow_missing_day`: then the run covers the earlier days
    (the window still ends at the run date).

    Raises:
        IngestError: naming the input, the folder or the date.
    """
    day = parse_run_date(run_date) if run_date else None
    try:
        exists = tf.io.gfile.exists(input_base)
    except tf.errors.OpError as e:
        raise IngestError(f"{input_base}: cannot reach the input: {e.message}") from e
    if not exists:
        raise IngestError(f"{input_base}: input does not exist")
    if not tf.io.gfile.isdir(input_base):
        return [InputFile(input_base, file_format(input_base), 0, 0)], _window(day, window_days)
    spans = _span_folders(input_base)
    if not spans:
        pairs = [(0, path) for path in _data_files(input_base)]
        if not pairs:
            raise IngestError(f"{input_base}: input folder holds no data files")
        files = [InputFile(p, file_format(p), span, rank) for rank, (span, p) in enumerate(pairs)]
        return files, _window(day, window_days)
    if day is None:
        day = spans[-1][0]
    window = _window(day, window_days)
    # Every folder up to the run date: days before the window are the users' history (their
    # histories, visited items and serving lists), the window's days are what the model trains
    # on. `max_spans` caps how far back history goes.
    chosen = [(d, f) for d, f in spans if d <= day]
    if not chosen or chosen[-1][0] != day:
        if not (allow_missing_day and chosen):
            raise IngestError(
                f"{input_base}: no day folder {day.isoformat()}/ for the run date (newest is "
                f"{spans[-1][0].isoformat()})"
            )
    elif not _data_files(chosen[-1][1]):
        if not allow_missing_day:
            raise IngestError(f"{chosen[-1][1]}: the run date's day folder holds no data files")
        chosen = chosen[:-1]
    chosen = [(d, f) for d, f in chosen if _data_files(f)] if allow_missing_day else chosen
    if not chosen:
        raise IngestError(
            f"{input_base}: no day folder with data files in the window ending {day.isoformat()}"
        )
    if max_spans:
        chosen = chosen[-int(max_spans) :]
    pairs = [(dates.span_of(d), path) for d, folder in chosen for path in _data_files(folder)]
    files = [InputFile(p, file_format(p), span, rank) for rank, (span, p) in enumerate(pairs)]
    return files, window


def _window(day: datetime.date | None, window_days: int | None) -> Window:
    if day is None:
        return Window()
    first = dates.first_day_of_window(day, window_days) if window_days else None
    return Window(day.isoformat(), first.isoformat() if first else None)


def _open_file(path: str):
    """A binary file: the local one as the OS opens it (its errors name the cause), anything
    else through tf.io.gfile."""
    if storage.is_local(path):
        return open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block
    return io.BufferedReader(storage.GFileRaw(path))


def _open_binary(path: str):
    raw = _open_file(path)
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


def _printable_name(name: str) -> str:
    return name.encode("utf-8", errors="surrogateescape").decode("utf-8", "backslashreplace")


def check_header(path: str, columns: list[str]) -> None:
    """Raises IngestError naming the file and column of a header no row can be read under.

    Every column name must be text (UTF-8, no NUL), appear once, and the required columns must
    all be there.
    """
    for position, name in enumerate(columns, start=1):
        if "\x00" in name or any("\udc80" <= ch <= "\udcff" for ch in name):
            raise IngestError(
                f"{path}: header column {position} ({_printable_name(name)!r}) is not UTF-8 text"
            )
    seen = set()
    for name in columns:
        if name in seen:
            raise IngestError(f"{path}: column '{name}' appears twice in the header")
        seen.add(name)
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
                if any("\x00" in h or "\udc80" <= h[:1] <= "\udcff" for h in header if h[:1]):
                    raise IngestError(f"{f.path}: not a text CSV file (binary header)")
                check_header(f.path, header)
                return any(line.strip() for line in text)
        if f.format == PARQUET:
            try:
                parquet = storage.open_parquet(f.path)
            except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad files
                raise IngestError(f"{f.path}: not a Parquet file: {e}") from e
            check_header(f.path, parquet.schema_arrow.names)
            return parquet.metadata.num_rows > 0
        first = next(iter(_tfrecords(f.path)), None)
        if first is None:
            return False
        try:
            example = tf.train.Example.FromString(first)
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError
            raise IngestError(f"{f.path}: record 1 is not a tf.Example: {e}") from e
        check_header(f.path, list(example.features.feature.keys()))
        return True
    except PermissionError as e:
        raise IngestError(f"{f.path}: cannot read file: {e.strerror}") from e
    except IsADirectoryError as e:
        raise IngestError(f"{f.path}: cannot read file: is a directory") from e
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise IngestError(f"{f.path}: cannot read file: {e}") from e
    except tf.errors.OpError as e:
        raise IngestError(f"{f.path}: not a TFRecord file: {e.message}") from e


def preflight(
    input_base: str, config: IngestConfig | None = None, run_date: str | None = None
) -> tuple[list[InputFile], Window]:
    """Fails fast, with one line naming the file, on input that cannot be ingested at all.

    The CLI calls it before it builds the pipeline (exit 2 on bad input) and IngestExampleGen's
    executor calls it again where the run really happens (an orchestrator has no CLI).

    Args:
        input_base: one file, a folder of files, or a folder of daily YYYY-MM-DD/ spans.
        config: the `ingest` section (max_spans, window_days, allow_missing_run_date); None =
            its defaults.
        run_date: the run's date, YYYY-MM-DD (None: the newest day folder, or no end).

    Returns:
        (the files to read, the window of days).
    """
    config = config or IngestConfig()
    files, window = discover(
        input_base,
        config.max_spans,
        run_date,
        config.window_days,
        config.allow_missing_run_date,
    )
    has_rows = [preflight_file(f) for f in files]
    if not any(has_rows):
        raise IngestError(f"{input_base}: input has no rows")
    return files, window


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


class _PhysicalLines:
    """The file's physical lines, each with its line break, with a push-back for re-reading.

    csv.reader pulls lines from it one at a time (more only inside a quoted field), so the lines
    a record took are known, and a record that went wrong can give back all but its first.
    """

    def __init__(self, text: io.TextIOWrapper):
        self._text = text
        self._pending: collections.deque[str] = collections.deque()
        self.taken: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self._pending.popleft() if self._pending else self._text.readline()
        if not line:
            raise StopIteration
        self.taken.append(line)
        return line

    def start_record(self) -> None:
        self.taken = []

    def give_back(self, lines: list[str]) -> None:
        self._pending.extendleft(reversed(lines))


def _unbalanced(f: InputFile, line_number: int, lines: list[str], detail: str) -> dict:
    return _record(
        f,
        line_number,
        lines=1,
        error={"reason": "unbalanced_quote", "field": None, "detail": detail},
        raw=lines[0].rstrip("\r\n"),
    )


def _quote_free_bytes() -> int:
    """Bytes without a quote before a line that make it certainly the start of a record.

    A record that ran on over such a stretch would hold a quoted field longer than the csv
    module's field limit (counted in characters, at most 4 UTF-8 bytes each); that record is a
    parse error and `read_csv` resumes on its next line, so no accepted record crosses it.
    """
    return 4 * csv.field_size_limit() + 4


def _line_breaks(data: bytes) -> int:
    """The physical line breaks in `data`, as a text stream with newline="" splits lines:
    \n, \r\n and a lone \r each end one."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def _csv_split_starts(path: str, split_bytes: int, chunk_bytes: int = 8 << 20):
    """Yields (byte offset, line number) of a line near every `split_bytes` of a plain CSV file
    that certainly starts a record: the line after a newline with `_quote_free_bytes()` before it
    holding no quote. One pass, at the speed of bytes.count; nothing is parsed."""
    window = _quote_free_bytes()
    target = split_bytes
    base = 0  # the offset of `chunk`
    breaks_before = 0  # line breaks before `chunk`
    last_quote = -(window + 1)  # the offset of the newest quote seen
    carry_cr = False  # the previous chunk ended with \r
    with _open_file(path) as raw:
        while True:
            chunk = raw.read(chunk_bytes)
            if not chunk:
                return
            end = base + len(chunk)
            pos = max(target, base)
            while pos < end:
                newline = chunk.find(b"\n", pos - base)
                if newline < 0:
                    break
                line_start = base + newline + 1
                quote = chunk.rfind(b'"', 0, newline)
                if quote >= 0:
                    last_quote = max(last_quote, base + quote)
                if line_start - last_quote <= window:
                    pos = max(last_quote + window, line_start)
                    continue
                if line_start >= end:
                    break  # the line starts in the next chunk; look there
                breaks = _line_breaks(chunk[: newline + 1]) - (carry_cr and chunk[:1] == b"\n")
                yield line_start, breaks_before + breaks + 1
                target = line_start + split_bytes
                pos = max(target, line_start)
            tail_quote = chunk.rfind(b'"')
            if tail_quote >= 0:
                last_quote = max(last_quote, base + tail_quote)
            breaks_before += _line_breaks(chunk) - (carry_cr and chunk[:1] == b"\n")
            carry_cr = chunk[-1:] == b"\r"
            base = end


def plan_splits(f: InputFile, split_bytes: int) -> list[FileSplit]:
    """Cuts one input file into parts of about `split_bytes` that workers read in parallel.

    Line and row numbers stay those of the whole file. A plain CSV is cut at lines that
    certainly start a record (`_csv_split_starts`), so quoted line breaks and stray quotes give
    the same records, numbers and quarantine as one reader would. Parquet is cut between row
    groups. Compressed CSV and TFRecord files cannot be cut and stay whole.

    Args:
        f: the input file.
        split_bytes: about how many bytes one part holds.
    """
    if f.format == PARQUET:
        metadata = storage.open_parquet(f.path).metadata
        splits, start, first_row, size, row = [], 0, 1, 0, 1
        for group in range(metadata.num_row_groups):
            if size >= split_bytes:
                splits.append(FileSplit(f, start, group, first_row))
                start, first_row, size = group, row, 0
            size += metadata.row_group(group).total_byte_size
            row += metadata.row_group(group).num_rows
        return [*splits, FileSplit(f, start, None, first_row)]
    if f.format != CSV or f.path.lower().endswith(".gz"):
        return [FileSplit(f)]
    if tf.io.gfile.stat(f.path).length <= split_bytes:
        return [FileSplit(f)]
    starts = [(0, 1), *_csv_split_starts(f.path, split_bytes)]
    return [
        FileSplit(f, offset, next_line, line)
        for (offset, line), (_, next_line) in zip(starts, [*starts[1:], (None, None)], strict=True)
    ]


def _csv_text_from(path: str, offset: int) -> io.TextIOWrapper:
    raw = _open_binary(path)
    raw.seek(offset)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")


def _header_of(path: str) -> list[str]:
    with _csv_text(path) as text:
        header = _csv_header(path, csv.reader(_PhysicalLines(text)))
    check_header(path, header)
    return header


def read_csv(
    f: InputFile | FileSplit, row_ok: Callable[[dict], bool] | None = None
) -> Iterator[dict]:
    """Yields raw records of an RFC 4180 CSV; quoted fields may hold commas, quotes, newlines.

    Every record carries `lines`, the physical lines it took, so lines reconcile: the header's,
    plus every record's (blank lines included), make the file. A quote that opens a field and is
    never closed on its line (a stray quote) would swallow the rows after it: when a record runs
    over a line break and is not a valid row (`row_ok` says, or the column count), only the line
    it started on is quarantined (`unbalanced_quote`) and reading resumes on the next line.

    Args:
        f: the file, or a part of it (`plan_splits`): then the records that start in it.
        row_ok: whether {column: value} is a valid row; None checks the column count only.
    """
    split = as_split(f)
    f = split.file
    with _csv_text_from(f.path, split.start) as text:
        lines = _PhysicalLines(text)
        reader = csv.reader(lines)
        if split.start == 0:
            header = _csv_header(f.path, reader)
            check_header(f.path, header)
            line_number = len(lines.taken) + 1  # the line the next record starts on
        else:
            header, line_number = _header_of(f.path), split.first_row
        while split.stop is None or line_number < split.stop:
            lines.start_record()
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                taken = lines.taken
                if len(taken) > 1:
                    # A quoted field ran on to the end of the file or the field size limit.
                    lines.give_back(taken[1:])
                    yield _unbalanced(f, line_number, taken, f"{e}; the quote opens on this line")
                    line_number += 1
                    continue
                yield _record(
                    f,
                    line_number,
                    lines=1,
                    error={"reason": "csv_parse_error", "field": None, "detail": str(e)},
                    raw=taken[0].rstrip("\r\n") if taken else None,
                )
                line_number += max(1, len(taken))
                continue
            taken = lines.taken
            values = dict(zip(header, row, strict=True)) if len(row) == len(header) else None
            if len(taken) > 1 and (values is None or (row_ok is not None and not row_ok(values))):
                lines.give_back(taken[1:])
                yield _unbalanced(
                    f,
                    line_number,
                    taken,
                    f"a quoted field runs over {len(taken) - 1} line break(s) into a record that "
                    "is not a valid row",
                )
                line_number += 1
                continue
            record_line, line_number = line_number, line_number + len(taken)
            if not row:
                yield _record(f, record_line, lines=len(taken), blank=True)
            elif values is None:
                yield _record(
                    f,
                    record_line,
                    lines=len(taken),
                    error={
                        "reason": "wrong_column_count",
                        "field": None,
                        "detail": f"{len(row)} columns, header has {len(header)}",
                    },
                    raw=row,
                )
            else:
                yield _record(f, record_line, lines=len(taken), values=values)


def read_parquet(f: InputFile | FileSplit, row_ok=None) -> Iterator[dict]:
    del row_ok  # one row is one record: nothing to recover
    split = as_split(f)
    f = split.file
    parquet = storage.open_parquet(f.path)
    stop = parquet.metadata.num_row_groups if split.stop is None else split.stop
    row_number = split.first_row - 1
    for batch in parquet.iter_batches(batch_size=65536, row_groups=list(range(split.start, stop))):
        for values in batch.to_pylist():
            row_number += 1
            yield _record(f, row_number, lines=1, values=values)


def _feature_value(feature):
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if len(values) != 1:
        return values if values else None
    value = values[0]
    return value.decode("utf-8", errors="surrogateescape") if isinstance(value, bytes) else value


def read_tfrecord(f: InputFile | FileSplit, row_ok=None) -> Iterator[dict]:
    del row_ok  # one record is one row: nothing to recover
    f = as_split(f).file  # never cut
    for row_number, record in enumerate(_tfrecords(f.path), start=1):
        try:
            example = tf.train.Example.FromString(record)
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError
            yield _record(
                f,
                row_number,
                lines=1,
                error={
                    "reason": "unparseable_row",
                    "field": None,
                    "detail": f"not a tf.Example: {e}",
                },
                raw=None,
            )
            continue
        values = {k: _feature_value(v) for k, v in example.features.feature.items()}
        yield _record(f, row_number, lines=1, values=values)


READERS = {CSV: read_csv, PARQUET: read_parquet, TFRECORD: read_tfrecord}
# What a file that breaks off mid-way raises, by library: a truncated or corrupt gzip stream,
# a torn Parquet page, a corrupt TFRecord.
_BROKEN_FILE = (
    OSError,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    UnicodeDecodeError,
    tf.errors.OpError,
    pa.ArrowException,
    IngestError,
)


def _tf_message(message: str) -> str:
    """A TF op error without the op plumbing around it ({{function_node ...}}, [Op:...])."""
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", message, flags=re.S).strip()


def read_file(
    source: InputFile | FileSplit, row_ok: Callable[[dict], bool] | None = None
) -> Iterator[dict]:
    """Yields every raw record of one input file, or of one part of it (`plan_splits`).

    A file that cannot be read to its end yields, after the records read before the break, one
    `{"source_file", "file_error"}` record naming where it broke, instead of raising: the caller
    fails the run with that line, and nothing of the run is published.
    """
    split = as_split(source)
    f = split.file
    unit = "line" if f.format == CSV else "record"
    last = split.first_row - 1
    try:
        for record in READERS[f.format](split, row_ok):
            last = record["row_number"] + record["lines"] - 1
            yield record
    except _BROKEN_FILE as e:
        detail = _tf_message(e.message) if isinstance(e, tf.errors.OpError) else str(e)
        where = f"after {unit} {last}" if last else "before its first row"
        message = (
            str(e) if isinstance(e, IngestError) else f"{f.path}: unreadable {where}: {detail}"
        )
        yield {"source_file": f.path, "file_error": " ".join(message.split())}
