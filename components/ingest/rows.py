"""Row validation, quarantine, dedup and counting for ingest (pure functions and Beam).

Every raw record ends in exactly one place: a valid click, the quarantine (with file, row, field
and reason), or the blank-line count. `rows_read == rows_valid + rows_quarantined` by construction.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import math
from typing import Any

import apache_beam as beam

from offline_recall.components import common
from offline_recall.components.errors import IngestError
from offline_recall.components.ingest import sources
from offline_recall.trainer import features as F

VALID, QUARANTINED, BLANK = "valid", "quarantined", "blank"
# The order checks run in; a row is quarantined for the first rule it breaks.
REASONS = (
    "csv_parse_error",
    "wrong_column_count",
    "unparseable_row",
    "missing_field",
    "empty_field",
    "invalid_utf8",
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


def parse_timestamp(value: Any) -> int:
    """Returns epoch seconds (floored) from epoch seconds or ISO-8601; RowError otherwise."""
    if isinstance(value, datetime.datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        return math.floor(dt.timestamp())
    if isinstance(value, bool) or value is None:
        raise RowError("bad_timestamp", F.TIMESTAMP, f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
            try:
                dt = datetime.datetime.fromisoformat(iso)
            except ValueError:
                raise RowError(
                    "bad_timestamp", F.TIMESTAMP, f"neither epoch seconds nor ISO-8601: {text!r}"
                ) from None
            return parse_timestamp(dt)
    if not math.isfinite(number):
        raise RowError("bad_timestamp", F.TIMESTAMP, f"not a finite number: {value!r}")
    return math.floor(number)


def _id_bytes(values: dict, field: str, max_id_bytes: int) -> bytes:
    value = values.get(field)
    if value is None:
        raise RowError("missing_field", field, f"{field} is missing")
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
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


def validate(record: dict, max_id_bytes: int, latest_allowed: int) -> dict:
    """Returns the clean click of a raw record; raises RowError naming the broken rule."""
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
    timestamp = parse_timestamp(raw_ts)
    if timestamp < 0:
        raise RowError("negative_timestamp", F.TIMESTAMP, f"negative timestamp {timestamp}")
    if timestamp > latest_allowed:
        raise RowError("future_timestamp", F.TIMESTAMP, f"timestamp {timestamp} is in the future")
    if not -(2**63) <= timestamp < 2**63:
        raise RowError("bad_timestamp", F.TIMESTAMP, f"timestamp {timestamp} out of range")
    return {
        F.USER_ID: user,
        F.ITEM_ID: item,
        F.TIMESTAMP: timestamp,
        F.INPUT_ORDER: record["input_order"],
        F.EXTRAS: _extras(values),
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
    """Reads one input file and tags each record valid, quarantined or blank, with counters."""

    def __init__(self, max_id_bytes: int, latest_allowed: int):
        self._max_id_bytes = max_id_bytes
        self._latest_allowed = latest_allowed
        self._read = beam.metrics.Metrics.counter("ingest", "rows_read")
        self._by_reason = {r: beam.metrics.Metrics.counter("ingest", r) for r in REASONS}

    def process(self, input_file: sources.InputFile):
        for record in sources.read_file(input_file):
            if record.get("blank"):
                yield beam.pvalue.TaggedOutput(BLANK, input_file.path)
                continue
            self._read.inc()
            try:
                click = validate(record, self._max_id_bytes, self._latest_allowed)
            except RowError as e:
                self._by_reason.get(e.reason, self._by_reason["unparseable_row"]).inc()
                yield beam.pvalue.TaggedOutput(
                    QUARANTINED, quarantine_record(record, e.reason, e.field, e.detail)
                )
                continue
            except (ValueError, TypeError, OverflowError, UnicodeError) as e:
                # A row no rule foresaw: quarantined with what broke, never lost.
                yield beam.pvalue.TaggedOutput(
                    QUARANTINED,
                    quarantine_record(record, "unparseable_row", None, f"{type(e).__name__}: {e}"),
                )
                continue
            yield beam.pvalue.TaggedOutput(VALID, (input_file.path, click))


def content_key(path_click: tuple[str, dict]) -> tuple[bytes, tuple[str, dict]]:
    """Keys a click by its content (user, item, instant, extras) to find exact duplicates."""
    click = path_click[1]
    digest = hashlib.sha256()
    for name in (F.USER_ID, F.ITEM_ID, F.EXTRAS):
        digest.update(len(click[name]).to_bytes(8, "big") + click[name])
    digest.update(str(click[F.TIMESTAMP]).encode())
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
        {F.TIMESTAMP: [click[F.TIMESTAMP]], F.INPUT_ORDER: [click[F.INPUT_ORDER]]},
    ).SerializeToString()


def to_json_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


def _path_of(path_click):
    return path_click[0]


def _reason_of(record):
    return record["reason"]


@beam.ptransform_fn
def IngestClicks(files_pcoll, max_id_bytes: int, latest_allowed: int):  # noqa: N802
    """Input files -> {examples, quarantine, valid_per_file, duplicates, reasons, blank}."""
    tagged = files_pcoll | "ReadAndValidate" >> beam.ParDo(
        ReadAndValidateFn(max_id_bytes, latest_allowed)
    ).with_outputs(VALID, QUARANTINED, BLANK)
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
    }


def _click_of(path_click):
    return path_click[1]


def _source_of(record):
    return record["source_file"]


def summarize(
    files: list[sources.InputFile],
    valid_per_file: dict,
    quarantined_per_file: dict,
    reasons: dict,
    duplicates: int,
    blank: int,
) -> dict:
    """Builds the ingest counts; rows_read is the sum of valid and quarantined rows."""
    rows_valid = sum(valid_per_file.values())
    rows_quarantined = sum(quarantined_per_file.values())
    return {
        "rows_read": rows_valid + rows_quarantined,
        "rows_valid": rows_valid,
        "rows_quarantined": rows_quarantined,
        "duplicates_dropped": duplicates,
        "rows_written": rows_valid - duplicates,
        "blank_lines_skipped": blank,
        "reasons": dict(sorted(collections.Counter(reasons).items())),
        "files": [
            {
                "path": f.path,
                "format": f.format,
                "span": f.span,
                "rows_read": valid_per_file.get(f.path, 0) + quarantined_per_file.get(f.path, 0),
            }
            for f in files
        ],
        "spans": sorted({f.span for f in files}),
    }


def check_bad_fraction(summary: dict, max_bad_fraction: float, quarantine_path: str) -> None:
    """Raises IngestError when too many rows are bad, or none is left."""
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
