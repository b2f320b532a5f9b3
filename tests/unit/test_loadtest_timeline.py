"""The load-test timeline keeps markets open with fresh odds across passes, and the committed file
is what its generator writes; a bet refused MARKET_CLOSED because it raced its market's close is
told apart from one sent to a market the client never heard close."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from feeds.replay import (
    CloseEvent,
    MarketEvent,
    OddsEvent,
    RemoveEvent,
    ReplayEvent,
    ResolveEvent,
    load_timeline,
    pass_period,
    play,
)
from loadtest.plan import LoadPlan
from loadtest.player_socket import PendingCall
from loadtest.stats import EXPECTED_REFUSALS, MARKET_CLOSED_RACED
from loadtest.timeline import LENGTH_S, LOADTEST_TIMELINE, MARKETS, timeline_text
from loadtest.worker import LoadWorker
from tests.unit.test_replay import FakeClock


def test_the_committed_load_test_timeline_is_the_generators() -> None:
    assert LOADTEST_TIMELINE.read_bytes() == timeline_text(), (
        "run `python -m loadtest.timeline` to rewrite feeds/timelines/loadtest.jsonl"
    )


async def test_looped_load_test_timeline_keeps_every_market_open_with_fresh_odds() -> None:
    events = load_timeline(LOADTEST_TIMELINE)
    assert pass_period(events) == LENGTH_S - 1
    clock = FakeClock()
    start = clock.now
    open_markets: set[str] = set()
    last_odds: dict[str, float] = {}
    fewest_open = MARKETS
    oldest_odds_s = 0.0
    done = asyncio.Event()

    async def sink(event: ReplayEvent) -> None:
        nonlocal fewest_open, oldest_odds_s
        now = clock.now - start
        if isinstance(event, MarketEvent):
            open_markets.add(event.source_id)
            last_odds[event.source_id] = now
        elif isinstance(event, OddsEvent):
            last_odds[event.source_id] = now
        elif isinstance(event, CloseEvent | ResolveEvent | RemoveEvent):
            open_markets.discard(event.source_id)
        if now >= 1.0:
            fewest_open = min(fewest_open, len(open_markets))
            oldest_odds_s = max(oldest_odds_s, *(now - last_odds[m] for m in open_markets))
        if now > 2.5 * LENGTH_S:
            done.set()

    replay = asyncio.create_task(
        play(events, 1.0, sink, loop_forever=True, clock=clock.monotonic, sleep=clock.sleep)
    )
    await asyncio.wait_for(done.wait(), timeout=30)
    replay.cancel()
    await asyncio.gather(replay, return_exceptions=True)

    assert fewest_open >= MARKETS
    # Bets are refused ODDS_STALE past ODDS_MAX_AGE_S (120 s by default); a market's first move
    # comes within 10 s of its opening, the others 10 s apart.
    assert oldest_odds_s < 20


def test_market_closed_on_a_market_heard_closing_counts_as_raced() -> None:
    plan = LoadPlan(base_url="http://127.0.0.1:9", players=[{"id": "1"}])
    worker = LoadWorker(plan, cast(Any, None), cast(Any, None))
    worker.measure_from = 0.0
    refused = {"ok": False, "error": {"code": "MARKET_CLOSED"}}
    for market in ("heard", "heard", "unheard"):
        call = PendingCall("bet", 1.0, worker.on_answer, market_id=market)
        worker.on_answer(call, refused)
    worker.on_push("market:update", {"market": {"id": "heard", "status": "closed"}})

    errors = worker.final()["book"]["errors"]

    assert errors == {MARKET_CLOSED_RACED: 2, "MARKET_CLOSED": 1}
    assert MARKET_CLOSED_RACED in EXPECTED_REFUSALS
    assert "MARKET_CLOSED" not in EXPECTED_REFUSALS
