"""The bet rules as game.bets states them and as place_bets executes them give the same answers.

game.bets is the oracle: each case (a table of chosen ones, and hypothesis-generated ones) is
decided by the Python rules and placed through the real batch path on PostgreSQL, and both must
agree on the code, the numbers (current odds, balance, payout) and the message.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game.bets import (
    BetRequest,
    check_fresh,
    check_funds_and_cap,
    check_market_open,
    check_odds,
    potential_payout,
)
from game.errors import GameError
from game.markets import MarketStatus, Side
from game.rules import GameRules
from storage import bets
from tests.betting_fixtures import insert_market

_names = itertools.count()
# Far from every boundary, so the moment Python reads the clock and the moment the database
# does cannot fall on different sides of one.
MARGIN_S = 30


@dataclass(frozen=True)
class Case:
    status: str = "open"
    accepting_orders: bool = True
    ends_in_s: int | None = 3600
    odds_age_s: int = 0
    this_odds: str = "0.4000"
    that_odds: str = "0.6000"
    side: str = "this"
    amount: str = "100.00"
    expected_odds: str | None = None
    max_slippage: str = "0"
    balance: str = "1000.00"
    open_payout: str = "0.00"
    max_balance: str = "1000000"
    odds_max_age_s: int = 120


@dataclass(frozen=True)
class Answer:
    code: str
    numbers: dict[str, object]
    message: str | None = None


def oracle(case: Case, now: datetime) -> Answer:
    """What game.bets says, in the order the database checks."""
    rules = GameRules(max_balance=Decimal(case.max_balance), odds_max_age_s=case.odds_max_age_s)
    ends_at = None if case.ends_in_s is None else now + timedelta(seconds=case.ends_in_s)
    current = Decimal(case.this_odds if case.side == "this" else case.that_odds)
    amount, balance = Decimal(case.amount), Decimal(case.balance)
    try:
        check_market_open(MarketStatus(case.status), ends_at, case.accepting_orders, now)
        check_fresh(now - timedelta(seconds=case.odds_age_s), now, rules)
        expected = None if case.expected_odds is None else Decimal(case.expected_odds)
        check_odds(current, expected, Decimal(case.max_slippage))
        payout = potential_payout(amount, current)
        check_funds_and_cap(balance, amount, payout, Decimal(case.open_payout), rules.max_balance)
    except GameError as refusal:
        # A stale answer's message carries an age the two clocks may round apart.
        message = None if refusal.code.value == "ODDS_STALE" else refusal.message
        return Answer(refusal.code.value, dict(refusal.details), message)
    return Answer("placed", {"odds": current, "payout": payout, "balance": balance - amount}, None)


async def placed_for_real(db: asyncpg.Pool, case: Case) -> Answer:
    rules = GameRules(max_balance=Decimal(case.max_balance), odds_max_age_s=case.odds_max_age_s)
    user = await db.fetchval(
        "INSERT INTO users (username, password_hash, balance, open_potential_payout)"
        " VALUES ($1, 'x', $2, $3) RETURNING id",
        f"parity{next(_names)}",
        Decimal(case.balance),
        Decimal(case.open_payout),
    )
    market = await insert_market(
        db,
        this_odds=case.this_odds,
        that_odds=case.that_odds,
        status="open" if case.status == "resolved" else case.status,
        accepting_orders=case.accepting_orders,
        odds_age_s=case.odds_age_s,
        ends_in_s=case.ends_in_s,
    )
    if case.status == "resolved":
        await db.execute(
            "UPDATE markets SET status = 'resolved', resolved_side = 'this' WHERE id = $1", market
        )
    request = BetRequest(
        user,
        market,
        uuid.uuid4().hex,
        Side(case.side),
        Decimal(case.amount),
        None if case.expected_odds is None else Decimal(case.expected_odds),
        Decimal(case.max_slippage),
    )
    [answer] = await bets.place_bets(db, [request], rules)
    if isinstance(answer, GameError):
        message = None if answer.code.value == "ODDS_STALE" else answer.message
        return Answer(answer.code.value, dict(answer.details), message)
    bet = answer.bet
    return Answer(
        "placed" if answer.created else "duplicate",
        {"odds": bet.odds, "payout": bet.potential_payout, "balance": answer.balance},
        None,
    )


async def assert_same_answer(db: asyncpg.Pool, case: Case) -> None:
    # The market is inserted relative to the database's clock, the oracle's to Python's: both
    # are "now" to well within MARGIN_S.
    expected = oracle(case, datetime.now(UTC))
    assert await placed_for_real(db, case) == expected, case


CASES = {
    "placed": Case(),
    "closed market": Case(status="closed"),
    "resolved market": Case(status="resolved"),
    "cancelled market": Case(status="cancelled"),
    "past its end": Case(ends_in_s=-MARGIN_S),
    "no end time": Case(ends_in_s=None),
    "upstream stopped taking orders": Case(accepting_orders=False),
    "stale odds": Case(odds_age_s=120 + MARGIN_S),
    "odds not yet stale": Case(odds_age_s=120 - MARGIN_S),
    "odds moved beyond slippage": Case(expected_odds="0.3800", max_slippage="0.01"),
    "odds moved within slippage": Case(expected_odds="0.3900", max_slippage="0.01"),
    "odds better than expected": Case(expected_odds="0.4500"),
    "the other side": Case(side="that", expected_odds="0.5000", max_slippage="0.05"),
    "balance short by a cent": Case(amount="1000.01"),
    "the whole balance": Case(amount="1000.00"),
    "payout rounded down": Case(this_odds="0.3333", amount="100.00"),
    "cap breached by open bets": Case(
        max_balance="2000", balance="1000.00", open_payout="1000.00", this_odds="0.5000"
    ),
    "exactly at the cap": Case(
        max_balance="2000", balance="1000.00", open_payout="800.00", this_odds="0.5000"
    ),
    "long odds against the cap": Case(this_odds="0.0005", amount="1000.00"),
    "closed beats stale and short": Case(status="closed", odds_age_s=999, amount="5000"),
    "stale beats odds moved": Case(odds_age_s=999, expected_odds="0.1000"),
    "odds moved beats short": Case(expected_odds="0.1000", amount="5000"),
    "short beats the cap": Case(amount="5000", this_odds="0.0001"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_each_rule_answers_alike_in_python_and_in_the_database(
    db: asyncpg.Pool, case: Case
) -> None:
    await assert_same_answer(db, case)


odds = st.integers(min_value=1, max_value=9999).map(lambda n: f"{Decimal(n) / 10000:.4f}")
cents = st.integers(min_value=1000, max_value=1_000_000).map(lambda n: f"{Decimal(n) / 100:.2f}")
cases = st.builds(
    Case,
    status=st.sampled_from(["open", "open", "open", "closed", "resolved", "cancelled"]),
    accepting_orders=st.booleans(),
    ends_in_s=st.sampled_from([None, -MARGIN_S, 3600]),
    odds_age_s=st.sampled_from([0, 120 - MARGIN_S, 120 + MARGIN_S]),
    this_odds=odds,
    that_odds=odds,
    side=st.sampled_from(["this", "that"]),
    amount=cents,
    expected_odds=st.none() | odds,
    max_slippage=st.sampled_from(["0", "0.01", "0.05"]),
    balance=st.integers(min_value=0, max_value=2_000_000).map(lambda n: f"{Decimal(n) / 100:.2f}"),
    open_payout=st.integers(min_value=0, max_value=5_000_000).map(
        lambda n: f"{Decimal(n) / 100:.2f}"
    ),
    max_balance=st.sampled_from(["1000000", "60000", "25000"]),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=cases)
async def test_generated_bets_answer_alike_in_python_and_in_the_database(
    db: asyncpg.Pool, case: Case
) -> None:
    await assert_same_answer(db, case)


@dataclass(frozen=True)
class Attempt:
    user: int
    client_bet_id: str
    amount: str
    this_odds: str  # the market each attempt bets on has these odds


def sequential_oracle(
    attempts: list[Attempt], balances: list[Decimal], max_balance: Decimal
) -> list[tuple[str, Decimal]]:
    """The batch as if each bet were placed alone, one after the other, by game.bets."""
    balance, open_payout = list(balances), [Decimal(0)] * len(balances)
    taken: set[tuple[int, str]] = set()
    answers = []
    for attempt in attempts:
        key = (attempt.user, attempt.client_bet_id)
        if key in taken:
            answers.append(("duplicate", balance[attempt.user]))
            continue
        amount = Decimal(attempt.amount)
        payout = potential_payout(amount, Decimal(attempt.this_odds))
        try:
            check_funds_and_cap(
                balance[attempt.user], amount, payout, open_payout[attempt.user], max_balance
            )
        except GameError as refusal:
            answers.append((refusal.code.value, balance[attempt.user]))
            continue
        balance[attempt.user] -= amount
        open_payout[attempt.user] += payout
        taken.add(key)
        answers.append(("placed", balance[attempt.user]))
    return answers


attempts = st.lists(
    st.builds(
        Attempt,
        user=st.integers(min_value=0, max_value=1),
        client_bet_id=st.sampled_from(["a", "b", "c", "d", "e"]),
        amount=st.sampled_from(["10.00", "250.00", "400.00", "600.00", "999.99"]),
        this_odds=st.sampled_from(["0.5000", "0.2500", "0.0100"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    attempts=attempts,
    balances=st.lists(st.sampled_from(["0.00", "500.00", "1000.00"]), min_size=2, max_size=2),
    max_balance=st.sampled_from(["1000000", "30000", "5000"]),
)
async def test_a_generated_batch_answers_as_its_bets_placed_one_by_one(
    db: asyncpg.Pool, attempts: list[Attempt], balances: list[str], max_balance: str
) -> None:
    rules = GameRules(max_balance=Decimal(max_balance))
    users = [
        await db.fetchval(
            "INSERT INTO users (username, password_hash, balance) VALUES ($1, 'x', $2) RETURNING id",
            f"batchparity{next(_names)}",
            Decimal(balance),
        )
        for balance in balances
    ]
    markets = {
        odds: await insert_market(db, this_odds=odds)
        for odds in {attempt.this_odds for attempt in attempts}
    }
    requests = [
        BetRequest(
            users[a.user],
            markets[a.this_odds],
            a.client_bet_id,
            Side.THIS,
            Decimal(a.amount),
            None,
            Decimal(0),
        )
        for a in attempts
    ]
    answers = await bets.place_bets(db, requests, rules)
    got = [
        (
            answer.code.value
            if isinstance(answer, GameError)
            else ("placed" if answer.created else "duplicate"),
            answer.details.get("balance") if isinstance(answer, GameError) else answer.balance,
        )
        for answer in answers
    ]
    want = sequential_oracle(attempts, [Decimal(b) for b in balances], rules.max_balance)
    # The cap refusal names no balance; every other answer carries the balance at its turn.
    want = [(code, None if code == "BALANCE_CAP_EXCEEDED" else b) for code, b in want]
    assert got == want
