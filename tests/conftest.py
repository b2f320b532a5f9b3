"""Shared fixtures: real PostgreSQL and Redis (embedded, or TEST_DATABASE_URL / TEST_REDIS_URL),
state reset per test, and the real server on a loopback port."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as redis
from aiohttp import web

from server.app import create_app
from server.settings import Settings, load_settings
from storage import database
from storage.embedded import EmbeddedServices
from tests.players import Player

pytest_plugins = ["tests.feed_fixtures"]

TABLES = "users, refresh_tokens, markets, bets, ledger, daily_rewards"


@pytest.fixture(scope="session")
def service_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    database_url = os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("TEST_REDIS_URL")
    embedded = EmbeddedServices(tmp_path_factory.mktemp("services"))
    database_url, redis_url = embedded.start(database_url, redis_url)
    yield database_url, redis_url
    embedded.stop()


@pytest.fixture(scope="session")
async def migrated(service_urls: tuple[str, str]) -> str:
    await database.migrate(service_urls[0])
    return service_urls[0]


@pytest.fixture
async def db(migrated: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a database emptied for this test."""
    pool = await database.create_pool(migrated, max_size=10)
    assert pool is not None
    await pool.execute(f"TRUNCATE {TABLES} CASCADE")
    yield pool
    await pool.close()


@pytest.fixture
async def redis_client(service_urls: tuple[str, str]) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(service_urls[1], decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def settings(service_urls: tuple[str, str], tmp_path: Path) -> Settings:
    database_url, redis_url = service_urls
    return load_settings(
        environ={},
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path,
        bcrypt_cost=4,
        feed="off",
        jwt_access_secret="test-access-secret-0123456789abcdef",
        jwt_refresh_secret="test-refresh-secret-0123456789abcdef",
    )


ServerFactory = Callable[..., Awaitable[tuple[str, web.Application]]]


@pytest.fixture
async def start_server(
    settings: Settings, db: asyncpg.Pool, redis_client: redis.Redis
) -> AsyncIterator[ServerFactory]:
    """Starts the real app (REST + Socket.IO) on 127.0.0.1 with an ephemeral port."""
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> tuple[str, web.Application]:
        app = create_app(settings.replace(**overrides))
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}", app

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def server(start_server: ServerFactory) -> tuple[str, web.Application]:
    return await start_server()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


PlayerFactory = Callable[..., Awaitable[Player]]


@pytest.fixture
async def new_player(
    server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> AsyncIterator[PlayerFactory]:
    """Signs up a player and connects one socket (pass connect=False for REST only)."""
    players: list[Player] = []

    async def make(username: str | None = None, *, connect: bool = True) -> Player:
        player = await Player(server[0], http).signup(username)
        if connect:
            await player.connect()
            await player.next("session")
        players.append(player)
        return player

    yield make
    for player in players:
        await player.close()


@pytest.fixture(autouse=True)
async def fail_on_loop_exceptions() -> AsyncIterator[None]:
    """An exception nobody awaited is a bug even when the test's assertions pass."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    yield
    loop.set_exception_handler(previous)
    assert not seen, f"exceptions left in the event loop: {seen}"
