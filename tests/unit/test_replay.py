"""The replay source: timeline reading and timed playback."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest

from feeds.market_channel import BookSnapshot, MarketResolved, parse_market_frame
from feeds.parsing import ParseStats, parse_gamma_market
from feeds.replay import (
    SAMPLE_TIMELINE,
    CloseEvent,
    FrameEvent,
    MarketEvent,
    OddsEvent,
    RemoveEvent,
    ReplayEvent,
    ResolveEvent,
    load_timeline,
    pass_of,
    pass_period,
    play,
)
from game.markets import Resolution

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "polymarket"


class FakeClock:
    """Time that passes only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def test_sample_timeline_loads_cleanly_with_every_kind_of_ending() -> None:
    stats = ParseStats()
    events = load_timeline(SAMPLE_TIMELINE, stats)

    assert stats.skipped == 0
    assert stats.parsed == len(events)
    markets = [e for e in events if isinstance(e, MarketEvent)]
    assert len(markets) >= 3
    assert len({e.source_id for e in markets}) == len(markets)
    resolutions = {e.resolution for e in events if isinstance(e, ResolveEvent)}
    assert resolutions == set(Resolution)
    assert any(isinstance(e, CloseEvent) for e in events)
    assert any(isinstance(e, OddsEvent) for e in events)
    frames = [e for e in events if isinstance(e, FrameEvent)]
    assert frames and all(not parse_market_frame(e.text).skipped for e in frames)
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_sample_timeline_markets_are_open_far_in_the_future_and_endings_come_within_two_minutes() -> (
    None
):
    events = load_timeline(SAMPLE_TIMELINE)
    known = {e.source_id for e in events if isinstance(e, MarketEvent)}

    for event in events:
        if isinstance(event, MarketEvent):
            assert event.listing.accepting_orders
            assert event.listing.ends_at is not None
            assert event.listing.ends_at.year >= 2030
        elif isinstance(event, FrameEvent):
            markets = {
                e.market for e in parse_market_frame(event.text).events if hasattr(e, "market")
            }
            assert markets <= known  # frames too name only the timeline's markets
        else:
            assert event.source_id in known  # nothing refers to an unknown market
    endings = [e for e in events if isinstance(e, ResolveEvent | CloseEvent | RemoveEvent)]
    assert max(e.at for e in endings) <= 120


def test_every_sample_market_reaches_an_end_and_a_close_is_always_followed_by_one() -> None:
    events = load_timeline(SAMPLE_TIMELINE)
    markets = {e.source_id for e in events if isinstance(e, MarketEvent)}
    ended = {e.source_id for e in events if isinstance(e, ResolveEvent | RemoveEvent)}
    closed = {e.source_id for e in events if isinstance(e, CloseEvent)}

    assert ended == markets
    assert closed <= ended


def test_bad_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    gamma = json.loads((FIXTURES / "gamma_market_open.json").read_text())
    source_id = gamma["conditionId"]
    lines = [
        json.dumps({"at": 0, "type": "market", "gamma": gamma}),
        "{not json",
        json.dumps(
            {"at": 1, "type": "odds", "sourceId": source_id, "thisOdds": "0.4", "thatOdds": 0.6}
        ),
        json.dumps({"at": 2, "type": "odds", "sourceId": source_id, "thisOdds": "1.5"}),
        json.dumps({"at": 3, "type": "resolve", "sourceId": source_id, "resolution": "maybe"}),
        json.dumps({"at": -1, "type": "close", "sourceId": source_id}),
        json.dumps({"at": 4, "type": "teleport", "sourceId": source_id}),
        json.dumps({"at": 5, "type": "market", "gamma": {"conditionId": "0x1"}}),
        json.dumps([1, 2, 3]),
        "",
        json.dumps({"at": 6, "type": "odds", "sourceId": source_id, "thatOdds": "0.25"}),
        json.dumps({"at": 7, "type": "resolve", "sourceId": source_id, "resolution": "split"}),
    ]
    path = tmp_path / "timeline.jsonl"
    path.write_text("\n".join(lines) + "\n")
    stats = ParseStats()

    events = load_timeline(path, stats)

    assert (stats.parsed, stats.skipped) == (4, 7)
    assert [type(e) for e in events] == [MarketEvent, OddsEvent, OddsEvent, ResolveEvent]
    assert events[1] == OddsEvent(1.0, source_id, Decimal("0.4"), Decimal("0.6"))
    assert events[2] == OddsEvent(6.0, source_id, Decimal("0.75"), Decimal("0.25"))
    assert events[3] == ResolveEvent(7.0, source_id, Resolution.SPLIT)


async def test_play_delivers_every_event_in_order_at_its_scaled_time_and_stops() -> None:
    events = load_timeline(SAMPLE_TIMELINE)
    clock = FakeClock()
    start = clock.now
    delivered: list[tuple[float, ReplayEvent]] = []

    async def sink(event: ReplayEvent) -> None:
        delivered.append((clock.now - start, event))

    count = await play(events, 10.0, sink, clock=clock.monotonic, sleep=clock.sleep)

    assert count == len(events)
    assert [event for _, event in delivered] == events
    for elapsed, event in delivered:
        assert elapsed == pytest.approx(event.at / 10.0)


async def test_play_at_high_speed_with_the_real_clock_finishes() -> None:
    events = load_timeline(SAMPLE_TIMELINE)
    seen: list[ReplayEvent] = []

    async def sink(event: ReplayEvent) -> None:
        seen.append(event)

    await play(events, 100_000.0, sink)

    assert seen == events


async def test_looping_play_renames_markets_on_later_passes() -> None:
    gamma = json.loads((FIXTURES / "gamma_market_open.json").read_text())
    source_id = gamma["conditionId"]
    events: list[ReplayEvent] = [
        CloseEvent(0.0, source_id),
        ResolveEvent(2.0, source_id, Resolution.THIS),
    ]
    clock = FakeClock()
    seen: list[ReplayEvent] = []
    five_seen = asyncio.Event()

    async def sink(event: ReplayEvent) -> None:
        seen.append(event)
        if len(seen) >= 5:
            five_seen.set()

    replay = asyncio.create_task(
        play(events, 1.0, sink, loop_forever=True, clock=clock.monotonic, sleep=clock.sleep)
    )
    await asyncio.wait_for(five_seen.wait(), timeout=10)
    replay.cancel()
    with pytest.raises(asyncio.CancelledError):
        await replay

    seen = seen[:5]
    assert [e.source_id for e in seen] == [
        source_id,
        source_id,
        f"{source_id}~1",
        f"{source_id}~1",
        f"{source_id}~2",
    ]
    assert [e.at for e in seen] == [0.0, 2.0, 3.0, 5.0, 6.0]


async def test_play_refuses_a_non_positive_speed() -> None:
    async def sink(event: ReplayEvent) -> None:
        raise AssertionError("nothing should play")

    with pytest.raises(ValueError, match="speed"):
        await play([CloseEvent(0.0, "0x1")], 0, sink)
    assert await play([], 1.0, sink) == 0


async def test_a_later_pass_renames_the_markets_and_tokens_a_frame_names() -> None:
    text = (
        '[{"event_type":"book","market":"0xab","asset_id":"11","timestamp":"1","hash":"h",'
        '"bids":[],"asks":[]},{"event_type":"market_resolved","market":"0xab","id":"9",'
        '"assets_ids":["11","12"],"winning_asset_id":"12","timestamp":"2"}]'
    )
    clock = FakeClock()
    seen: list[ReplayEvent] = []
    two_seen = asyncio.Event()

    async def sink(event: ReplayEvent) -> None:
        seen.append(event)
        if len(seen) >= 2:
            two_seen.set()

    replay = asyncio.create_task(
        play(
            [FrameEvent(1.0, text)],
            1.0,
            sink,
            loop_forever=True,
            clock=clock.monotonic,
            sleep=clock.sleep,
        )
    )
    await asyncio.wait_for(two_seen.wait(), timeout=10)
    replay.cancel()
    with pytest.raises(asyncio.CancelledError):
        await replay
    first, event = seen[:2]
    assert isinstance(first, FrameEvent) and first.text == text
    assert isinstance(event, FrameEvent)
    book, resolved = parse_market_frame(event.text).events
    assert isinstance(book, BookSnapshot) and isinstance(resolved, MarketResolved)
    assert (book.market, book.asset_id) == ("0xab~1", "11~1")
    assert resolved.token_ids == ("11~1", "12~1") and resolved.winning_asset_id == "12~1"


async def test_a_looped_timeline_always_has_an_open_market_across_passes() -> None:
    events = load_timeline(SAMPLE_TIMELINE)
    period = pass_period(events)
    # The next pass starts a second before the sample's first market closes (at 85 s).
    assert period == 84.0
    clock = FakeClock()
    start = clock.now
    open_markets: set[str] = set()
    fewest_open: list[tuple[float, int]] = []
    passes_seen: set[int] = set()
    four_passes = asyncio.Event()

    async def sink(event: ReplayEvent) -> None:
        if isinstance(event, MarketEvent):
            open_markets.add(event.source_id)
            passes_seen.add(pass_of(event.source_id))
        elif isinstance(event, CloseEvent | ResolveEvent | RemoveEvent):
            open_markets.discard(event.source_id)
        if clock.now - start >= 2.0:  # every market of the first pass is listed by then
            fewest_open.append((clock.now - start, len(open_markets)))
        if clock.now - start > 3 * period + 130:
            four_passes.set()

    replay = asyncio.create_task(
        play(events, 1.0, sink, loop_forever=True, clock=clock.monotonic, sleep=clock.sleep)
    )
    await asyncio.wait_for(four_passes.wait(), timeout=10)
    replay.cancel()
    with pytest.raises(asyncio.CancelledError):
        await replay

    assert passes_seen == {0, 1, 2, 3, 4}
    at, fewest = min(fewest_open, key=lambda seen: seen[1])
    # The next pass's markets are all open before the last pass's first one closes.
    per_pass = sum(isinstance(event, MarketEvent) for event in events)
    assert fewest >= per_pass, f"only {fewest} markets open at {at:.1f}s"


def test_a_timeline_that_ends_none_of_its_markets_loops_after_its_last_event() -> None:
    gamma = json.loads((FIXTURES / "gamma_market_open.json").read_text())
    source_id = gamma["conditionId"]
    listing = parse_gamma_market(gamma)
    assert listing is not None
    events: list[ReplayEvent] = [
        MarketEvent(0.0, listing),
        OddsEvent(4.0, source_id, Decimal("0.4"), Decimal("0.6")),
    ]
    assert pass_period(events) == 5.0
    assert pass_period([*events, CloseEvent(3.0, source_id)]) == 2.0
