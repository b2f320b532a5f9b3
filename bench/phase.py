"""What every bench phase run on its own shares: a stack of its own, progress lines, and its
results written as `var/bench/<stamp>-<host>-<name>[-quick].json` beside `<name>-latest.md`."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import uvloop

from bench.stack import BenchStack
from bench.timeline import write_bench_timeline
from loadtest.system import machine, raise_open_file_limit
from storage import database

RUNS: Final = Path(__file__).resolve().parent.parent / "var" / "bench"


def say(text: str) -> None:
    print(f"== {text}", file=sys.stderr, flush=True)


async def on_own_stack(
    name: str,
    players: int,
    phase: Callable[[BenchStack, list[dict[str, Any]]], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Run `phase` on a stack of its own: embedded PostgreSQL and Redis in a temporary folder,
    migrated, with `players` seeded (the phase gets them), stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"thisthat-{name}-") as folder:
        workdir = Path(folder)
        stack = BenchStack(workdir, write_bench_timeline(workdir / "bench-timeline.jsonl"))
        try:
            say("starting embedded PostgreSQL and Redis")
            stack.start_services()
            await database.migrate(stack.database_url)
            say(f"seeding {players} players")
            seeded = await stack.seed_players(players)
            return await phase(stack, seeded["players"])
        finally:
            stack.stop()


def run_phase(
    name: str,
    key: str,
    quick: bool,
    measure: Coroutine[Any, Any, dict[str, Any]],
    summary: Callable[[dict[str, Any]], dict[str, Any]],
    section: Callable[[dict[str, Any]], str],
) -> int:
    """Run one phase's measurement, write its JSON and markdown, print its summary line."""
    raise_open_file_limit()
    started = time.monotonic()
    measured = uvloop.run(measure)
    results: dict[str, Any] = {
        "quick": quick,
        "machine": machine(),
        "startedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        key: measured,
        "wallSeconds": round(time.monotonic() - started, 1),
    }
    results["summary"] = summary(measured)
    RUNS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M")
    kind = "-quick" if quick else ""
    path = RUNS / f"{stamp}-{results['machine']['host']}-{name}{kind}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    latest = RUNS / f"{name}-latest.md"
    latest.write_text(section(results) + "\n")
    say(f"results in {path} and {latest} ({results['wallSeconds']}s)")
    print(orjson.dumps(results["summary"]).decode())
    return 0
