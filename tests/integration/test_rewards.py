"""The daily reward pays once per user and UTC day, however many claims race."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

import asyncpg
import pytest

from game.errors import BalanceCapExceeded, RewardAlreadyClaimed
from storage import accounts, audit, wallet
from storage.rows import User


async def make_user(db: asyncpg.Pool, name: str, credits: str = "1000") -> User:
    return await accounts.create_user(db, name, "hash", Decimal(credits))


async def test_twenty_concurrent_claims_pay_exactly_once(db: asyncpg.Pool) -> None:
    user = await make_user(db, "racer")
    day = date(2026, 11, 25)

    async def claim() -> Decimal | str:
        try:
            balance, _ = await wallet.claim_daily_reward(
                db, user.id, day, Decimal("100"), Decimal("1000000")
            )
            return balance
        except RewardAlreadyClaimed:
            return "claimed"
        except BalanceCapExceeded:
            return "cap"

    results = await asyncio.gather(*(claim() for _ in range(20)))
    assert results.count("claimed") == 19
    assert [r for r in results if r != "claimed"] == [Decimal("1100.00")]
    assert await db.fetchval("SELECT balance FROM users WHERE id = $1", user.id) == Decimal(
        "1100.00"
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM ledger WHERE user_id = $1 AND kind = 'daily_reward'", user.id
        )
        == 1
    )
    async with db.acquire() as connection:
        assert await audit.check_ledger(connection, Decimal("1000000")) == []


async def test_next_utc_day_pays_again(db: asyncpg.Pool) -> None:
    user = await make_user(db, "daily")
    await wallet.claim_daily_reward(
        db, user.id, date(2026, 11, 25), Decimal("100"), Decimal("1000000")
    )
    balance, version = await wallet.claim_daily_reward(
        db, user.id, date(2026, 11, 26), Decimal("100"), Decimal("1000000")
    )
    assert balance == Decimal("1200.00")
    # The version names the ledger row of this payout.
    assert await db.fetchval(
        "SELECT balance_after FROM ledger WHERE seq = $1 AND user_id = $2", version, user.id
    ) == Decimal("1200.00")


async def test_reward_over_the_cap_is_refused_and_can_be_claimed_later(db: asyncpg.Pool) -> None:
    user = await make_user(db, "whale", "999950")
    with pytest.raises(BalanceCapExceeded):
        await wallet.claim_daily_reward(
            db, user.id, date(2026, 11, 25), Decimal("100"), Decimal("1000000")
        )
    assert await db.fetchval("SELECT count(*) FROM daily_rewards") == 0
    assert await db.fetchval("SELECT balance FROM users WHERE id = $1", user.id) == Decimal(
        "999950.00"
    )


async def test_audit_names_a_tampered_balance(db: asyncpg.Pool) -> None:
    user = await make_user(db, "tampered")
    await db.execute("UPDATE users SET balance = balance + 1 WHERE id = $1", user.id)
    async with db.acquire() as connection:
        violations = await audit.check_ledger(connection, Decimal("1000000"))
    assert violations and all(v.invariant == 1 for v in violations)
    assert "tampered" in str(violations[0])
