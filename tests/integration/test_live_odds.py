"""The market channel's frames applied to stored markets (services/live_odds.py) on a real
PostgreSQL: books to shown odds, one write per flush with the latest value, a push only for what
the write committed, resolutions through the listener, and bad upstream input that changes nothing."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from game.markets import Resolution
from game.pacing import PacingName
from services.live_odds import LiveOdds
from storage import markets as market_store
from storage.rows import Market
from tests.betting_fixtures import insert_market
from tests.fake_market_channel import ChannelMarket, book, last_trade_price, price_change


class Recorder:
    """The listener the use case reports to, keeping what it heard."""

    def __init__(self) -> None:
        self.ticks: list[list[Market]] = []
        self.touched: list[list[uuid.UUID]] = []
        self.resolved: list[tuple[uuid.UUID, Resolution]] = []

    async def markets_changed(self, rows: Sequence[Market]) -> None:
        return None

    async def odds_changed(self, rows: Sequence[Market], at: datetime) -> None:
        self.ticks.append(list(rows))

    async def odds_touched(self, market_ids: Sequence[uuid.UUID], at: datetime) -> None:
        self.touched.append(list(market_ids))

    async def close(self, market_id: uuid.UUID) -> bool:
        return False

    async def resolve(self, market_id: uuid.UUID, resolution: Resolution) -> object:
        self.resolved.append((market_id, resolution))
        return None


async def followed_market(db: asyncpg.Pool, live: LiveOdds) -> tuple[Market, ChannelMarket]:
    market_id = await insert_market(db, this_odds="0.4000", that_odds="0.6000")
    row = await market_store.get_market(db, market_id)
    assert row is not None
    live.follow([row])
    channel = ChannelMarket(
        row.source_id,
        row.this_token_id,
        row.that_token_id,
        bids=[("0.45", "100"), ("0.50", "80")],
        asks=[("0.54", "50"), ("0.52", "120")],
    )
    return row, channel


def frame(value: Any) -> str:
    return orjson.dumps(value).decode()


def bid_moved(channel: ChannelMarket, bid: str, ts: int | str, size: str = "5") -> Any:
    """A `price_change` that moves the Yes best bid to `bid` under an ask of 0.52."""
    return price_change(
        channel, price=bid, size=size, side="BUY", best_bid=bid, best_ask="0.52", ts=str(ts)
    )


async def stored_odds(db: asyncpg.Pool, market_id: uuid.UUID) -> tuple[Decimal, Decimal]:
    row = await market_store.get_market(db, market_id)
    assert row is not None
    return row.this_odds, row.that_odds


def paced(db: asyncpg.Pool, listener: Recorder, rule: PacingName, now: list[float]) -> LiveOdds:
    """Odds paced at 250 ms by `rule`, on a clock the test sets (`now[0]`)."""
    return LiveOdds(
        db,
        listener,
        listener.resolve,
        push_interval_s=0.25,
        push_pacing=rule,
        clock=lambda: now[0],
    )


@pytest.fixture
def listener() -> Recorder:
    return Recorder()


@pytest.fixture
def live(db: asyncpg.Pool, listener: Recorder) -> LiveOdds:
    return LiveOdds(db, listener, listener.resolve)


async def test_snapshots_become_the_midpoint_written_then_pushed(
    db: asyncpg.Pool, live: LiveOdds, listener: Recorder
) -> None:
    row, channel = await followed_market(db, live)
    live.on_frame(frame([book(channel, channel.yes_token), book(channel, channel.no_token)]))
    report = await live.flush()
    # Best bid 0.50 and best ask 0.52 whatever the level order: the midpoint 0.51, and 0.49 for No.
    assert await stored_odds(db, row.id) == (Decimal("0.5100"), Decimal("0.4900"))
    assert report.written == 1 and report.changed == 1
    assert [[tick.id for tick in ticks] for ticks in listener.ticks] == [[row.id]]
    assert (listener.ticks[0][0].this_odds, listener.ticks[0][0].that_odds) == (
        Decimal("0.5100"),
        Decimal("0.4900"),
    )


async def test_changes_within_one_flush_are_written_once_with_the_latest_value(
    db: asyncpg.Pool, live: LiveOdds, listener: Recorder
) -> None:
    row, channel = await followed_market(db, live)
    live.on_frame(
        frame(
            [
                book(channel, channel.yes_token, ts="1000"),
                book(channel, channel.no_token, ts="1000"),
            ]
        )
    )
    await live.flush()
    for n, bid in enumerate(("0.505", "0.51", "0.515")):
        live.on_frame(frame(bid_moved(channel, bid, 2000 + n, size="10")))
    report = await live.flush()
    assert report.written == 1
    assert await stored_odds(db, row.id) == (Decimal("0.5175"), Decimal("0.4825"))
    assert len(listener.ticks) == 2
    # Nothing new: no write, no push.
    assert (await live.flush()).written == 0 and len(listener.ticks) == 2


async def test_a_market_is_written_at_most_once_per_interval_with_its_latest_value(
    db: asyncpg.Pool, listener: Recorder
) -> None:
    now = [100.0]
    live = paced(db, listener, "beat", now)
    row, channel = await followed_market(db, live)
    live.on_frame(
        frame([book(channel, channel.yes_token, ts="1"), book(channel, channel.no_token, ts="1")])
    )
    assert (await live.flush()).written == 1  # a quiet market's first change goes out at once

    def bid_to(bid: str, ts: int) -> None:
        live.on_frame(frame(bid_moved(channel, bid, ts)))

    now[0] += 0.1
    bid_to("0.505", 2)
    bid_to("0.51", 3)
    assert (await live.flush()).written == 0  # within the interval: it waits
    assert live.next_due() == pytest.approx(100.25)
    now[0] = 100.25
    assert (await live.flush()).written == 1
    assert await stored_odds(db, row.id) == (Decimal("0.5150"), Decimal("0.4850"))
    assert len(listener.ticks) == 2
    assert live.next_due() is None


async def test_first_change_pacing_writes_a_change_after_the_interval_at_once(
    db: asyncpg.Pool, listener: Recorder
) -> None:
    """ODDS_PUSH_PACING=first-change: no beat to wait for. A change that comes once the
    interval has passed is written in the next flush; a value held within the interval goes out
    when it ends, or, while the market's changes come steadily, when the next one was expected
    (half an interval past it at most), unless a newer change comes first."""
    now = [100.3]
    live = paced(db, listener, "first-change", now)
    row, channel = await followed_market(db, live)
    live.on_frame(
        frame([book(channel, channel.yes_token, ts="1"), book(channel, channel.no_token, ts="1")])
    )
    assert (await live.flush()).written == 1  # written at 100.30
    stamps = iter(range(2, 100))

    def bid_to(bid: str, at: float) -> None:
        now[0] = at
        live.on_frame(frame(bid_moved(channel, bid, next(stamps))))

    bid_to("0.505", 100.45)
    assert (await live.flush()).written == 0  # within the interval: held
    assert live.next_due() == pytest.approx(100.55)  # next change expected by 100.675: no wait
    bid_to("0.51", 100.56)  # after the interval: at once, not on the beat at 100.75
    assert live.next_due() == pytest.approx(100.56)
    assert (await live.flush()).written == 1
    assert await stored_odds(db, row.id) == (Decimal("0.5150"), Decimal("0.4850"))
    bid_to("0.515", 100.70)
    bid_to("0.52", 100.76)  # steady, 60 ms apart: the next is expected by 100.85, past 100.81
    assert (await live.flush()).written == 0
    assert live.next_due() == pytest.approx(100.85)
    now[0] = live.next_due() or 0.0  # none came: the held value goes out
    assert (await live.flush()).written == 1
    assert await stored_odds(db, row.id) == (Decimal("0.5200"), Decimal("0.4800"))
    assert len(listener.ticks) == 3


async def test_busy_markets_fall_on_one_beat_and_are_written_together(
    db: asyncpg.Pool, listener: Recorder
) -> None:
    """Paced writes land on multiples of the interval, so two busy markets first written at
    different times are soon written in the same flush (one statement, one batch of pushes), and
    no market is written twice within an interval."""
    now = [100.0]
    live = paced(db, listener, "beat", now)
    rows = []
    for _ in range(2):
        market_id = await insert_market(db, this_odds="0.4000", that_odds="0.6000")
        row = await market_store.get_market(db, market_id)
        assert row is not None
        rows.append(row)
    live.follow(rows)
    channels = [
        ChannelMarket(
            row.source_id,
            row.this_token_id,
            row.that_token_id,
            bids=[("0.50", "80")],
            asks=[("0.52", "120")],
        )
        for row in rows
    ]
    stamps = iter(range(1, 1000))

    def move(channel: ChannelMarket, bid: str) -> None:
        live.on_frame(frame(bid_moved(channel, bid, next(stamps))))

    writes: dict[int, list[float]] = {0: [], 1: []}

    async def flush_at(when: float) -> list[int]:
        now[0] = when
        before = len(listener.ticks)
        await live.flush()
        written = [
            [row.id for row in rows].index(tick.id)
            for ticks in listener.ticks[before:]
            for tick in ticks
        ]
        for index in written:
            writes[index].append(when)
        return written

    def snapshot(channel: ChannelMarket) -> None:
        live.on_frame(
            frame(
                [book(channel, channel.yes_token, ts="0"), book(channel, channel.no_token, ts="0")]
            )
        )

    # First written 70 ms apart, each as soon as it moved (both quiet).
    snapshot(channels[0])
    assert await flush_at(100.0) == [0]
    snapshot(channels[1])
    assert await flush_at(100.07) == [1]
    move(channels[0], "0.501")
    assert await flush_at(100.25) == [0]
    move(channels[1], "0.501")
    assert await flush_at(100.32) == []  # within its interval
    assert live.next_due() == pytest.approx(100.5)  # the beat, not 100.32 + 0.25
    # Both busy from now on: every beat writes both, together.
    bid = 0.502
    for beat in (100.5, 100.75, 101.0):
        for channel in channels:
            move(channel, f"{bid:.3f}")
        bid += 0.001
        assert sorted(await flush_at(beat)) == [0, 1]
    # A market written after a quiet spell starts its interval then, not on the last beat.
    move(channels[0], f"{bid:.3f}")
    assert await flush_at(101.4) == [0]
    move(channels[0], f"{bid + 0.001:.3f}")
    assert await flush_at(101.5) == []
    assert live.next_due() == pytest.approx(101.75)
    for times in writes.values():
        assert all(b - a >= 0.25 - 1e-9 for a, b in itertools.pairwise(times)), times


async def test_an_update_older_than_the_book_is_ignored(
    db: asyncpg.Pool, live: LiveOdds, listener: Recorder
) -> None:
    row, channel = await followed_market(db, live)
    live.on_frame(
        frame(
            [
                book(channel, channel.yes_token, ts="5000"),
                book(channel, channel.no_token, ts="5000"),
            ]
        )
    )
    await live.flush()
    live.on_frame(
        frame(
            price_change(
                channel,
                price="0.51",
                size="10",
                side="BUY",
                best_bid="0.51",
                best_ask="0.52",
                ts="4000",
            )
        )
    )
    assert (await live.flush()).written == 0
    assert await stored_odds(db, row.id) == (Decimal("0.5100"), Decimal("0.4900"))


async def test_a_wide_spread_shows_the_last_trade(db: asyncpg.Pool, live: LiveOdds) -> None:
    row, channel = await followed_market(db, live)
    channel.bids, channel.asks = [("0.20", "10")], [("0.80", "10")]
    live.on_frame(frame([book(channel, channel.yes_token), book(channel, channel.no_token)]))
    assert (await live.flush()).written == 0  # no trade yet: the stored odds stand
    live.on_frame(frame(last_trade_price(channel, channel.yes_token, price="0.33", size="5")))
    live.on_frame(frame(last_trade_price(channel, channel.no_token, price="0.67", size="5")))
    await live.flush()
    assert await stored_odds(db, row.id) == (Decimal("0.3300"), Decimal("0.6700"))


async def test_a_resolution_reaches_the_listener_once_mapped_by_token(
    db: asyncpg.Pool, live: LiveOdds, listener: Recorder
) -> None:
    row, channel = await followed_market(db, live)
    resolved = {
        "event_type": "market_resolved",
        "id": "1",
        "market": row.source_id,
        "assets_ids": [row.this_token_id, row.that_token_id],
        "winning_asset_id": row.that_token_id,
        "winning_outcome": "No",
        "timestamp": "1786728432337",
        "event_message": None,
        "tags": [],
    }
    live.on_frame(frame(resolved))
    live.on_frame(frame(resolved))  # upstream repeats itself
    assert (await live.flush()).resolved == 1
    assert listener.resolved == [(row.id, Resolution.THAT)]
    live.on_frame(frame(resolved))
    assert (await live.flush()).resolved == 0  # the market is no longer followed


async def test_a_reconnect_waits_for_fresh_snapshots_before_the_market_counts_as_live(
    db: asyncpg.Pool, live: LiveOdds
) -> None:
    row, channel = await followed_market(db, live)
    tokens = {row.this_token_id, row.that_token_id}
    assert live.live_markets(tokens) == set()
    live.on_frame(frame([book(channel, channel.yes_token), book(channel, channel.no_token)]))
    assert live.live_markets(tokens) == {row.id}
    assert live.live_markets({row.this_token_id}) == set()  # one token's connection is down
    assert (await live.flush()).written == 1
    live.connected(tokens)
    assert live.live_markets(tokens) == set()
    # A delta before the new snapshot means nothing: the book starts over from the snapshot.
    live.on_frame(
        frame(
            price_change(
                channel, price="0.30", size="1", side="BUY", best_bid="0.30", best_ask="0.52"
            )
        )
    )
    assert (await live.flush()).written == 0
    assert live.live_markets(tokens) == set()
    assert await stored_odds(db, row.id) == (Decimal("0.5100"), Decimal("0.4900"))


BAD_FRAMES = {
    "malformed_json": '{"event_type": "book", ',
    "unknown_event": '{"event_type": "order_update", "market": "0x1"}',
    "legacy_price_change": (
        '{"event_type": "price_change", "market": "0x1", "asset_id": "%(yes)s", "timestamp": "9000",'
        ' "hash": "h", "changes": [{"price": "0.99", "side": "BUY", "size": "5"}]}'
    ),
    "bad_price": (
        '{"event_type": "last_trade_price", "market": "0x1", "asset_id": "%(yes)s", "price": "1.5",'
        ' "size": "1", "side": "BUY", "timestamp": "9000", "fee_rate_bps": "0"}'
    ),
    "unknown_text": "INTERNAL SERVER ERROR",
    "control_text": "INVALID OPERATION",
    "one_empty_side": (
        '{"event_type": "book", "market": "0x1", "asset_id": "%(yes)s", "timestamp": "9000",'
        ' "hash": "h", "bids": [], "asks": [{"price": "0.99", "size": "5"}]}'
    ),
    "unknown_asset": (
        '{"event_type": "last_trade_price", "market": "0x1", "asset_id": "123", "price": "0.99",'
        ' "size": "1", "side": "BUY", "timestamp": "9000", "fee_rate_bps": "0"}'
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_FRAMES))
async def test_bad_upstream_input_moves_nothing_and_is_logged_once_a_minute(
    db: asyncpg.Pool,
    live: LiveOdds,
    listener: Recorder,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    row, channel = await followed_market(db, live)
    live.on_frame(frame([book(channel, channel.yes_token), book(channel, channel.no_token)]))
    await live.flush()
    before = await stored_odds(db, row.id)
    ticks = len(listener.ticks)
    text = BAD_FRAMES[kind] % {"yes": row.this_token_id}
    with caplog.at_level(logging.WARNING, logger="thisthat.feed"):
        for _ in range(50):
            live.on_frame(text)
    await live.flush()
    assert await stored_odds(db, row.id) == before
    assert len(listener.ticks) == ticks and listener.resolved == []
    warnings = [r for r in caplog.records if r.getMessage() == "market channel: skipped bad input"]
    if kind in ("one_empty_side", "unknown_asset"):
        # Expected shapes, not faults: an empty side is a book with no midpoint (no last trade
        # yet, so nothing shown changes); another token is simply not ours.
        assert warnings == []
    else:
        assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
        assert sum(live.bad_input.values()) == 50
