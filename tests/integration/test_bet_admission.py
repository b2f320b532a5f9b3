"""Admission past capacity, against the real ledger: a refused bet is never written."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest

from game.bets import BetRequest
from game.errors import ErrorCode, GameError, NotReady
from game.markets import Side
from server.application.services import SERVICES
from server.runtime.overload import LOOP_LAG
from services import betting
from services.betting import BetBatcher, QueueAdmission
from storage import audit
from tests.betting_fixtures import RULES, balance_of, insert_market, make_user
from tests.conftest import ServerFactory
from tests.players import Player


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


async def test_a_queue_whose_oldest_bet_waited_past_the_target_refuses_new_bets_before_they_queue(
    db: asyncpg.Pool,
) -> None:
    # A target below zero: any queued bet is older than it.
    batcher = BetBatcher(db, RULES, admission=QueueAdmission(target_s=-1.0))  # no worker yet
    user = await make_user(db, "turned_away")
    market = await insert_market(db)
    queued = asyncio.create_task(
        batcher.place(
            BetRequest(user, market, "queued-1", Side.THIS, Decimal("100"), None, Decimal("0"))
        )
    )
    await asyncio.sleep(0)
    bet = BetRequest(user, market, "busy-1", Side.THIS, Decimal("100"), None, Decimal("0"))
    with pytest.raises(GameError) as refused:
        await batcher.place(bet)
    assert refused.value.code is ErrorCode.RATE_LIMITED
    # The queued bet is placed once a worker runs; the refused one never is.
    worker = asyncio.create_task(batcher.work())
    try:
        placed = await asyncio.wait_for(queued, 10)
        assert placed.created and placed.bet.client_bet_id == "queued-1"
        assert await db.fetchval("SELECT count(*) FROM bets") == 1
        assert await balance_of(db, user) == Decimal("900")
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_a_batch_failing_with_an_unexpected_error_answers_its_bets_and_the_worker_goes_on(
    db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection a database crash left half-used raises asyncpg's InternalClientError, which is
    no PostgresError: it refuses that batch as NOT_READY (its fate is open) and leaves the worker
    serving the next one."""
    real_place_bets = betting.bets.place_bets
    failures = [asyncpg.exceptions.InternalClientError("cannot switch to state 12")]

    async def place_bets(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_place_bets(*args, **kwargs)

    monkeypatch.setattr(betting.bets, "place_bets", place_bets)
    batcher = BetBatcher(db, RULES)
    worker = asyncio.create_task(batcher.work())
    try:
        user = await make_user(db, "after_a_broken_batch")
        market = await insert_market(db)
        first = BetRequest(user, market, "broken-1", Side.THIS, Decimal("100"), None, Decimal("0"))
        with pytest.raises(NotReady):
            await asyncio.wait_for(batcher.place(first), 10)
        second = BetRequest(user, market, "after-1", Side.THIS, Decimal("100"), None, Decimal("0"))
        placed = await asyncio.wait_for(batcher.place(second), 10)
        assert placed.created and not worker.done()
        assert await db.fetchval("SELECT count(*) FROM bets") == 1
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_a_drained_queue_lets_the_next_bet_in(db: asyncpg.Pool) -> None:
    admission = QueueAdmission(target_s=-1.0)  # refuses whenever anything is queued
    batcher = BetBatcher(db, RULES, admission=admission)
    worker = asyncio.create_task(batcher.work())
    try:
        user = await make_user(db, "let_in_again")
        market = await insert_market(db)
        for n in range(3):
            bet = BetRequest(
                user, market, f"again-{n}", Side.THIS, Decimal("10"), None, Decimal("0")
            )
            placed = await asyncio.wait_for(batcher.place(bet), 10)
            assert placed.created
        assert admission.refused == 0
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_the_batcher_says_it_is_backlogged_exactly_when_a_new_bet_would_be_refused(
    db: asyncpg.Pool,
) -> None:
    # A target below zero: any queued bet is older than it.
    batcher = BetBatcher(db, RULES, admission=QueueAdmission(target_s=-1.0))  # no worker yet
    user = await make_user(db, "edge_asks")
    market = await insert_market(db)
    assert not batcher.backlogged()  # nothing queued
    bet = BetRequest(user, market, "edge-1", Side.THIS, Decimal("10"), None, Decimal("0"))
    queued = asyncio.create_task(batcher.place(bet))
    await asyncio.sleep(0)
    assert batcher.backlogged()
    worker = asyncio.create_task(batcher.work())
    try:
        await asyncio.wait_for(queued, 10)
        assert not batcher.backlogged()
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def _player(base: str, http: aiohttp.ClientSession) -> Player:
    player = await Player(base, http).signup()
    await player.connect()
    await player.next("session")
    return player


async def test_a_repeat_of_a_written_bet_gets_that_bet_where_a_new_one_is_refused_rate_limited(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    """RATE_LIMITED says "not written": a clientBetId already written is answered with its bet
    before the rate limit, the load shedding or the queue's deadline could say otherwise."""
    market = str(await insert_market(db))
    limited, limited_app = await start_server(rate_limit_bets_per_user=(1, 60))
    prompt, prompt_app = await start_server()
    players = []
    try:
        # Over the player's bet rate.
        player = await _player(limited, http)
        players.append(player)
        bet = {"marketId": market, "side": "this", "amount": 10, "clientBetId": "rated"}
        placed = await player.ok("bet:place", bet)
        assert await player.ok("bet:place", {**bet, "amount": 20}) == placed
        assert (await player.error("bet:place", {**bet, "clientBetId": "new"}))["code"] == (
            "RATE_LIMITED"
        )

        # The node too far behind: bets are shed before the rate limit.
        player = await _player(prompt, http)
        players.append(player)
        bet = {**bet, "clientBetId": "shed"}
        placed = await player.ok("bet:place", bet)
        lag_limit_s = prompt_app[LOOP_LAG].limit_s
        prompt_app[LOOP_LAG].limit_s = -1.0
        assert await player.ok("bet:place", bet) == placed
        assert (await player.error("bet:place", {**bet, "clientBetId": "new"}))["code"] == (
            "RATE_LIMITED"
        )
        prompt_app[LOOP_LAG].limit_s = lag_limit_s

        # A queued bet past the queue's deadline.
        bet = {**bet, "clientBetId": "queued"}
        placed = await player.ok("bet:place", bet)
        prompt_app[SERVICES].batcher.admission.deadline_s = -1.0
        assert await player.ok("bet:place", bet) == placed
        assert (await player.error("bet:place", {**bet, "clientBetId": "late"}))["code"] == (
            "RATE_LIMITED"
        )
    finally:
        for player in players:
            await player.close()
    assert limited_app[SERVICES].betting.placed.queries >= 1
    stored = await db.fetch("SELECT client_bet_id, amount FROM bets ORDER BY client_bet_id")
    assert [(row["client_bet_id"], row["amount"]) for row in stored] == [
        ("queued", 10),
        ("rated", 10),
        ("shed", 10),
    ]
