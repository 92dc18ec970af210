"""Days, spans and epoch time: the one place that does calendar arithmetic.

A span is TFX's number for a daily input folder: the days since 1970-01-01 of its date. Event
times are epoch microseconds (UTC). A window is the run date and, optionally, its first day.
"""

from __future__ import annotations

import datetime

EPOCH_DATE = datetime.date(1970, 1, 1)
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
SECONDS_PER_DAY = 86_400
MICROS_PER_SECOND = 1_000_000
MICROS_PER_DAY = SECONDS_PER_DAY * MICROS_PER_SECOND
ONE_MICROSECOND = datetime.timedelta(microseconds=1)


def span_of(day: datetime.date) -> int:
    """The span number of `day`: days since 1970-01-01."""
    return (day - EPOCH_DATE).days


def date_of_span(span: int) -> datetime.date:
    """The date a span number stands for."""
    return EPOCH_DATE + datetime.timedelta(days=span)


def day_start_micros(day: str) -> int:
    """Epoch microseconds at 00:00 UTC of `day` (YYYY-MM-DD)."""
    return span_of(datetime.date.fromisoformat(day)) * MICROS_PER_DAY


def day_end_micros(day: str) -> int:
    """Epoch microseconds at 00:00 UTC of the day after `day`: the end (exclusive) of `day`."""
    return day_start_micros(day) + MICROS_PER_DAY


def first_day_of_window(day: datetime.date, window_days: int) -> datetime.date:
    """The first day of a `window_days`-day window that ends on (and includes) `day`."""
    return day - datetime.timedelta(days=window_days - 1)


def micros_of(moment: datetime.datetime) -> int:
    """Epoch microseconds of an aware datetime, exactly (no float rounding)."""
    return (moment - EPOCH) // ONE_MICROSECOND


def new_run_id() -> str:
    """A run id that sorts by start time: UTC to the microsecond (the output lock keeps two
    runs of one folder from starting together)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
