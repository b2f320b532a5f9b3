"""Odds history for players' charts, and keeping it bounded: the retention pass every node runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg

from game.odds_history import MAX_POINTS, Interval, interval_for_span
from storage import odds_history
from storage.odds_history import Candle
from storage.rows import Market

# How often a node prunes; deleting is idempotent, so nodes need not take turns.
PRUNE_INTERVAL_S: Final = 600.0


@dataclass(frozen=True, slots=True)
class OddsChart:
    interval: Interval
    candles: list[Candle]


async def chart(
    pool: asyncpg.Pool,
    market: Market,
    interval: Interval | None,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> OddsChart:
    """The market's candles over [start, end): from its creation and until now unless told, and
    never past its resolution. Without an interval the span chooses it; at most MAX_POINTS, the
    latest ones of the span when it holds more, oldest first."""
    start = market.created_at if start is None else start
    end = now if end is None else end
    last = end if market.resolved_at is None else min(end, market.resolved_at)
    chosen = interval or interval_for_span(max(last - start, timedelta(0)))
    if start >= end:
        return OddsChart(chosen, [])
    found = await odds_history.candles(
        pool, market.id, chosen, start, end, market.resolved_at, MAX_POINTS
    )
    return OddsChart(chosen, found)


async def prune(pool: asyncpg.Pool, now: datetime) -> int:
    """Drop minute candles past 30 days; returns how many (hour candles stay for the market's
    life)."""
    return await odds_history.prune(pool, now)
