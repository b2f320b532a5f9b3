"""The accounts use case on real PostgreSQL and Redis, with the clock in the test's hands.

Over REST a token cannot be aged; here `now` is an argument, so expiry and the end of the retry
grace are reached exactly, and each outcome of a rotation is seen with what it hands back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
import redis.asyncio as redis

from game.errors import (
    InvalidCredentials,
    RateLimited,
    RefreshTokenReused,
    TokenExpired,
    TokenInvalid,
    UsernameTaken,
)
from game.rules import GameRules
from server.auth.passwords import PasswordHasher
from server.auth.tokens import TokenService
from services.accounts import Accounts
from storage.accounts import RotationOutcome
from storage.ratelimit import LoginGuard

GRACE = timedelta(seconds=10)
CLIENT = "10.0.0.9\nthe-game/1.0"
REFRESH_TTL_S = 3600
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def passwords() -> Iterator[PasswordHasher]:
    hasher = PasswordHasher(cost=4)
    yield hasher
    hasher.close()


@pytest.fixture
def accounts(db: asyncpg.Pool, redis_client: redis.Redis, passwords: PasswordHasher) -> Accounts:
    tokens = TokenService(
        access_secret="test-access-secret-0123456789abcdef",
        refresh_secret="test-refresh-secret-0123456789abcdef",
        access_ttl_s=900,
        refresh_ttl_s=REFRESH_TTL_S,
        issuer="thisthat",
        audience="thisthat-clients",
    )
    guard = LoginGuard(redis_client, pair=(2, 60), ceiling=(100, 60))
    rules = GameRules(
        min_bet_amount=Decimal("1"),
        max_bet_amount=Decimal("1000"),
        starting_credits=Decimal("500"),
        daily_reward_credits=Decimal("100"),
        max_balance=Decimal("1000000"),
        odds_max_age_s=30,
    )
    return Accounts(db, rules, passwords, tokens, guard, GRACE)


async def test_signup_opens_a_session_and_refuses_the_name_twice(
    accounts: Accounts, db: asyncpg.Pool
) -> None:
    session = await accounts.signup("Alice", "correct horse", START)
    assert session.user.username == "Alice"
    assert session.user.balance == Decimal("500.00")
    assert session.tokens.refresh_expires_at == START + timedelta(seconds=REFRESH_TTL_S)
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens") == 1
    with pytest.raises(UsernameTaken):
        await accounts.signup("alice", "another one", START)
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def test_login_counts_only_failures_against_the_name(accounts: Accounts) -> None:
    await accounts.signup("bob", "right password", START)
    with pytest.raises(InvalidCredentials):
        await accounts.login("bob", "wrong", "10.0.0.1", START)
    # Successes cost nothing and forget the address's failures: the limit (2) is not reached.
    for _ in range(3):
        session = await accounts.login("bob", "right password", "10.0.0.1", START)
        assert session.user.username == "bob"
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await accounts.login("bob", "wrong again", "10.0.0.1", START)
    # Two failures in the window: even the right password waits now.
    with pytest.raises(RateLimited):
        await accounts.login("bob", "right password", "10.0.0.1", START)


async def test_an_unknown_name_is_refused_like_a_wrong_password(accounts: Accounts) -> None:
    await accounts.signup("carol", "right password", START)
    with pytest.raises(InvalidCredentials) as unknown:
        await accounts.login("nobody", "right password", "10.0.0.2", START)
    with pytest.raises(InvalidCredentials) as wrong:
        await accounts.login("carol", "wrong password", "10.0.0.2", START)
    assert unknown.value.to_dict() == wrong.value.to_dict()


async def test_a_rotation_then_a_retry_then_a_reuse_then_the_revoked_successor(
    accounts: Accounts, db: asyncpg.Pool
) -> None:
    first = (await accounts.signup("dave", "password", START)).tokens
    rotated_at = START + timedelta(minutes=5)

    rotated = await accounts.refresh(first.refresh_token, rotated_at, CLIENT)
    assert rotated.outcome is RotationOutcome.ROTATED
    assert rotated.tokens is not None
    assert rotated.tokens.refresh_token != first.refresh_token

    retried = await accounts.refresh(first.refresh_token, rotated_at + GRACE, CLIENT)
    assert retried.outcome is RotationOutcome.REPLAYED
    assert retried.tokens == rotated.tokens

    with pytest.raises(RefreshTokenReused):
        await accounts.refresh(
            first.refresh_token, rotated_at + GRACE + timedelta(seconds=1), CLIENT
        )
    # The reuse revoked the whole family: the successor no longer rotates.
    with pytest.raises(TokenInvalid):
        await accounts.refresh(rotated.tokens.refresh_token, rotated_at + GRACE * 2, CLIENT)
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL") == 0


async def test_an_expired_refresh_token_is_refused_and_left_unspent(accounts: Accounts) -> None:
    first = (await accounts.signup("erin", "password", START)).tokens
    with pytest.raises(TokenExpired):
        await accounts.refresh(first.refresh_token, first.refresh_expires_at, CLIENT)
    still_good = await accounts.refresh(
        first.refresh_token, first.refresh_expires_at - GRACE, CLIENT
    )
    assert still_good.outcome is RotationOutcome.ROTATED


async def test_a_token_never_issued_is_unknown_and_logout_revokes_the_family(
    accounts: Accounts,
) -> None:
    with pytest.raises(TokenInvalid):
        await accounts.refresh("not-a-token-we-issued", START, CLIENT)

    first = (await accounts.signup("frank", "password", START)).tokens
    rotated = await accounts.refresh(first.refresh_token, START + timedelta(minutes=1), CLIENT)
    assert rotated.tokens is not None
    # Signing out with the older token of the family signs out its newest too.
    await accounts.logout(first.refresh_token)
    with pytest.raises(TokenInvalid):
        await accounts.refresh(rotated.tokens.refresh_token, START + timedelta(minutes=2), CLIENT)


@pytest.mark.parametrize(
    "thief",
    ["203.0.113.7\nthe-game/1.0", "10.0.0.9\ncurl/8.0"],
    ids=["another address", "another user agent"],
)
async def test_within_the_grace_only_the_rotating_client_gets_the_pair_and_a_thief_revokes_it(
    accounts: Accounts, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture, thief: str
) -> None:
    first = (await accounts.signup("grace", "password", START)).tokens
    rotated_at = START + timedelta(minutes=5)
    rotated = await accounts.refresh(first.refresh_token, rotated_at, CLIENT)
    caplog.set_level(logging.INFO, "thisthat.accounts")

    retried = await accounts.refresh(first.refresh_token, rotated_at, CLIENT)
    assert (retried.outcome, retried.tokens) == (RotationOutcome.REPLAYED, rotated.tokens)
    assert [r.getMessage() for r in caplog.records] == [
        "spent refresh token presented again within the grace window; same pair answered"
    ]
    caplog.clear()

    with pytest.raises(RefreshTokenReused):
        await accounts.refresh(first.refresh_token, rotated_at + GRACE / 2, thief)
    assert [r.getMessage() for r in caplog.records] == ["refresh token reused; family revoked"]
    assert caplog.records[0].otherClientInGrace is True
    # The family is revoked: the pair the victim holds no longer rotates, and the thief has none.
    with pytest.raises(TokenInvalid):
        await accounts.refresh(rotated.tokens.refresh_token, rotated_at + GRACE, CLIENT)
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL") == 0
