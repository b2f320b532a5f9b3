"""Rate limits in Redis, so they hold across every server node: fixed windows, and the login guard.

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

# Takes back one hit of a window (the attempt it counted turned out to be no failure).
GIVE_BACK: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('DECR', KEYS[1]) <= 0 then
    redis.call('DEL', KEYS[1])
end
return 0
"""

MAX_KEYS_PER_CALL: Final = 500

Hit = tuple[str, int, int, "asyncio.Future[int]"]


class RateLimiter:
    def __init__(self, client: redis.Redis, *, enabled: bool = True) -> None:
        self._script = client.register_script(FIXED_WINDOWS)
        self._give_back = client.register_script(GIVE_BACK)
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

    async def give_back(self, scope: str, subject: str) -> None:
        """Take back one hit: for limits that count failures, a hit is taken before the attempt
        is judged (so parallel attempts cannot all pass the count) and given back on success."""
        if not self.enabled:
            return
        await self._give_back(keys=[keys.rate_limit(scope, subject)])

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


# Login guessing, counted so that a stranger cannot lock the owner out.
#
# KEYS: failures of this (username, address) pair, the username's leaky bucket, and the marker of
# an address the owner has signed in from. ARGV: pair limit, pair window ms, username ceiling,
# username window ms. An attempt is counted as a failure before the password is checked (so a
# burst of parallel guesses cannot all slip past the count) and refunded when it succeeds.
#
# The pair is a fixed window: guessing from one address stops there, and only there. The username
# bucket holds failures from every address and drains continuously, `ceiling` per window: a
# distributed guesser gets at most that many guesses per window in all. Past the ceiling only an
# address the owner has signed in from before gets through (its own pair limit still applies).
LOGIN_ATTEMPT: Final = """
local pair_limit = tonumber(ARGV[1])
local pair_window = tonumber(ARGV[2])
local ceiling = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures >= pair_limit then
    local wait = redis.call('PTTL', KEYS[1])
    if wait < 0 then
        redis.call('PEXPIRE', KEYS[1], pair_window)
        wait = pair_window
    end
    return wait
end

local level = tonumber(redis.call('HGET', KEYS[2], 'level') or '0')
local at = tonumber(redis.call('HGET', KEYS[2], 'at') or tostring(now))
level = math.max(0, level - (now - at) * ceiling / window)
if level + 1 > ceiling and redis.call('EXISTS', KEYS[3]) == 0 then
    return math.max(1, math.ceil((level + 1 - ceiling) * window / ceiling))
end

if redis.call('INCR', KEYS[1]) == 1 then
    redis.call('PEXPIRE', KEYS[1], pair_window)
end
-- Past the ceiling only a known address gets here; the bucket lives until it has drained.
level = level + 1
redis.call('HSET', KEYS[2], 'level', tostring(level), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[2], math.ceil(math.max(1, level / ceiling) * window))
return 0
"""

# KEYS as above; ARGV: username ceiling, username window ms, how long the address stays known (ms).
# The attempt's reservation is refunded, the pair's failures are forgotten (whoever is behind that
# address knows the password), and the address is remembered as the owner's.
LOGIN_SUCCEEDED: Final = """
local ceiling = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('DEL', KEYS[1])
local level = tonumber(redis.call('HGET', KEYS[2], 'level') or '0')
local at = tonumber(redis.call('HGET', KEYS[2], 'at') or tostring(now))
level = math.max(0, level - (now - at) * ceiling / window - 1)
if level > 0 then
    redis.call('HSET', KEYS[2], 'level', tostring(level), 'at', tostring(now))
    redis.call('PEXPIRE', KEYS[2], math.ceil(math.max(1, level / ceiling) * window))
else
    redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
return 0
"""

# KEYS as above; ARGV: username ceiling, username window ms. An attempt that was never judged (the
# database could not be asked) gives its reservation back: one failure off the pair and off the
# username's bucket, and nothing else (the address is not remembered as the owner's).
LOGIN_NOT_JUDGED: Final = """
local ceiling = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures > 1 then
    redis.call('DECR', KEYS[1])
elseif failures == 1 then
    redis.call('DEL', KEYS[1])
end
local level = tonumber(redis.call('HGET', KEYS[2], 'level') or '0')
local at = tonumber(redis.call('HGET', KEYS[2], 'at') or tostring(now))
level = math.max(0, level - (now - at) * ceiling / window - 1)
if level > 0 then
    redis.call('HSET', KEYS[2], 'level', tostring(level), 'at', tostring(now))
    redis.call('PEXPIRE', KEYS[2], math.ceil(math.max(1, level / ceiling) * window))
else
    redis.call('DEL', KEYS[2])
end
return 0
"""

# An address the owner signed in from stays "theirs" this long, for the username ceiling.
KNOWN_ADDRESS_TTL_S: Final = 30 * 86400


class LoginGuard:
    """Login limits that count failures, per (username, address) and per username, in Redis.

    `pair` and `ceiling` are (count, window seconds): the failures one address may make against
    one username per fixed window, and the failures all addresses together may make against it
    per window, draining continuously.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        pair: tuple[int, int],
        ceiling: tuple[int, int],
        enabled: bool = True,
    ) -> None:
        self._attempt = client.register_script(LOGIN_ATTEMPT)
        self._succeeded = client.register_script(LOGIN_SUCCEEDED)
        self._not_judged = client.register_script(LOGIN_NOT_JUDGED)
        self.pair = pair
        self.ceiling = ceiling
        self.enabled = enabled

    @staticmethod
    def _keys(username: str, address: str) -> list[str]:
        name = username.lower()
        return [
            keys.rate_limit("login-fail", f"{name}:{address}"),
            keys.rate_limit("login-fail-user", name),
            keys.rate_limit("login-known", f"{name}:{address}"),
        ]

    async def attempt(self, username: str, address: str) -> int:
        """Reserve one attempt as a failure: 0 if allowed, else milliseconds to wait."""
        if not self.enabled:
            return 0
        pair_limit, pair_window = self.pair
        ceiling, window = self.ceiling
        wait = await self._attempt(
            keys=self._keys(username, address),
            args=[pair_limit, pair_window * 1000, ceiling, window * 1000],
        )
        return int(wait)

    async def succeeded(self, username: str, address: str) -> None:
        """The password was right: refund the reservation and remember the address."""
        if not self.enabled:
            return
        ceiling, window = self.ceiling
        await self._succeeded(
            keys=self._keys(username, address),
            args=[ceiling, window * 1000, KNOWN_ADDRESS_TTL_S * 1000],
        )

    async def not_judged(self, username: str, address: str) -> None:
        """The password could not be checked (a dependency was down): the attempt counts for
        nothing, neither as a failure nor as a success."""
        if not self.enabled:
            return
        ceiling, window = self.ceiling
        await self._not_judged(keys=self._keys(username, address), args=[ceiling, window * 1000])
