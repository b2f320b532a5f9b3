"""Odds charts: the candle intervals, which one a span of time gets, and how many points a chart
may hold."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Final


class Interval(StrEnum):
    MINUTE = "1m"
    HOUR = "1h"
    DAY = "1d"


# A day of minutes: the longest span the server charts by the minute fits in one answer.
MAX_POINTS: Final = 1440


def interval_for_span(span: timedelta) -> Interval:
    """The finest interval whose points cover `span` in one answer: up to a day by the minute, up
    to 30 days by the hour (720 points), longer by the day."""
    if span <= timedelta(days=1):
        return Interval.MINUTE
    if span <= timedelta(days=30):
        return Interval.HOUR
    return Interval.DAY
