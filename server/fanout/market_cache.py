"""Markets in process memory, so `markets:list` and `market:get` never query per call (a bet is
checked against the stored row, in SQL: storage/bets.py).

PostgreSQL stays the truth. The node that polls writes there, applies the rows here, and
publishes the change on Redis: new odds (and freshness) as values, which every other node
applies as they are, and any other change as ids, which every other node reloads from the
database. An odds tick therefore costs the other nodes no query, and no node re-sorts its pages
unless an order key (status, end time) moved. A periodic full reload covers a missed message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, TypeAlias

import asyncpg
import orjson
import redis.asyncio as redis
from aiohttp import web

from game.bets import odds_are_stale
from game.errors import MarketNotFound
from server.runtime import metrics
from server.runtime.jobs import stop_if_cancelled
from server.runtime.resources import DB_POOL, REDIS
from server.wire.views import decode_cursor, encode_cursor, market_view
from services import markets
from storage import keys
from storage.rows import Market

logger = logging.getLogger("thisthat.markets")

CHANGES_CHANNEL: Final = keys.PREFIX + "markets:changed"
FULL_RELOAD_INTERVAL_S: Final = 60.0
MAX_CACHED_MARKETS: Final = 20_000
_FAR_FUTURE: Final = "9999"


class MarketCache:
    def __init__(self) -> None:
        # Names this node's announcements, so its follower skips what this node already applied.
        self.origin = uuid.uuid4().hex
        self._rows: dict[str, Market] = {}
        self._views: dict[str, dict[str, Any]] = {}
        self._order: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def replace_all(self, rows: Iterable[Market]) -> None:
        self._rows.clear()
        self._views.clear()
        self.apply(rows)

    def apply(self, rows: Iterable[Market]) -> None:
        reorder = False
        for row in rows:
            market_id = str(row.id)
            before = self._rows.get(market_id)
            if before is None or (before.status, before.ends_at) != (row.status, row.ends_at):
                reorder = True
            self._rows[market_id] = row
            self._views[market_id] = market_view(row)
        if reorder:
            self._reorder()

    def apply_odds(self, ticks: Iterable[OddsTick]) -> list[str]:
        """New odds of markets, as another node wrote them; the ids this node does not hold (to
        be read from the database)."""
        missing = []
        for market_id, this_odds, that_odds, at in ticks:
            row = self._rows.get(market_id)
            if row is None:
                missing.append(market_id)
                continue
            row = dataclasses.replace(
                row, this_odds=this_odds, that_odds=that_odds, odds_updated_at=at
            )
            self._rows[market_id] = row
            self._views[market_id] = market_view(row)
        return missing

    def touch(self, market_ids: Iterable[object], at: datetime) -> None:
        """Odds read again, unchanged: only their freshness moves (no order or status change)."""
        for market_id in map(str, market_ids):
            row = self._rows.get(market_id)
            if row is not None and row.status == "open":
                self._rows[market_id] = dataclasses.replace(row, odds_updated_at=at)
                self._views[market_id]["oddsUpdatedAt"] = at

    def _reorder(self) -> None:
        # Stable order for pages: soonest end first, then id; the cursor is a key in it.
        ordered = sorted(self._rows, key=self._sort_key)
        self._order = {"all": ordered}
        for status in ("open", "closed", "resolved", "cancelled"):
            self._order[status] = [m for m in ordered if self._rows[m].status == status]
        # `resolved` in a list request means "finished": resolved or cancelled.
        self._order["resolved"] = [
            m for m in ordered if self._rows[m].status in ("resolved", "cancelled")
        ]

    def row(self, market_id: str) -> Market | None:
        found = self._rows.get(market_id)
        metrics.CACHE_LOOKUPS.labels("markets", "hit" if found else "miss").inc()
        return found

    def view(self, market_id: str) -> dict[str, Any] | None:
        found = self._views.get(market_id)
        metrics.CACHE_LOOKUPS.labels("markets", "hit" if found else "miss").inc()
        return found

    def open_rows(self) -> list[Market]:
        return [row for row in self._rows.values() if row.status == "open"]

    def page(
        self, status: str, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        metrics.CACHE_LOOKUPS.labels("markets", "hit").inc()
        order = self._order.get(status, [])
        start = 0
        if cursor is not None:
            ends_at, market_id = decode_cursor(cursor, 2)
            key = (ends_at, market_id)
            # First position after the cursor's key: positions survive inserts and removals.
            start = next(
                (i for i, candidate in enumerate(order) if self._sort_key(candidate) > key),
                len(order),
            )
        chosen = order[start : start + limit]
        more = start + limit < len(order)
        next_cursor = encode_cursor(*self._sort_key(chosen[-1])) if chosen and more else None
        return [self._views[m] for m in chosen], next_cursor

    def _sort_key(self, market_id: str) -> tuple[str, str]:
        ends_at = self._rows[market_id].ends_at
        return (ends_at.isoformat() if ends_at else _FAR_FUTURE, market_id)


def parse_market_id(market_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(market_id)
    except ValueError as error:
        raise MarketNotFound(market_id) from error


async def lookup(pool: asyncpg.Pool, cache: MarketCache, market_id: str) -> Market:
    """A market's row from memory; on a miss (created a moment ago on another node) from the database."""
    row = cache.row(market_id)
    if row is None:
        stored = await markets.find_market(pool, parse_market_id(market_id))
        if stored is None:
            raise MarketNotFound(market_id)
        cache.apply([stored])
        row = cache.row(market_id)
        assert row is not None
    return row


# A market's new odds as announced: (id, this, that, odds updated at).
OddsTick: TypeAlias = tuple[str, Decimal, Decimal, datetime]


async def publish_changes(client: redis.Redis, cache: MarketCache, ids: Iterable[object]) -> None:
    """Tell the other nodes to reload these markets; the caller has applied them to `cache`."""
    ids = [str(market_id) for market_id in ids]
    if ids:
        await client.publish(CHANGES_CHANNEL, orjson.dumps({"ids": ids, "from": cache.origin}))


async def publish_odds(client: redis.Redis, cache: MarketCache, rows: Iterable[Market]) -> None:
    """Tell the other nodes these markets' new odds, values included: they apply them as they
    are. The caller has applied the rows to `cache`."""
    odds = [
        [str(row.id), str(row.this_odds), str(row.that_odds), row.odds_updated_at.isoformat()]
        for row in rows
    ]
    if odds:
        await client.publish(CHANGES_CHANNEL, orjson.dumps({"odds": odds, "from": cache.origin}))


async def publish_touched(
    client: redis.Redis, cache: MarketCache, ids: Iterable[object], at: datetime
) -> None:
    """Tell the other nodes these markets' odds were read again, unchanged, at `at`."""
    touched = [str(market_id) for market_id in ids]
    if touched:
        message = {"touched": touched, "at": at.isoformat(), "from": cache.origin}
        await client.publish(CHANGES_CHANNEL, orjson.dumps(message))


async def apply_announced(pool: asyncpg.Pool, cache: MarketCache, change: dict[str, Any]) -> None:
    """Apply another node's announcement: odds and freshness as values, the rest from the
    database (and odds of markets this node has not loaded yet)."""
    ticks = [
        (market_id, Decimal(this_odds), Decimal(that_odds), datetime.fromisoformat(at))
        for market_id, this_odds, that_odds, at in change.get("odds", ())
    ]
    reload = list(change.get("ids", ())) + cache.apply_odds(ticks)
    if "touched" in change:
        cache.touch(change["touched"], datetime.fromisoformat(change["at"]))
    if reload:
        cache.apply(await markets.find_markets(pool, [uuid.UUID(value) for value in reload]))


async def reload_all(pool: asyncpg.Pool, cache: MarketCache) -> None:
    cache.replace_all(await markets.listed_markets(pool, MAX_CACHED_MARKETS))


async def follow_changes(pool: asyncpg.Pool, client: redis.Redis, cache: MarketCache) -> None:
    """Apply other nodes' changes as they are announced; reload everything now and then."""
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANGES_CHANNEL)
    # What was announced before the subscription took is in the database: read it again once.
    with contextlib.suppress(asyncpg.PostgresError, OSError):
        await reload_all(pool, cache)
    loop = asyncio.get_running_loop()
    next_full_reload = loop.time() + FULL_RELOAD_INTERVAL_S
    try:
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    change = orjson.loads(message["data"])
                    if change.get("from") != cache.origin:
                        await apply_announced(pool, cache, change)
                if loop.time() >= next_full_reload:
                    next_full_reload = loop.time() + FULL_RELOAD_INTERVAL_S
                    await reload_all(pool, cache)
            except (
                redis.ConnectionError,
                OSError,
                asyncpg.PostgresError,
                ArithmeticError,
                TypeError,
                ValueError,
                KeyError,
            ):
                stop_if_cancelled()
                logger.warning("market change feed hiccup; retrying", exc_info=True)
                await asyncio.sleep(1)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py


async def market_cache_ctx(app: web.Application) -> AsyncIterator[None]:
    from server.runtime.jobs import spawn

    cache = MarketCache()
    app[MARKET_CACHE] = cache
    await reload_all(app[DB_POOL], cache)
    follower = await spawn(
        app, follow_changes(app[DB_POOL], app[REDIS], cache), name="market-cache"
    )
    yield
    await follower.close()


def is_stale(row: Market, now: datetime, max_age_s: float) -> bool:
    return odds_are_stale(row.odds_updated_at, now, max_age_s)


MARKET_CACHE: Final = web.AppKey("market_cache", MarketCache)
