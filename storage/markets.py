"""Stored markets: upserts from the feed, odds changes with their history, status changes, reads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Final

import asyncpg

from game.markets import MarketListing
from storage.database import Connection, Executor
from storage.odds_history import CANDLE_ORIGIN
from storage.rows import Market

MARKET_COLUMNS: Final = """
id, source, source_id, slug, question, this_label, that_label, this_token_id, that_token_id,
this_odds, that_odds, odds_updated_at, status, accepting_orders, ends_at, resolved_side,
category, image_url, volume, created_at, updated_at, resolved_at, settled_at
"""

PREFIXED_COLUMNS: Final = ", ".join("m." + name.strip() for name in MARKET_COLUMNS.split(","))

# One round trip for the whole listing. Odds of a market already stored are left alone: the
# odds job owns them. `xmax = 0` tells a fresh insert from an update.
UPSERT_LISTINGS: Final = f"""
INSERT INTO markets AS m (
    source_id, slug, question, this_label, that_label, this_token_id, that_token_id,
    this_odds, that_odds, odds_updated_at, ends_at, category, image_url, volume, accepting_orders
)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::numeric[], $9::numeric[], $10::timestamptz[], $11::timestamptz[], $12::text[], $13::text[],
    $14::numeric[], $15::boolean[]
)
ON CONFLICT (source, source_id) DO UPDATE SET
    slug = excluded.slug,
    question = excluded.question,
    this_label = excluded.this_label,
    that_label = excluded.that_label,
    ends_at = excluded.ends_at,
    category = excluded.category,
    image_url = excluded.image_url,
    volume = excluded.volume,
    accepting_orders = excluded.accepting_orders,
    updated_at = now()
WHERE (m.slug, m.question, m.ends_at, m.category, m.image_url, m.volume, m.accepting_orders)
      IS DISTINCT FROM
      (excluded.slug, excluded.question, excluded.ends_at, excluded.category, excluded.image_url,
       excluded.volume, excluded.accepting_orders)
RETURNING {MARKET_COLUMNS}, (xmax = 0) AS inserted
"""

# Lock order (see storage/migrations/0004): market rows in id order, before anything else. Every
# writer of several markets takes them with this statement first, in its own transaction, so the
# statement that then writes them finds them already locked; a single statement that locked as it
# went would lock in whatever order its plan visits rows, and could wait in a cycle with a bet
# batch. FOR NO KEY UPDATE is what an UPDATE of these (non-key) columns takes anyway, and it lets
# the foreign-key checks of inserts that point at the market go on.
LOCK_MARKETS_BY_ID: Final = """
SELECT id FROM markets WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
"""

LOCK_MARKETS_BY_SOURCE_ID: Final = """
SELECT id FROM markets WHERE source = 'polymarket' AND source_id = ANY($1::text[])
ORDER BY id FOR NO KEY UPDATE
"""


def _candles(table: str, width: str) -> str:
    """Each move as an upsert into one candle table: opened at the odds shown before, the high and
    low widened, closed at the new odds."""
    return f"""
    INSERT INTO {table} AS o (market_id, bucket_start, open, high, low, close)
    SELECT id, date_bin('{width}', $4::timestamptz, {CANDLE_ORIGIN}),
           shown, greatest(shown, odds), least(shown, odds), odds
    FROM moves
    ON CONFLICT (market_id, bucket_start) DO UPDATE SET
        high = greatest(o.high, excluded.high),
        low = least(o.low, excluded.low),
        close = excluded.close"""


# Every market whose odds were read gets a fresh `odds_updated_at`, changed or not, so a quiet
# market is not stale while a dead feed is. Only real changes move the minute and hour candles,
# which are the odds history (storage/migrations/0007): a candle's high and low take the odds
# shown before the change too, as those held until it. All in this one statement, whatever the
# number of markets. The rows are locked beforehand (LOCK_MARKETS_BY_ID).
RECORD_ODDS: Final = f"""
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::numeric[], $3::numeric[]) WITH ORDINALITY
        AS i(id, this_odds, that_odds, ord)
), changed AS (
    SELECT i.*, m.this_odds AS shown_this FROM incoming i JOIN markets m ON m.id = i.id
    WHERE m.status = 'open' AND (m.this_odds, m.that_odds) IS DISTINCT FROM (i.this_odds, i.that_odds)
), moves AS (
    -- One move per market (an upsert may touch a row once): the last reading given for it.
    SELECT DISTINCT ON (id) id, shown_this AS shown, coalesce(this_odds, shown_this) AS odds
    FROM changed ORDER BY id, ord DESC
), minutes AS ({_candles("odds_minutes", "1 minute")}
), hours AS ({_candles("odds_hours", "1 hour")}
), updated AS (
    UPDATE markets m SET
        this_odds = coalesce(c.this_odds, m.this_odds),
        that_odds = coalesce(c.that_odds, m.that_odds),
        odds_updated_at = $4
    FROM incoming i LEFT JOIN changed c ON c.id = i.id
    WHERE m.id = i.id AND m.status = 'open'
    RETURNING {PREFIXED_COLUMNS}, c.id IS NOT NULL AS changed
)
SELECT {MARKET_COLUMNS} FROM updated WHERE changed
"""

TOUCH_ODDS: Final = """
UPDATE markets SET odds_updated_at = $2 WHERE id = ANY($1::uuid[]) AND status = 'open'
"""

CLOSE_MARKET: Final = f"""
UPDATE markets SET status = 'closed', updated_at = now()
WHERE id = $1 AND status = 'open'
RETURNING {MARKET_COLUMNS}
"""

SELECT_MARKET: Final = f"SELECT {MARKET_COLUMNS} FROM markets WHERE id = $1"
SELECT_SOURCE_IDS_FROM: Final = """
SELECT source_id FROM markets WHERE split_part(source_id, '~', 1) = ANY($1::text[])
"""
SELECT_BY_SOURCE_ID: Final = (
    f"SELECT {MARKET_COLUMNS} FROM markets WHERE source = 'polymarket' AND source_id = $1"
)
SELECT_MARKETS_BY_ID: Final = f"SELECT {MARKET_COLUMNS} FROM markets WHERE id = ANY($1::uuid[])"
SELECT_ALL_MARKETS: Final = (
    f"SELECT {MARKET_COLUMNS} FROM markets ORDER BY created_at DESC LIMIT $1"
)
SELECT_OPEN: Final = f"SELECT {MARKET_COLUMNS} FROM markets WHERE status = 'open'"


# Markets the resolution job looks at: past their end, already closed, or no longer listed.
async def upsert_listings(
    connection: Executor, listings: Sequence[MarketListing], now: datetime
) -> list[Market]:
    """Store the listing; returns the markets that were inserted or changed."""
    if not listings:
        return []
    columns = list(
        zip(
            *(
                (
                    item.source_id,
                    item.slug,
                    item.question,
                    item.this_label,
                    item.that_label,
                    item.this_token_id,
                    item.that_token_id,
                    item.this_odds,
                    item.that_odds,
                    now,
                    item.ends_at,
                    item.category,
                    item.image_url,
                    item.volume,
                    item.accepting_orders,
                )
                for item in listings
            ),
            strict=True,
        )
    )
    async with _transaction(connection) as locked:
        await locked.execute(LOCK_MARKETS_BY_SOURCE_ID, list(columns[0]))
        rows = await locked.fetch(UPSERT_LISTINGS, *(list(column) for column in columns))
    return [Market.from_record(row) for row in rows]


async def record_odds(
    connection: Executor,
    readings: Sequence[tuple[uuid.UUID, Decimal, Decimal]],
    now: datetime,
) -> list[Market]:
    """Store one poll's odds; returns the markets whose odds changed (the ones to push)."""
    if not readings:
        return []
    ids, this_odds, that_odds = (list(column) for column in zip(*readings, strict=True))
    async with _transaction(connection) as locked:
        await locked.execute(LOCK_MARKETS_BY_ID, ids)
        rows = await locked.fetch(RECORD_ODDS, ids, this_odds, that_odds, now)
    return [Market.from_record(row) for row in rows]


async def touch_odds(connection: Executor, ids: Sequence[uuid.UUID], now: datetime) -> None:
    async with _transaction(connection) as locked:
        await locked.execute(LOCK_MARKETS_BY_ID, list(ids))
        await locked.execute(TOUCH_ODDS, list(ids), now)


@asynccontextmanager
async def _transaction(executor: Executor) -> AsyncIterator[Connection]:
    """A transaction on `executor`: a connection of the pool if it is one, else the connection."""
    if isinstance(executor, asyncpg.Pool):
        async with executor.acquire() as connection, connection.transaction():
            yield connection
    else:
        async with executor.transaction():
            yield executor


async def close_market(connection: Executor, market_id: uuid.UUID) -> Market | None:
    """Open -> closed (no more bets; waiting for the resolution). None if it was not open."""
    return _market_or_none(await connection.fetchrow(CLOSE_MARKET, market_id))


async def get_market(connection: Executor, market_id: uuid.UUID) -> Market | None:
    return _market_or_none(await connection.fetchrow(SELECT_MARKET, market_id))


async def source_ids_from(connection: Executor, source_ids: Sequence[str]) -> list[str]:
    """Stored source ids that are one of these or a replay pass of one (`id~N`)."""
    return [row["source_id"] for row in await connection.fetch(SELECT_SOURCE_IDS_FROM, source_ids)]


async def get_by_source_id(connection: Executor, source_id: str) -> Market | None:
    return _market_or_none(await connection.fetchrow(SELECT_BY_SOURCE_ID, source_id))


async def get_markets(connection: Executor, ids: Sequence[uuid.UUID]) -> list[Market]:
    return [
        Market.from_record(row) for row in await connection.fetch(SELECT_MARKETS_BY_ID, list(ids))
    ]


async def all_markets(connection: Executor, limit: int) -> list[Market]:
    return [Market.from_record(row) for row in await connection.fetch(SELECT_ALL_MARKETS, limit)]


async def open_markets(connection: Executor) -> list[Market]:
    return [Market.from_record(row) for row in await connection.fetch(SELECT_OPEN)]


def _market_or_none(row: asyncpg.Record | None) -> Market | None:
    return None if row is None else Market.from_record(row)
