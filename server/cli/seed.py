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
from typing import Any, TextIO

import asyncpg
import bcrypt
import orjson

from server.auth.tokens import TokenService
from server.settings import Settings
from storage import seeding


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
    taken = await seeding.taken_names(connection, [name.lower() for name in names[:1000]])
    if taken:
        raise SeedError(
            f"players named {taken[0]!r} and so on already exist: "
            "pass --reset to replace earlier load-test players, or another --prefix"
        )
    players: list[dict[str, Any]] = []
    for start in range(0, len(names), plan.batch):
        try:
            rows = await seeding.insert_players(
                connection, names[start : start + plan.batch], password_hash, credits
            )
        except asyncpg.UniqueViolationError as error:
            raise SeedError(
                f"a name from {names[start]!r} on is taken: pass --reset or another --prefix"
            ) from error
        players.extend({"id": str(user_id), "username": username} for user_id, username in rows)
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
            removed = await seeding.reset_load_test_players(connection, settings.redis_url)
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
