"""Leaderboards: Redis sorted sets of realized PnL per period bucket, always recomputed from the ledger.

Invariant 4 (a score equals the PnL recomputed from the ledger) is kept by never incrementing a
score: after a settlement commits, the scores of the market's players are recomputed from
PostgreSQL and written with ZADD. That is idempotent, so replaying it is harmless, and the
`leaderboard_outbox` row written in the settlement's transaction makes sure it is replayed after a
crash between the commit and the Redis write (`sync_pending`, run at start and periodically).
If Redis itself lost data (flushed, restarted empty or from an older snapshot), every board is
rebuilt from the ledger before the next write or read (`restore_if_lost`).

Two recomputations of one user can race (two markets settling on two nodes) and the older
snapshot could land last. Each write therefore carries a version, the user's count of settled
bets in that snapshot: settlements of one user serialise on the user row, so the count only grows.
A Lua script writes a score only if its version is not older than the one stored beside it.

A member of a bucket is a user with at least one bet settled in it (settled_at decides the day
and week); refund-only players sit at 0. Scores are credits as doubles: exact to the cent at the
magnitudes a 1,000,000 cap allows, and never accumulated, so no rounding drift.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Final, cast

import asyncpg
import redis.asyncio as redis
from redis.typing import EncodableT, FieldT

from game.leaderboard import Period, bucket_expires_at, parse_period_key, period_key
from game.money import CENT
from storage import keys
from storage.database import Executor

USER_BATCH: Final = 1000
# Not per period: usernames never change, so one hash serves every board.
USERNAMES_KEY: Final = keys.LEADERBOARD_USERNAMES

# PnL of a settled bet = the sum of its ledger rows (stake, plus payout or refund).
# $2/$3 bound settled_at to a bucket; NULL for all time. `version` counts every settled bet.
USERS_PNL: Final = """
SELECT b.user_id, u.username,
       coalesce(sum(l.amount) FILTER (WHERE $2::timestamptz IS NULL
                                       OR (b.settled_at >= $2 AND b.settled_at < $3::timestamptz)), 0) AS pnl,
       count(DISTINCT b.id) FILTER (WHERE $2::timestamptz IS NULL
                                     OR (b.settled_at >= $2 AND b.settled_at < $3::timestamptz)) AS in_bucket,
       count(DISTINCT b.id) AS version
FROM bets b
JOIN ledger l ON l.bet_id = b.id
JOIN users u ON u.id = b.user_id
WHERE b.user_id = ANY($1::uuid[]) AND b.status <> 'open'
GROUP BY b.user_id, u.username
"""

BUCKET_PNL: Final = """
SELECT b.user_id, sum(l.amount) AS pnl
FROM bets b JOIN ledger l ON l.bet_id = b.id
WHERE b.status <> 'open'
  AND ($1::timestamptz IS NULL OR (b.settled_at >= $1 AND b.settled_at < $2::timestamptz))
GROUP BY b.user_id
"""

PNL_BY_USER_AND_DAY: Final = """
SELECT b.user_id, u.username, (b.settled_at AT TIME ZONE 'UTC')::date AS day,
       sum(l.amount) AS pnl, count(DISTINCT b.id) AS bets
FROM bets b
JOIN ledger l ON l.bet_id = b.id
JOIN users u ON u.id = b.user_id
WHERE b.status <> 'open'
GROUP BY b.user_id, u.username, day
"""

MARKET_PLAYERS: Final = """
SELECT coalesce(array_agg(DISTINCT user_id), '{}') AS users,
       coalesce(array_agg(DISTINCT (settled_at AT TIME ZONE 'UTC')::date)
                FILTER (WHERE status <> 'open'), '{}') AS days
FROM bets WHERE market_id = $1
"""

SELECT_OUTBOX_READY: Final = """
SELECT o.market_id FROM leaderboard_outbox o JOIN markets m ON m.id = o.market_id
WHERE m.settled_at IS NOT NULL
ORDER BY o.created_at
"""
SELECT_SETTLED_AT: Final = "SELECT settled_at FROM markets WHERE id = $1"
DELETE_OUTBOX: Final = "DELETE FROM leaderboard_outbox WHERE market_id = $1"
SELECT_USERNAMES: Final = "SELECT id, username FROM users WHERE id = ANY($1::uuid[])"

# KEYS: the bucket's sorted set, its versions hash. ARGV: expire-at (unix s, 0 = never), then
# (member, score, version) triples. A write older than the stored version is dropped.
WRITE_SCORES_LUA: Final = """
local written = 0
for i = 2, #ARGV, 3 do
    local seen = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '-1')
    if tonumber(ARGV[i + 2]) >= seen then
        redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
        redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
        written = written + 1
    end
end
local expire_at = tonumber(ARGV[1])
if expire_at > 0 then
    redis.call('EXPIREAT', KEYS[1], expire_at)
    redis.call('EXPIREAT', KEYS[2], expire_at)
end
return written
"""


@dataclass(frozen=True, slots=True)
class Standing:
    rank: int
    user_id: str
    username: str
    pnl: Decimal


def versions_key(bucket: str) -> str:
    return keys.leaderboard_versions(bucket)


def score_to_pnl(score: float) -> Decimal:
    """A Redis score back to credits: the shortest repr of the double, to the cent."""
    return Decimal(repr(score)).quantize(CENT)


def _expire_at(bucket: str) -> int:
    expires = bucket_expires_at(bucket)
    return 0 if expires is None else int(expires.timestamp())


def _kept(bucket: str, now: datetime) -> bool:
    expires = bucket_expires_at(bucket)
    return expires is None or expires > now


def _buckets_of_days(days: Iterable[date]) -> list[str]:
    buckets = {"all"}
    for day in days:
        at = datetime.combine(day, time(12), tzinfo=UTC)
        buckets.update({period_key(Period.DAY, at), period_key(Period.WEEK, at)})
    return sorted(buckets)


async def recompute_users(
    pool: Executor, client: redis.Redis, user_ids: list[uuid.UUID], buckets: list[str]
) -> None:
    """Write the ledger PnL of these users into these buckets (version-guarded ZADD)."""
    script = client.register_script(WRITE_SCORES_LUA)
    for start in range(0, len(user_ids), USER_BATCH):
        batch = user_ids[start : start + USER_BATCH]
        names: dict[FieldT, EncodableT] = {}
        for bucket in buckets:
            _, bounds = parse_period_key(bucket)
            low, high = bounds if bounds is not None else (None, None)
            args: list[Any] = [_expire_at(bucket)]
            for row in await pool.fetch(USERS_PNL, batch, low, high):
                names[str(row["user_id"])] = row["username"]
                if row["in_bucket"]:
                    args += [str(row["user_id"]), str(row["pnl"]), row["version"]]
            if len(args) > 1:
                await script(keys=[keys.leaderboard(bucket), versions_key(bucket)], args=args)
        if names:
            await client.hset(USERNAMES_KEY, mapping=names)


async def sync_market(pool: asyncpg.Pool, client: redis.Redis, market_id: uuid.UUID) -> bool:
    """Recompute the scores of every player of a market; True once it is fully settled and synced.

    If Redis lost the boards since they were built, they are first rebuilt whole: writing only
    this market's players would leave everyone else off the boards.

    Only then is its outbox row removed: the recomputation read the ledger after settled_at was
    set, so it saw every bet of the market settled.
    """
    await restore_if_lost(pool, client, datetime.now(UTC))
    settled_at = await pool.fetchval(SELECT_SETTLED_AT, market_id)
    row = await pool.fetchrow(MARKET_PLAYERS, market_id)
    assert row is not None
    await recompute_users(pool, client, sorted(row["users"]), _buckets_of_days(row["days"]))
    if settled_at is None:
        return False
    await pool.execute(DELETE_OUTBOX, market_id)
    return True


async def sync_pending(pool: asyncpg.Pool, client: redis.Redis) -> int:
    """Replay the leaderboard update of every settled market still in the outbox; how many."""
    done = 0
    for row in await pool.fetch(SELECT_OUTBOX_READY):
        done += await sync_market(pool, client, row["market_id"])
    return done


async def top(
    pool: Executor,
    client: redis.Redis,
    bucket: str,
    limit: int,
    me: uuid.UUID | None = None,
    on_names: NameLookups | None = None,
) -> tuple[list[Standing], tuple[int, Decimal] | None]:
    """The best `limit` of a bucket (rank 1 = highest PnL) and, if asked, `me`'s (rank, pnl)."""
    key = keys.leaderboard(bucket)
    async with client.pipeline(transaction=True) as pipe:
        pipe.zrevrange(key, 0, limit - 1, withscores=True)
        if me is not None:
            pipe.zrevrank(key, str(me))
            pipe.zscore(key, str(me))
        answers = await pipe.execute()
    entries: list[tuple[str, float]] = answers[0]
    mine = None
    if me is not None and answers[1] is not None and answers[2] is not None:
        mine = (int(answers[1]) + 1, score_to_pnl(answers[2]))
    names = await usernames(pool, client, [member for member, _ in entries], on_names)
    standings = [
        Standing(rank, member, names.get(member, ""), score_to_pnl(score))
        for rank, (member, score) in enumerate(entries, start=1)
    ]
    return standings, mine


# Told (found in Redis, fetched from PostgreSQL) for each page of names: the cache's hit rate.
NameLookups = Callable[[int, int], None]


async def usernames(
    pool: Executor, client: redis.Redis, user_ids: list[str], on_lookup: NameLookups | None = None
) -> dict[str, str]:
    """From the Redis hash; the few missing ones (a flushed cache) from PostgreSQL in one query."""
    if not user_ids:
        return {}
    cached = await client.hmget(USERNAMES_KEY, user_ids)
    names = {
        user_id: str(name)
        for user_id, name in zip(user_ids, cached, strict=True)
        if name is not None
    }
    missing = [uuid.UUID(user_id) for user_id in user_ids if user_id not in names]
    if on_lookup is not None:
        on_lookup(len(names), len(missing))
    if missing:
        rows = await pool.fetch(SELECT_USERNAMES, missing)
        found: dict[FieldT, EncodableT] = {str(row["id"]): row["username"] for row in rows}
        if found:
            await client.hset(USERNAMES_KEY, mapping=found)
        names.update({str(row["id"]): row["username"] for row in rows})
    return names


async def bucket_pnl_from_ledger(connection: Executor, bucket: str) -> dict[str, Decimal]:
    """user id -> realized PnL of the bets settled within the bucket, straight from the ledger."""
    _, bounds = parse_period_key(bucket)
    low, high = bounds if bounds is not None else (None, None)
    return {
        str(row["user_id"]): row["pnl"] for row in await connection.fetch(BUCKET_PNL, low, high)
    }


async def bucket_scores(client: redis.Redis, bucket: str) -> dict[str, Decimal]:
    # decode_responses=True: members are str, scores float.
    entries = cast(
        list[tuple[str, float]],
        await client.zrange(keys.leaderboard(bucket), 0, -1, withscores=True),
    )
    return {member: score_to_pnl(score) for member, score in entries}


async def stored_buckets(client: redis.Redis) -> list[str]:
    """Every bucket that has a sorted set in Redis."""
    found = []
    async for key in client.scan_iter(match=keys.leaderboard("*"), count=500):
        bucket = key.removeprefix(keys.leaderboard(""))
        try:
            parse_period_key(bucket)
        except ValueError:
            continue  # versions hashes, throttle keys, the usernames hash
        found.append(bucket)
    return sorted(found)


async def redis_run_id(client: redis.Redis) -> str:
    """Changes whenever the Redis server restarts; "unknown" where INFO is not allowed."""
    try:
        info = await client.info("server")
    except redis.ResponseError:
        return "unknown"
    return str(info.get("run_id", "unknown"))


async def rebuild(pool: Executor, client: redis.Redis, now: datetime) -> dict[str, int]:
    """Recompute every bucket (all time, weeks and days still kept) from the ledger; bucket -> members.

    The boards are deleted first, then the ledger is read, then the scores are written with the
    same version guard as a settlement's. So a settlement syncing meanwhile is never lost: its
    write either lands after the delete (and an older snapshot cannot overwrite it) or before it
    (and then the snapshot, read after the delete, already holds it). Readers see the boards
    fill up while it runs.
    """
    run_id = await redis_run_id(client)
    for bucket in await stored_buckets(client):
        await client.delete(keys.leaderboard(bucket), versions_key(bucket))
    scores: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    versions: dict[str, int] = defaultdict(int)
    names: dict[FieldT, EncodableT] = {}
    for row in await pool.fetch(PNL_BY_USER_AND_DAY):
        user_id = str(row["user_id"])
        names[user_id] = row["username"]
        versions[user_id] += row["bets"]
        for bucket in _buckets_of_days([row["day"]]):
            scores[bucket][user_id] += row["pnl"]
    kept = {bucket: board for bucket, board in scores.items() if _kept(bucket, now)}
    script = client.register_script(WRITE_SCORES_LUA)
    for bucket, board in kept.items():
        members = list(board.items())
        for start in range(0, len(members), USER_BATCH):
            args: list[Any] = [_expire_at(bucket)]
            for user_id, pnl in members[start : start + USER_BATCH]:
                args += [user_id, str(pnl), versions[user_id]]
            await script(keys=[keys.leaderboard(bucket), versions_key(bucket)], args=args)
    if names:
        await client.hset(USERNAMES_KEY, mapping=names)
    await client.set(keys.LEADERBOARDS_BUILT, run_id)
    return {bucket: len(board) for bucket, board in sorted(kept.items())}


REBUILD_LOCK_MS: Final = 60_000
RELEASE_LOCK_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


async def boards_built(client: redis.Redis) -> bool:
    """Whether the boards in Redis were built on this Redis server's run and not flushed since."""
    return bool(await client.get(keys.LEADERBOARDS_BUILT) == await redis_run_id(client))


async def restore_if_lost(pool: Executor, client: redis.Redis, now: datetime) -> bool:
    """Rebuild every board from the ledger if Redis lost data since they were built; True if it did.

    Checked before every settlement's write, not only now and then: a board that merely exists
    proves nothing, since the first settlement after a flush recreates it with its own players
    only. The marker written by `rebuild` names the Redis server's run id, so a flush (marker
    gone) and a restart, even one that reloaded an older snapshot (run id changed), both
    trigger it. One node rebuilds at a time; the others write their settlements as usual, which
    the rebuild's order makes safe.
    """
    if await boards_built(client):
        return False
    lock = uuid.uuid4().hex
    if not await client.set(keys.LEADERBOARDS_REBUILDING, lock, nx=True, px=REBUILD_LOCK_MS):
        return False
    try:
        rebuilt = await rebuild(pool, client, now)
    finally:
        await client.eval(RELEASE_LOCK_LUA, 1, keys.LEADERBOARDS_REBUILDING, lock)
    return bool(rebuilt)
