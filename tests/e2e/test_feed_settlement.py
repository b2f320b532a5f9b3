"""The whole loop through the feed: bets on markets the fake Polymarket resolves, stale odds when it dies."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as redis

from storage import audit
from tests.conftest import ServerFactory
from tests.fake_polymarket import FakePolymarket
from tests.feed_fixtures import eventually, feed_settings, open_markets, wait_for_markets
from tests.players import Player


async def test_upstream_resolutions_settle_bets_of_every_kind(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    fake_polymarket: FakePolymarket,
    db: asyncpg.Pool,
    redis_client: redis.Redis,
) -> None:
    base, _ = await start_server(**feed_settings(fake_polymarket))
    player = await Player(base, http).signup()
    await player.connect()
    await wait_for_markets(player, 6)
    markets = (await open_markets(player))[:5]
    await player.ok("market:subscribe", {"marketIds": [m["id"] for m in markets]})
    placed = []
    for index, market in enumerate(markets):
        answer = await player.ok(
            "bet:place",
            {
                "marketId": market["id"],
                "side": "this",
                "amount": 100,
                "clientBetId": f"feed-{index}",
                "expectedOdds": market["thisOdds"],
                "maxSlippage": 0.01,
            },
        )
        placed.append(answer["bet"])
    assert (await player.ok("wallet:get"))["balance"] == 500

    kinds = ["this", "that", "split", "cancelled"]
    for market, kind in zip(markets, kinds, strict=False):
        fake_polymarket.resolve(market["sourceId"], kind)  # type: ignore[arg-type]
    fake_polymarket.remove(markets[4]["sourceId"])  # gone upstream: confirmed, then void

    settled: dict[str, dict[str, Any]] = {}
    for _ in range(5):
        push = await player.next("bet:settled", wait_s=15)
        settled[push["bet"]["marketId"]] = push["bet"]
    by_market = [settled[m["id"]] for m in markets]
    potential = [Decimal(str(b["potentialPayout"])) for b in placed]
    assert [b["status"] for b in by_market] == ["won", "lost", "split", "refunded", "refunded"]
    assert Decimal(str(by_market[0]["payout"])) == potential[0]
    assert by_market[1]["payout"] == 0
    assert Decimal(str(by_market[2]["payout"])) == (potential[2] / 2).quantize(
        Decimal("0.01"), rounding="ROUND_DOWN"
    )
    assert by_market[3]["payout"] == by_market[4]["payout"] == 100

    wallet = await player.ok("wallet:get")
    expected = 500 + sum(Decimal(str(b["payout"])) for b in by_market)
    assert Decimal(str(wallet["balance"])) == expected and wallet["openStake"] == 0
    statuses = {}
    for market in markets:
        statuses[market["id"]] = (await player.ok("market:get", {"marketId": market["id"]}))[
            "market"
        ]
    assert [statuses[m["id"]]["resolvedSide"] for m in markets] == [
        "this",
        "that",
        "split",
        None,
        None,
    ]
    assert [statuses[m["id"]]["status"] for m in markets][3:] == ["cancelled", "cancelled"]

    board = await player.ok("leaderboard:get", {"period": "all"})
    assert Decimal(str(board["me"]["pnl"])) == expected - 1000
    async with db.acquire() as connection:
        assert (
            await audit.check_all(connection, redis_client, Decimal("1000000"), datetime.now(UTC))
            == []
        )
    await player.close()


async def test_a_dead_feed_ages_the_odds_until_bets_get_odds_stale(
    start_server: ServerFactory, http: aiohttp.ClientSession, fake_polymarket: FakePolymarket
) -> None:
    base, _ = await start_server(**feed_settings(fake_polymarket, odds_max_age_s=2))
    player = await Player(base, http).signup()
    await player.connect()
    await wait_for_markets(player, 6)
    market = (await open_markets(player))[0]
    bet = {"marketId": market["id"], "side": "that", "amount": 10}
    await player.ok("bet:place", {**bet, "clientBetId": "alive"})

    fake_polymarket.fail_next(100_000, 503)  # upstream is down for good

    attempts = iter(range(1000))

    async def stale() -> bool:
        answer = await player.call(
            "bet:place", {**bet, "clientBetId": f"after-death-{next(attempts)}"}
        )
        return not answer["ok"] and answer["error"]["code"] == "ODDS_STALE"

    await eventually(stale)
    async with http.get(base + "/readyz") as response:
        body = await response.json()
    assert response.status == 200  # stored markets are still served
    assert body["checks"]["feed"]["staleOdds"] == 6
    assert len(await open_markets(player)) == 6
    landed = await player.ok("bets:list", {"status": "open"})
    assert (await player.ok("wallet:get"))["balance"] == 1000 - 10 * len(landed["bets"])
    await player.close()
