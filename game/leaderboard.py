"""Leaderboard periods: which bucket (all time, UTC ISO week, UTC day) a moment's PnL falls in."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from game.clock import ensure_utc


class Period(StrEnum):
    ALL = "all"
    WEEK = "week"
    DAY = "day"


def period_key(period: Period, at: datetime) -> str:
    """The bucket id of `at`: `all`, an ISO week like `2026-W48`, or a day like `2026-11-25` (UTC)."""
    if period is Period.ALL:
        return "all"
    utc = ensure_utc(at)
    if period is Period.DAY:
        return utc.date().isoformat()
    iso_year, iso_week, _ = utc.isocalendar()
    return f"{iso_year:04d}-W{iso_week:02d}"


def period_bounds(period: Period, at: datetime) -> tuple[datetime, datetime] | None:
    """The half-open UTC interval [start, end) of the bucket holding `at`; None for all time."""
    if period is Period.ALL:
        return None
    utc = ensure_utc(at)
    day_start = datetime.combine(utc.date(), time(0), tzinfo=utc.tzinfo)
    if period is Period.DAY:
        return day_start, day_start + timedelta(days=1)
    week_start = day_start - timedelta(days=utc.weekday())  # ISO weeks start on Monday
    return week_start, week_start + timedelta(days=7)


def period_keys(at: datetime) -> dict[Period, str]:
    """Every bucket a PnL realized at `at` counts toward, one per period."""
    return {period: period_key(period, at) for period in Period}


# How long a finished day or week stays on the board (and in Redis) after it ends.
RETENTION: dict[Period, timedelta] = {
    Period.DAY: timedelta(days=7),
    Period.WEEK: timedelta(days=28),
}


def parse_period_key(key: str) -> tuple[Period, tuple[datetime, datetime] | None]:
    """The period and [start, end) of a bucket id made by `period_key`; ValueError for anything else."""
    if key == "all":
        return Period.ALL, None
    if len(key) == 10 and key[4] == "-" and key[7] == "-":
        day = date.fromisoformat(key)
        start = datetime.combine(day, time(0), tzinfo=UTC)
        return Period.DAY, (start, start + timedelta(days=1))
    year, sep, week = key.partition("-W")
    if sep and len(year) == 4 and len(week) == 2 and year.isdigit() and week.isdigit():
        start = datetime.combine(date.fromisocalendar(int(year), int(week), 1), time(0), tzinfo=UTC)
        return Period.WEEK, (start, start + timedelta(days=7))
    raise ValueError(f"{key!r} is not a leaderboard bucket")


def bucket_expires_at(key: str) -> datetime | None:
    """When a bucket may be dropped: its end plus the period's retention; never for all time."""
    period, bounds = parse_period_key(key)
    if bounds is None:
        return None
    return bounds[1] + RETENTION[period]
