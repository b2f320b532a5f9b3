"""`thisthat seed` against the real database: players with their signup bonus, valid tokens, and a
reset that removes load-test players (their bets and ledger rows too) and nobody else."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from server.auth.tokens import TokenService
from server.cli.seed import SeedError, SeedPlan, seed
from server.settings import Settings
from storage import accounts, audit

INSERT_MARKET = """
INSERT INTO markets (source_id, question, this_label, that_label, this_token_id, that_token_id,
                     this_odds, that_odds, odds_updated_at, ends_at)
VALUES ('seed-test', 'Seed test?', 'Yes', 'No', 't1', 't2', 0.5, 0.5, now(), now() + interval '1 day')
RETURNING id
"""

PLACE_BET = """
SELECT code FROM place_bet($1, $2, $3, 'this', 10, NULL, 0, interval '1 hour', 1000000)
"""


def token_service(settings: Settings) -> TokenService:
    return TokenService(
        settings.jwt_access_secret,
        settings.jwt_refresh_secret,
        60,
        60,
        settings.jwt_issuer,
        settings.jwt_audience,
    )


async def test_seed_creates_load_test_players_with_bonus_and_live_tokens(
    db: asyncpg.Pool, settings: Settings
) -> None:
    document = await seed(
        settings, SeedPlan(players=25, batch=10, token_ttl_s=7200), show_progress=False
    )

    players = document["players"]
    assert len(players) == 25
    assert document["password"]
    rows = await db.fetch("SELECT id, username, balance, is_load_test FROM users ORDER BY username")
    assert [str(row["id"]) for row in rows] == [player["id"] for player in players]
    assert all(row["is_load_test"] and row["balance"] == settings.starting_credits for row in rows)
    bonuses = await db.fetch("SELECT user_id, kind, amount, balance_after FROM ledger")
    assert len(bonuses) == 25
    assert all(
        row["kind"] == "signup_bonus" and row["amount"] == settings.starting_credits
        for row in bonuses
    )
    now = datetime.now(UTC)
    for player in players:
        claims = token_service(settings).verify(player["accessToken"], "access", now)
        assert str(claims.user_id) == player["id"]
        assert claims.username == player["username"]
        assert (claims.expires_at - now).total_seconds() > 7000
    async with db.acquire() as connection:
        assert await audit.check_ledger(connection, settings.max_balance) == []


async def test_seed_refuses_names_that_exist_unless_reset(
    db: asyncpg.Pool, settings: Settings
) -> None:
    await seed(settings, SeedPlan(players=3), show_progress=False)
    with pytest.raises(SeedError):
        await seed(settings, SeedPlan(players=3), show_progress=False)


async def test_reset_removes_only_load_test_players_with_their_bets_and_ledger(
    db: asyncpg.Pool, settings: Settings
) -> None:
    real = await accounts.create_user(db, "real_player", "not-a-hash", Decimal("1000"))
    first = await seed(settings, SeedPlan(players=4, credits=Decimal("500")), show_progress=False)
    market_id = await db.fetchval(INSERT_MARKET)
    for index, user_id in enumerate([real.id, uuid.UUID(first["players"][0]["id"])]):
        assert await db.fetchval(PLACE_BET, user_id, market_id, f"bet-{index}") == "placed"

    second = await seed(settings, SeedPlan(players=2, reset=True), show_progress=False)

    users = await db.fetch("SELECT id, username, is_load_test FROM users ORDER BY username")
    assert {str(row["id"]) for row in users if row["is_load_test"]} == {
        p["id"] for p in second["players"]
    }
    assert [row["username"] for row in users if not row["is_load_test"]] == ["real_player"]
    assert await db.fetchval("SELECT count(*) FROM bets") == 1
    assert await db.fetchval("SELECT count(*) FROM ledger WHERE user_id = $1", real.id) == 2
    assert await db.fetchval("SELECT count(*) FROM ledger") == 2 + 2
    async with db.acquire() as connection:
        assert await audit.check_ledger(connection, settings.max_balance) == []
