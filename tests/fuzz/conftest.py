"""What every fuzz test shares: a server without rate limits (so input, not the limiter, decides
each answer), one market to aim at, one connected player reused by every example, the log
watch and the time budget."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.betting_fixtures import insert_market
from tests.conftest import ServerFactory
from tests.players import Player

# Examples per event or endpoint, and seconds one fuzz test may spend on them; past the budget
# the remaining examples return at once. THISTHAT_FUZZ_EXAMPLES=5000 runs a long, random session.
EXAMPLES: Final = int(os.environ.get("THISTHAT_FUZZ_EXAMPLES", "200"))
BUDGET_S: Final = float(os.environ.get("THISTHAT_FUZZ_BUDGET_S", "6"))
# The default run is the same on every machine; a longer one explores.
DERANDOMIZE: Final = "THISTHAT_FUZZ_EXAMPLES" not in os.environ
# Examples that must have run within the budget for a test to count as having fuzzed anything.
MIN_EXAMPLES: Final = min(EXAMPLES, 25)

# Warnings the server writes by design on some refused input.
EXPECTED_WARNINGS: Final = {("thisthat.rest", "refresh token reused; family revoked")}


@dataclass
class Budget:
    """Bounds one test's time: `spent()` turns true past BUDGET_S; `ran` counts real examples."""

    started: float | None = None
    ran: int = 0

    def spent(self) -> bool:
        # The clock starts at the first example, once the server and player are up.
        now = time.monotonic()
        self.started = self.started or now
        if now - self.started > BUDGET_S:
            return True
        self.ran += 1
        return False

    def check(self) -> None:
        assert self.ran >= MIN_EXAMPLES, f"only {self.ran} examples ran within {BUDGET_S} s"


@pytest.fixture
def budget() -> Budget:
    return Budget()


class LogWatch:
    """Fails an example whose handling logged an error, a traceback or an unexpected warning."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        caplog.set_level(logging.INFO)

    def start(self) -> None:
        """Forget what earlier examples logged (a failing one stops before its `check`)."""
        self.caplog.clear()

    def check(self, what: object) -> None:
        bad = [
            record
            for record in self.caplog.records
            if record.exc_info
            or (
                record.levelno >= logging.WARNING
                and (record.name, record.getMessage()) not in EXPECTED_WARNINGS
            )
        ]
        self.caplog.clear()
        assert not bad, (what, [(r.name, r.levelname, r.getMessage(), r.exc_text) for r in bad])


@pytest.fixture
def log_watch(caplog: pytest.LogCaptureFixture) -> LogWatch:
    return LogWatch(caplog)


@pytest.fixture
async def fuzz_server(start_server: ServerFactory) -> tuple[str, web.Application]:
    # Examples arrive back to back on one socket, faster than any player: the read budget is
    # raised out of their way too.
    return await start_server(
        rate_limit_enabled=False, ws_frames_per_s=100_000, ws_frames_burst=100_000
    )


@pytest.fixture
async def market_id(db: asyncpg.Pool) -> uuid.UUID:
    return await insert_market(db)


@pytest.fixture
async def fuzz_player(
    fuzz_server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> AsyncIterator[Player]:
    player = await Player(fuzz_server[0], http).signup()
    await player.connect()
    await player.next("session")
    yield player
    await player.close()


@dataclass(frozen=True)
class Snapshot:
    """A player's money and records: what refused input must leave as it was."""

    balance: Decimal
    bets: int
    ledger: int
    anonymous: bool


async def snapshot(db: asyncpg.Pool, user_id: str) -> Snapshot:
    row = await db.fetchrow(
        """
        SELECT balance, anonymous,
               (SELECT count(*) FROM bets WHERE user_id = $1) AS bets,
               (SELECT count(*) FROM ledger WHERE user_id = $1) AS ledger
        FROM users WHERE id = $1
        """,
        uuid.UUID(user_id),
    )
    assert row is not None
    return Snapshot(row["balance"], row["bets"], row["ledger"], row["anonymous"])


async def table_counts(db: asyncpg.Pool) -> dict[str, Any]:
    """Rows a refused REST request must not add."""
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM users) AS users,"
        " (SELECT count(*) FROM refresh_tokens) AS refresh_tokens,"
        " (SELECT count(*) FROM bets) AS bets,"
        " (SELECT count(*) FROM ledger) AS ledger"
    )
    assert row is not None
    return dict(row)
