"""Row validation, quarantine, dedup and counting for ingest (pure functions and Beam).

Every raw record ends in exactly one place: a valid click, the quarantine (with file, row, field
and reason), or the blank-line count. `rows_read == rows_valid + rows_quarantined` by construction,
and in physical lines `lines_read == lines_valid + lines_quarantined + blank_lines`.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import hashlib
import json
import math
import re
from typing import Any

import apache_beam as beam

from offline_recall.components import common
from offline_recall.components.errors import IngestError
from offline_recall.components.ingest import sources
from offline_recall.core import dates
from offline_recall.trainer import features as F

VALID, QUARANTINED, BLANK, FILE_TALLY = "valid", "quarantined", "blank", "file_tally"
# Not a feature: how a valid click's timestamp was read, counted in the summary.
TIMESTAMP_UNIT = "timestamp_unit"
# The order checks run in; a row is quarantined for the first rule it breaks.
REASONS = (
    "csv_parse_error",
    "unbalanced_quote",
    "wrong_column_count",
    "unparseable_row",
    "missing_field",
    "empty_field",
    "invalid_utf8",
    "bad_id_type",
    "id_too_long",
    "bad_timestamp",
    "negative_timestamp",
    "future_timestamp",
)


class RowError(ValueError):
    def __init__(self, reason: str, field: str | None, detail: str):
        super().__init__(detail)
        self.reason, self.field, self.detail = reason, field, detail


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


# Strict decimal numbers: ASCII digits, an optional sign and fraction; no `1_000`, no exponent,
# no other scripts' digits (which Python's int() and float() accept).
_DECIMAL = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?", re.ASCII)
# ISO 8601 as Python reads it: basic (20200101T101010Z) and extended (2020-01-01T10:10:10Z).
_ISO_START = re.compile(r"[0-9]{4}-?[0-9]{2}-?[0-9]{2}", re.ASCII)
# `auto`: the unit of an epoch number from its magnitude. Seconds reach 1e11 in the year 5138;
# milliseconds and microseconds of any date since 1973 are at least 1e11 and 1e14.
UNIT_FACTORS = {"s": 1_000_000, "ms": 1_000, "us": 1}
_AUTO_LIMITS = (("s", 10**11), ("ms", 10**14), ("us", 10**17))
ISO = "iso8601"


def _micros_of_datetime(dt: datetime.datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)  # a naive time is UTC
    return dates.micros_of(dt)


def _epoch_unit(number: decimal.Decimal, unit: str) -> str:
    if unit != "auto":
        return unit
    for name, limit in _AUTO_LIMITS:
        if abs(number) < limit:
            return name
    raise RowError(
        "bad_timestamp",
        F.TIMESTAMP,
        f"{number} is too large for epoch seconds, milliseconds or microseconds",
    )


def parse_timestamp(value: Any, unit: str = "auto") -> tuple[int, str]:
    """Returns (microseconds since the epoch, the unit it was read in); RowError otherwise.

    Args:
        value: epoch time as an int, a float or a strict decimal string; an ISO 8601 string in
            the basic or extended form (a time without offset is UTC; with `auto`, a bare
            8-digit string is a basic-form date, 20200101); or a datetime.
        unit: the epoch unit, "s", "ms" or "us"; "auto" reads it from the magnitude.

    Returns:
        (micros, unit): unit is "s", "ms", "us" or "iso8601".
    """
    if isinstance(value, datetime.datetime):
        return _micros_of_datetime(value), ISO
    if isinstance(value, bool) or value is None:
        raise RowError("bad_timestamp", F.TIMESTAMP, f"not a timestamp: {value!r}")
    if isinstance(value, int):
        number = decimal.Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise RowError("bad_timestamp", F.TIMESTAMP, f"not a finite number: {value!r}")
        number = decimal.Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        date_like = unit == "auto" and len(text) == 8 and text.isascii() and text.isdigit()
        if _DECIMAL.fullmatch(text) and not date_like:
            number = decimal.Decimal(text)
        elif _ISO_START.match(text):
            iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
            try:
                return _micros_of_datetime(datetime.datetime.fromisoformat(iso)), ISO
            except ValueError:
                raise RowError(
                    "bad_timestamp", F.TIMESTAMP, f"not a valid ISO 8601 time: {text!r}"
                ) from None
        else:
            raise RowError(
                "bad_timestamp",
                F.TIMESTAMP,
                f"neither epoch digits nor ISO 8601: {text!r}",
            )
    else:
        raise RowError("bad_timestamp", F.TIMESTAMP, f"a {type(value).__name__} is not a timestamp")
    used = _epoch_unit(number, unit)
    micros = math.floor(number * UNIT_FACTORS[used])
    return micros, used


def seconds_of(micros: int) -> int:
    """Epoch seconds, floored, of epoch microseconds."""
    return micros // 1_000_000


def _id_bytes(values: dict, field: str, max_id_bytes: int) -> bytes:
    """The id's UTF-8 bytes: ids are strings (bytes holding UTF-8) or integers, in decimal."""
    value = values.get(field)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise RowError("missing_field", field, f"{field} is missing")
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(
            "bad_id_type",
            field,
            f"{field} is a {type(value).__name__} ({value!r}); ids are strings or integers",
        )
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        raise RowError("empty_field", field, f"{field} is empty")
    if _has_surrogates(text):
        raise RowError("invalid_utf8", field, f"{field} is not valid UTF-8")
    raw = text.encode("utf-8")
    if len(raw) > max_id_bytes:
        raise RowError("id_too_long", field, f"{field} has {len(raw)} bytes, limit {max_id_bytes}")
    return raw


def _extras(values: dict) -> bytes:
    extras = {}
    for key, value in values.items():
        if key in F.REQUIRED_COLUMNS:
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="surrogateescape")
        if isinstance(value, str) and _has_surrogates(value):
            raise RowError("invalid_utf8", key, f"{key} is not valid UTF-8")
        extras[str(key)] = value if value is None or isinstance(value, str) else str(value)
    return json.dumps(extras, sort_keys=True, ensure_ascii=False).encode("utf-8")


def validate(
    record: dict, max_id_bytes: int, latest_allowed: int, timestamp_unit: str = "auto"
) -> dict:
    """Returns the clean click of a raw record; raises RowError naming the broken rule.

    Args:
        record: a raw record from `sources.read_file`.
        max_id_bytes: the longest id allowed, in UTF-8 bytes.
        latest_allowed: the newest epoch second a click may have.
        timestamp_unit: "auto", "s", "ms" or "us" (see `parse_timestamp`).

    Returns:
        The click's features, plus `timestamp_unit`: how its timestamp was read.
    """
    if "error" in record:
        error = record["error"]
        raise RowError(error["reason"], error["field"], error["detail"])
    values = record["values"]
    user = _id_bytes(values, F.USER_ID, max_id_bytes)
    item = _id_bytes(values, F.ITEM_ID, max_id_bytes)
    raw_ts = values.get(F.TIMESTAMP)
    if raw_ts is None:
        raise RowError("missing_field", F.TIMESTAMP, "timestamp is missing")
    if isinstance(raw_ts, str):
        if not raw_ts.strip():
            raise RowError("empty_field", F.TIMESTAMP, "timestamp is empty")
        if _has_surrogates(raw_ts):
            raise RowError("invalid_utf8", F.TIMESTAMP, "timestamp is not valid UTF-8")
    micros, unit = parse_timestamp(raw_ts, timestamp_unit)
    timestamp = seconds_of(micros)
    if micros < 0:
        raise RowError("negative_timestamp", F.TIMESTAMP, f"negative timestamp {raw_ts!r}")
    if timestamp > latest_allowed:
        hint = ""
        if unit == "s" and timestamp_unit == "s":
            hint = " (read as seconds: set ingest.timestamp_unit to ms or us, or auto)"
        raise RowError(
            "future_timestamp",
            F.TIMESTAMP,
            f"timestamp {raw_ts!r} ({unit}) is after {latest_allowed}, the newest allowed{hint}",
        )
    if micros >= 2**63:
        raise RowError("bad_timestamp", F.TIMESTAMP, f"timestamp {raw_ts!r} out of range")
    return {
        F.USER_ID: user,
        F.ITEM_ID: item,
        F.TIMESTAMP: timestamp,
        F.TIMESTAMP_MICROS: micros,
        F.INPUT_ORDER: record["input_order"],
        F.EXTRAS: _extras(values),
        TIMESTAMP_UNIT: unit,
    }


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogateescape").decode(
            "utf-8", errors="backslashreplace"
        )
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, dict):
        return {str(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return str(value)


def quarantine_record(record: dict, reason: str, field: str | None, detail: str) -> dict:
    return {
        "source_file": record["source_file"],
        "row_number": record["row_number"],
        "reason": reason,
        "field": field,
        "detail": _printable(detail),
        "raw": _printable(record.get("values", record.get("raw"))),
    }


class ReadAndValidateFn(beam.DoFn):
    """Reads one part of an input file (`sources.FileSplit`) and tags each record valid,
    quarantined or blank, with counters.

    Besides the records it yields one FILE_TALLY per part: its physical lines by fate (valid,
    quarantined, blank), the units its timestamps were read in, and the error that broke the file
    off, if one did. `summarize` adds up the parts of a file.
    """

    def __init__(
        self,
        max_id_bytes: int,
        latest_allowed: int,
        timestamp_unit: str,
        window: tuple[int | None, int | None] = (None, None),
    ):
        self._max_id_bytes = max_id_bytes
        self._latest_allowed = latest_allowed
        self._timestamp_unit = timestamp_unit
        self._window = window
        self._read = beam.metrics.Metrics.counter("ingest", "rows_read")
        self._by_reason = {r: beam.metrics.Metrics.counter("ingest", r) for r in REASONS}

    def _validate(self, record: dict) -> dict:
        return validate(record, self._max_id_bytes, self._latest_allowed, self._timestamp_unit)

    def _row_ok(self, values: dict) -> bool:
        try:
            self._validate({"values": values, "input_order": 0})
        except (RowError, ValueError, TypeError, OverflowError, UnicodeError):
            return False
        return True

    def process(self, source: sources.FileSplit | sources.InputFile):
        split = sources.as_split(source)
        path = split.file.path
        tally = {
            "path": path,
            "first_row": split.first_row,
            "lines_valid": 0,
            "lines_quarantined": 0,
            "blank_lines": 0,
            "rows_out_of_window": 0,
            "rows_before_window": 0,
            "timestamp_units": collections.Counter(),
            "error": None,
        }
        for record in sources.read_file(split, self._row_ok):
            if "file_error" in record:
                tally["error"] = record["file_error"]
                break
            if record.get("blank"):
                tally["blank_lines"] += record["lines"]
                yield beam.pvalue.TaggedOutput(BLANK, path)
                continue
            self._read.inc()
            try:
                click = self._validate(record)
            except RowError as e:
                self._by_reason.get(e.reason, self._by_reason["unparseable_row"]).inc()
                tally["lines_quarantined"] += record["lines"]
                yield beam.pvalue.TaggedOutput(
                    QUARANTINED, quarantine_record(record, e.reason, e.field, e.detail)
                )
                continue
            except (ValueError, TypeError, OverflowError, UnicodeError) as e:
                # A row no rule foresaw: quarantined with what broke, never lost.
                tally["lines_quarantined"] += record["lines"]
                yield beam.pvalue.TaggedOutput(
                    QUARANTINED,
                    quarantine_record(record, "unparseable_row", None, f"{type(e).__name__}: {e}"),
                )
                continue
            tally["lines_valid"] += record["lines"]
            tally["timestamp_units"][click.pop(TIMESTAMP_UNIT)] += 1
            start, end = self._window
            micros = click[F.TIMESTAMP_MICROS]
            if end is not None and micros >= end:
                # A valid row after the run date: counted, not quarantined, not used.
                tally["rows_out_of_window"] += 1
                continue
            if start is not None and micros < start:
                # Before the training window: kept as history (histories, visited items,
                # serving), never a training target.
                tally["rows_before_window"] += 1
            yield beam.pvalue.TaggedOutput(VALID, (path, click))
        tally["timestamp_units"] = dict(tally["timestamp_units"])
        yield beam.pvalue.TaggedOutput(FILE_TALLY, tally)


def content_key(path_click: tuple[str, dict]) -> tuple[bytes, tuple[str, dict]]:
    """Keys a click by its content (user, item, exact instant, extras) to find duplicates.

    The instant is the timestamp as given, to the microsecond: two clicks 0.8 s apart differ,
    while `2020-09-13T12:26:41Z` and `1600000001` are the same instant.
    """
    click = path_click[1]
    digest = hashlib.sha256()
    for name in (F.USER_ID, F.ITEM_ID, F.EXTRAS):
        digest.update(len(click[name]).to_bytes(8, "big") + click[name])
    digest.update(str(click[F.TIMESTAMP_MICROS]).encode())
    return digest.digest(), path_click


class KeepFirstFn(beam.DoFn):
    """Keeps the earliest copy (by input order) of each duplicate group; counts the rest."""

    DUPLICATES = "duplicates"

    def process(self, keyed):
        _, copies = keyed
        copies = sorted(copies, key=_input_order_of)
        yield copies[0]
        for _ in copies[1:]:
            yield beam.pvalue.TaggedOutput(self.DUPLICATES, 1)


def _input_order_of(path_click):
    return path_click[1][F.INPUT_ORDER]


def to_example(click: dict) -> bytes:
    return common.make_example(
        {F.USER_ID: [click[F.USER_ID]], F.ITEM_ID: [click[F.ITEM_ID]], F.EXTRAS: [click[F.EXTRAS]]},
        {
            F.TIMESTAMP: [click[F.TIMESTAMP]],
            F.TIMESTAMP_MICROS: [click[F.TIMESTAMP_MICROS]],
            F.INPUT_ORDER: [click[F.INPUT_ORDER]],
        },
    ).SerializeToString()


def to_json_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


def _path_of(path_click):
    return path_click[0]


def _reason_of(record):
    return record["reason"]


@beam.ptransform_fn
def IngestClicks(  # noqa: N802
    files_pcoll,
    max_id_bytes: int,
    latest_allowed: int,
    timestamp_unit: str = "auto",
    window: tuple[int | None, int | None] = (None, None),
):
    """Input files -> {examples, quarantine, valid_per_file, quarantined_per_file, duplicates,
    reasons, blank, file_tallies}."""
    tagged = files_pcoll | "ReadAndValidate" >> beam.ParDo(
        ReadAndValidateFn(max_id_bytes, latest_allowed, timestamp_unit, window)
    ).with_outputs(VALID, QUARANTINED, BLANK, FILE_TALLY)
    deduped = (
        tagged[VALID]
        | "KeyByContent" >> beam.Map(content_key)
        | "GroupDuplicates" >> beam.GroupByKey()
        | "KeepFirst" >> beam.ParDo(KeepFirstFn()).with_outputs(KeepFirstFn.DUPLICATES, main="kept")
    )
    return {
        "examples": deduped.kept
        | "ClickOf" >> beam.Map(_click_of)
        | "ToExample" >> beam.Map(to_example),
        "quarantine": tagged[QUARANTINED],
        "valid_per_file": tagged[VALID]
        | "ValidPath" >> beam.Map(_path_of)
        | "CountValidPerFile" >> beam.combiners.Count.PerElement(),
        "quarantined_per_file": tagged[QUARANTINED]
        | "QuarantinedPath" >> beam.Map(_source_of)
        | "CountQuarantinedPerFile" >> beam.combiners.Count.PerElement(),
        "duplicates": deduped[KeepFirstFn.DUPLICATES]
        | "CountDuplicates" >> beam.combiners.Count.Globally(),
        "reasons": tagged[QUARANTINED]
        | "Reason" >> beam.Map(_reason_of)
        | "CountPerReason" >> beam.combiners.Count.PerElement(),
        "blank": tagged[BLANK] | "CountBlank" >> beam.combiners.Count.Globally(),
        "file_tallies": tagged[FILE_TALLY],
    }


def _click_of(path_click):
    return path_click[1]


def _source_of(record):
    return record["source_file"]


_LINE_COUNTS = ("lines_valid", "lines_quarantined", "blank_lines")
_ROW_COUNTS = ("rows_out_of_window", "rows_before_window")


def merge_tallies(tallies: list[dict]) -> dict[str, dict]:
    """{path: the file's tally}, adding up the tallies of its parts; the file's error is the
    first in line order."""
    merged: dict[str, dict] = {}
    for tally in sorted(tallies, key=_tally_order):
        into = merged.get(tally["path"])
        if into is None:
            into = merged[tally["path"]] = {
                "path": tally["path"],
                **{key: 0 for key in _LINE_COUNTS + _ROW_COUNTS},
                "timestamp_units": collections.Counter(),
                "error": None,
            }
        for key in _LINE_COUNTS + _ROW_COUNTS:
            into[key] += tally.get(key, 0)
        into["timestamp_units"].update(tally["timestamp_units"])
        into["error"] = into["error"] or tally["error"]
    for tally in merged.values():
        tally["timestamp_units"] = dict(tally["timestamp_units"])
    return merged


def _tally_order(tally: dict) -> tuple[str, int]:
    return tally["path"], tally.get("first_row", 1)


def summarize(
    files: list[sources.InputFile],
    valid_per_file: dict,
    quarantined_per_file: dict,
    reasons: dict,
    duplicates: int,
    blank: int,
    file_tallies: list[dict],
    window: sources.Window | None = None,
) -> dict:
    """Builds the ingest counts, in records and in physical lines.

    Records: rows_read = rows_valid + rows_quarantined; of the valid rows, rows_out_of_window
    lie after the run date and duplicates_dropped repeat another; the rest are written
    (rows_before_window of them, before the training window, as history only). Lines: lines_read = lines of valid rows +
    lines of quarantined rows + blank lines (a CSV row with quoted line breaks takes several);
    with each file's header lines, they are every line of the input.
    """
    tallies = merge_tallies(file_tallies)
    file_tallies = list(tallies.values())
    out_of_window = {t["path"]: t["rows_out_of_window"] for t in file_tallies}
    rows_out_of_window = sum(out_of_window.values())
    rows_valid = sum(valid_per_file.values()) + rows_out_of_window
    rows_quarantined = sum(quarantined_per_file.values())
    units: collections.Counter = collections.Counter()
    for tally in file_tallies:
        units.update(tally["timestamp_units"])
    lines = {key: sum(t[key] for t in file_tallies) for key in _LINE_COUNTS}
    return {
        "rows_read": rows_valid + rows_quarantined,
        "rows_valid": rows_valid,
        "rows_quarantined": rows_quarantined,
        "duplicates_dropped": duplicates,
        "rows_out_of_window": rows_out_of_window,
        "rows_before_window": sum(t["rows_before_window"] for t in file_tallies),
        "rows_written": rows_valid - rows_out_of_window - duplicates,
        "blank_lines_skipped": blank,
        "lines_read": sum(lines.values()),
        **lines,
        "timestamp_units": dict(sorted(units.items())),
        "reasons": dict(sorted(collections.Counter(reasons).items())),
        "files": [
            {
                "path": f.path,
                "format": f.format,
                "span": f.span,
                "rows_read": valid_per_file.get(f.path, 0)
                + quarantined_per_file.get(f.path, 0)
                + out_of_window.get(f.path, 0),
                "lines_read": sum(tallies[f.path][k] for k in _LINE_COUNTS)
                if f.path in tallies
                else 0,
            }
            for f in files
        ],
        "file_errors": [t["error"] for t in file_tallies if t["error"]],
        "spans": sorted({f.span for f in files}),
        "run_date": window.run_date if window else None,
        "window_first_day": window.first_day if window else None,
    }


def check_counts(summary: dict, max_bad_fraction: float, quarantine_path: str) -> None:
    """Raises IngestError when a file broke off, too many rows are bad, or none is left."""
    if summary["file_errors"]:
        raise IngestError(summary["file_errors"][0])
    read, bad = summary["rows_read"], summary["rows_quarantined"]
    if read and bad / read > max_bad_fraction:
        reasons = ", ".join(f"{k}={v}" for k, v in summary["reasons"].items())
        raise IngestError(
            f"ingest: {bad} of {read} rows ({100 * bad / read:.2f}%) are bad, above "
            f"max_bad_fraction {max_bad_fraction} ({reasons}); quarantined rows: {quarantine_path}"
        )
    if summary["rows_written"] == 0:
        raise IngestError(
            f"ingest: no valid rows left of {read}; quarantined rows: {quarantine_path}"
        )
