"""Fixed-window rate limits in Redis, so they hold across every server node."""

from __future__ import annotations

from typing import Final

import redis.asyncio as redis

from storage import keys

# One round trip: count the hit, start the window on the first one, and answer how long the
# caller must wait (0 when allowed).
FIXED_WINDOW: Final = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if count > tonumber(ARGV[1]) then
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl < 0 then
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        ttl = tonumber(ARGV[2])
    end
    return ttl
end
return 0
"""


class RateLimiter:
    def __init__(self, client: redis.Redis, *, enabled: bool = True) -> None:
        self._script = client.register_script(FIXED_WINDOW)
        self.enabled = enabled

    async def hit(self, scope: str, subject: str, limit: int, window_s: int) -> int:
        """Count one request; returns 0 if allowed, else milliseconds until the window reopens."""
        if not self.enabled:
            return 0
        wait_ms = await self._script(keys=[keys.rate_limit(scope, subject)], args=[limit, window_s * 1000])
        return int(wait_ms)
