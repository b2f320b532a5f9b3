"""Fixtures for feed tests: the fake Polymarket and a server polling it fast."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.fake_polymarket import FakePolymarket
from tests.players import Player

FAST_FEED: dict[str, Any] = {
    "feed": "polymarket",
    "feed_markets_interval_s": 1.0,
    "feed_odds_interval_s": 0.5,
    "feed_resolution_interval_s": 0.5,
    "feed_lease_ttl_s": 1.5,
    "feed_timeout_s": 1.0,
    # The REST polls alone; tests of the market channel turn it on with a fake channel's URL.
    "feed_stream": False,
}


@pytest.fixture
async def fake_polymarket() -> AsyncIterator[FakePolymarket]:
    fake = FakePolymarket()
    fake.add_markets(5)
    async with fake.serve():
        yield fake


def feed_settings(fake: FakePolymarket, **overrides: Any) -> dict[str, Any]:
    return {
        **FAST_FEED,
        "polymarket_gamma_url": fake.gamma_url,
        "polymarket_base_url": fake.clob_url,
        **overrides,
    }


async def eventually(
    check: Callable[[], Awaitable[bool]], *, attempts: int = 100, pause_s: float = 0.1
) -> None:
    """Poll a condition a bounded number of times; fail if it never holds."""
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(pause_s)
    raise AssertionError("condition never held")


async def open_markets(player: Player) -> list[dict[str, Any]]:
    return (await player.ok("markets:list", {"limit": 200}))["markets"]  # type: ignore[no-any-return]


async def wait_for_markets(player: Player, count: int) -> list[dict[str, Any]]:
    """The open markets once the feed has listed `count` of them."""

    async def listed() -> bool:
        return len(await open_markets(player)) == count

    await eventually(listed)
    return await open_markets(player)
