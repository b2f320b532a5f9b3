"""One full feed poll of N markets against the local fake Polymarket: requests made and seconds.

.venv/bin/python -m bench.feed_poll --markets 200
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson

from feeds.polymarket import PolymarketClient
from game.markets import Resolution
from services.markets import MarketPoller
from services.settlement import ResolutionCheck
from storage import database
from storage.embedded import EmbeddedServices
from storage.rows import Market
from tests.fake_polymarket import FakePolymarket


class CountingListener:
    def __init__(self) -> None:
        self.changed = 0

    async def markets_changed(self, rows: Sequence[Market]) -> None:
        self.changed += len(rows)

    async def odds_changed(self, rows: Sequence[Market], at: datetime) -> None:
        self.changed += len(rows)

    async def odds_touched(self, market_ids: Sequence[object], at: datetime) -> None:
        return None

    async def close(self, market_id: uuid.UUID) -> bool:
        return False

    async def resolve(self, market_id: uuid.UUID, resolution: Resolution) -> None:
        return None


async def measure(markets: int, database_url: str) -> dict[str, object]:
    await database.migrate(database_url)
    pool = await database.create_pool(database_url, max_size=5)
    await pool.execute("TRUNCATE markets CASCADE")
    fake = FakePolymarket(with_fixture_markets=False)
    fake.add_markets(markets)
    figures: dict[str, object] = {"markets": markets}
    async with fake.serve(), aiohttp.ClientSession() as http:
        client = PolymarketClient(http, fake.gamma_url, fake.clob_url)
        listener = CountingListener()
        poller = MarketPoller(pool, client, listener, max_markets=markets)
        resolutions = ResolutionCheck(
            pool, client, listener.resolve, listener.close, lambda: poller.unlisted
        )
        for name, job in (
            ("list", poller.poll_markets),
            ("odds", poller.poll_odds),
            ("resolution", resolutions.poll),
        ):
            before = client.requests_made
            started = time.perf_counter()
            report = await job()
            figures[name] = {
                "requests": client.requests_made - before,
                "seconds": round(time.perf_counter() - started, 3),
                "seen": report.seen,
                "changed": report.changed,
            }
        for market in list(fake.markets.values())[::2]:
            fake.set_price(market.condition_id, "0.3141")
        started = time.perf_counter()
        before = client.requests_made
        report = await poller.poll_odds()
        figures["odds_with_half_changed"] = {
            "requests": client.requests_made - before,
            "seconds": round(time.perf_counter() - started, 3),
            "changed": report.changed,
        }
    await pool.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--markets", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        services = EmbeddedServices(Path(folder))
        database_url, _ = services.start(None, "unused")
        try:
            figures = asyncio.run(measure(args.markets, database_url))
        finally:
            services.stop()
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
