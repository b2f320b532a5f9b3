"""The load tools people already run, fed by `thisthat seed`'s players file, against a real server:
Locust (bench/locustfile.py) headless for a few seconds, and Artillery (bench/artillery.yml) where
Node.js and the artillery package are present. Counts, not timings, are asserted."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import asyncpg
import pytest

from bench.players_csv import convert
from server.cli.seed import SeedPlan, seed, write_players_file
from server.settings import Settings
from storage import audit
from tests.conftest import ServerFactory
from tests.feed_fixtures import eventually

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Refusals a busy player meets by design; anything else is a failure of the run.
EXPECTED_REFUSALS = {"ODDS_CHANGED", "RATE_LIMITED", "INSUFFICIENT_CREDITS"}
ARTILLERY = ROOT / "var" / "artillery" / "node_modules" / ".bin" / "artillery"


async def serve_and_seed(
    start_server: ServerFactory, db: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> tuple[str, Path]:
    url, _ = await start_server(feed="replay:feeds/timelines/sample.jsonl", feed_replay_speed=1.0)

    async def markets_open() -> bool:
        return bool(await db.fetchval("SELECT count(*) >= 3 FROM markets WHERE status = 'open'"))

    await eventually(markets_open)
    players_file = tmp_path / "players.json"
    write_players_file(
        await seed(settings, SeedPlan(players=8), url, show_progress=False), players_file
    )
    return url, players_file


async def run_tool(*command: str | Path, env: dict[str, str], timeout_s: float) -> str:
    process = await asyncio.create_subprocess_exec(
        *map(str, command),
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode == 0, output.decode()[-4000:]
    return output.decode()


@pytest.mark.timeout(120)
async def test_locust_file_plays_seeded_players_against_the_server(
    start_server: ServerFactory, db: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    # Not imported here: locust monkey-patches the standard library (gevent) on import.
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (it is in the loadtest extra)")
    url, players_file = await serve_and_seed(start_server, db, settings, tmp_path)
    await run_tool(
        sys.executable, "-m", "locust", "-f", "bench/locustfile.py", "--headless",
        "-u", "8", "-r", "8", "-t", "5s", "--host", url, "--csv", tmp_path / "run",
        "--only-summary", "--exit-code-on-error", "0", "--stop-timeout", "5",
        env={"PLAYERS_FILE": str(players_file)},
        timeout_s=90,
    )  # fmt: skip

    with (tmp_path / "run_stats.csv").open() as stats:
        requests = {row["Name"]: row for row in csv.DictReader(stats)}
    assert int(requests["connect"]["Request Count"]) == 8
    assert int(requests["connect"]["Failure Count"]) == 0
    assert int(requests["bet:place"]["Request Count"]) > 0
    with (tmp_path / "run_failures.csv").open() as failures:
        refused = {
            row["Error"].removeprefix("Refused('").rstrip("')") for row in csv.DictReader(failures)
        }
    assert refused <= EXPECTED_REFUSALS, refused
    assert await db.fetchval("SELECT count(*) FROM bets") > 0
    async with db.acquire() as connection:
        assert await audit.check_ledger(connection, settings.max_balance) == []


@pytest.mark.timeout(180)
async def test_artillery_scenario_plays_seeded_players_against_the_server(
    start_server: ServerFactory, db: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    if not ARTILLERY.exists():
        pytest.skip(
            "artillery is not installed: npm install --prefix var/artillery artillery@2 "
            "(make test does it when the npm registry is reachable)"
        )
    url, players_file = await serve_and_seed(start_server, db, settings, tmp_path)
    payload = tmp_path / "players.csv"
    assert convert(players_file, payload) == 8
    report = tmp_path / "artillery.json"
    await run_tool(
        ARTILLERY, "run", "bench/artillery.yml", "--target", url, "--payload", payload,
        "--output", report,
        "--overrides", '{"config": {"phases": [{"duration": 3, "arrivalRate": 2}]}}',
        env={"ARTILLERY_DISABLE_TELEMETRY": "true"},
        timeout_s=150,
    )  # fmt: skip
    counters = json.loads(report.read_text())["aggregate"]["counters"]
    assert counters.get("vusers.failed", 0) == 0, counters
    assert counters.get("socketio.emit", 0) > 0, counters
    assert await db.fetchval("SELECT count(*) FROM bets") > 0
