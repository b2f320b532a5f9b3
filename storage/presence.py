"""Presence in Redis: per node, a set of the users watching each market and a set of the users
connected, each expiring a TTL after that node last wrote it, so a node killed without a word
drops out of every count by itself. A count is the size of the union of the live nodes' sets, so
a user on two nodes counts once; it is kept with the time it was taken, and taken again at most
once an interval unless a node's set changed."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import redis.asyncio as redis

from storage import keys

# KEYS: the live nodes (a sorted set of node ids scored by when each last wrote, ms).
# ARGV: this node, the TTL (ms). Returns the nodes that wrote within the TTL, this one included.
HEARTBEAT: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS[1]: the count's state (a hash: count, at, pushed, pushedAt); KEYS[2..]: the sets whose
# union is counted. ARGV: '1' to count again now, the interval (ms), the state's TTL (ms), '1' to
# decide a push. Returns {count, 1 when the caller is to push it}. Redis's clock decides, so the
# nodes' clocks need not agree; one script, so of all the nodes only one is told to push.
COUNT: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local interval = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'count', 'at', 'pushed', 'pushedAt')
local count = tonumber(state[1])
if count == nil or ARGV[1] == '1' or now - (tonumber(state[2]) or 0) >= interval then
    if #KEYS == 2 then
        count = redis.call('SCARD', KEYS[2])
    elseif #KEYS > 2 then
        count = #redis.call('SUNION', unpack(KEYS, 2))
    else
        count = 0
    end
    redis.call('HSET', KEYS[1], 'count', count, 'at', now)
end
local push = 0
if ARGV[4] == '1' and tonumber(state[3]) ~= count
        and now - (tonumber(state[4]) or 0) >= interval then
    push = 1
    redis.call('HSET', KEYS[1], 'pushed', count, 'pushedAt', now)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {count, push}
"""

# KEYS[1]: the count's state; KEYS[2]: this node's set; KEYS[3..]: the other live nodes' sets.
# ARGV: a user, '1' when that user is in it on this node now. The last count, with that user as
# they are now (this node may not have written them yet): once if here or on another node.
ANSWER: Final = """
local count = tonumber(redis.call('HGET', KEYS[1], 'count')) or 0
local elsewhere = false
for i = 3, #KEYS do
    if redis.call('SISMEMBER', KEYS[i], ARGV[1]) == 1 then
        elsewhere = true
        break
    end
end
local was = elsewhere or redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1
local is = elsewhere or ARGV[2] == '1'
if was and not is then
    count = count - 1
elseif is and not was then
    count = count + 1
end
if is and count < 1 then
    count = 1
end
if count < 0 then
    count = 0
end
return count
"""


@dataclass(frozen=True, slots=True)
class SetWrite:
    """A change to one of this node's sets: users added and removed, or (`whole`) the set as it is
    now, after it lapsed or a write failed."""

    present: Collection[str]
    absent: Collection[str] = ()
    whole: bool = False


@dataclass(frozen=True, slots=True)
class Written:
    nodes: list[str]  # the live nodes, this one included
    lapsed: set[str]  # markets whose set was gone (Redis lost it): to be written whole
    online_lapsed: bool


@dataclass(frozen=True, slots=True)
class Count:
    count: int
    push: bool


class PresenceBoard:
    """This node's share of presence, and the counts of every node's shares."""

    def __init__(self, client: redis.Redis, node: str, *, interval_ms: int, ttl_ms: int) -> None:
        self.client = client
        self.node = node
        self.interval_ms = interval_ms
        self.ttl_ms = ttl_ms
        self._heartbeat = client.register_script(HEARTBEAT)
        self._count = client.register_script(COUNT)
        self._answer = client.register_script(ANSWER)

    async def write(
        self,
        markets: Mapping[str, SetWrite],
        unchanged: Iterable[str],
        online: SetWrite | None,
    ) -> Written:
        """Apply this node's changes and renew the expiry of its other sets, in one transaction
        (a reader never sees a set half rewritten); returns the live nodes."""
        kept = list(unchanged)
        async with self.client.pipeline(transaction=True) as pipe:
            for market_id, change in markets.items():
                _write_set(pipe, keys.presence_watching(market_id, self.node), change, self.ttl_ms)
            online_key = keys.presence_online(self.node)
            if online is None:
                pipe.pexpire(online_key, self.ttl_ms)
            else:
                _write_set(pipe, online_key, online, self.ttl_ms)
            for market_id in kept:
                pipe.pexpire(keys.presence_watching(market_id, self.node), self.ttl_ms)
            await self._heartbeat(
                keys=[keys.PRESENCE_NODES], args=[self.node, self.ttl_ms], client=pipe
            )
            results = await pipe.execute()
        renewed = results[-1 - len(kept) : -1]
        return Written(
            nodes=list(results[-1]),
            lapsed={market_id for market_id, ok in zip(kept, renewed, strict=True) if not ok},
            online_lapsed=online is None and not results[-2 - len(kept)],
        )

    async def count(
        self, nodes: list[str], markets: Collection[str], changed: Collection[str]
    ) -> tuple[dict[str, Count], int]:
        """Each market's watchers and who is online, on every live node; a market whose set
        changed here (`changed`), and any count older than the interval, is counted again."""
        markets = list(markets)
        args = [self.interval_ms, self.ttl_ms]
        async with self.client.pipeline(transaction=False) as pipe:
            for market_id in markets:
                await self._count(
                    keys=[
                        keys.presence_watchers(market_id),
                        *(keys.presence_watching(market_id, node) for node in nodes),
                    ],
                    args=[int(market_id in changed), *args, 1],
                    client=pipe,
                )
            await self._count(
                keys=[keys.PRESENCE_ONLINE_COUNT, *(keys.presence_online(node) for node in nodes)],
                args=[0, *args, 0],
                client=pipe,
            )
            results = await pipe.execute()
        counts = {
            market_id: Count(int(count), bool(push))
            for market_id, (count, push) in zip(markets, results[:-1], strict=True)
        }
        return counts, int(results[-1][0])

    async def answer(
        self, nodes: list[str], user_id: str, markets: Mapping[str, bool]
    ) -> dict[str, int]:
        """Each market's last count, with `user_id` as they are now (`markets`: whether they
        watch it on this node)."""
        others = [node for node in nodes if node != self.node]
        async with self.client.pipeline(transaction=False) as pipe:
            for market_id, here in markets.items():
                await self._answer(
                    keys=[
                        keys.presence_watchers(market_id),
                        keys.presence_watching(market_id, self.node),
                        *(keys.presence_watching(market_id, node) for node in others),
                    ],
                    args=[user_id, int(here)],
                    client=pipe,
                )
            results = await pipe.execute()
        return {market_id: int(count) for market_id, count in zip(markets, results, strict=True)}

    async def online(self, nodes: list[str], user_id: str) -> int:
        """Everyone online, with `user_id` counted (they are asking on a socket of this node)."""
        others = [node for node in nodes if node != self.node]
        count = await self._answer(
            keys=[
                keys.PRESENCE_ONLINE_COUNT,
                keys.presence_online(self.node),
                *(keys.presence_online(node) for node in others),
            ],
            args=[user_id, 1],
        )
        return int(count)

    async def leave(self, markets: Iterable[str]) -> None:
        """This node stops: its sets go now rather than when they lapse."""
        async with self.client.pipeline(transaction=True) as pipe:
            for market_id in markets:
                pipe.delete(keys.presence_watching(market_id, self.node))
            pipe.delete(keys.presence_online(self.node))
            pipe.zrem(keys.PRESENCE_NODES, self.node)
            await pipe.execute()


def _write_set(pipe: redis.client.Pipeline, key: str, change: SetWrite, ttl_ms: int) -> None:
    if change.whole:
        pipe.delete(key)
    if change.absent:
        pipe.srem(key, *change.absent)
    if change.present:
        pipe.sadd(key, *change.present)
    pipe.pexpire(key, ttl_ms)
