"""Settling markets against the real database: every resolution, races, chunks and crash recovery."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest
import redis.asyncio as redis

from game.markets import Resolution
from storage import audit, leaderboards, settlement
from tests.betting_fixtures import balance_of, bet, insert_market, make_user

CAP = Decimal("1000000")


async def assert_sound(db: asyncpg.Pool, client: redis.Redis | None = None) -> None:
    async with db.acquire() as connection:
        if client is None:
            assert await audit.check_ledger(connection, CAP) == []
        else:
            assert await audit.check_all(connection, client, CAP, datetime.now(UTC)) == []


# Alice bets 100 on this at 0.40 (potential 250), Bob 90 on that at 0.60 (potential 150).
EXPECTED = {
    Resolution.THIS: (("won", "250.00", "1150.00"), ("lost", "0.00", "910.00")),
    Resolution.THAT: (("lost", "0.00", "900.00"), ("won", "150.00", "1060.00")),
    Resolution.SPLIT: (("split", "125.00", "1025.00"), ("split", "75.00", "985.00")),
    Resolution.CANCELLED: (("refunded", "100.00", "1000.00"), ("refunded", "90.00", "1000.00")),
}


@pytest.mark.parametrize("resolution", list(Resolution))
async def test_each_resolution_pays_what_the_rules_say(
    db: asyncpg.Pool, redis_client: redis.Redis, resolution: Resolution
) -> None:
    alice, bob = await make_user(db, "alice"), await make_user(db, "bob")
    market = await insert_market(db)
    alice_bet = await bet(db, alice, market, "this", "100")
    bob_bet = await bet(db, bob, market, "that", "90")

    result = await settlement.settle_market(db, market, resolution, datetime.now(UTC))
    assert result.complete and result.market is not None
    assert result.market.status == (
        "cancelled" if resolution is Resolution.CANCELLED else "resolved"
    )
    assert result.market.resolved_side == (
        None if resolution is Resolution.CANCELLED else resolution.value
    )
    by_bet = {settled.bet.id: settled for settled in result.bets}
    for (status, payout, balance), placed, user in zip(
        EXPECTED[resolution], (alice_bet, bob_bet), (alice, bob), strict=True
    ):
        settled = by_bet[placed.bet.id]
        assert (settled.bet.status, settled.payout, settled.balance) == (
            status,
            Decimal(payout),
            Decimal(balance),
        )
        assert settled.bet.payout == Decimal(payout) and settled.bet.settled_at is not None
        assert await balance_of(db, user) == Decimal(balance)
    kinds = [
        row["kind"]
        for row in await db.fetch(
            "SELECT kind FROM ledger WHERE bet_id IS NOT NULL AND kind <> 'bet_stake'"
        )
    ]
    expected_kind = "bet_refund" if resolution is Resolution.CANCELLED else "bet_payout"
    assert kinds == [expected_kind] * sum(
        1 for status, _, _ in EXPECTED[resolution] if status != "lost"
    )
    assert await db.fetchval("SELECT settled_at IS NOT NULL FROM markets WHERE id = $1", market)
    assert await leaderboards.sync_pending(db, redis_client) == 1
    await assert_sound(db, redis_client)


async def test_a_resolution_processed_twice_at_once_pays_once(
    db: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    users = [await make_user(db, f"twice_{i}") for i in range(5)]
    market = await insert_market(db)
    for user in users:
        await bet(db, user, market, "this", "100")
    now = datetime.now(UTC)
    first, second, third = await asyncio.gather(
        *(
            settlement.settle_market(db, market, resolution, now)
            for resolution in (Resolution.THIS, Resolution.THIS, Resolution.THAT)
        )
    )
    winners = [result for result in (first, second, third) if result.market is not None]
    assert len(winners) == 1 and len(winners[0].bets) == 5
    assert all(not result.bets for result in (first, second, third) if result.market is None)
    assert await db.fetchval("SELECT count(*) FROM ledger WHERE kind = 'bet_payout'") == (
        5 if winners[0].resolution is Resolution.THIS else 0
    )
    again = await settlement.settle_market(db, market, Resolution.THIS, now)
    assert again.market is None and again.bets == []
    await leaderboards.sync_pending(db, redis_client)
    await assert_sound(db, redis_client)


async def test_a_market_with_more_bets_than_a_chunk_settles_in_several_transactions(
    db: asyncpg.Pool,
) -> None:
    users = [await make_user(db, f"chunky_{i}") for i in range(6)]
    market = await insert_market(db)
    for i in range(25):
        await bet(db, users[i % 6], market, "this" if i % 3 else "that", "10")
    result = await settlement.settle_market(
        db, market, Resolution.THIS, datetime.now(UTC), chunk_size=4
    )
    assert result.complete and len(result.bets) == 25
    assert len({settled.bet.id for settled in result.bets}) == 25
    # The balance each push reports is the user's balance after that bet; the last is the final one.
    for user, (balance, _) in result.final_balances().items():
        assert await balance_of(db, user) == balance
    assert await db.fetchval("SELECT count(*) FROM bets WHERE status = 'open'") == 0
    await assert_sound(db)


async def test_settle_pending_finishes_a_market_left_half_settled(
    db: asyncpg.Pool, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = [await make_user(db, f"crash_{i}") for i in range(3)]
    market = await insert_market(db)
    for i in range(10):
        await bet(db, users[i % 3], market, "that", "10")

    async def die(*args: object, **kwargs: object) -> None:
        raise RuntimeError("SIGKILL between chunks")

    # The process dies after the first transaction (status flip and first chunk) committed.
    with monkeypatch.context() as patch:
        patch.setattr(settlement, "_finish", die)
        with pytest.raises(RuntimeError):
            await settlement.settle_market(
                db, market, Resolution.THAT, datetime.now(UTC), chunk_size=4
            )
    assert await db.fetchval("SELECT count(*) FROM bets WHERE status = 'open'") == 6
    assert await db.fetchval("SELECT settled_at FROM markets WHERE id = $1", market) is None
    # A resolution arriving again does not re-run the transition; it leaves the rest to settle_pending.
    assert (
        await settlement.settle_market(db, market, Resolution.THAT, datetime.now(UTC))
    ).market is None

    results = await settlement.settle_pending(db, datetime.now(UTC), chunk_size=4)
    assert [result.market_id for result in results] == [market]
    assert (
        len(results[0].bets) == 6
        and results[0].complete
        and results[0].resolution is Resolution.THAT
    )
    assert await settlement.settle_pending(db, datetime.now(UTC)) == []
    assert await leaderboards.sync_pending(db, redis_client) == 1
    for user in users:
        assert await balance_of(db, user) > Decimal("1000")
    await assert_sound(db, redis_client)


async def test_concurrent_settlements_and_bets_of_the_same_players_do_not_deadlock(
    db: asyncpg.Pool,
) -> None:
    users = [await make_user(db, f"busy_{i}") for i in range(6)]
    markets = [await insert_market(db) for _ in range(3)]
    for market in markets[:2]:
        for user in users:
            await bet(db, user, market, "this", "20")
    now = datetime.now(UTC)
    outcomes = await asyncio.gather(
        settlement.settle_market(db, markets[0], Resolution.THIS, now, chunk_size=2),
        settlement.settle_market(db, markets[1], Resolution.CANCELLED, now, chunk_size=2),
        *(bet(db, user, markets[2], "that", "10") for user in reversed(users) for _ in range(2)),
    )
    assert all(result.complete for result in outcomes[:2])  # type: ignore[union-attr]
    assert await db.fetchval("SELECT count(*) FROM bets WHERE market_id = $1", markets[2]) == 12
    await assert_sound(db)


async def test_settling_a_market_without_bets_marks_it_settled(db: asyncpg.Pool) -> None:
    market = await insert_market(db, status="closed")
    result = await settlement.settle_market(db, market, Resolution.SPLIT, datetime.now(UTC))
    assert result.complete and result.bets == []
    assert (
        await settlement.settle_market(db, uuid.uuid4(), Resolution.THIS, datetime.now(UTC))
    ).market is None
