"""The asyncpg pool and the migration runner."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import Final

import asyncpg
import asyncpg.pool
import orjson

logger = logging.getLogger("thisthat.storage")

# Anything that runs a query: a connection, a pooled one, or the pool itself.
Executor = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# Any constant works; it only has to be the same on every node.
MIGRATION_LOCK_ID: Final = 7_243_001

CREATE_MIGRATIONS_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED: Final = "SELECT version FROM schema_migrations"
INSERT_APPLIED: Final = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"


async def _init_connection(connection: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(
            kind,
            schema="pg_catalog",
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's reset query (a round trip on every release).

    Safe because nothing here leaves session state behind: no LISTEN, no session settings, no
    cursors outside transactions; advisory locks are taken only on dedicated connections.
    """


async def create_pool(
    url: str,
    *,
    max_size: int = 20,
    min_size: int = 2,
    on_query: Callable[[float], None] | None = None,
) -> asyncpg.Pool:
    """`on_query(seconds)` is called (soon after, not inline) for every query the pool runs."""

    async def init(connection: asyncpg.Connection) -> None:
        await _init_connection(connection)
        if on_query is not None:
            connection.add_query_logger(lambda record: on_query(record.elapsed))

    pool = await asyncpg.create_pool(
        url,
        reset=_keep_session,
        min_size=min(min_size, max_size),
        max_size=max_size,
        init=init,
        command_timeout=30,
        server_settings={"application_name": "thisthat", "timezone": "UTC"},
    )
    assert pool is not None
    return pool


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every storage/migrations/NNNN_name.sql, in order."""
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version, _, name = entry.name.removesuffix(".sql").partition("_")
            found.append((int(version), name, entry.read_text()))
    return sorted(found)


async def apply_migrations(connection: asyncpg.Connection) -> list[int]:
    """Apply what is missing, in order; safe to run twice or from two nodes at once.

    A session advisory lock serialises concurrent runners, so the second one waits and then
    finds everything applied.
    """
    applied_now: list[int] = []
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await connection.execute(CREATE_MIGRATIONS_TABLE)
        applied = {row["version"] for row in await connection.fetch(SELECT_APPLIED)}
        for version, name, sql in migration_files():
            if version in applied:
                continue
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute(INSERT_APPLIED, version, name)
            logger.info("migration applied", extra={"version": version, "migration": name})
            applied_now.append(version)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now


async def migrate(url: str) -> list[int]:
    connection = await asyncpg.connect(url)
    try:
        return await apply_migrations(connection)
    finally:
        await connection.close()


async def ping(pool: asyncpg.Pool, timeout_s: float) -> None:
    """One trivial round trip: raises when the database cannot answer within `timeout_s`."""
    await pool.fetchval("SELECT 1", timeout=timeout_s)
