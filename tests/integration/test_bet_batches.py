"""Micro-batched bets: one transaction for many, each with its own answer, no deadlock, ledger sound."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from game.bets import BetRequest
from game.errors import ErrorCode, GameError, NotReady
from game.markets import Resolution, Side
from services.betting import BetBatcher, QueueAdmission
from storage import audit, bets, settlement
from storage import markets as market_store
from tests.betting_fixtures import RULES, balance_of, insert_market, make_user


def request(
    user: uuid.UUID,
    market: uuid.UUID,
    client_bet_id: str,
    amount: str = "100",
    side: str = "this",
    expected: str | None = None,
) -> BetRequest:
    return BetRequest(
        user,
        market,
        client_bet_id,
        Side(side),
        Decimal(amount),
        None if expected is None else Decimal(expected),
        Decimal("0"),
    )


async def assert_sound(db: asyncpg.Pool) -> None:
    async with db.acquire() as connection:
        assert await audit.check_ledger(connection, RULES.max_balance) == []


async def test_a_batch_answers_each_bet_in_arrival_order(db: asyncpg.Pool) -> None:
    rich, poor = await make_user(db, "rich"), await make_user(db, "poor", "150")
    market = await insert_market(db, this_odds="0.4000", that_odds="0.6000")
    batch = [
        request(poor, market, "p1"),  # placed
        request(rich, market, "r1", side="that"),
        request(poor, market, "p2"),  # only 50 left
        request(rich, market, "r1", amount="999"),  # a repeat inside the same batch
        request(rich, market, "r2", expected="0.3000"),  # worse than expected
        request(rich, uuid.uuid4(), "r3"),  # no such market
    ]
    answers = await bets.place_bets(db, batch, RULES)
    assert (
        isinstance(answers[0], bets.PlacedBet)
        and answers[0].created
        and answers[0].balance == Decimal("50.00")
    )
    assert isinstance(answers[1], bets.PlacedBet) and answers[1].created
    assert isinstance(answers[2], GameError) and answers[2].code is ErrorCode.INSUFFICIENT_CREDITS
    assert isinstance(answers[3], bets.PlacedBet) and not answers[3].created
    assert answers[3].bet.id == answers[1].bet.id
    assert isinstance(answers[4], GameError) and answers[4].code is ErrorCode.ODDS_CHANGED
    assert answers[4].details["currentOdds"] == Decimal("0.4000")
    assert isinstance(answers[5], GameError) and answers[5].code is ErrorCode.MARKET_NOT_FOUND
    assert await balance_of(db, rich) == Decimal("900.00")
    await assert_sound(db)


async def test_crossing_batches_odds_updates_and_settlement_do_not_deadlock(
    db: asyncpg.Pool,
) -> None:
    users = [await make_user(db, f"crosser{i}", "100000") for i in range(6)]
    markets = [await insert_market(db) for _ in range(4)]
    rng = random.Random(7)

    async def batch(n: int) -> list[bets.PlacedBet | GameError]:
        # Each batch lists users and markets in its own shuffled order.
        pairs = [(rng.choice(users), rng.choice(markets)) for _ in range(20)]
        return await bets.place_bets(
            db, [request(u, m, f"b{n}-{i}", "10") for i, (u, m) in enumerate(pairs)], RULES
        )

    async def odds() -> None:
        for step in range(10):
            readings = [
                (m, Decimal("0.4") + Decimal(step) / 1000, Decimal("0.6"))
                for m in reversed(markets)
            ]
            await market_store.record_odds(db, readings, datetime.now(UTC))

    results = await asyncio.gather(
        *(batch(n) for n in range(12)),
        odds(),
        settlement.settle_market(db, markets[0], Resolution.THIS, datetime.now(UTC)),
    )
    answers = [answer for group in results[:12] for answer in group]  # type: ignore[union-attr]
    refused = {a.code for a in answers if isinstance(a, GameError)}
    assert refused <= {ErrorCode.MARKET_CLOSED}  # only bets that came after the settlement
    await assert_sound(db)


async def test_the_batcher_lands_exactly_what_the_credits_allow_under_load(
    db: asyncpg.Pool,
) -> None:
    # Load shedding kept out of it (its own tests cover it): on a busy machine 300 bets at once
    # can wait past the shedding target, and this test counts credits, not refusals for load.
    unshed = QueueAdmission(target_s=60, deadline_s=60)
    batcher = BetBatcher(db, RULES, max_batch=50, admission=unshed)
    workers = [asyncio.create_task(batcher.work()) for _ in range(3)]
    try:
        users = [await make_user(db, f"loaded{i}") for i in range(10)]
        market = await insert_market(db)

        async def place(user: uuid.UUID, n: int) -> str:
            try:
                await batcher.place(request(user, market, f"load-{n}"))
                return "placed"
            except GameError as error:
                return error.code.value

        # 30 bets of 100 per player with 1,000 credits each: exactly 10 each land.
        results = await asyncio.gather(*(place(u, n) for n in range(30) for u in users))
        assert results.count("placed") == 100
        assert results.count("INSUFFICIENT_CREDITS") == 200
        for user in users:
            assert await balance_of(db, user) == 0
        assert batcher.batches < batcher.bets  # they really were batched
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    await assert_sound(db)


async def test_open_potential_payout_is_kept_exact_and_audited(db: asyncpg.Pool) -> None:
    user = await make_user(db, "tracked")
    market = await insert_market(db, this_odds="0.2500", that_odds="0.7500")
    await bets.place_bets(db, [request(user, market, f"t{i}", "10") for i in range(3)], RULES)
    assert await db.fetchval(
        "SELECT open_potential_payout FROM users WHERE id = $1", user
    ) == Decimal("120.00")
    await settlement.settle_market(db, market, Resolution.SPLIT, datetime.now(UTC))
    assert await db.fetchval(
        "SELECT open_potential_payout FROM users WHERE id = $1", user
    ) == Decimal("0.00")
    await assert_sound(db)
    await db.execute("UPDATE users SET open_potential_payout = 5 WHERE id = $1", user)
    async with db.acquire() as connection:
        violations = await audit.check_ledger(connection, RULES.max_balance)
    assert [v.invariant for v in violations] == [1] and "open potential payout" in violations[
        0
    ].detail


async def test_the_database_refuses_a_balance_that_open_bets_could_push_past_the_cap(
    db: asyncpg.Pool,
) -> None:
    user = await make_user(db, "capped", "999000")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE users SET open_potential_payout = 1000.01 WHERE id = $1", user)


async def test_a_mixed_batch_answers_every_bet_as_placing_them_one_at_a_time_would(
    db: asyncpg.Pool,
) -> None:
    """Every refusal code, repeats inside the batch and of earlier bets, a pair of bets that
    together overdraw, the cap: one batch, and the same bets one by one in a twin world."""

    async def world(tag: str) -> list[BetRequest]:
        rich = await make_user(db, f"rich_{tag}", "5000")
        poor = await make_user(db, f"poor_{tag}", "150")
        capped = await make_user(db, f"capped_{tag}", "900")
        gone = uuid.uuid4()  # a user that does not exist
        market = await insert_market(db, this_odds="0.4000", that_odds="0.6000")
        longshot = await insert_market(db, this_odds="0.0010", that_odds="0.9990")
        longer = await insert_market(db, this_odds="0.0001", that_odds="0.9999")
        closed = await insert_market(db, status="closed")
        ended = await insert_market(db, ends_in_s=-1)
        halted = await insert_market(db, accepting_orders=False)
        stale = await insert_market(db, odds_age_s=RULES.odds_max_age_s + 60)
        await bets.place_bets(db, [request(rich, market, "earlier", "10")], RULES)
        return [
            request(poor, market, "p1"),  # placed: 50 left
            request(poor, market, "p2"),  # 100 > 50: refused, as if placed after p1
            request(poor, market, "p3", "50"),  # fits exactly what p1 left
            request(poor, market, "p1", "10", side="that"),  # a repeat inside the batch
            request(rich, market, "earlier", "999"),  # a repeat of an earlier batch's bet
            request(rich, uuid.uuid4(), "r1"),
            request(rich, closed, "r2"),
            request(rich, ended, "r3"),
            request(rich, halted, "r4"),
            request(rich, stale, "r5"),
            request(rich, market, "r6", expected="0.3500"),
            request(rich, market, "r7", side="that", expected="0.6000"),  # exactly as expected
            request(capped, longshot, "c1", "400"),  # 500 + 400,000 potential: within the cap
            request(capped, longshot, "c2", "600"),  # only 500 left: short, not capped
            request(capped, longer, "c3", "500"),  # 0 + 400,000 + 5,000,000: beyond the cap
            request(capped, market, "c4", "10"),  # 490 + 400,000 + 25: within
            request(gone, market, "g1"),
        ]

    def answer_of(answer: bets.PlacedBet | GameError) -> tuple[object, ...]:
        if isinstance(answer, GameError):
            return (answer.code, answer.message, dict(answer.details))
        bet = answer.bet
        return (
            answer.created,
            answer.balance,
            bet.client_bet_id,
            bet.side,
            bet.amount,
            bet.odds,
            bet.potential_payout,
        )

    batched = await bets.place_bets(db, await world("batch"), RULES)
    one_by_one = [
        (await bets.place_bets(db, [single], RULES))[0] for single in await world("single")
    ]
    assert [answer_of(a) for a in batched] == [answer_of(a) for a in one_by_one]
    codes = [a.code if isinstance(a, GameError) else a.created for a in batched]
    assert codes == [
        True,
        ErrorCode.INSUFFICIENT_CREDITS,
        True,
        False,
        False,
        ErrorCode.MARKET_NOT_FOUND,
        ErrorCode.MARKET_CLOSED,
        ErrorCode.MARKET_CLOSED,
        ErrorCode.MARKET_CLOSED,
        ErrorCode.ODDS_STALE,
        ErrorCode.ODDS_CHANGED,
        True,
        True,
        ErrorCode.INSUFFICIENT_CREDITS,
        ErrorCode.BALANCE_CAP_EXCEEDED,
        True,
        ErrorCode.AUTH_REQUIRED,
    ]
    repeat = batched[3]
    assert isinstance(repeat, bets.PlacedBet) and repeat.bet.id == batched[0].bet.id  # type: ignore[union-attr]
    assert repeat.balance == Decimal("0.00")  # the balance at its turn: after p1 and p3
    # Each balance answered names, as its version, the ledger row that left it.
    for answer in [*batched, *one_by_one]:
        if isinstance(answer, bets.PlacedBet):
            row = await db.fetchrow(
                "SELECT user_id, balance_after FROM ledger WHERE seq = $1", answer.balance_version
            )
            assert (row["user_id"], row["balance_after"]) == (answer.bet.user_id, answer.balance)
    await assert_sound(db)


async def test_a_repeat_between_two_bets_of_its_user_names_the_balance_at_its_turn(
    db: asyncpg.Pool,
) -> None:
    user = await make_user(db, "between", "1000")
    market = await insert_market(db)
    [first] = await bets.place_bets(db, [request(user, market, "first", "100")], RULES)
    batch = await bets.place_bets(
        db,
        [
            request(user, market, "second", "100"),
            request(user, market, "first", "100"),  # a repeat, at its turn after "second"
            request(user, market, "third", "100"),
        ],
        RULES,
    )
    assert all(isinstance(answer, bets.PlacedBet) for answer in [first, *batch])
    second, repeat, third = batch
    balances = [(a.balance, a.balance_version) for a in (first, second, repeat, third)]  # type: ignore[union-attr]
    assert [balance for balance, _ in balances] == [Decimal(900), 800, 800, 700]
    # The repeat answers the balance "second" left, with that row's version, not the newest.
    assert balances[2][1] == balances[1][1] < balances[3][1]
    assert balances[0][1] < balances[1][1]


async def test_the_schema_still_refuses_a_bad_client_bet_id_and_orphaning_deletes(
    db: asyncpg.Pool,
) -> None:
    user = await make_user(db, "guarded")
    market = await insert_market(db)
    [placed] = await bets.place_bets(db, [request(user, market, "kept")], RULES)
    assert isinstance(placed, bets.PlacedBet)
    insert = (
        "INSERT INTO bets (user_id, market_id, client_bet_id, side, amount, odds, potential_payout)"
        " VALUES ($1, $2, $3, 'this', 10, 0.5, 20)"
    )
    for bad in ("", "x" * 65, "has space", "semi;colon", "é"):
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(insert, user, market, bad)
    await db.execute(insert, user, market, "Ok_id-" + "9" * 58)  # 64 characters, all allowed
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute("DELETE FROM markets WHERE id = $1", market)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute("DELETE FROM bets WHERE id = $1", placed.bet.id)


class TerminatedMidBatch:
    """The pool of a database that goes away under a batch: the connection taking the batch is
    terminated by the server (as PostgreSQL's crash or restart does) before its statement runs."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.errors: list[BaseException] = []

    def is_in_transaction(self) -> bool:
        return False

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        async with self.pool.acquire() as connection:
            pid = connection.get_server_pid()  # type: ignore[attr-defined]  # a pool's proxy
            await self.pool.execute("SELECT pg_terminate_backend($1)", pid)
            try:
                return list(await connection.fetch(query, *args))
            except Exception as error:
                self.errors.append(error)
                raise


class BrokenClient:
    """A pool whose connection a database crash left half-used: asyncpg's own state is off."""

    def is_in_transaction(self) -> bool:
        return False

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        raise asyncpg.InternalClientError("unexpected message in the protocol state")


@pytest.mark.parametrize("failure", ["terminated", "internal client error"])
async def test_a_database_failure_under_a_batch_answers_not_ready_never_internal_error(
    db: asyncpg.Pool, failure: str
) -> None:
    user = await make_user(db, "bettor")
    market = await insert_market(db)
    pool = TerminatedMidBatch(db) if failure == "terminated" else BrokenClient()
    batcher = BetBatcher(pool, RULES)  # type: ignore[arg-type]  # stands in for the pool
    worker = asyncio.get_running_loop().create_task(batcher.work())
    try:
        answers = await asyncio.gather(
            *(batcher.place(request(user, market, f"b{number}")) for number in range(2)),
            return_exceptions=True,
        )
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    assert [type(answer) for answer in answers] == [NotReady, NotReady], answers
    if isinstance(pool, TerminatedMidBatch):
        assert pool.errors  # the database really went away under the batch
