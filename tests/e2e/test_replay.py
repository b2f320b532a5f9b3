"""FEED=replay plays the sample timeline into the real game: markets, ticks, closes, every resolution."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg

from feeds.replay import SAMPLE_TIMELINE
from tests.conftest import ServerFactory
from tests.feed_fixtures import eventually
from tests.players import Player


async def test_sample_timeline_drives_a_full_game_loop_offline(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(
        feed=f"replay:{SAMPLE_TIMELINE}", feed_replay_speed=30, feed_odds_interval_s=0.5
    )
    player = await Player(base, http).signup()
    await player.connect()

    async def listed() -> bool:
        return len((await player.ok("markets:list", {"status": "all"}))["markets"]) == 8

    await eventually(listed)
    markets = (await player.ok("markets:list", {"status": "all"}))["markets"]
    await player.ok("market:subscribe", {"marketIds": [m["id"] for m in markets]})
    tick = await player.next("odds", wait_s=10)
    assert tick["marketId"] in {m["id"] for m in markets}

    async def finished() -> bool:
        statuses = Counter(
            m["status"] for m in (await player.ok("markets:list", {"status": "all"}))["markets"]
        )
        return statuses == Counter({"resolved": 6, "cancelled": 2})

    await eventually(finished, attempts=150)
    final = {
        m["sourceId"][:4]: m
        for m in (await player.ok("markets:list", {"status": "all"}))["markets"]
    }
    assert final["0x02"]["resolvedSide"] == "this"
    assert final["0x03"]["resolvedSide"] == "that"
    assert final["0x04"]["resolvedSide"] == "split"
    assert final["0x05"]["status"] == "cancelled" and final["0x05"]["resolvedSide"] is None
    assert final["0x07"]["status"] == "cancelled"
    assert final["0x06"]["resolvedSide"] == "that"  # closed first, then resolved
    assert final["0x01"]["resolvedSide"] == "this" and final["0x0f"]["resolvedSide"] == "that"
    # The Newsom market's odds come from market channel frames in the timeline (book snapshots
    # and price changes): each shown price is a midpoint of a 0.001-tick book, x.xxx5.
    newsom = final["0x0f"]["id"]
    streamed = []
    while not player.received["odds"].empty():
        tick = player.received["odds"].get_nowait()
        if tick["marketId"] == newsom:
            streamed.append(tick["thisOdds"])
    assert 0.2595 in streamed and 0.0575 in streamed, streamed
    updates = []
    while not player.received["market:update"].empty():
        updates.append(player.received["market:update"].get_nowait()["market"]["status"])
    assert {"closed", "resolved", "cancelled"} <= set(updates)
    await player.close()


def short_timeline(path: Path, *, resolve_at: float | None) -> tuple[Path, str]:
    """One sample market, one odds reading at the start, and optionally its resolution."""
    first = json.loads(SAMPLE_TIMELINE.read_text().splitlines()[0])
    source_id = first["gamma"]["conditionId"]
    lines: list[dict[str, object]] = [
        first,
        {"at": 0.1, "type": "odds", "sourceId": source_id, "thisOdds": "0.41", "thatOdds": "0.59"},
    ]
    if resolve_at is not None:
        lines.append(
            {"at": resolve_at, "type": "resolve", "sourceId": source_id, "resolution": "this"}
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path, source_id


async def test_a_replayed_market_the_replay_no_longer_moves_turns_stale(
    start_server: ServerFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    timeline, _ = short_timeline(tmp_path / "still.jsonl", resolve_at=None)
    base, _ = await start_server(
        feed=f"replay:{timeline}", feed_odds_interval_s=0.2, odds_max_age_s=1.5
    )
    player = await Player(base, http).signup()
    await player.connect()

    async def listed() -> bool:
        return len((await player.ok("markets:list", {}))["markets"]) == 1

    await eventually(listed)
    market = (await player.ok("markets:list", {}))["markets"][0]
    bet = {"marketId": market["id"], "side": "this", "amount": 10, "clientBetId": "fresh"}
    await player.ok("bet:place", bet)
    await asyncio.sleep(2.0)  # nothing moves it: no reading is fresh any more
    error = await player.error("bet:place", {**bet, "clientBetId": "stale"})
    assert error["code"] == "ODDS_STALE"
    await player.close()


async def test_a_looped_replay_keeps_markets_open_across_passes(
    start_server: ServerFactory, db: asyncpg.Pool
) -> None:
    # At 40x a pass of the sample starts every 2.1 s and plays for 3 s.
    await start_server(
        feed=f"replay:{SAMPLE_TIMELINE}", feed_replay_speed=40, feed_replay_loop=True
    )

    async def first_pass_listed() -> bool:
        return bool(await db.fetchval("SELECT count(*) = 8 FROM markets WHERE status = 'open'"))

    await eventually(first_pass_listed)
    fewest_open = 8
    passes: set[str] = set()
    deadline = asyncio.get_running_loop().time() + 9
    while asyncio.get_running_loop().time() < deadline:
        row = await db.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'open') AS open,"
            " array_agg(DISTINCT split_part(source_id, '~', 2)) AS passes FROM markets"
        )
        fewest_open = min(fewest_open, row["open"])
        passes.update(row["passes"])
        await asyncio.sleep(0.05)

    assert {"", "1", "2", "3"} <= passes, passes
    # Events play in order, and each pass's eight markets open before the last pass's first close.
    assert fewest_open >= 8
    settled = await db.fetchval("SELECT count(*) FROM markets WHERE status <> 'open'")
    assert settled >= 16  # the first two passes ended every market while others stayed open
