"""Odds history on real PostgreSQL: candles written with the odds in one statement for every
market, exact across several writes in a minute; the chart's interval, bound and end at the
resolution; retention."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from game.markets import Resolution
from game.odds_history import MAX_POINTS, Interval, interval_for_span
from services import odds_history
from storage import markets, settlement
from storage import odds_history as history_store
from tests.betting_fixtures import insert_market

MINUTE = datetime(2026, 3, 2, 10, 17, tzinfo=UTC)


def d(text: str) -> Decimal:
    return Decimal(text)


async def candles(db: asyncpg.Pool, table: str, market: uuid.UUID) -> list[tuple[object, ...]]:
    rows = await db.fetch(
        f"SELECT bucket_start, open, high, low, close FROM {table}"  # noqa: S608 - a test's table
        " WHERE market_id = $1 ORDER BY bucket_start",
        market,
    )
    return [tuple(row) for row in rows]


async def write(db: asyncpg.Pool, at: datetime, *moves: tuple[uuid.UUID, str]) -> int:
    readings = [(market, d(odds), 1 - d(odds)) for market, odds in moves]
    return len(await markets.record_odds(db, readings, at))


async def test_several_writes_in_a_minute_make_one_exact_candle_per_market(
    db: asyncpg.Pool,
) -> None:
    a = await insert_market(db, this_odds="0.4000", that_odds="0.6000")
    b = await insert_market(db, this_odds="0.7000", that_odds="0.3000")
    quiet = await insert_market(db)
    at = MINUTE + timedelta(seconds=5)
    assert await write(db, at, (a, "0.45"), (b, "0.65"), (quiet, "0.40")) == 2
    assert await write(db, at + timedelta(seconds=10), (a, "0.38")) == 1
    assert await write(db, at + timedelta(seconds=20), (a, "0.50"), (b, "0.66")) == 2
    assert await write(db, at + timedelta(seconds=30), (a, "0.47"), (b, "0.66")) == 1
    next_minute = MINUTE + timedelta(minutes=1, seconds=1)
    assert await write(db, next_minute, (a, "0.44")) == 1

    # The open is the odds shown when the minute began; high and low cover them too.
    assert await candles(db, "odds_minutes", a) == [
        (MINUTE, d("0.4000"), d("0.5000"), d("0.3800"), d("0.4700")),
        (MINUTE + timedelta(minutes=1), d("0.4700"), d("0.4700"), d("0.4400"), d("0.4400")),
    ]
    assert await candles(db, "odds_minutes", b) == [
        (MINUTE, d("0.7000"), d("0.7000"), d("0.6500"), d("0.6600")),
    ]
    hour = MINUTE.replace(minute=0)
    assert await candles(db, "odds_hours", a) == [
        (hour, d("0.4000"), d("0.5000"), d("0.3800"), d("0.4400")),
    ]
    assert await candles(db, "odds_hours", b) == [
        (hour, d("0.7000"), d("0.7000"), d("0.6500"), d("0.6600")),
    ]
    # Unchanged odds make no candle.
    assert await candles(db, "odds_minutes", quiet) == await candles(db, "odds_hours", quiet) == []


async def test_the_odds_write_is_the_same_two_statements_for_one_market_or_two_hundred(
    db: asyncpg.Pool,
) -> None:
    ids = [await insert_market(db) for _ in range(200)]
    statements = []
    async with db.acquire() as connection:
        seen: list[str] = []
        connection.add_query_logger(lambda record: seen.append(record.query))
        # The first write also has the driver read the column types; the ones after it are measured.
        for batch, odds in ((ids[:1], "0.43"), (ids[:1], "0.41"), (ids, "0.42")):
            seen.clear()
            readings = [(market, d(odds), 1 - d(odds)) for market in batch]
            assert len(await markets.record_odds(connection, readings, MINUTE)) == len(batch)
            await asyncio.sleep(0.05)  # the logger is told soon after, not inline
            statements.append([q for q in seen if q.strip().upper() not in ("BEGIN;", "COMMIT;")])
    assert statements[1:] == [[markets.LOCK_MARKETS_BY_ID, markets.RECORD_ODDS]] * 2
    assert await db.fetchval("SELECT count(*) FROM odds_minutes") == 200
    assert await db.fetchval("SELECT count(*) FROM odds_hours") == 200


@pytest.mark.parametrize(
    ("span", "interval"),
    [
        (timedelta(0), Interval.MINUTE),
        (timedelta(days=1), Interval.MINUTE),
        (timedelta(days=1, seconds=1), Interval.HOUR),
        (timedelta(days=30), Interval.HOUR),
        (timedelta(days=31), Interval.DAY),
        (timedelta(days=3000), Interval.DAY),
    ],
)
def test_the_span_chooses_the_interval(span: timedelta, interval: Interval) -> None:
    assert interval_for_span(span) is interval


async def fill_minutes(db: asyncpg.Pool, market: uuid.UUID, first: datetime, count: int) -> None:
    """`count` minute and hour candles from `first` on, odds rising 0.0001 a minute."""
    for table, step in (("odds_minutes", "1 minute"), ("odds_hours", "1 hour")):
        await db.execute(
            f"INSERT INTO {table} (market_id, bucket_start, open, high, low, close)"  # noqa: S608
            f" SELECT $1, $2::timestamptz + n * interval '{step}',"
            " 0.1 + n * 0.0001, 0.1 + n * 0.0001, 0.1 + n * 0.0001, 0.1 + n * 0.0001"
            " FROM generate_series(0, $3 - 1) AS n",
            market,
            first,
            count,
        )


async def test_a_chart_is_bounded_oldest_first_and_its_interval_follows_the_span(
    db: asyncpg.Pool,
) -> None:
    market_id = await insert_market(db)
    first = MINUTE.replace(hour=0, minute=0)
    await fill_minutes(db, market_id, first, 2000)
    market = await markets.get_market(db, market_id)
    assert market is not None
    now = first + timedelta(days=120)

    day = await odds_history.chart(db, market, None, first, first + timedelta(days=1), now)
    assert day.interval is Interval.MINUTE and len(day.candles) == MAX_POINTS
    assert day.candles[0].t == first and day.candles[-1].t == first + timedelta(minutes=1439)

    # Asked for more than the bound holds: the latest points of the span, oldest first.
    long = await odds_history.chart(db, market, Interval.MINUTE, first, now, now)
    assert len(long.candles) == MAX_POINTS
    assert long.candles[-1].t == first + timedelta(minutes=1999)
    assert long.candles[0].t == first + timedelta(minutes=2000 - MAX_POINTS)
    assert [c.t for c in long.candles] == sorted(c.t for c in long.candles)

    week = await odds_history.chart(db, market, None, first, first + timedelta(days=7), now)
    assert week.interval is Interval.HOUR and len(week.candles) == 7 * 24

    # A `from` inside a bucket takes the whole bucket.
    inside = await odds_history.chart(
        db, market, Interval.HOUR, first + timedelta(minutes=30), first + timedelta(hours=3), now
    )
    assert [c.t for c in inside.candles] == [first + timedelta(hours=h) for h in range(3)]

    # Days from hours: the first hour's open, the extremes, the last hour's close.
    days = await odds_history.chart(db, market, None, first, now, now)
    assert days.interval is Interval.DAY and len(days.candles) == 84  # 2000 hours
    second = days.candles[1]
    assert second.t == first + timedelta(days=1)
    assert (second.open, second.low) == (d("0.1024"), d("0.1024"))
    assert (second.high, second.close) == (d("0.1047"), d("0.1047"))

    # From the market's start until now when not told.
    default = await odds_history.chart(db, market, Interval.HOUR, None, None, now)
    assert len(default.candles) == 0  # the filled candles are older than the market's row
    empty = await odds_history.chart(db, market, Interval.HOUR, now, now, now)
    assert empty.candles == []


async def test_a_resolved_markets_chart_ends_at_its_resolution(db: asyncpg.Pool) -> None:
    market_id = await insert_market(db)
    first = MINUTE.replace(minute=0)
    await fill_minutes(db, market_id, first, 180)
    resolved_at = first + timedelta(minutes=90, seconds=30)
    await settlement.settle_market(db, market_id, Resolution.THIS, resolved_at)
    market = await markets.get_market(db, market_id)
    assert market is not None and market.resolved_at == resolved_at
    later = first + timedelta(days=2)
    chart = await odds_history.chart(db, market, None, first, later, later)
    assert chart.interval is Interval.MINUTE  # the span ends at the resolution: under a day
    assert chart.candles[-1].t == first + timedelta(minutes=90) and len(chart.candles) == 91
    hours = await odds_history.chart(db, market, Interval.HOUR, first, later, later)
    assert [c.t for c in hours.candles] == [first + timedelta(hours=h) for h in range(2)]
    # No odds are written for it any more, so no candle either.
    assert await write(db, later, (market_id, "0.99")) == 0
    assert not await db.fetchval(
        "SELECT count(*) FROM odds_minutes WHERE bucket_start >= $1", later - timedelta(minutes=1)
    )


async def test_retention_drops_old_minutes_and_keeps_hours(db: asyncpg.Pool) -> None:
    market_id = await insert_market(db)
    now = datetime.now(UTC)
    old = now - timedelta(days=31)
    await fill_minutes(db, market_id, old.replace(second=0, microsecond=0), 120)
    await fill_minutes(
        db, market_id, (now - timedelta(days=10)).replace(second=0, microsecond=0), 5
    )
    assert await odds_history.prune(db, now) == 120
    assert await db.fetchval("SELECT count(*) FROM odds_minutes") == 5
    assert await db.fetchval("SELECT count(*) FROM odds_hours") == 125
    assert await odds_history.prune(db, now) == 0


async def test_retention_deletes_in_batches_and_stops_at_its_bound(
    db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    market_id = await insert_market(db)
    await fill_minutes(db, market_id, datetime(2025, 1, 1, tzinfo=UTC), 250)
    monkeypatch.setattr(history_store, "PRUNE_BATCH", 40)
    monkeypatch.setattr(history_store, "PRUNE_MAX_BATCHES", 3)
    now = datetime.now(UTC)
    assert await odds_history.prune(db, now) == 120
    assert await odds_history.prune(db, now) == 120
    assert await odds_history.prune(db, now) == 10
