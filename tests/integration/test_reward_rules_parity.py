"""The daily reward's rules as game.rewards states them and as the claim executes them agree.

game.rewards is the oracle: each case (a table of chosen ones, and hypothesis-generated ones) is
decided by the Python rules and claimed through the real path on PostgreSQL
(storage.wallet.claim_daily_reward), and both must agree on the code, the details, the message
and the balance stored afterwards (a refused claim changes nothing).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game.errors import GameError
from game.rewards import check_reward, reward_already_claimed, reward_day
from storage import wallet

_names = itertools.count()
# The schema's ceiling on balance plus open payouts; a cap is never set above it.
CEILING = Decimal("1000000")
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NEW_YORK_WINTER = timezone(timedelta(hours=-5))
TOKYO = timezone(timedelta(hours=9))


@dataclass(frozen=True)
class Case:
    balance: str = "1000.00"
    open_payout: str = "0.00"
    reward: str = "100.00"
    max_balance: str = "1000000"
    now: datetime = NOON
    claimed_on: date | None = None


@dataclass(frozen=True)
class Answer:
    code: str
    details: dict[str, object]
    message: str | None
    stored_balance: Decimal


def oracle(case: Case) -> Answer:
    """What game.rewards says, in the order the database checks: the day's claim, then the cap."""
    balance, reward = Decimal(case.balance), Decimal(case.reward)
    try:
        if case.claimed_on == reward_day(case.now):
            raise reward_already_claimed(case.now)
        check_reward(balance, reward, Decimal(case.open_payout), Decimal(case.max_balance))
    except GameError as refusal:
        return Answer(refusal.code.value, dict(refusal.details), refusal.message, balance)
    return Answer("paid", {"balance": balance + reward}, None, balance + reward)


async def claimed_for_real(db: asyncpg.Pool, case: Case) -> Answer:
    user = await db.fetchval(
        "INSERT INTO users (username, password_hash, balance, open_potential_payout)"
        " VALUES ($1, 'x', $2, $3) RETURNING id",
        f"reward{next(_names)}",
        Decimal(case.balance),
        Decimal(case.open_payout),
    )
    if case.claimed_on is not None:
        await db.execute(
            "INSERT INTO daily_rewards (user_id, day, amount) VALUES ($1, $2, $3)",
            user,
            case.claimed_on,
            Decimal(case.reward),
        )
    try:
        paid = await wallet.claim_daily_reward(
            db, user, reward_day(case.now), Decimal(case.reward), Decimal(case.max_balance)
        )
    except GameError as refusal:
        answer = Answer(refusal.code.value, dict(refusal.details), refusal.message, Decimal(0))
    else:
        answer = Answer("paid", {"balance": paid[0]}, None, Decimal(0))
    stored = await db.fetchval("SELECT balance FROM users WHERE id = $1", user)
    return Answer(answer.code, answer.details, answer.message, stored)


async def assert_same_answer(db: asyncpg.Pool, case: Case) -> None:
    assert await claimed_for_real(db, case) == oracle(case), case


CASES = {
    "paid": Case(),
    "exactly at the cap": Case(balance="999900.00"),
    "a cent above the cap": Case(balance="999900.01"),
    "open bets' payouts reach the cap exactly": Case(open_payout="998900.00"),
    "open bets' payouts a cent past the cap": Case(open_payout="998900.01"),
    "a lower cap": Case(balance="1900.00", max_balance="2000"),
    "a lower cap, a cent past": Case(balance="1900.01", max_balance="2000"),
    "already claimed today": Case(claimed_on=date(2026, 11, 25)),
    "already claimed beats the cap": Case(balance="999999.00", claimed_on=date(2026, 11, 25)),
    "claimed yesterday": Case(claimed_on=date(2026, 11, 24)),
    "New York's evening is the next UTC day": Case(
        now=datetime(2026, 11, 25, 19, 30, tzinfo=NEW_YORK_WINTER), claimed_on=date(2026, 11, 25)
    ),
    "Tokyo's morning is the previous UTC day": Case(
        now=datetime(2026, 11, 26, 8, 59, tzinfo=TOKYO), claimed_on=date(2026, 11, 25)
    ),
    "a claim exactly at midnight UTC": Case(
        now=datetime(2026, 11, 26, tzinfo=UTC), claimed_on=date(2026, 11, 26)
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_each_reward_rule_answers_alike_in_python_and_in_the_database(
    db: asyncpg.Pool, case: Case
) -> None:
    await assert_same_answer(db, case)


def in_cents(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(min_value=low, max_value=high).map(lambda n: Decimal(n) / 100)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    cap = draw(st.sampled_from([CEILING, Decimal("60000"), Decimal("2000")]))
    # Stored rows keep the schema's own ceiling: balance plus open payouts within it.
    balance = draw(in_cents(0, int(CEILING * 100)))
    open_payout = draw(in_cents(0, int((CEILING - balance) * 100)))
    now = draw(
        st.datetimes(
            min_value=datetime(2026, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
            max_value=datetime(2027, 1, 1),  # noqa: DTZ001
            timezones=st.sampled_from([UTC, NEW_YORK_WINTER, TOKYO]),
        )
    )
    day = reward_day(now)
    claimed_on = draw(
        st.sampled_from([None, day, day - timedelta(days=1), day + timedelta(days=1)])
    )
    return Case(
        balance=f"{balance:.2f}",
        open_payout=f"{open_payout:.2f}",
        reward=f"{draw(in_cents(1, 200_000)):.2f}",
        max_balance=f"{cap}",
        now=now,
        claimed_on=claimed_on,
    )


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=cases())
async def test_generated_claims_answer_alike_in_python_and_in_the_database(
    db: asyncpg.Pool, case: Case
) -> None:
    await assert_same_answer(db, case)
