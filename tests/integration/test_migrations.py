"""Migrations apply from an empty database, record their versions, and are safe to re-run concurrently."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from storage import database


async def test_migrations_apply_from_empty_then_rerun_as_no_op(migrated: str) -> None:
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(migrated)
    await admin.execute(f'CREATE DATABASE "{name}"')
    fresh_url = migrated.replace("/postgres?", f"/{name}?")
    try:
        expected = [version for version, _, _ in database.migration_files()]
        # Two nodes starting at once: the advisory lock lets one apply, the other finds it done.
        first, second = await asyncio.gather(
            database.migrate(fresh_url), database.migrate(fresh_url)
        )
        assert sorted(first + second) == expected
        assert await database.migrate(fresh_url) == []
        connection = await asyncpg.connect(fresh_url)
        try:
            recorded = [
                row["version"]
                for row in await connection.fetch(
                    "SELECT version FROM schema_migrations ORDER BY 1"
                )
            ]
            tables = {
                row["tablename"]
                for row in await connection.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
        finally:
            await connection.close()
        assert recorded == expected
        assert {
            "users",
            "refresh_tokens",
            "markets",
            "bets",
            "ledger",
            "daily_rewards",
            "odds_minutes",
            "odds_hours",
        } <= tables
        assert "odds_history" not in tables  # the candles are the odds history (0010)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_ledger_is_append_only(db: asyncpg.Pool) -> None:
    user_id = await db.fetchval(
        "WITH u AS (INSERT INTO users (username, password_hash, balance) VALUES ('ledgerless', 'x', 5) RETURNING id)"
        " INSERT INTO ledger (user_id, kind, amount, balance_after) SELECT id, 'signup_bonus', 5, 5 FROM u RETURNING user_id"
    )
    for statement in (
        "UPDATE ledger SET amount = 6 WHERE user_id = $1",
        "DELETE FROM ledger WHERE user_id = $1",
    ):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await db.execute(statement, user_id)


async def test_usernames_are_unique_ignoring_case_and_balance_is_capped(db: asyncpg.Pool) -> None:
    await db.execute("INSERT INTO users (username, password_hash) VALUES ('Casey', 'x')")
    for statement, error in (
        (
            "INSERT INTO users (username, password_hash) VALUES ('casey', 'x')",
            asyncpg.UniqueViolationError,
        ),
        (
            "INSERT INTO users (username, password_hash, balance) VALUES ('rich', 'x', 1000000.01)",
            asyncpg.CheckViolationError,
        ),
        (
            "INSERT INTO users (username, password_hash, balance) VALUES ('poor', 'x', -0.01)",
            asyncpg.CheckViolationError,
        ),
    ):
        with pytest.raises(error):
            await db.execute(statement)
