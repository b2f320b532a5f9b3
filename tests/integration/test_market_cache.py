"""Every node's market cache follows the others' announcements on real PostgreSQL and Redis: odds
and freshness arrive as values (no query), anything else as ids to read again, and pages are
re-sorted only when a market's place in them moved."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
import redis.asyncio as redis

from server.fanout import market_cache
from server.fanout.market_cache import (
    MarketCache,
    follow_changes,
    publish_changes,
    publish_odds,
    publish_touched,
    reload_all,
)
from services import markets
from storage.rows import Market
from tests.betting_fixtures import insert_market


@pytest.fixture
async def follower(db: asyncpg.Pool, redis_client: redis.Redis) -> AsyncIterator[MarketCache]:
    """Another node's cache, following the announcements."""
    cache = MarketCache()
    await reload_all(db, cache)
    task = asyncio.ensure_future(follow_changes(db, redis_client, cache))
    await asyncio.sleep(0.2)  # subscribed
    yield cache
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110 - the follower runs in its own task
            await asyncio.sleep(0.02)


async def stored(db: asyncpg.Pool, market_id: uuid.UUID) -> Market:
    row = await markets.find_market(db, market_id)
    assert row is not None
    return row


async def test_odds_arrive_as_values_and_cost_the_follower_no_query(
    db: asyncpg.Pool,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    market_id = await insert_market(db, this_odds="0.4000", that_odds="0.6000")
    cache = MarketCache()  # the announcing node
    await reload_all(db, cache)
    reads: list[list[uuid.UUID]] = []
    find_markets = markets.find_markets

    async def counted(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> list[Market]:
        reads.append(ids)
        return await find_markets(pool, ids)

    monkeypatch.setattr(market_cache.markets, "find_markets", counted)
    follower = MarketCache()
    await reload_all(db, follower)
    task = asyncio.ensure_future(follow_changes(db, redis_client, follower))
    await asyncio.sleep(0.2)
    try:
        # Values the database does not hold: the follower can only have them from the message.
        at = datetime.now(UTC) + timedelta(seconds=1)
        moved = dataclasses.replace(
            await stored(db, market_id),
            this_odds=Decimal("0.4321"),
            that_odds=Decimal("0.5679"),
            odds_updated_at=at,
        )
        sorts = []
        monkeypatch.setattr(follower, "_reorder", lambda: sorts.append(1))
        await publish_odds(redis_client, cache, [moved])
        await until(lambda: follower.view(str(market_id))["thisOdds"] == Decimal("0.4321"))  # type: ignore[index]
        row = follower.row(str(market_id))
        assert row is not None and (row.that_odds, row.odds_updated_at) == (Decimal("0.5679"), at)
        assert reads == [] and sorts == []

        # Freshness alone, as a value too.
        later = at + timedelta(seconds=30)
        await publish_touched(redis_client, cache, [market_id], later)
        await until(lambda: follower.row(str(market_id)).odds_updated_at == later)  # type: ignore[union-attr]
        assert reads == [] and sorts == []

        # Odds of a market the follower has not loaded yet: read from the database.
        newcomer = await insert_market(db, this_odds="0.2000", that_odds="0.8000")
        await publish_odds(redis_client, cache, [await stored(db, newcomer)])
        await until(lambda: follower.row(str(newcomer)) is not None)
        assert reads == [[newcomer]] and sorts == [1]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_other_changes_are_read_again_and_move_the_pages(
    db: asyncpg.Pool, redis_client: redis.Redis, follower: MarketCache
) -> None:
    first = await insert_market(db, ends_in_s=100)
    second = await insert_market(db, ends_in_s=200)
    cache = MarketCache()
    await reload_all(db, cache)
    await publish_changes(redis_client, cache, [first, second])
    await until(lambda: follower.row(str(second)) is not None)
    open_ids = [view["id"] for view in follower.page("open", None, 100)[0]]
    assert open_ids.index(str(first)) < open_ids.index(str(second))

    await db.execute("UPDATE markets SET status = 'closed' WHERE id = $1", first)
    await publish_changes(redis_client, cache, [first])
    await until(lambda: follower.row(str(first)).status == "closed")  # type: ignore[union-attr]
    assert str(first) not in [view["id"] for view in follower.page("open", None, 100)[0]]
    assert str(first) in [view["id"] for view in follower.page("closed", None, 100)[0]]
