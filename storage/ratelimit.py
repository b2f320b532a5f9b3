"""Fixed-window rate limits in Redis, so they hold across every server node.

Under load, every socket event asks for a hit. The hits asked for while one Redis call is in
flight are counted together in the next call: one script run for the whole burst, each hit
answered on its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import redis.asyncio as redis

from storage import keys

logger = logging.getLogger("thisthat.ratelimit")

# For each key: count the hit, start the window on the first one, and answer how long the
# caller must wait (0 when allowed). ARGV holds (limit, window ms) per key.
FIXED_WINDOWS: Final = """
local waits = {}
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i - 1])
    local window = tonumber(ARGV[2 * i])
    local count = redis.call('INCR', key)
    if count == 1 then
        redis.call('PEXPIRE', key, window)
    end
    local wait = 0
    if count > limit then
        wait = redis.call('PTTL', key)
        if wait < 0 then
            redis.call('PEXPIRE', key, window)
            wait = window
        end
    end
    waits[i] = wait
end
return waits
"""

MAX_KEYS_PER_CALL: Final = 500

Hit = tuple[str, int, int, "asyncio.Future[int]"]


class RateLimiter:
    def __init__(self, client: redis.Redis, *, enabled: bool = True) -> None:
        self._script = client.register_script(FIXED_WINDOWS)
        self.enabled = enabled
        self._pending: list[Hit] = []
        self._flushing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def hit(self, scope: str, subject: str, limit: int, window_s: int) -> int:
        """Count one request; returns 0 if allowed, else milliseconds until the window reopens."""
        if not self.enabled:
            return 0
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((keys.rate_limit(scope, subject), limit, window_s * 1000, future))
        if not self._flushing:
            self._flushing = True
            task = asyncio.get_running_loop().create_task(self._flush())
            self._tasks.add(task)  # held until done, so it is never collected mid-flight
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = (
                    self._pending[:MAX_KEYS_PER_CALL],
                    self._pending[MAX_KEYS_PER_CALL:],
                )
                args: list[int] = []
                for _, limit, window_ms, _ in batch:
                    args += [limit, window_ms]
                try:
                    waits = await self._script(keys=[key for key, *_ in batch], args=args)
                except Exception as error:  # noqa: BLE001 - every waiting caller gets the failure
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (*_, future), wait in zip(batch, waits, strict=True):
                    if not future.done():
                        future.set_result(int(wait))
        finally:
            self._flushing = False
