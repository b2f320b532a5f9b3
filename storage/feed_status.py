"""The feed's shared state in Redis: the lease that elects the one node running the feed, and
each feed job's health, which /readyz on any node reports."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import orjson
import redis.asyncio as redis

from storage import keys


class PassReport(Protocol):
    """What a feed pass did (services.markets.PollReport)."""

    seen: int
    changed: int
    skipped: int
    requests: int
    seconds: float


# Renew only if we still own the lease; answers 1 when renewed.
RENEW_LEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_LEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """A lock with expiry in Redis: held while renewed, taken over by another node when it lapses."""

    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renew = client.register_script(RENEW_LEASE)
        self._release = client.register_script(RELEASE_LEASE)

    async def acquire(self) -> bool:
        return bool(await self.client.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.owner, self.ttl_ms]))

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.owner])


class FeedStatus:
    """Per-job health, kept in Redis so /readyz on any node can report the poller's state."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    async def record(
        self,
        job: str,
        ok: bool,
        report: PassReport | None = None,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        raw = await self.client.hget(keys.FEED_STATUS, job)
        state: dict[str, Any] = orjson.loads(raw) if raw else {"consecutiveFailures": 0}
        if ok:
            state["lastSuccessAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            state["consecutiveFailures"] = 0
            state.pop("lastError", None)
            if report is not None:
                state["last"] = {
                    "seen": report.seen,
                    "changed": report.changed,
                    "skipped": report.skipped,
                    "requests": report.requests,
                    "seconds": round(report.seconds, 3),
                }
        else:
            state["consecutiveFailures"] = int(state.get("consecutiveFailures", 0)) + 1
            state["lastError"] = error
        if detail is not None:
            state["detail"] = detail
        await self.client.hset(keys.FEED_STATUS, job, orjson.dumps(state))

    async def begin(self, jobs: Sequence[str]) -> None:
        """A new leader's jobs replace whatever an earlier run recorded."""
        fresh = {job: orjson.dumps({"state": "running", "consecutiveFailures": 0}) for job in jobs}
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.FEED_STATUS)
            if fresh:
                pipe.hset(keys.FEED_STATUS, mapping=fresh)  # type: ignore[arg-type]  # bytes values
            await pipe.execute()

    async def ended(self, job: str, error: str | None) -> None:
        raw = await self.client.hget(keys.FEED_STATUS, job)
        state: dict[str, Any] = orjson.loads(raw) if raw else {"consecutiveFailures": 0}
        state["state"] = "finished" if error is None else "died"
        state["endedAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        if error is not None:
            state["lastError"] = error
        await self.client.hset(keys.FEED_STATUS, job, orjson.dumps(state))

    async def read(self) -> dict[str, Any]:
        raw = await self.client.hgetall(keys.FEED_STATUS)
        return {str(job): orjson.loads(value) for job, value in raw.items()}
