"""Leaderboard periods: which bucket (all time, UTC ISO week, UTC day) a moment's PnL falls in."""

from __future__ import annotations

from datetime import datetime, time, timedelta
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
