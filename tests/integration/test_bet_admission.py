"""Admission past capacity, against the real ledger: a refused bet is never written."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from game.errors import ErrorCode, GameError
from game.markets import Side
from server import bet_batcher
from server.admission import QueueAdmission
from server.bet_batcher import BetBatcher
from storage import audit
from storage.bets import BetRequest
from tests.betting_fixtures import RULES, balance_of, insert_market, make_user


async def test_a_bet_that_waited_past_the_deadline_is_refused_and_not_written(
    db: asyncpg.Pool,
) -> None:
    # A deadline below zero: every bet counts as having waited too long.
    batcher = BetBatcher(db, RULES, admission=QueueAdmission(deadline_s=-1.0))
    worker = asyncio.create_task(batcher.work())
    try:
        user = await make_user(db, "late_bettor")
        market = await insert_market(db)
        bet = BetRequest(user, market, "late-1", Side.THIS, Decimal("100"), None, Decimal("0"))
        with pytest.raises(GameError) as refused:
            await batcher.place(bet)
        assert refused.value.code is ErrorCode.RATE_LIMITED
        assert refused.value.details["retryAfterMs"] > 0
        assert await db.fetchval("SELECT count(*) FROM bets") == 0
        assert await balance_of(db, user) == Decimal("1000")
        async with db.acquire() as connection:
            assert await audit.check_ledger(connection, RULES.max_balance) == []
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_an_overloaded_queue_refuses_new_bets_before_they_queue(db: asyncpg.Pool) -> None:
    admission = QueueAdmission()
    now = asyncio.get_running_loop().time()
    admission.dequeued(1.0, now - 0.2)
    admission.dequeued(1.0, now)  # slow for a whole interval, just now
    assert admission.overloaded
    batcher = BetBatcher(db, RULES, admission=admission)
    user = await make_user(db, "turned_away")
    market = await insert_market(db)
    bet = BetRequest(user, market, "busy-1", Side.THIS, Decimal("100"), None, Decimal("0"))
    with pytest.raises(GameError) as refused:
        await batcher.place(bet)
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert await db.fetchval("SELECT count(*) FROM bets") == 0


async def test_an_overload_no_dequeue_confirms_lets_bets_in_again(db: asyncpg.Pool) -> None:
    """Refused bets never queue, so a drained queue cannot report itself fast: after an interval
    without a slow dequeue the next bet is placed, and its quick dequeue ends the overload."""
    admission = QueueAdmission()
    now = asyncio.get_running_loop().time()
    admission.dequeued(1.0, now - 0.4)
    admission.dequeued(1.0, now - 0.2)  # overloaded, last confirmed 0.2 s ago (interval 0.1 s)
    assert admission.overloaded
    batcher = BetBatcher(db, RULES, admission=admission)
    worker = asyncio.create_task(batcher.work())
    try:
        user = await make_user(db, "let_back_in")
        market = await insert_market(db)
        bet = BetRequest(user, market, "probe-1", Side.THIS, Decimal("100"), None, Decimal("0"))
        placed = await batcher.place(bet)
        assert placed.created
        assert not admission.overloaded
        assert await db.fetchval("SELECT count(*) FROM bets") == 1
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_a_batch_failing_with_an_unexpected_error_answers_its_bets_and_the_worker_goes_on(
    db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection a database crash left half-used raises asyncpg's InternalClientError, which is
    no PostgresError: it refuses that batch and leaves the worker serving the next one."""
    real_place_bets = bet_batcher.bets.place_bets
    failures = [asyncpg.exceptions.InternalClientError("cannot switch to state 12")]

    async def place_bets(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_place_bets(*args, **kwargs)

    monkeypatch.setattr(bet_batcher.bets, "place_bets", place_bets)
    batcher = BetBatcher(db, RULES)
    worker = asyncio.create_task(batcher.work())
    try:
        user = await make_user(db, "after_a_broken_batch")
        market = await insert_market(db)
        first = BetRequest(user, market, "broken-1", Side.THIS, Decimal("100"), None, Decimal("0"))
        with pytest.raises(asyncpg.exceptions.InternalClientError):
            await asyncio.wait_for(batcher.place(first), 10)
        second = BetRequest(user, market, "after-1", Side.THIS, Decimal("100"), None, Decimal("0"))
        placed = await asyncio.wait_for(batcher.place(second), 10)
        assert placed.created and not worker.done()
        assert await db.fetchval("SELECT count(*) FROM bets") == 1
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
