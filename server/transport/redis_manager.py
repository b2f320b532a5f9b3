"""Socket.IO's Redis manager on a bounded connection pool: how pushes reach every node."""

from __future__ import annotations

import redis.asyncio as redis
import socketio

from storage import keys


class RedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]  # untyped library base
    """Socket.IO's Redis manager on a bounded, blocking connection pool.

    The stock manager's pool opens a new connection whenever every one is busy, so a burst of
    emits (one per bet) keeps opening connections; a bounded pool makes the burst wait for one
    of a few warm connections instead.
    """

    MAX_CONNECTIONS = 16

    def _redis_connect(self) -> None:
        pool = redis.BlockingConnectionPool.from_url(
            self.redis_url, max_connections=self.MAX_CONNECTIONS, timeout=10
        )
        self.redis = redis.Redis(connection_pool=pool)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True


def socket_manager(redis_url: str) -> RedisManager:
    """The manager every node of one deployment shares, on the game's Socket.IO channel."""
    return RedisManager(redis_url, channel=keys.SOCKETIO_CHANNEL)
