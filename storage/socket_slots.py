"""How many sockets each player holds, counted across every node: one Redis sorted set per user
of socket ids scored by when their node last vouched for them. A claim is one atomic check and
add, so simultaneous connects on any nodes cannot pass SOCKETS_PER_USER together; a node killed
without a word stops vouching and its sockets drop out of the count after STALE_S."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Final

import redis.asyncio as redis

from storage import keys

# A node vouches for its sockets every KEEP_ALIVE_S (server/sockets/handshake.py); three missed
# rounds and they no longer count.
STALE_S: Final = 90.0
RELEASE_GATHER_S: Final = 0.05
# Sockets vouched for per Redis call: a node with thousands of sockets sends a few calls with the
# event loop free between them, not one pipeline that holds it for a second.
VOUCH_CHUNK: Final = 500

logger = logging.getLogger("thisthat.realtime")

# KEYS: the user's set. ARGV: the socket id, now (ms), the cap, the stale limit (ms), a TTL (s).
# 1 when the socket has its place (a resumed socket keeps the one it had), 0 when the cap is met.
CLAIM: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and
        redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


# KEYS: users' sets; ARGV: now (ms), a TTL (s), then one socket id per key, in the same order.
VOUCH: Final = """
for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, ARGV[1], ARGV[i + 2])
    redis.call('EXPIRE', key, ARGV[2])
end
return #KEYS
"""


class SocketSlots:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._claim = client.register_script(CLAIM)
        self._vouch = client.register_script(VOUCH)
        # Places given back, released together: a wave of disconnects (a restart, a load test
        # ending) costs one pipeline, not a Redis call each.
        self._released: list[tuple[str, str]] = []
        self._flush: asyncio.Task[None] | None = None

    async def claim(self, user_id: str, sid: str, cap: int) -> bool:
        now_ms = int(time.time() * 1000)
        stale_before = now_ms - int(STALE_S * 1000)
        claimed = await self._claim(
            keys=[keys.socket_slots(user_id)],
            args=[sid, now_ms, cap, stale_before, int(STALE_S) * 2],
        )
        return bool(claimed)

    async def release(self, user_id: str, sid: str) -> None:
        await self.client.zrem(keys.socket_slots(user_id), sid)

    def release_soon(self, user_id: str, sid: str) -> None:
        """Give the place back within RELEASE_GATHER_S, with the others given back meanwhile."""
        self._released.append((user_id, sid))
        if self._flush is None or self._flush.done():
            self._flush = asyncio.ensure_future(self._release_gathered())

    async def _release_gathered(self) -> None:
        await asyncio.sleep(RELEASE_GATHER_S)
        await self.flush()

    async def flush(self) -> None:
        released, self._released = self._released, []
        if not released:
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for user_id, sid in released:
                    pipe.zrem(keys.socket_slots(user_id), sid)
                await pipe.execute()
        except (OSError, redis.RedisError) as error:
            # Not given back, they lapse when their node stops vouching for them (STALE_S): a
            # degraded moment, one line, no trace.
            logger.warning(
                "socket slots not released; they lapse by themselves",
                extra={"count": len(released), "error": repr(error)},
            )

    async def vouch(self, sockets: Iterable[tuple[str, str]]) -> None:
        """These (user, socket) pairs are still connected here: one script call per chunk."""
        pairs = list(sockets)
        now_ms = int(time.time() * 1000)
        for start in range(0, len(pairs), VOUCH_CHUNK):
            chunk = pairs[start : start + VOUCH_CHUNK]
            await self._vouch(
                keys=[keys.socket_slots(user_id) for user_id, _ in chunk],
                args=[now_ms, int(STALE_S) * 2, *(sid for _, sid in chunk)],
            )
