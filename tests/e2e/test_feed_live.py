"""The feed end to end: the fake Polymarket moves, the server ingests, sockets see it live."""

from __future__ import annotations

from decimal import Decimal

import aiohttp
import asyncpg

from tests.conftest import ServerFactory
from tests.fake_polymarket import FakePolymarket
from tests.feed_fixtures import eventually, feed_settings, open_markets, wait_for_markets
from tests.players import Player


async def test_markets_flow_in_and_odds_tick_to_subscribers_only(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    fake_polymarket: FakePolymarket,
    db: asyncpg.Pool,
) -> None:
    base, _ = await start_server(**feed_settings(fake_polymarket))
    watcher = await Player(base, http).signup()
    await watcher.connect()
    bystander = await Player(base, http).signup()
    await bystander.connect()

    async def listed() -> bool:
        return len(await open_markets(watcher)) == 6  # 5 synthetic + the recorded open one

    await eventually(listed)
    markets = await open_markets(watcher)
    assert all(m["source"] == "polymarket" and m["status"] == "open" for m in markets)
    target = markets[0]
    assert Decimal(str(target["thisOdds"])) + Decimal(str(target["thatOdds"])) == 1

    snapshot = await watcher.ok("market:subscribe", {"marketIds": [target["id"]]})
    assert snapshot["markets"][0]["id"] == target["id"]
    fake_polymarket.set_price(target["sourceId"], "0.4242")
    tick = await watcher.next("odds", wait_s=5)
    assert tick["marketId"] == target["id"]
    assert (tick["thisOdds"], tick["thatOdds"]) == (0.4242, 0.5758)
    assert tick["at"].endswith("Z")
    assert bystander.received["odds"].empty()
    got = await watcher.ok("market:get", {"marketId": target["id"]})
    assert got["market"]["thisOdds"] == 0.4242
    # The move is in the odds history: one minute candle, closed at the new odds.
    closes = await db.fetch(
        "SELECT close FROM odds_minutes WHERE market_id = $1::uuid", target["id"]
    )
    assert [row["close"] for row in closes] == [Decimal("0.4242")]
    sync = await watcher.ok("sync")
    assert [m["id"] for m in sync["markets"]] == [target["id"]]

    fake_polymarket.close(target["sourceId"])
    update = await watcher.next("market:update", wait_s=5)
    assert update["market"]["id"] == target["id"] and update["market"]["status"] == "closed"

    await watcher.ok("market:unsubscribe", {"marketIds": [target["id"]]})
    other = markets[1]
    await watcher.ok("market:subscribe", {"marketIds": [other["id"]]})
    fake_polymarket.set_price(other["sourceId"], "0.1111")
    assert (await watcher.next("odds", wait_s=5))["marketId"] == other["id"]
    await watcher.close()
    await bystander.close()


async def test_markets_list_pages_are_stable_and_bad_ids_refused(
    start_server: ServerFactory, http: aiohttp.ClientSession, fake_polymarket: FakePolymarket
) -> None:
    base, _ = await start_server(**feed_settings(fake_polymarket))
    player = await Player(base, http).signup()
    await player.connect()
    await wait_for_markets(player, 6)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await player.ok(
            "markets:list", {"limit": 4, **({"cursor": cursor} if cursor else {})}
        )
        seen.extend(m["id"] for m in page["markets"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [m["id"] for m in await open_markets(player)]
    assert len(set(seen)) == 6
    error = await player.error("market:get", {"marketId": "00000000-0000-4000-8000-000000000000"})
    assert error["code"] == "MARKET_NOT_FOUND"
    error = await player.error(
        "market:subscribe", {"marketIds": [seen[0], "00000000-0000-4000-8000-000000000000"]}
    )
    assert error["code"] == "MARKET_NOT_FOUND"
    error = await player.error("market:subscribe", {"marketIds": []})
    assert error["code"] == "VALIDATION_ERROR"
    error = await player.error("markets:list", {"status": "everything"})
    assert error["code"] == "VALIDATION_ERROR" and error["details"]["field"] == "status"
    await player.close()


async def test_upstream_faults_degrade_and_recover(
    start_server: ServerFactory, http: aiohttp.ClientSession, fake_polymarket: FakePolymarket
) -> None:
    base, app = await start_server(**feed_settings(fake_polymarket))
    player = await Player(base, http).signup()
    await player.connect()
    await wait_for_markets(player, 6)
    target = (await open_markets(player))[0]
    await player.ok("market:subscribe", {"marketIds": [target["id"]]})

    # A burst of every kind of failure: the server keeps serving the markets it has.
    fake_polymarket.fail_next(6, 500)
    fake_polymarket.rate_limit_next(3, retry_after=0.2)
    fake_polymarket.truncate_next(6)
    fake_polymarket.hang_next(2, 3.0)
    assert len(await open_markets(player)) == 6

    async def failures_reported() -> bool:
        async with http.get(base + "/readyz") as response:
            body = await response.json()
        jobs = body["checks"]["feed"]["jobs"]
        return any(job.get("consecutiveFailures", 0) > 0 for job in jobs.values())

    await eventually(failures_reported)
    fake_polymarket.clear_faults()
    fake_polymarket.set_price(target["sourceId"], "0.3333")
    tick = await player.next("odds", wait_s=10)
    assert tick["thisOdds"] == 0.3333

    async def recovered() -> bool:
        async with http.get(base + "/readyz") as response:
            body = await response.json()
        jobs = body["checks"]["feed"]["jobs"]
        return response.status == 200 and all(
            job["consecutiveFailures"] == 0 for job in jobs.values()
        )

    await eventually(recovered)
    await player.close()
