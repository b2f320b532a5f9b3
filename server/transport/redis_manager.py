"""Socket.IO's Redis manager on a bounded connection pool: how pushes reach every node."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import socketio
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub

from storage import keys

logger = logging.getLogger("thisthat.sockets")

# Shutdown waits this long for the manager's listener to end once cancelled.
LISTENER_STOP_S: Final = 2.0


class RedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]  # untyped library base
    """Socket.IO's Redis manager on a bounded, blocking connection pool.

    The stock manager's pool opens a new connection whenever every one is busy, so a burst of
    emits (one per bet) keeps opening connections; a bounded pool makes the burst wait for one
    of a few warm connections instead.

    The library also reconnects by building a new client over the old one (after Redis went
    away) and never closes its client at shutdown: the connections it drops are closed here, not
    left to the garbage collector.
    """

    MAX_CONNECTIONS = 16
    redis: Redis | None
    pubsub: PubSub | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._retiring: set[asyncio.Task[None]] = set()

    def _redis_connect(self) -> None:
        self._retire(self.pubsub, self.redis)
        pool = BlockingConnectionPool.from_url(
            self.redis_url, max_connections=self.MAX_CONNECTIONS, timeout=10
        )
        client = Redis(connection_pool=pool)
        self.redis = client
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.connected = True

    def _retire(self, pubsub: PubSub | None, client: Redis | None) -> None:
        if pubsub is None and client is None:
            return
        task = asyncio.get_running_loop().create_task(_close(pubsub, client))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        """Stop listening and close every connection (the node is shutting down)."""
        listener = getattr(self, "thread", None)
        if isinstance(listener, asyncio.Task) and not listener.done():
            listener.cancel()
            await asyncio.wait([listener], timeout=LISTENER_STOP_S)
        self._retire(self.pubsub, self.redis)
        self.pubsub = self.redis = None
        self.connected = False
        if self._retiring:
            await asyncio.wait(self._retiring)


async def _close(pubsub: PubSub | None, client: Redis | None) -> None:
    try:
        if pubsub is not None:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
        if client is not None:
            await client.aclose(close_connection_pool=True)
    except Exception as error:  # noqa: BLE001 - a connection that is already broken is closed
        logger.debug("Socket.IO's Redis client closed with an error", extra={"error": repr(error)})


def socket_manager(redis_url: str) -> RedisManager:
    """The manager every node of one deployment shares, on the game's Socket.IO channel."""
    return RedisManager(redis_url, channel=keys.SOCKETIO_CHANNEL)
