"""A small run of the load client against the real server: a few players for a few seconds over
two client processes. Asserts that requests and bets landed and the ledger audit passes; no timing."""

from __future__ import annotations

import asyncpg
import pytest

from loadtest.plan import LoadPlan, parse_mix
from loadtest.runner import format_report, run_load
from server.cli.seed import SeedPlan, seed
from server.settings import Settings
from storage import audit
from tests.conftest import ServerFactory
from tests.feed_fixtures import eventually

pytestmark = pytest.mark.slow


async def test_load_client_places_bets_and_the_ledger_holds(
    start_server: ServerFactory, db: asyncpg.Pool, settings: Settings
) -> None:
    url, _ = await start_server(feed="replay:feeds/timelines/sample.jsonl", feed_replay_speed=1.0)

    async def markets_open() -> bool:
        return bool(await db.fetchval("SELECT count(*) >= 3 FROM markets WHERE status = 'open'"))

    await eventually(markets_open)
    seeded = await seed(settings, SeedPlan(players=6), show_progress=False)
    plan = LoadPlan(
        base_url=url,
        players=seeded["players"],
        mode="open",
        rate=30,
        duration_s=3,
        mix=parse_mix("bet=70,wallet=10,bets=10,leaderboard=5,reward=5"),
        amount=(10, 20),
        max_slippage=0.5,
        run_tag="smoke",
    )

    report = await run_load(plan, processes=2, printer=lambda line: None)

    assert report["connections"]["connected"] == 6, format_report(report)
    assert report["answered"] == report["sent"] > 0
    assert report["unexpectedErrors"] == 0, report["errors"]
    assert report["socketsDropped"] == 0
    assert report["problems"] == [], format_report(report)
    assert report["verdict"].startswith("verdict: ok")
    placed = report["byOperation"]["bet"]["count"]
    assert placed > 0
    assert (
        await db.fetchval("SELECT count(*) FROM bets WHERE client_bet_id LIKE 'smoke-%'") == placed
    )
    async with db.acquire() as connection:
        assert await audit.check_ledger(connection, settings.max_balance) == []
