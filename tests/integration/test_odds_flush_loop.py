"""The stream's flush loop (server/mirror/stream.py `OddsStream.flush_forever`) on a real
PostgreSQL and the real clock: while one market waits for its due time, a frame that makes
another market due at once is written without waiting with it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import asyncpg
import orjson
import pytest

from game.pacing import PacingName
from server.mirror.stream import OddsStream
from services.live_odds import LiveOdds
from storage import markets as market_store
from storage.rows import Market
from tests.betting_fixtures import insert_market
from tests.fake_market_channel import ChannelMarket, book
from tests.integration.test_live_odds import Recorder, bid_moved

INTERVAL_S = 1.0  # long, so that "at once" and "when the other is due" are far apart


async def channel_market(db: asyncpg.Pool) -> tuple[uuid.UUID, Any, ChannelMarket]:
    market_id = await insert_market(db, this_odds="0.4000", that_odds="0.6000")
    row = await market_store.get_market(db, market_id)
    assert row is not None
    channel = ChannelMarket(
        row.source_id,
        row.this_token_id,
        row.that_token_id,
        bids=[("0.50", "80")],
        asks=[("0.52", "120")],
    )
    return market_id, row, channel


class Ticks(Recorder):
    """The recorder, telling when a tick arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    async def odds_changed(self, rows: Sequence[Market], at: datetime) -> None:
        await super().odds_changed(rows, at)
        self.arrived.set()


async def wait_for_ticks(listener: Ticks, count: int, timeout_s: float = 5) -> None:
    async with asyncio.timeout(timeout_s):
        while len(listener.ticks) < count:
            listener.arrived.clear()
            await listener.arrived.wait()


@pytest.mark.parametrize("rule", ["beat", "first-change"])
async def test_a_market_due_at_once_is_not_held_behind_one_waiting(
    db: asyncpg.Pool, rule: PacingName
) -> None:
    """The second market was never written, so its first change may go out at once, while the
    first market's change waits for its interval to end (and under `beat`, for the beat)."""
    listener = Ticks()
    live = LiveOdds(db, listener, listener.resolve, push_interval_s=INTERVAL_S, push_pacing=rule)
    first_id, first_row, first = await channel_market(db)
    second_id, second_row, second = await channel_market(db)
    live.follow([first_row, second_row])
    stream = OddsStream(live, cast(Any, None), stale_s=60)
    stamps = iter(range(1, 1000))

    def send(value: Any) -> None:
        stream.on_frame(orjson.dumps(value).decode(), live.clock())

    def move(channel: ChannelMarket, bid: str) -> None:
        send(bid_moved(channel, bid, next(stamps)))

    loop = asyncio.create_task(stream.flush_forever())
    try:
        send([book(first, first.yes_token, ts="1"), book(first, first.no_token, ts="1")])
        await wait_for_ticks(listener, 1)
        written_first = len(listener.ticks)
        await asyncio.sleep(0.05)
        move(first, "0.505")  # within the first market's interval: it waits
        await asyncio.sleep(0.05)
        send([book(second, second.yes_token, ts="1"), book(second, second.no_token, ts="1")])
        await wait_for_ticks(listener, written_first + 1)
        # The second market went out in a flush of its own, not with the first one's.
        assert [row.id for row in listener.ticks[written_first]] == [second_id]
        await wait_for_ticks(listener, written_first + 2, timeout_s=INTERVAL_S * 3)
        assert [row.id for row in listener.ticks[written_first + 1]] == [first_id]
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
