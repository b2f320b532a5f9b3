"""The process's connections: the PostgreSQL pool and the Redis client, each under its own key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

import asyncpg
import redis.asyncio as redis
from aiohttp import web

from server.runtime import metrics
from server.settings import SETTINGS
from storage import database
from storage.ratelimit import LoginGuard, RateLimiter
from storage.socket_slots import SocketSlots

DB_POOL: Final = web.AppKey("db_pool", asyncpg.Pool)
REDIS: Final = web.AppKey("redis", redis.Redis)
LIMITER: Final = web.AppKey("limiter", RateLimiter)
LOGIN_GUARD: Final = web.AppKey("login_guard", LoginGuard)
# Every user's sockets on every node, against SOCKETS_PER_USER.
SOCKET_SLOTS: Final = web.AppKey("socket_slots", SocketSlots)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url is not None
    # Every node applies migrations on start; the runner's lock makes that safe.
    await database.migrate(settings.database_url)
    pool = await database.create_pool(
        settings.database_url,
        max_size=settings.database_pool_max,
        on_query=metrics.DB_QUERY_SECONDS.observe,
    )
    app[DB_POOL] = pool
    yield
    await pool.close()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.redis_url is not None
    # A bounded pool of warm connections: a burst waits for one instead of opening more.
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_max,
        timeout=5,
        decode_responses=True,
        health_check_interval=30,
    )
    client = redis.Redis(connection_pool=pool)
    await client.ping()
    app[REDIS] = client
    app[LIMITER] = RateLimiter(client, enabled=settings.rate_limit_enabled)
    app[SOCKET_SLOTS] = SocketSlots(client)
    app[LOGIN_GUARD] = LoginGuard(
        client,
        pair=settings.rate_limit_login_per_username_ip,
        ceiling=settings.rate_limit_login_per_username,
        enabled=settings.rate_limit_enabled,
    )
    yield
    await client.aclose()
    await pool.aclose()  # the client does not close a pool it was given


async def ping_database(app: web.Application, timeout_s: float) -> None:
    """Raise unless the database answers within `timeout_s` (readiness)."""
    await database.ping(app[DB_POOL], timeout_s=timeout_s)
