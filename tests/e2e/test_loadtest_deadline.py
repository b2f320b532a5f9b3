"""A load run whose client process never finishes still ends, by its deadline: the stuck process
is stopped and named with what it last reported, its unanswered requests count as LOST, the
verdict fails, and the result and chart are written."""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg
import orjson
import pytest

from loadtest.plan import LoadPlan, parse_mix
from loadtest.plots import write_plots
from loadtest.runner import format_report, run_load
from server.cli.seed import SeedPlan, seed
from server.settings import Settings
from tests.conftest import ServerFactory
from tests.feed_fixtures import eventually
from tests.stuck_load_client import STUCK_PROCESS, second_process_never_finishes

pytestmark = pytest.mark.slow


async def test_a_client_process_that_never_finishes_fails_the_run_by_its_deadline(
    start_server: ServerFactory, db: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    url, _ = await start_server(feed="replay:feeds/timelines/sample.jsonl", feed_replay_speed=1.0)

    async def markets_open() -> bool:
        return bool(await db.fetchval("SELECT count(*) >= 3 FROM markets WHERE status = 'open'"))

    await eventually(markets_open)
    seeded = await seed(settings, SeedPlan(players=4), show_progress=False)
    plan = LoadPlan(
        base_url=url,
        players=seeded["players"],
        rate=20,
        warmup_s=1,
        duration_s=2,
        timeout_s=2,
        mix=parse_mix("bet=1,wallet=1"),
        amount=(10, 20),
        max_slippage=0.5,
        run_tag="stuck",
    )
    lines: list[str] = []
    began = time.monotonic()

    report = await run_load(
        plan, processes=2, printer=lines.append, worker_main=second_process_never_finishes
    )

    # Warm-up 1 + duration 2 + --timeout 2 + 15 s of grace, plus connecting and stopping.
    assert time.monotonic() - began < 45
    summary = format_report(report)
    [stuck] = report["unfinishedProcesses"]
    assert stuck["process"] == STUCK_PROCESS
    assert "did not finish within 20s of the start" in stuck["reason"]
    assert stuck["sent"] > 0 and stuck["sockets"] == 2, stuck
    assert any(
        line.startswith(f"FAILING: load client process {STUCK_PROCESS} did not finish")
        for line in lines
    ), lines
    assert report["verdict"].startswith(
        f"verdict: FAILED: load client process {STUCK_PROCESS} did not finish"
    ), summary
    assert any(
        line.startswith(f"load client process {STUCK_PROCESS} did not finish")
        and "2 sockets open, sent" in line
        for line in report["problems"]
    ), summary
    # The finished process's requests are all in; the stuck one's count from its last report.
    assert report["sent"] > stuck["sent"]
    assert report["answered"] == report["sent"]
    assert report["errors"].get("LOST", 0) == stuck["lost"]
    assert summary.endswith(report["verdict"])

    out = tmp_path / "run.json"
    out.write_bytes(orjson.dumps(report))
    assert orjson.loads(out.read_bytes())["verdict"] == report["verdict"]
    chart = write_plots(report, out)
    assert chart is not None and chart.stat().st_size > 0
