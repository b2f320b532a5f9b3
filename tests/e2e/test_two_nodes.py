"""Two server processes on one PostgreSQL and Redis: one polls, both deliver, a dead poller is replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as redis

from storage import keys
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
