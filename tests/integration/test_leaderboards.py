"""Leaderboards in Redis equal the PnL recomputed from the ledger: after settlements, after a crash
before the Redis write, after a rebuild; and the audit names a tampered board."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import redis.asyncio as redis
from aiohttp import web

from game.leaderboard import Period, period_key, period_keys
from game.markets import Resolution
from server.application.services import SERVICES
from storage import audit, keys, leaderboards, settlement
from storage.embedded import EmbeddedRedis
from tests.betting_fixtures import bet, insert_market, make_user
from tests.conftest import PlayerFactory

CAP = Decimal("1000000")


async def violations(db: asyncpg.Pool, client: redis.Redis) -> list[audit.Violation]:
    async with db.acquire() as connection:
        return await audit.check_all(connection, client, CAP, datetime.now(UTC))


async def play_season(db: asyncpg.Pool, now: datetime) -> dict[str, uuid.UUID]:
    """Three players over four markets, settled at `now`: PnL alice +150, bob -100, carol 0 (refund)."""
    alice, bob, carol = [await make_user(db, name) for name in ("alice", "bob", "carol")]
    won, lost, refunded, still_open = [await insert_market(db) for _ in range(4)]
    await bet(db, alice, won, "this", "100")  # 0.40 -> 250: +150
    await bet(db, bob, lost, "this", "100")  # lost: -100
    await bet(db, carol, refunded, "that", "60")  # refunded: 0
    await bet(db, bob, still_open, "that", "50")  # open bets do not count
    await settlement.settle_market(db, won, Resolution.THIS, now)
    await settlement.settle_market(db, lost, Resolution.THAT, now)
    await settlement.settle_market(db, refunded, Resolution.CANCELLED, now)
    return {"alice": alice, "bob": bob, "carol": carol}


async def test_boards_equal_ledger_pnl_after_settlement_and_a_rebuild_reproduces_them(
    db: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    now = datetime.now(UTC)
    players = await play_season(db, now)
    assert await leaderboards.sync_pending(db, redis_client) == 3
    assert await violations(db, redis_client) == []

    for bucket in period_keys(now).values():
        standings, mine = await leaderboards.top(db, redis_client, bucket, 10, players["bob"])
        assert [(s.rank, s.username, s.pnl) for s in standings] == [
            (1, "alice", Decimal("150.00")),
            (2, "carol", Decimal("0.00")),
            (3, "bob", Decimal("-100.00")),
        ]
        assert mine == (3, Decimal("-100.00"))
    _, nobody = await leaderboards.top(db, redis_client, "all", 10, uuid.uuid4())
    assert nobody is None

    before = {
        bucket: await leaderboards.bucket_scores(redis_client, bucket)
        for bucket in period_keys(now).values()
    }
    await redis_client.flushdb()
    assert await violations(db, redis_client)  # an empty board for settled bets is a violation
    rebuilt = await leaderboards.rebuild(db, redis_client, now)
    assert rebuilt == {bucket: 3 for bucket in period_keys(now).values()}
    after = {
        bucket: await leaderboards.bucket_scores(redis_client, bucket)
        for bucket in period_keys(now).values()
    }
    assert after == before
    assert await violations(db, redis_client) == []
    # Usernames come back even when their cache is gone.
    await redis_client.delete(leaderboards.USERNAMES_KEY)
    standings, _ = await leaderboards.top(db, redis_client, "all", 1)
    assert standings[0].username == "alice"


async def test_a_crash_between_commit_and_redis_is_repaired_from_the_outbox(
    db: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    await play_season(db, datetime.now(UTC))
    # Nothing reached Redis: the audit sees it, the outbox replay repairs it, and a replay is harmless.
    found = await violations(db, redis_client)
    assert found and {v.invariant for v in found} == {4}
    assert await leaderboards.sync_pending(db, redis_client) == 3
    assert await leaderboards.sync_pending(db, redis_client) == 0
    for market_id in [row["id"] for row in await db.fetch("SELECT id FROM markets")]:
        await leaderboards.sync_market(db, redis_client, market_id)
    assert await violations(db, redis_client) == []


async def test_an_older_recomputation_never_overwrites_a_newer_one(
    db: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    players = await play_season(db, datetime.now(UTC))
    await leaderboards.sync_pending(db, redis_client)
    alice = str(players["alice"])
    script = redis_client.register_script(leaderboards.WRITE_SCORES_LUA)
    # Version 0: a snapshot taken before alice had any settled bet, arriving late.
    written = await script(
        keys=[keys.leaderboard("all"), leaderboards.versions_key("all")], args=[0, alice, "0", 0]
    )
    assert written == 0
    assert (await leaderboards.bucket_scores(redis_client, "all"))[alice] == Decimal("150.00")


async def test_days_settle_into_their_own_buckets(
    db: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    players = await play_season(db, yesterday)
    market = await insert_market(db)
    await bet(db, players["alice"], market, "that", "60")  # 0.60 -> 100: +40 today
    await settlement.settle_market(db, market, Resolution.THAT, datetime.now(UTC))
    await leaderboards.sync_pending(db, redis_client)
    today_board = await leaderboards.bucket_scores(
        redis_client, period_key(Period.DAY, datetime.now(UTC))
    )
    yesterday_board = await leaderboards.bucket_scores(
        redis_client, period_key(Period.DAY, yesterday)
    )
    assert today_board == {str(players["alice"]): Decimal("40.00")}
    assert yesterday_board[str(players["alice"])] == Decimal("150.00") and len(yesterday_board) == 3
    assert (await leaderboards.bucket_scores(redis_client, "all"))[
        str(players["alice"])
    ] == Decimal("190.00")
    assert await violations(db, redis_client) == []
    assert set(await leaderboards.rebuild(db, redis_client, datetime.now(UTC))) >= {
        period_key(Period.DAY, yesterday),
        period_key(Period.DAY, datetime.now(UTC)),
        "all",
    }
    assert await violations(db, redis_client) == []


async def test_audit_names_a_tampered_leaderboard(
    db: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    players = await play_season(db, datetime.now(UTC))
    await leaderboards.sync_pending(db, redis_client)
    await redis_client.zincrby(keys.leaderboard("all"), 1000, str(players["bob"]))
    stranger = str(uuid.uuid4())
    await redis_client.zadd(
        keys.leaderboard(period_key(Period.DAY, datetime.now(UTC))), {stranger: 5}
    )
    found = await violations(db, redis_client)
    assert {v.invariant for v in found} == {4} and len(found) == 2
    text = "\n".join(map(str, found))
    assert str(players["bob"]) in text and "900.00" in text and "-100.00" in text
    assert stranger in text


async def test_boards_lost_with_redis_are_restored_from_the_ledger(
    db: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    # Nothing settled yet: nothing to restore, but the boards are now known complete.
    assert await leaderboards.restore_if_lost(db, redis_client, datetime.now(UTC)) is False
    assert await redis_client.exists(keys.LEADERBOARDS_BUILT)
    await play_season(db, datetime.now(UTC))
    await leaderboards.sync_pending(db, redis_client)
    assert await leaderboards.restore_if_lost(db, redis_client, datetime.now(UTC)) is False
    await redis_client.flushdb()
    assert await leaderboards.restore_if_lost(db, redis_client, datetime.now(UTC)) is True
    assert await violations(db, redis_client) == []
    assert await leaderboards.restore_if_lost(db, redis_client, datetime.now(UTC)) is False


async def play_crowd(db: asyncpg.Pool, now: datetime, players: int) -> list[uuid.UUID]:
    """`players` players, each with one bet on a shared market settled at `now`."""
    crowd = [await make_user(db, f"crowd_{index}") for index in range(players)]
    market = await insert_market(db)
    for index, user in enumerate(crowd):
        await bet(db, user, market, "this" if index % 2 else "that", "50")
    await settlement.settle_market(db, market, Resolution.THIS, now)
    return crowd


async def test_a_market_settled_at_once_after_redis_lost_everything_leaves_every_player_ranked(
    server: tuple[str, web.Application], db: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    _, app = server
    now = datetime.now(UTC)
    await play_season(db, now)
    crowd = await play_crowd(db, now, 40)
    await leaderboards.sync_pending(db, redis_client)
    assert await violations(db, redis_client) == []

    await redis_client.flushall()  # Redis restarted empty
    newcomer = await make_user(db, "newcomer")
    market = await insert_market(db)
    await bet(db, newcomer, market, "this", "100")
    await app[SERVICES].settlement.resolve(market, Resolution.THIS)

    assert await violations(db, redis_client) == []
    board = await leaderboards.bucket_scores(redis_client, "all")
    assert len(board) == 3 + len(crowd) + 1


async def test_a_redis_restart_that_reloads_an_older_snapshot_is_rebuilt_before_the_next_write(
    db: asyncpg.Pool, tmp_path: Path
) -> None:
    private = EmbeddedRedis(tmp_path)
    client = redis.Redis.from_url(await asyncio.to_thread(private.start), decode_responses=True)
    try:
        now = datetime.now(UTC)
        players = await play_season(db, now)
        await leaderboards.sync_pending(db, client)
        await client.save()
        # Settled and synced after the snapshot: only the restarted server's memory had it.
        late = await insert_market(db)
        await bet(db, players["bob"], late, "this", "100")
        await settlement.settle_market(db, late, Resolution.THIS, now)
        assert await leaderboards.sync_market(db, client, late)
        with contextlib.suppress(redis.ConnectionError):
            await client.shutdown(nosave=True)
        await client.aclose()
        private.stop()
        client = redis.Redis.from_url(await asyncio.to_thread(private.start), decode_responses=True)
        assert await client.exists(keys.leaderboard("all"))  # the old snapshot came back
        assert {v.invariant for v in await violations(db, client)} == {4}

        market = await insert_market(db)
        await bet(db, players["carol"], market, "that", "60")
        await settlement.settle_market(db, market, Resolution.THAT, now)
        await leaderboards.sync_market(db, client, market)

        assert await violations(db, client) == []
    finally:
        await client.aclose()
        await asyncio.to_thread(private.stop)


async def test_after_redis_lost_everything_the_next_read_answers_the_standings_not_an_empty_board(
    new_player: PlayerFactory, db: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    player = await new_player()
    await play_season(db, datetime.now(UTC))
    await leaderboards.sync_pending(db, redis_client)
    expected = await player.ok("leaderboard:get", {"period": "all"})
    assert [entry["username"] for entry in expected["entries"]] == ["alice", "carol", "bob"]

    await redis_client.flushall()  # Redis restarted empty, and nothing settles after it
    for period in ("all", "day"):
        answer = await player.ok("leaderboard:get", {"period": period})
        assert answer["entries"] == expected["entries"]
    assert await violations(db, redis_client) == []
