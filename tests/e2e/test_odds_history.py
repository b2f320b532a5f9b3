"""`market:history` over a real socket: candles of the odds the feed wrote, the interval chosen or
asked for, the end at the resolution, and every refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import msgspec
from aiohttp import web

from game.clock import parse_iso
from game.markets import Resolution
from server.application.services import SERVICES
from server.wire import replies
from storage import markets
from tests.betting_fixtures import insert_market
from tests.conftest import PlayerFactory


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


async def test_a_market_history_is_charted_over_a_socket_and_ends_at_its_resolution(
    server: tuple[str, web.Application], new_player: PlayerFactory, db: asyncpg.Pool
) -> None:
    app = server[1]
    player = await new_player()
    market = await insert_market(db, this_odds="0.4000", that_odds="0.6000")
    written = []
    for odds in ("0.42", "0.39", "0.45"):
        at = datetime.now(UTC)
        await markets.record_odds(db, [(market, Decimal(odds), 1 - Decimal(odds))], at)
        written.append(at)

    chart = await player.ok("market:history", {"marketId": str(market)})
    msgspec.convert(chart, replies.OddsHistory, strict=False)
    assert chart["interval"] == "1m"
    buckets = sorted({minute_of(at) for at in written})
    assert [parse_iso(point["t"]) for point in chart["points"]] == buckets
    assert chart["points"][0]["open"] == 0.4 and chart["points"][-1]["close"] == 0.45
    assert min(p["low"] for p in chart["points"]) == 0.39
    assert max(p["high"] for p in chart["points"]) == 0.45

    hourly = await player.ok("market:history", {"marketId": str(market), "interval": "1h"})
    hours = sorted({minute_of(at).replace(minute=0) for at in written})
    assert hourly["interval"] == "1h"
    assert [parse_iso(point["t"]) for point in hourly["points"]] == hours
    assert (hourly["points"][0]["open"], hourly["points"][-1]["close"]) == (0.4, 0.45)
    earlier = {
        "marketId": str(market),
        "from": "2026-01-01T00:00:00Z",
        "to": "2026-01-02T00:00:00+01:00",
    }
    assert await player.ok("market:history", earlier) == {"interval": "1m", "points": []}
    month = {"marketId": str(market), "from": (datetime.now(UTC) - timedelta(days=20)).isoformat()}
    assert (await player.ok("market:history", month))["interval"] == "1h"

    await app[SERVICES].settlement.resolve(market, Resolution.THIS)
    await markets.record_odds(db, [(market, Decimal("0.99"), Decimal("0.01"))], datetime.now(UTC))
    after = await player.ok("market:history", {"marketId": str(market)})
    assert after == chart  # nothing after the resolution


async def test_market_history_refusals(new_player: PlayerFactory, db: asyncpg.Pool) -> None:
    player = await new_player()
    market = str(await insert_market(db))
    unknown = await player.error("market:history", {"marketId": "7" * 32})
    assert unknown["code"] == "MARKET_NOT_FOUND"
    for payload, field in [
        ({"marketId": market, "interval": "5m"}, "interval"),
        ({"marketId": market, "from": "2026-01-01T00:00:00"}, "from"),  # no zone
        ({"marketId": market, "to": "1999-12-31T23:59:59Z"}, "to"),
        ({"marketId": market, "from": "9999-12-31T23:59:59-14:00"}, "from"),
        (
            {"marketId": market, "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            "from",
        ),
        ({"marketId": market, "from": 1767225600}, "from"),
        ({"marketId": market, "since": "2026-01-01T00:00:00Z"}, "since"),
        ({}, "marketId"),
    ]:
        refused = await player.error("market:history", payload)
        assert refused["code"] == "VALIDATION_ERROR", (payload, refused)
        assert refused["details"]["field"] == field, (payload, refused)
