"""Odds history, kept as minute and hour candles of a market's shown odds (written by
storage/markets.py `record_odds`), read as a chart, and pruned to what is kept."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from game.odds_history import Interval
from storage.database import Executor

# Buckets start on whole UTC minutes, hours and days counted from this origin.
CANDLE_ORIGIN: Final = "timestamptz '2000-01-01 00:00:00+00'"

# Minute candles are kept this long; hour candles for the market's life. No single change is
# kept: a candle holds every change within its bucket.
MINUTES_KEPT: Final = timedelta(days=30)
# A pass of the retention job deletes in batches, so no statement holds many row locks for long.
PRUNE_BATCH: Final = 10_000
PRUNE_MAX_BATCHES: Final = 100

# $1 market, $2 from (widened to its bucket's start), $3 to (exclusive), $4 resolved_at (no
# bucket after it; NULL while unresolved), $5 how many: the latest ones of the span, oldest first.
_CANDLES: Final = """
SELECT t, open, high, low, close FROM (
    SELECT bucket_start AS t, open, high, low, close FROM {table}
    WHERE market_id = $1 AND bucket_start >= date_bin('{step}', $2::timestamptz, {origin})
      AND bucket_start < $3 AND ($4::timestamptz IS NULL OR bucket_start <= $4)
    ORDER BY bucket_start DESC LIMIT $5
) AS latest ORDER BY t
"""
_DAYS: Final = """
SELECT t, open, high, low, close FROM (
    SELECT date_bin('1 day', bucket_start, {origin}) AS t,
           (array_agg(open ORDER BY bucket_start))[1] AS open, max(high) AS high,
           min(low) AS low, (array_agg(close ORDER BY bucket_start DESC))[1] AS close
    FROM odds_hours
    WHERE market_id = $1 AND bucket_start >= date_bin('1 day', $2::timestamptz, {origin})
      AND bucket_start < $3 AND ($4::timestamptz IS NULL OR bucket_start <= $4)
    GROUP BY 1 ORDER BY 1 DESC LIMIT $5
) AS latest ORDER BY t
"""
SELECT_CANDLES: Final = {
    Interval.MINUTE: _CANDLES.format(table="odds_minutes", step="1 minute", origin=CANDLE_ORIGIN),
    Interval.HOUR: _CANDLES.format(table="odds_hours", step="1 hour", origin=CANDLE_ORIGIN),
    Interval.DAY: _DAYS.format(origin=CANDLE_ORIGIN),
}

DELETE_OLD_MINUTES: Final = """
DELETE FROM odds_minutes WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM odds_minutes WHERE bucket_start < $1 LIMIT $2
))
"""


@dataclass(frozen=True, slots=True)
class Candle:
    """The "this" side's shown odds over one bucket starting at `t`."""

    t: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


async def candles(
    connection: Executor,
    market_id: uuid.UUID,
    interval: Interval,
    start: datetime,
    end: datetime,
    resolved_at: datetime | None,
    limit: int,
) -> list[Candle]:
    """The last `limit` candles of [start, end) at `interval`, oldest first."""
    rows = await connection.fetch(
        SELECT_CANDLES[interval], market_id, start, end, resolved_at, limit
    )
    return [Candle(row["t"], row["open"], row["high"], row["low"], row["close"]) for row in rows]


async def prune(connection: Executor, now: datetime) -> int:
    """Delete minute candles older than MINUTES_KEPT, at most PRUNE_MAX_BATCHES batches per call
    (the next call goes on where this one stopped); returns how many."""
    before = now - MINUTES_KEPT
    deleted = 0
    for _ in range(PRUNE_MAX_BATCHES):
        status = await connection.execute(DELETE_OLD_MINUTES, before, PRUNE_BATCH)
        count = int(status.split()[-1])
        deleted += count
        if count < PRUNE_BATCH:
            break
    return deleted
