"""Bet batches, odds updates, listing upserts, closes and settlement all at once: no deadlock.

Every writer takes market rows before user rows, each in id order; this runs them together at
load for a bounded time and counts the deadlocks PostgreSQL detected (pg_stat_database, and the
server log when it is the embedded one), then audits the ledger.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from game.bets import BetRequest
from game.markets import MarketListing, Resolution, Side
from storage import audit, bets, database, settlement
from storage import markets as market_store
from storage.rows import Market
from tests.betting_fixtures import RULES, insert_market, make_user

RUN_SECONDS = 4.0
DEADLOCKS = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"


async def deadlocks_so_far(url: str) -> int:
    # A fresh backend, after the others have exited and flushed their counters.
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("SELECT pg_stat_force_next_flush()")
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        return int(await connection.fetchval(DEADLOCKS))
    finally:
        await connection.close()


async def server_log(url: str) -> Path | None:
    connection = await asyncpg.connect(url)
    try:
        data_dir = Path(await connection.fetchval("SHOW data_directory"))
    finally:
        await connection.close()
    log = data_dir / "log"  # where the embedded server writes it
    return log if log.is_file() else None


def listing_of(row: Market, volume: int) -> MarketListing:
    return MarketListing(
        source_id=row.source_id,
        question=row.question,
        this_label=row.this_label,
        that_label=row.that_label,
        this_token_id=row.this_token_id,
        that_token_id=row.that_token_id,
        this_odds=row.this_odds,
        that_odds=row.that_odds,
        ends_at=row.ends_at,
        category=None,
        image_url=None,
        volume=Decimal(volume),
        accepting_orders=True,
    )


async def test_bets_odds_upserts_and_settlement_together_never_deadlock(migrated: str) -> None:
    pool = await database.create_pool(migrated, max_size=12, min_size=8)
    log = await server_log(migrated)
    log_before = log.read_text(errors="replace").count("deadlock detected") if log else 0
    try:
        await pool.execute("TRUNCATE users, markets, bets, ledger CASCADE")
        users = [await make_user(pool, f"lock{i}", "50000") for i in range(40)]
        markets = [await insert_market(pool) for _ in range(24)]
        before = await deadlocks_so_far(migrated)
        rng = random.Random(12)
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + RUN_SECONDS
        outcomes: dict[str, int] = {}

        async def batches(worker: int) -> None:
            n = 0
            while loop.time() < stop_at:
                n += 1
                batch = [
                    BetRequest(
                        rng.choice(users),
                        rng.choice(markets),
                        f"w{worker}-{n}-{i}",
                        rng.choice((Side.THIS, Side.THAT)),
                        Decimal(10),
                        None,
                        Decimal(0),
                    )
                    for i in range(rng.randint(1, 60))
                ]
                for answer in await bets.place_bets(pool, batch, RULES):
                    code = "placed" if isinstance(answer, bets.PlacedBet) else answer.code.value
                    outcomes[code] = outcomes.get(code, 0) + 1

        async def odds() -> None:
            step = 0
            while loop.time() < stop_at:
                step += 1
                shuffled = rng.sample(markets, len(markets))  # any order: the store sorts
                readings = [
                    (m, Decimal("0.4") + Decimal(step % 50) / 1000, Decimal("0.6"))
                    for m in shuffled
                ]
                await market_store.record_odds(pool, readings, datetime.now(UTC))
                await market_store.touch_odds(pool, shuffled[:10], datetime.now(UTC))
                await asyncio.sleep(0.01)

        async def upserts() -> None:
            volume = 0
            while loop.time() < stop_at:
                volume += 1
                rows = await market_store.get_markets(pool, markets)
                listings = [listing_of(row, volume) for row in rng.sample(rows, len(rows))]
                await market_store.upsert_listings(pool, listings, datetime.now(UTC))
                await asyncio.sleep(0.02)

        async def resolutions() -> None:
            for market in markets[:8]:
                await asyncio.sleep(RUN_SECONDS / 10)
                if rng.random() < 0.3:
                    await market_store.close_market(pool, market)
                resolution = rng.choice(list(Resolution))
                await settlement.settle_market(
                    pool, market, resolution, datetime.now(UTC), chunk_size=25
                )

        results = await asyncio.gather(
            *(batches(w) for w in range(4)),
            odds(),
            upserts(),
            resolutions(),
            return_exceptions=True,
        )
        assert [r for r in results if r is not None] == []
        assert outcomes.get("placed", 0) > 0
        # Only refusals the game defines: closed/settled markets; never an internal error.
        assert set(outcomes) <= {"placed", "MARKET_CLOSED"}
        await settlement.settle_pending(pool, datetime.now(UTC) + timedelta(seconds=1))
        async with pool.acquire() as connection:
            assert await audit.check_ledger(connection, RULES.max_balance) == []
    finally:
        await pool.close()
    await asyncio.sleep(0.5)  # the closed sessions' backends flush their counters as they exit
    assert await deadlocks_so_far(migrated) == before
    if log is not None:
        assert log.read_text(errors="replace").count("deadlock detected") == log_before


async def test_a_deadlocked_batch_is_placed_again_not_failed(db: asyncpg.Pool) -> None:
    """Two transactions made to wait on each other: PostgreSQL aborts one; its batch still lands."""
    user = await make_user(db, "retried")
    market = await insert_market(db)
    async with db.acquire() as blocker:
        transaction = blocker.transaction()
        await transaction.start()
        # The blocker holds the bettor's row, then waits for the market the batch holds.
        await blocker.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user)

        async def block_then_cross() -> None:
            await asyncio.sleep(0.3)  # the batch holds the market and waits for the user
            try:
                await blocker.execute(
                    "UPDATE markets SET volume = volume + 1 WHERE id = $1", market
                )
            except asyncpg.DeadlockDetectedError:
                await transaction.rollback()
                return
            await transaction.commit()

        crossing = asyncio.create_task(block_then_cross())
        answers = await bets.place_bets(
            db,
            [BetRequest(user, market, "crossed", Side.THIS, Decimal(10), None, Decimal(0))],
            RULES,
        )
        await crossing
    assert isinstance(answers[0], bets.PlacedBet) and answers[0].created
    assert await db.fetchval("SELECT count(*) FROM bets WHERE user_id = $1", user) == 1
