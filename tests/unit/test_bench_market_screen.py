"""The market screen benchmark's pure parts: its sizes from the command line, the write modes for a
rate of odds changes, and its summary and markdown from a result (no run: benchmarks are not
timed tests)."""

from __future__ import annotations

import argparse
from typing import Any

from bench import market_screen, odds_writes
from bench.markdown import market_screen_section
from bench.run import FULL, QUICK


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    market_screen.add_arguments(parser)
    return parser.parse_args(argv)


def test_sizes_take_the_quick_defaults_and_the_options_given() -> None:
    sizes = market_screen.sizes_from(parse(["--quick", "--listeners", "300"]))
    assert sizes.listeners == 300
    assert sizes.seconds == market_screen.QUICK_SIZES.seconds
    assert market_screen.sizes_from(parse([])) == market_screen.FULL_SIZES


def test_make_bench_seeds_enough_players_for_the_phase() -> None:
    for sizes in (FULL, QUICK):
        screen = sizes["marketScreen"]
        assert sizes["players"] >= screen["listeners"] + screen["bettors"]


def test_paced_writes_are_one_statement_a_beat_and_every_change_its_own_write() -> None:
    paced, every = odds_writes.modes(2_000, 200)
    assert (paced.batch, paced.statements_per_s) == (200, 4)
    assert every.batch * every.statements_per_s == 2_000


def test_odds_never_repeat_from_one_change_to_the_next() -> None:
    for position in range(200):
        values = [odds_writes.odds_at(step, position) for step in range(1, 500)]
        assert all(a != b for a, b in zip(values, values[1:], strict=False))
        assert all(this + that == 1 for this, that in values)


def features(server_us: float, ok_rate: float, pushes: float) -> dict[str, Any]:
    return {
        "listeners": 500,
        "bets": {
            "okRate": ok_rate,
            "seconds": 6.0,
            "cpuSeconds": {"server": 1.0},
            "cpuUsPerOp": {"server": server_us, "postgres": 100.0, "redis": 5.0},
            "latencyMs": {"p99": 40.0},
        },
        "ticks": {"expected": 5_000, "serverCpuUsPerRecipient": 12.0},
        "activityPushesPerSAllRecipients": pushes,
        "activityBetsPerPush": 99.0 if pushes else None,
    }


def write_run(statements_per_s: float, batch: int) -> dict[str, Any]:
    rows = {"inserted": 800.0, "updated": 0.0, "hotUpdated": 0.0}
    return {
        "mode": {"name": "m", "batch": batch, "statements_per_s": statements_per_s},
        "changesPerS": 800.0,
        "rowsPerS": {table: dict(rows) for table in odds_writes.TABLES},
        "pgCpuUsPerChange": 90.0,
        "pgCpuShare": 0.1,
        "statementLatency": {"p50Ms": 5.0, "p99Ms": 20.0},
        "bytesPerMarketPerDay": {"odds_minutes": 2e5, "odds_hours": 3e3},
    }


def test_summary_gives_the_ratios_and_the_markdown_shows_them() -> None:
    chart = {"interval": "1h", "points": 720, "latency": {"p50Ms": 3.0, "p99Ms": 5.0}}
    screen = {
        "sizes": {"bettors": 100, "markets": 4, "seconds": 6},
        "off": features(200.0, 2_000, 0.0),
        "on": features(220.0, 2_000, 4_000.0),
        "history": {
            "changesPerS": 2_000,
            "markets": 200,
            "runs": {"paced": write_run(4, 200), "everyChange": write_run(40, 50)},
            "charts": {"month": chart},
        },
    }
    summary = market_screen.summary(screen)
    assert summary["screen_server_cpu_per_bet_on_vs_off"] == 1.1
    # 20 µs more a bet at 2,000 bets/s, over 4,000 pushes/s.
    assert summary["screen_server_cpu_us_per_activity_push"] == 10.0
    assert summary["screen_fanout_on_vs_off"] == 1.0
    text = market_screen_section(
        {"marketScreen": screen, "summary": summary, "machine": {}, "quick": True}
    )
    assert "x1.10" in text
    # A row per write mode: the rate, then the rows of the minute and hour candles.
    assert (
        "| every change: 40/s of 50 | 800.0 | 800.0 + 0.00 | 800.0 + 0.00 | 90.0 µs (0.10 CPU) |"
        " 5.00 ms / 20.0 ms |" in text
    )
    assert "| month | 1h | 720 |" in text
    assert market_screen.summary({"skipped": "no Node.js"}) == {
        "market_screen_skipped": "no Node.js"
    }
