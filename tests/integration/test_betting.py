"""Placing bets against the real database: the place_bet function's checks, races and idempotency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from game.errors import ErrorCode, GameError
from game.markets import Resolution
from game.rules import GameRules
from storage import audit, bets, settlement
from storage import markets as market_store
from tests.betting_fixtures import balance_of, bet, insert_market, make_user

CAP = Decimal("1000000")


async def counts(db: asyncpg.Pool) -> tuple[int, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM bets) AS bets, (SELECT count(*) FROM ledger) AS ledger"
    )
    assert row is not None
    return row["bets"], row["ledger"]


async def assert_ledger_sound(db: asyncpg.Pool) -> None:
    async with db.acquire() as connection:
        assert await audit.check_ledger(connection, CAP) == []


async def test_a_bet_debits_the_stake_and_locks_the_odds(db: asyncpg.Pool) -> None:
    user = await make_user(db, "bettor")
    market = await insert_market(db, this_odds="0.3333", that_odds="0.6667")
    placed = await bet(db, user, market, "this", "100.00", client_bet_id="first")
    assert placed.created and placed.balance == Decimal("900.00")
    row = placed.bet
    assert (row.side, row.amount, row.odds, row.status) == (
        "this",
        Decimal("100.00"),
        Decimal("0.3333"),
        "open",
    )
    # 100 / 0.3333 = 300.030003..., rounded down to the cent.
    assert (
        row.potential_payout == Decimal("300.03") and row.payout is None and row.settled_at is None
    )
    stake = await db.fetchrow(
        "SELECT kind, amount, balance_after FROM ledger WHERE bet_id = $1", row.id
    )
    assert stake is not None and dict(stake) == {
        "kind": "bet_stake",
        "amount": Decimal("-100.00"),
        "balance_after": Decimal("900.00"),
    }
    await assert_ledger_sound(db)


async def test_thirty_concurrent_bets_with_credits_for_ten_land_exactly_ten(
    db: asyncpg.Pool,
) -> None:
    user = await make_user(db, "spender")
    market = await insert_market(db)

    async def attempt(i: int) -> str:
        try:
            await bet(db, user, market, "that", "100", client_bet_id=f"bet-{i}")
            return "placed"
        except GameError as error:
            return error.code.value

    results = await asyncio.gather(*(attempt(i) for i in range(30)))
    assert results.count("placed") == 10
    assert results.count("INSUFFICIENT_CREDITS") == 20
    assert await balance_of(db, user) == Decimal("0.00")
    assert await counts(db) == (10, 11)  # ten bets; the signup bonus and ten stakes
    await assert_ledger_sound(db)


async def test_the_same_client_bet_id_twelve_times_at_once_is_one_bet_and_one_debit(
    db: asyncpg.Pool,
) -> None:
    user = await make_user(db, "repeater")
    market = await insert_market(db)
    answers = await asyncio.gather(
        *(bet(db, user, market, "this", "50", client_bet_id="once") for _ in range(12))
    )
    assert sum(answer.created for answer in answers) == 1
    assert {answer.bet.id for answer in answers} == {answers[0].bet.id}
    assert await balance_of(db, user) == Decimal("950.00")
    assert await counts(db) == (1, 2)
    await assert_ledger_sound(db)


async def test_a_repeat_returns_the_original_bet_whatever_its_payload(db: asyncpg.Pool) -> None:
    user = await make_user(db, "stubborn")
    market = await insert_market(db)
    original = await bet(db, user, market, "this", "100", client_bet_id="same")
    other_market = await insert_market(db, status="closed")
    for repeat in (
        bet(db, user, other_market, "that", "500", client_bet_id="same"),
        bet(
            db, user, uuid.uuid4(), "that", "5", client_bet_id="same"
        ),  # unknown market, amount out of range
        bet(db, user, market, "this", "100", client_bet_id="same", expected_odds="0.0001"),
    ):
        answer = await repeat
        assert (
            not answer.created
            and answer.bet.id == original.bet.id
            and answer.balance == Decimal("900.00")
        )
    assert await counts(db) == (1, 2)


@pytest.mark.parametrize(
    ("market_kwargs", "bet_kwargs", "code"),
    [
        ({}, {"amount": "9.99"}, ErrorCode.BET_AMOUNT_OUT_OF_RANGE),
        ({}, {"amount": "10000.01"}, ErrorCode.BET_AMOUNT_OUT_OF_RANGE),
        ({}, {"amount": "10.001"}, ErrorCode.BET_AMOUNT_OUT_OF_RANGE),
        ({"status": "closed"}, {}, ErrorCode.MARKET_CLOSED),
        ({"status": "resolved_this"}, {}, ErrorCode.MARKET_CLOSED),
        ({"ends_in_s": -1}, {}, ErrorCode.MARKET_CLOSED),
        ({"accepting_orders": False}, {}, ErrorCode.MARKET_CLOSED),
        ({"odds_age_s": 121}, {}, ErrorCode.ODDS_STALE),
        ({}, {"expected_odds": "0.38", "max_slippage": "0.01"}, ErrorCode.ODDS_CHANGED),
        ({}, {"amount": "1000.01"}, ErrorCode.INSUFFICIENT_CREDITS),
        ({"this_odds": "0.0005"}, {"amount": "1000"}, ErrorCode.BALANCE_CAP_EXCEEDED),
    ],
)
async def test_refused_bets_change_nothing(
    db: asyncpg.Pool, market_kwargs: dict[str, object], bet_kwargs: dict[str, str], code: ErrorCode
) -> None:
    user = await make_user(db, "refused")
    if market_kwargs.get("status") == "resolved_this":
        market = await insert_market(db)
        await db.execute(
            "UPDATE markets SET status = 'resolved', resolved_side = 'this' WHERE id = $1", market
        )
    else:
        market = await insert_market(db, **market_kwargs)  # type: ignore[arg-type]
    with pytest.raises(GameError) as refused:
        await bet(db, user, market, "this", **bet_kwargs)
    assert refused.value.code is code
    if code is ErrorCode.ODDS_CHANGED:
        assert refused.value.details == {"currentOdds": Decimal("0.4000")}
    if code is ErrorCode.INSUFFICIENT_CREDITS:
        assert refused.value.details == {"balance": Decimal("1000.00")}
    assert await balance_of(db, user) == Decimal("1000.00")
    assert await counts(db) == (0, 1)


async def test_unknown_market_is_refused(db: asyncpg.Pool) -> None:
    user = await make_user(db, "lost")
    with pytest.raises(GameError) as refused:
        await bet(db, user, uuid.uuid4())
    assert refused.value.code is ErrorCode.MARKET_NOT_FOUND


async def test_odds_within_slippage_or_better_than_expected_are_accepted(db: asyncpg.Pool) -> None:
    user = await make_user(db, "tolerant")
    market = await insert_market(db)  # this side at 0.4000
    within = await bet(db, user, market, "this", "10", expected_odds="0.39", max_slippage="0.01")
    better = await bet(db, user, market, "this", "10", expected_odds="0.45")
    assert within.bet.odds == better.bet.odds == Decimal("0.4000")


async def test_the_cap_counts_every_open_potential_payout(db: asyncpg.Pool) -> None:
    rules = GameRules(max_balance=Decimal("2000"))
    user = await make_user(db, "capped")
    market = await insert_market(db, this_odds="0.1000")
    # 900 left + 1000 potential = 1900: within 2000.
    await bet(db, user, market, "this", "100", rules=rules)
    with pytest.raises(GameError) as refused:
        # 800 left + 1000 + 1000 = 2800: a win of both could breach the cap.
        await bet(db, user, market, "this", "100", rules=rules)
    assert refused.value.code is ErrorCode.BALANCE_CAP_EXCEEDED
    # Exactly at the cap is allowed: 800 left + 1000 + 200 (100 at 0.5) = 2000.
    even = await insert_market(db, this_odds="0.5000", that_odds="0.5000")
    placed = await bet(db, user, even, "this", "100", rules=rules)
    assert placed.balance == Decimal("800.00")


async def test_bets_racing_the_close_either_land_before_it_or_are_refused(db: asyncpg.Pool) -> None:
    players = [await make_user(db, f"racer_{i}") for i in range(8)]
    market = await insert_market(db)

    async def attempt(user: uuid.UUID, i: int) -> str:
        try:
            await bet(
                db, user, market, "this" if i % 2 else "that", "20", client_bet_id=f"race-{i}"
            )
            return "placed"
        except GameError as error:
            return error.code.value

    async def close() -> None:
        await asyncio.sleep(0)
        await market_store.close_market(db, market)

    attempts = [attempt(players[i % 8], i) for i in range(40)]
    *results, _ = await asyncio.gather(*attempts, close())
    assert set(results) <= {"placed", "MARKET_CLOSED"}
    landed = await db.fetchval("SELECT count(*) FROM bets WHERE market_id = $1", market)
    assert landed == results.count("placed")
    # A bet after the close is refused; every landed bet is settled by the resolution.
    with pytest.raises(GameError) as late:
        await bet(db, players[0], market)
    assert late.value.code is ErrorCode.MARKET_CLOSED
    settled = await settlement.settle_market(db, market, Resolution.THAT, datetime.now(UTC))
    assert len(settled.bets) == landed and settled.complete
    assert await db.fetchval("SELECT count(*) FROM bets WHERE status = 'open'") == 0
    await assert_ledger_sound(db)


async def test_bets_list_pages_newest_first_and_filters_by_status(db: asyncpg.Pool) -> None:
    user = await make_user(db, "pager")
    market = await insert_market(db)
    for i in range(5):
        await bet(db, user, market, "this", "10", client_bet_id=f"p{i}")
    await settlement.settle_market(db, market, Resolution.THIS, datetime.now(UTC))
    open_market = await insert_market(db)
    await bet(db, user, open_market, "that", "10", client_bet_id="still-open")

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await bets.list_bets(db, user, "all", cursor, 2)
        seen += [row.client_bet_id for row in page[:2]]
        if len(page) <= 2:
            break
        cursor = (page[1].placed_at, page[1].id)
    assert seen[0] == "still-open" and sorted(seen[1:]) == [f"p{i}" for i in range(5)]
    assert len(seen) == 6
    assert [row.client_bet_id for row in await bets.list_bets(db, user, "open", None, 50)] == [
        "still-open"
    ]
    assert len(await bets.list_bets(db, user, "settled", None, 50)) == 5
    assert [row.client_bet_id for row in await bets.open_bets(db, user)] == ["still-open"]
