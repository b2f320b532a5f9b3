"""The feed lease holds while the node's shared Redis pool is exhausted: it is renewed on a
connection of its own, so a node carrying thousands of sockets does not hand the feed over."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis

from server.runtime.resources import REDIS
from storage import keys
from tests.conftest import ServerFactory
from tests.fake_polymarket import FakePolymarket
from tests.feed_fixtures import eventually, feed_settings


async def test_the_lease_is_renewed_while_every_shared_connection_is_busy(
    start_server: ServerFactory, fake_polymarket: FakePolymarket, redis_client: redis.Redis
) -> None:
    _, app = await start_server(**feed_settings(fake_polymarket, redis_pool_max=4))

    async def leading() -> bool:
        return await redis_client.get(keys.FEED_LOCK) is not None

    await eventually(leading)
    owner = await redis_client.get(keys.FEED_LOCK)
    pool = app[REDIS].connection_pool
    held = []  # every connection the pool has left (subscribers keep some for good)
    while len(held) < pool.max_connections:
        try:
            async with asyncio.timeout(0.3):
                held.append(await pool.get_connection())
        except TimeoutError:
            break
    assert held
    try:
        # Three lease lifetimes (1.5 s each) with no shared connection free.
        for _ in range(9):
            await asyncio.sleep(0.5)
            assert await redis_client.get(keys.FEED_LOCK) == owner
    finally:
        for connection in held:
            await pool.release(connection)
