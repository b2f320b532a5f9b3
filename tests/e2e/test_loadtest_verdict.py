"""A load run against the real server that did not carry its load fails, and says why: players
refused at the handshake by the per-address connection limit, and players out of credits. And
`--audit` audits the loaded server's databases, or refuses in one line without starting any."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import asyncpg
import orjson
import pytest

from loadtest.cli import run_audit
from loadtest.plan import LoadPlan, parse_mix
from loadtest.runner import format_report, run_load
from server.cli.seed import SeedPlan, seed
from server.settings import Settings
from tests.conftest import ServerFactory
from tests.feed_fixtures import eventually

pytestmark = pytest.mark.slow

SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "DATA_DIR", "THISTHAT_CONFIG")


async def test_refused_handshakes_and_players_out_of_credits_fail_the_run(
    start_server: ServerFactory, db: asyncpg.Pool, settings: Settings
) -> None:
    url, _ = await start_server(
        feed="replay:feeds/timelines/sample.jsonl",
        feed_replay_speed=1.0,
        rate_limit_connections_per_ip=(4, 60),
    )

    async def markets_open() -> bool:
        return bool(await db.fetchval("SELECT count(*) >= 3 FROM markets WHERE status = 'open'"))

    await eventually(markets_open)
    seeded = await seed(settings, SeedPlan(players=6, credits=Decimal(30)), show_progress=False)
    plan = LoadPlan(
        base_url=url,
        players=seeded["players"],
        rate=20,
        duration_s=3,
        mix=parse_mix("bet=1"),
        amount=(10, 20),
        max_slippage=0.5,
        run_tag="verdict",
    )
    lines: list[str] = []

    report = await run_load(plan, processes=2, printer=lines.append)

    summary = format_report(report)
    assert report["connections"]["failed"] == {"handshake:429": 2}, summary
    refused = next(line for line in report["problems"] if "handshake" in line)
    assert "RATE_LIMIT_CONNECTIONS_PER_IP=12/1 or RATE_LIMIT_ENABLED=false" in refused
    # Said before the load starts, not only at the end.
    assert any(line.startswith("FAILING: 2 of 6 players") for line in lines), lines
    assert report["errors"].get("INSUFFICIENT_CREDITS", 0) > 0, summary
    assert any("--credits 100000" in line for line in report["problems"])
    assert any(point["errors"].get("INSUFFICIENT_CREDITS") for point in report["timeline"]), report[
        "timeline"
    ]
    assert report["verdict"].startswith("verdict: FAILED: 2 of 6 players not connected")
    assert summary.endswith(report["verdict"])


async def test_audit_after_a_run_checks_the_databases_of_the_loaded_server(
    server: tuple[str, object], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.database_url and settings.redis_url
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    code, text = run_audit(server[0])
    assert code == 0, text
    assert "audit passed" in text


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}


def test_loadtest_audit_from_another_folder_refuses_in_one_line_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    players = tmp_path / "players.json"
    players.write_bytes(
        orjson.dumps({"players": [{"id": "1", "username": "p", "accessToken": "t"}]})
    )
    outcome = subprocess.run(
        [sys.executable, "-m", "server.cli", "loadtest", "--players-file", str(players)]
        + ["--url", "http://127.0.0.1:9", "--audit", "--duration", "1"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert outcome.returncode == 2, outcome.stderr
    assert outcome.stdout == ""
    assert len(outcome.stderr.strip().splitlines()) == 1, outcome.stderr
    assert "no running `thisthat serve` keeps its data under DATA_DIR=" in outcome.stderr
    assert "DATABASE_URL and REDIS_URL" in outcome.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["players.json"]


def test_audit_in_a_folder_without_a_database_refuses_in_one_line_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    outcome = subprocess.run(
        [sys.executable, "-m", "server.cli", "audit"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert outcome.returncode == 2, outcome.stderr
    assert outcome.stderr.strip().splitlines() == [
        f"thisthat audit: no database under DATA_DIR={tmp_path.resolve() / 'var'}; set DATA_DIR "
        "to the server's data folder, or DATABASE_URL and REDIS_URL to its databases"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_run_whose_players_could_not_connect_exits_1_with_the_verdict(tmp_path: Path) -> None:
    players = tmp_path / "players.json"
    players.write_bytes(
        orjson.dumps({"players": [{"id": "1", "username": "p", "accessToken": "t"}]})
    )
    outcome = subprocess.run(
        [sys.executable, "-m", "server.cli", "loadtest", "--players-file", str(players)]
        + ["--url", "http://127.0.0.1:9", "--duration", "1", "--processes", "1"]
        + ["--out", str(tmp_path / "run.json"), "--skip-preflight"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert outcome.returncode == 1, outcome.stdout + outcome.stderr
    assert outcome.stderr.startswith("preflight: skipped (--skip-preflight)")
    assert "FAILING: 1 of 1 players could not connect" in outcome.stderr
    assert "verdict: FAILED: 1 of 1 players not connected" in outcome.stdout
    written = orjson.loads((tmp_path / "run.json").read_bytes())
    assert written["verdict"].startswith("verdict: FAILED")
    assert not (tmp_path / "var").exists()
