"""`thisthat seed`: many load-test players fast, and a file of their fresh access tokens.

One bcrypt hash of a shared password serves every player, users and their `signup_bonus` rows go
in with one statement per batch (so one transaction per batch), and `--reset` removes earlier
load-test players only (`is_load_test`), with their bets, ledger rows and leaderboard scores.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TextIO

import asyncpg
import bcrypt
import orjson
import redis.asyncio as redis

from server.settings import Settings
from server.tokens import TokenService
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


class SeedError(RuntimeError):
    """Seeding cannot proceed (for instance, the names are taken); the message says what to do."""


@dataclass(frozen=True, slots=True)
class SeedPlan:
    players: int
    prefix: str = "loadtest_"
    password: str = "loadtest-password"
    credits: Decimal | None = None  # None: STARTING_CREDITS
    token_ttl_s: int = 2 * 3600
    batch: int = 1000
    reset: bool = False


class ProgressBar:
    """One line on stderr redrawn in place: `seeding [#####.....] 5000/10000  2400/s`."""

    def __init__(self, label: str, total: int, stream: TextIO = sys.stderr) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.started = time.monotonic()

    def update(self, done: int) -> None:
        width = 30
        filled = width * done // max(1, self.total)
        rate = done / max(1e-9, time.monotonic() - self.started)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {rate:,.0f}/s"
        )
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


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


async def seed_players(
    connection: asyncpg.Connection,
    plan: SeedPlan,
    settings: Settings,
    progress: ProgressBar | None = None,
) -> list[dict[str, Any]]:
    """Insert the players in batches; returns [{id, username}] in name order."""
    credits = settings.starting_credits if plan.credits is None else plan.credits
    password_hash = bcrypt.hashpw(
        plan.password.encode(), bcrypt.gensalt(settings.bcrypt_cost)
    ).decode()
    width = len(str(plan.players - 1))
    names = [f"{plan.prefix}{index:0{width}d}" for index in range(plan.players)]
    taken = await connection.fetch(SELECT_TAKEN, [name.lower() for name in names[:1000]])
    if taken:
        raise SeedError(
            f"players named {taken[0]['username']!r} and so on already exist: "
            "pass --reset to replace earlier load-test players, or another --prefix"
        )
    players: list[dict[str, Any]] = []
    for start in range(0, len(names), plan.batch):
        try:
            rows = await connection.fetch(
                INSERT_PLAYERS, names[start : start + plan.batch], password_hash, credits
            )
        except asyncpg.UniqueViolationError as error:
            raise SeedError(
                f"a name from {names[start]!r} on is taken: pass --reset or another --prefix"
            ) from error
        players.extend({"id": str(row["id"]), "username": row["username"]} for row in rows)
        if progress is not None:
            progress.update(len(players))
    players.sort(key=lambda player: player["username"])
    return players


def mint_tokens(players: list[dict[str, Any]], settings: Settings, ttl_s: int) -> None:
    """Give each player an access token valid for `ttl_s` (the length of a load test)."""
    tokens = TokenService(
        access_secret=settings.jwt_access_secret,
        refresh_secret=settings.jwt_refresh_secret,
        access_ttl_s=ttl_s,
        refresh_ttl_s=settings.jwt_refresh_expires_in,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    now = datetime.now(UTC)
    for player in players:
        player["accessToken"] = tokens.issue(
            "access", uuid.UUID(player["id"]), now, username=player["username"]
        ).token


async def seed(
    settings: Settings, plan: SeedPlan, base_url: str | None = None, *, show_progress: bool = True
) -> dict[str, Any]:
    """The whole command but the file: optional reset, inserts, tokens."""
    assert settings.database_url is not None
    connection = await asyncpg.connect(settings.database_url)
    try:
        if plan.reset:
            removed = await reset_load_test_players(connection, settings.redis_url)
            if show_progress:
                sys.stderr.write(f"removed {removed} earlier load-test player(s)\n")
        progress = ProgressBar("seeding", plan.players) if show_progress else None
        players = await seed_players(connection, plan, settings, progress)
        if progress is not None:
            progress.finish()
    finally:
        await connection.close()
    mint_tokens(players, settings, plan.token_ttl_s)
    document: dict[str, Any] = {"password": plan.password, "players": players}
    if base_url:
        document = {"baseUrl": base_url, **document}
    return document


def write_players_file(document: dict[str, Any], out: Path) -> None:
    """The players file holds live tokens and the password: readable by its owner only."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(document))
    out.chmod(0o600)
