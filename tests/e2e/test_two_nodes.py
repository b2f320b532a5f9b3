"""Two server processes on one PostgreSQL and Redis: one polls, both deliver, a dead poller is replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as redis

from storage import keys
from tests.fake_market_channel import FakeMarketChannel, price_change
from tests.fake_polymarket import FakePolymarket
from tests.feed_fixtures import FAST_FEED, eventually
from tests.nodes import ServerNode
from tests.players import Player


@pytest.fixture
async def two_nodes(
    service_urls: tuple[str, str],
    tmp_path: Path,
    fake_polymarket: FakePolymarket,
    db: asyncpg.Pool,
    redis_client: redis.Redis,
) -> AsyncIterator[list[ServerNode]]:
    feed = {
        **FAST_FEED,
        "polymarket_gamma_url": fake_polymarket.gamma_url,
        "polymarket_base_url": fake_polymarket.clob_url,
    }
    nodes = [ServerNode(*service_urls, tmp_path, **feed) for _ in range(2)]
    try:
        for node in nodes:
            await node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def poller_pid(client: redis.Redis) -> int | None:
    owner = await client.get(keys.FEED_LOCK)
    return int(owner.split(":")[1]) if owner else None


@pytest.mark.timeout(120)
async def test_one_node_polls_the_other_delivers_and_takes_over(
    two_nodes: list[ServerNode],
    redis_client: redis.Redis,
    http: aiohttp.ClientSession,
    fake_polymarket: FakePolymarket,
) -> None:
    async def elected() -> bool:
        return await poller_pid(redis_client) in {node.pid for node in two_nodes}

    await eventually(elected)
    leader_pid = await poller_pid(redis_client)
    leader = next(node for node in two_nodes if node.pid == leader_pid)
    follower = next(node for node in two_nodes if node is not leader)

    player = await Player(follower.url, http).signup()
    await player.connect()

    async def listed() -> bool:
        page = await player.ok("markets:list", {"limit": 200})
        return len(page["markets"]) == 6

    await eventually(listed)
    target = (await player.ok("markets:list", {"limit": 1}))["markets"][0]
    await player.ok("market:subscribe", {"marketIds": [target["id"]]})

    # The follower does not poll, yet its socket gets the leader's tick through Redis.
    fake_polymarket.set_price(target["sourceId"], "0.6060")
    tick = await player.next("odds", wait_s=10)
    assert tick["marketId"] == target["id"] and tick["thisOdds"] == 0.606

    requests_before = sum(fake_polymarket.requests.values())
    leader.kill()

    async def taken_over() -> bool:
        return await poller_pid(redis_client) == follower.pid

    # The lease is 1.5 s; the follower must hold it well within 3 odds intervals of its expiry.
    await eventually(taken_over, attempts=60)
    fake_polymarket.set_price(target["sourceId"], "0.7070")
    tick = await player.next("odds", wait_s=10)
    assert tick["thisOdds"] == 0.707
    assert sum(fake_polymarket.requests.values()) > requests_before
    await player.close()


@pytest.mark.timeout(120)
async def test_the_market_channel_moves_to_the_other_node_when_its_holder_is_killed(
    service_urls: tuple[str, str],
    tmp_path: Path,
    fake_polymarket: FakePolymarket,
    db: asyncpg.Pool,
    redis_client: redis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    channel = FakeMarketChannel()
    for market in fake_polymarket.markets.values():
        if not market.closed:
            channel.add_market(
                market.condition_id,
                market.this_token,
                market.that_token,
                bids=[(str(market.this_price - Decimal("0.01")), "100")],
                asks=[(str(market.this_price + Decimal("0.01")), "100")],
            )
    feed = {
        **FAST_FEED,
        "polymarket_gamma_url": fake_polymarket.gamma_url,
        "polymarket_base_url": fake_polymarket.clob_url,
        "feed_stream": True,
        "feed_odds_interval_s": 600,  # the odds seen here come from the channel
        "odds_push_min_interval_ms": 50,
    }
    async with channel.serve():
        nodes = [
            ServerNode(*service_urls, tmp_path, polymarket_ws_url=channel.url, **feed)
            for _ in range(2)
        ]
        try:
            for node in nodes:
                await node.start()

            async def elected() -> bool:
                return await poller_pid(redis_client) in {node.pid for node in nodes}

            await eventually(elected)
            leader_pid = await poller_pid(redis_client)
            leader = next(node for node in nodes if node.pid == leader_pid)
            follower = next(node for node in nodes if node is not leader)
            player = await Player(follower.url, http).signup()
            await player.connect()

            async def listed() -> bool:
                return len((await player.ok("markets:list", {"limit": 200}))["markets"]) == 6

            await eventually(listed)
            target = (await player.ok("markets:list", {"limit": 1}))["markets"][0]
            await player.ok("market:subscribe", {"marketIds": [target["id"]]})
            market = channel.markets[target["sourceId"]]
            ask = Decimal(market.asks[0][0])

            async def move_to(bid: Decimal) -> None:
                """Send a better bid and see its odds pushed. A node that just took over may
                first push what its fresh snapshot shows (the fake's book, without the moves
                sent before), then this move."""
                frame = price_change(
                    market,
                    price=str(bid),
                    size="5",
                    side="BUY",
                    best_bid=str(bid),
                    best_ask=str(ask),
                )
                assert await channel.publish(frame)
                expected = (bid + ask) / 2
                for _ in range(3):
                    tick = await player.next("odds", wait_s=10)
                    if Decimal(str(tick["thisOdds"])) == expected:
                        return
                raise AssertionError(f"no odds push of {expected}")

            await eventually(lambda: _subscribed(channel))
            await move_to(ask - Decimal("0.005"))

            leader.kill()

            async def taken_over() -> bool:
                return await poller_pid(redis_client) == follower.pid

            await eventually(taken_over, attempts=60)
            # The old connection died with its process; the new holder subscribes afresh.
            await eventually(lambda: _subscribed(channel))
            await move_to(ask - Decimal("0.004"))
            await player.close()
        finally:
            for node in nodes:
                node.stop()


async def _subscribed(channel: FakeMarketChannel) -> bool:
    return any(conn.subscribed for conn in channel.open_connections)
