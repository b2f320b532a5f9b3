"""Load-test players in bulk: insert them by the batch, and remove them with everything they left.

Only rows marked `is_load_test` are ever removed; real players are untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Final

import asyncpg
import redis.asyncio as redis

from storage import keys

INSERT_PLAYERS: Final = """
WITH new_users AS (
    INSERT INTO users (username, password_hash, balance, is_load_test)
    SELECT name, $2, $3, true FROM unnest($1::text[]) AS name
    RETURNING id, username, balance
), bonus AS (
    INSERT INTO ledger (user_id, kind, amount, balance_after)
    SELECT id, 'signup_bonus', balance, balance FROM new_users WHERE balance > 0
)
SELECT id, username FROM new_users
"""

SELECT_LOAD_TEST_IDS: Final = "SELECT id FROM users WHERE is_load_test"

# The ledger trigger refuses deletes unless this is set inside the deleting transaction.
ALLOW_LEDGER_DELETE: Final = "SET LOCAL thisthat.allow_ledger_delete = 'on'"
DELETE_LOAD_TEST_LEDGER: Final = (
    "DELETE FROM ledger WHERE user_id IN (SELECT id FROM users WHERE is_load_test)"
)
DELETE_LOAD_TEST_BETS: Final = (
    "DELETE FROM bets WHERE user_id IN (SELECT id FROM users WHERE is_load_test)"
)
DELETE_LOAD_TEST_USERS: Final = "DELETE FROM users WHERE is_load_test"

SELECT_TAKEN: Final = "SELECT username FROM users WHERE lower(username) = ANY($1::text[])"


async def taken_names(connection: asyncpg.Connection, names: Sequence[str]) -> list[str]:
    """Which of these (lower-cased) names already belong to someone."""
    return [row["username"] for row in await connection.fetch(SELECT_TAKEN, list(names))]


async def insert_players(
    connection: asyncpg.Connection, names: Sequence[str], password_hash: str, credits: Decimal
) -> list[tuple[uuid.UUID, str]]:
    """One statement, one transaction: the users and their signup_bonus rows; (id, username)."""
    rows = await connection.fetch(INSERT_PLAYERS, list(names), password_hash, credits)
    return [(row["id"], row["username"]) for row in rows]


async def reset_load_test_players(connection: asyncpg.Connection, redis_url: str | None) -> int:
    """Delete every load-test player with their bets and ledger rows; real players are untouched."""
    ids = [row["id"] for row in await connection.fetch(SELECT_LOAD_TEST_IDS)]
    async with connection.transaction():
        await connection.execute(ALLOW_LEDGER_DELETE)
        await connection.execute(DELETE_LOAD_TEST_LEDGER)
        await connection.execute(DELETE_LOAD_TEST_BETS)
        await connection.execute(DELETE_LOAD_TEST_USERS)
    if redis_url and ids:
        await _forget_leaderboard_scores(redis_url, [str(user_id) for user_id in ids])
    return len(ids)


async def _forget_leaderboard_scores(redis_url: str, user_ids: list[str]) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async for key in client.scan_iter(match=keys.leaderboard("*"), count=500):
            for start in range(0, len(user_ids), 1000):
                await client.zrem(key, *user_ids[start : start + 1000])
    finally:
        await client.aclose()
