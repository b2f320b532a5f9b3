"""Pushes leave a node in batches: the first at once, and while pushes keep coming, at most one
publish per interval with everything queued meanwhile."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from server.fanout import pushes as pushes_module
from server.fanout.pushes import Pushes


class CountingRedis:
    def __init__(self) -> None:
        self.published: list[Any] = []
        self.second = asyncio.Event()

    async def publish(self, channel: str, body: bytes) -> int:
        self.published.append(orjson.loads(body)["pushes"])
        if len(self.published) == 2:
            self.second.set()
        return 1


async def test_a_lone_push_goes_at_once_and_a_burst_waits_for_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pushes_module, "PUBLISH_INTERVAL_S", 0.5)
    redis = CountingRedis()
    pushes = Pushes(None, redis)  # type: ignore[arg-type]  # publishing never touches Socket.IO
    publisher = asyncio.create_task(pushes.publish_forever())
    try:
        pushes.emit("balance", {"balance": "1"}, "user:a")
        for _ in range(10):
            await asyncio.sleep(0)
        assert len(redis.published) == 1
        for n in range(5):
            pushes.emit("balance", {"balance": str(n)}, "user:b")
            await asyncio.sleep(0)
        # Within the interval after the first publish nothing more goes out ...
        assert len(redis.published) == 1
        # ... then everything queued meanwhile goes in one.
        await asyncio.wait_for(redis.second.wait(), 5)
        assert [len(batch) for batch in redis.published] == [1, 5]
    finally:
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)
