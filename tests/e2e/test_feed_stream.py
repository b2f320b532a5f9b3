"""The market channel end to end: a fake channel (tests/fake_market_channel.py) and the fake REST
API feed a real server; sockets on another node see the odds within milliseconds, a resolution
from the channel settles once beside the REST check, and a stream outage falls back to polling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from server.mirror.runner import MIRROR
from tests.conftest import ServerFactory
from tests.fake_market_channel import (
    ChannelMarket,
    FakeMarketChannel,
    market_resolved,
    new_market,
    price_change,
)
from tests.fake_polymarket import FakeMarket, FakePolymarket
from tests.feed_fixtures import eventually, feed_settings, open_markets
from tests.players import Player


@pytest.fixture
async def channel(fake_polymarket: FakePolymarket) -> AsyncIterator[FakeMarketChannel]:
    """The channel knows every open market of the REST fake, with a book around its price."""
    fake = FakeMarketChannel()
    for market in fake_polymarket.markets.values():
        if not market.closed:
            add_book(fake, market)
    async with fake.serve():
        yield fake


def add_book(channel: FakeMarketChannel, market: FakeMarket) -> ChannelMarket:
    # Centred on the listed price: the first snapshots show what the listing stored, so the
    # first `odds` push a test sees is the one its own frames cause.
    price = market.this_price
    return channel.add_market(
        market.condition_id,
        market.this_token,
        market.that_token,
        bids=[(str(price - Decimal("0.01")), "100")],
        asks=[(str(price + Decimal("0.01")), "100")],
    )


def stream_settings(
    fake: FakePolymarket, channel: FakeMarketChannel, **overrides: Any
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "feed_stream": True,
        "polymarket_ws_url": channel.url,
        "odds_push_min_interval_ms": 50,
        # The REST odds poll would move odds too; far apart, so what moves them here is the stream.
        "feed_odds_interval_s": 600,
    }
    return feed_settings(fake, **(settings | overrides))


async def feed_node_and_player(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    fake: FakePolymarket,
    channel: FakeMarketChannel,
    **overrides: Any,
) -> tuple[web.Application, Player]:
    """A node that runs the feed and stream, and a player on a second node that does not."""
    _, leader = await start_server(**stream_settings(fake, channel, **overrides))
    follower_url, _ = await start_server(feed="off")
    player = await Player(follower_url, http).signup()
    await player.connect()
    await player.next("session")

    async def streaming() -> bool:
        odds_stream = leader[MIRROR].stream
        live = odds_stream is not None and len(odds_stream.live_markets()) == 6
        return live and len(await open_markets(player)) == 6

    await eventually(streaming)
    return leader, player


async def test_a_price_change_reaches_a_socket_on_the_other_node_as_committed_odds(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    fake_polymarket: FakePolymarket,
    channel: FakeMarketChannel,
    db: asyncpg.Pool,
) -> None:
    _, player = await feed_node_and_player(start_server, http, fake_polymarket, channel)
    target = (await open_markets(player))[0]
    await player.ok("market:subscribe", {"marketIds": [target["id"]]})
    market = channel.markets[target["sourceId"]]
    ask = Decimal(market.asks[0][0])
    bid = str(ask - Decimal("0.005"))
    await channel.publish(
        price_change(market, price=bid, size="50", side="BUY", best_bid=bid, best_ask=str(ask))
    )
    tick = await player.next("odds", wait_s=5)
    expected = (Decimal(bid) + ask) / 2
    assert tick["marketId"] == target["id"]
    assert Decimal(str(tick["thisOdds"])) == expected
    # What was pushed is what a bet is checked against.
    stored = await db.fetchval("SELECT this_odds FROM markets WHERE id = $1::uuid", target["id"])
    assert stored == expected
    placed = await player.ok(
        "bet:place",
        {
            "marketId": target["id"],
            "side": "this",
            "amount": 10,
            "clientBetId": "after-tick",
            "expectedOdds": str(expected),
            "maxSlippage": "0",
        },
    )
    assert Decimal(str(placed["bet"]["odds"])) == expected


async def test_pushes_are_coalesced_and_the_latest_value_wins(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    fake_polymarket: FakePolymarket,
    channel: FakeMarketChannel,
) -> None:
    _, player = await feed_node_and_player(
        start_server, http, fake_polymarket, channel, odds_push_min_interval_ms=400
    )
    target = (await open_markets(player))[0]
    await player.ok("market:subscribe", {"marketIds": [target["id"]]})
    market = channel.markets[target["sourceId"]]
    ask = Decimal(market.asks[0][0])
    bids = [str(ask - Decimal("0.01") + Decimal(n) / 1000) for n in range(1, 10)]
    for bid in bids:
        await channel.publish(
            price_change(market, price=bid, size="50", side="BUY", best_bid=bid, best_ask=str(ask))
        )
    ticks = [await player.next("odds", wait_s=5)]
    while True:
        try:
            ticks.append(await player.next("odds", wait_s=1.0))
        except TimeoutError:
            break
    # Nine frames within one interval: at most a first push and one with the latest value.
    assert len(ticks) <= 3, ticks
    assert Decimal(str(ticks[-1]["thisOdds"])) == (Decimal(bids[-1]) + ask) / 2
    values = [Decimal(str(tick["thisOdds"])) for tick in ticks]
    assert values == sorted(values)  # never a stale value after a fresher one


async def test_a_resolution_from_the_channel_settles_once_beside_the_rest_check(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    fake_polymarket: FakePolymarket,
    channel: FakeMarketChannel,
    db: asyncpg.Pool,
) -> None:
    _, player = await feed_node_and_player(start_server, http, fake_polymarket, channel)
    target = (await open_markets(player))[0]
    await player.ok("market:subscribe", {"marketIds": [target["id"]]})
    await player.ok(
        "bet:place", {"marketId": target["id"], "side": "that", "amount": 100, "clientBetId": "r1"}
    )
    # Both see it: the REST check (every 0.5 s here) and the channel.
    fake_polymarket.resolve(target["sourceId"], "that")
    market = channel.markets[target["sourceId"]]
    await channel.publish(market_resolved(market, market.no_token))
    update = await player.next("market:update", wait_s=5)
    assert update["market"]["status"] == "resolved"
    settled = await player.next("bet:settled", wait_s=5)
    assert settled["bet"]["status"] == "won"
    await asyncio.sleep(1.5)  # further REST checks and channel repeats find nothing to do
    await channel.publish(market_resolved(market, market.no_token))
    await asyncio.sleep(0.5)
    payouts = await db.fetchval(
        "SELECT count(*) FROM ledger WHERE kind = 'bet_payout' AND bet_id IN"
        " (SELECT id FROM bets WHERE market_id = $1::uuid)",
        target["id"],
    )
    assert payouts == 1
    assert player.received["bet:settled"].empty()
    error = await player.error(
        "bet:place", {"marketId": target["id"], "side": "this", "amount": 10, "clientBetId": "r2"}
    )
    assert error["code"] == "MARKET_CLOSED"


async def test_a_stream_outage_falls_back_to_rest_polling(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    fake_polymarket: FakePolymarket,
    channel: FakeMarketChannel,
) -> None:
    _, player = await feed_node_and_player(
        start_server,
        http,
        fake_polymarket,
        channel,
        feed_odds_interval_s=0.5,
        feed_stream_stale_s=1.0,
    )
    target = (await open_markets(player))[0]
    await player.ok("market:subscribe", {"marketIds": [target["id"]]})
    # The channel drops every connection and then ignores every subscription (no books, no
    # data): the stream keeps nothing current, and the REST poll takes the markets back.
    channel.ignore_subscriptions(1000)
    await channel.drop_all()
    fake_polymarket.set_price(target["sourceId"], "0.7070")
    tick = await player.next("odds", wait_s=10)
    assert (tick["marketId"], tick["thisOdds"]) == (target["id"], 0.707)


async def test_an_announced_market_is_mirrored_when_it_passes_the_listing_filters(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    fake_polymarket: FakePolymarket,
    channel: FakeMarketChannel,
) -> None:
    _, player = await feed_node_and_player(start_server, http, fake_polymarket, channel)
    (added,) = fake_polymarket.add_markets(1)
    announced = add_book(channel, added)
    for _ in range(3):  # upstream repeats its announcements
        await channel.publish(new_market(announced))

    async def mirrored() -> bool:
        return any(m["sourceId"] == added.condition_id for m in await open_markets(player))

    await eventually(mirrored, attempts=50)
    assert fake_polymarket.requests["/gamma/markets"] >= 1
