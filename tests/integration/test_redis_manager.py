"""Socket.IO's Redis manager on a real Redis: the client the library replaces when it reconnects
is closed, and shutdown stops the listener and closes its connection (the library does neither)."""

from __future__ import annotations

import uuid

import redis.asyncio as redis
import socketio

from server.transport.redis_manager import RedisManager
from tests.feed_fixtures import eventually


async def subscribers(client: redis.Redis, channel: str) -> int:
    ((_, count),) = await client.pubsub_numsub(channel)
    return int(count)


async def test_a_reconnect_closes_the_client_it_replaces(
    service_urls: tuple[str, str], redis_client: redis.Redis
) -> None:
    channel = f"manager-{uuid.uuid4().hex}"
    manager = RedisManager(service_urls[1], channel=channel)
    try:
        manager._redis_connect()
        await manager.pubsub.subscribe(channel)
        assert await subscribers(redis_client, channel) == 1

        # What the library does after Redis went away: a new client over the old one.
        manager._redis_connect()
        await manager.pubsub.subscribe(channel)

        async def only_the_new_one() -> bool:
            return await subscribers(redis_client, channel) == 1

        await eventually(only_the_new_one, attempts=30)
    finally:
        await manager.close()


async def test_close_stops_the_listener_and_closes_its_connection(
    service_urls: tuple[str, str], redis_client: redis.Redis
) -> None:
    channel = f"manager-{uuid.uuid4().hex}"
    manager = RedisManager(service_urls[1], channel=channel)
    socketio.AsyncServer(client_manager=manager, async_mode="aiohttp")
    manager.initialize()  # what the server does on its first connection: the listener starts

    async def listening() -> bool:
        return await subscribers(redis_client, channel) == 1

    await eventually(listening, attempts=30)
    listener = manager.thread

    await manager.close()

    assert listener.done()
    assert await subscribers(redis_client, channel) == 0
    assert manager.redis is None and manager.pubsub is None
