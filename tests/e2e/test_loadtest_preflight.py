"""The load client checks its plan against the real server's published limits before it opens a
socket: GET /loadtest/limits is off by default and holds no secret; a plan past the connection
cap or the players' credits is refused (exit 2) in one line naming the setting and the value;
a plan within the limits starts as before."""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web

from loadtest.cli import add_arguments, command
from server.cli.seed import SeedPlan, seed, write_players_file
from server.runtime.local_limits import CONNECTION_LIMITS
from server.settings import Settings
from server.sockets.sessions import SESSIONS
from tests.conftest import ServerFactory
from tests.feed_fixtures import eventually

METRICS_TOKEN = "metrics-token-0123456789abcdef"


def loadtest_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


async def players_file(settings: Settings, tmp_path: Path, credits: int | None = None) -> Path:
    plan = SeedPlan(players=6, credits=None if credits is None else Decimal(credits))
    path = tmp_path / "players.json"
    write_players_file(await seed(settings, plan, show_progress=False), path)
    return path


async def start_with_markets(
    start_server: ServerFactory, db: asyncpg.Pool, **overrides: object
) -> tuple[str, web.Application]:
    url, app = await start_server(
        feed="replay:feeds/timelines/sample.jsonl", loadtest_limits_endpoint=True, **overrides
    )

    async def markets_open() -> bool:
        return bool(await db.fetchval("SELECT count(*) >= 3 FROM markets WHERE status = 'open'"))

    await eventually(markets_open)
    return url, app


def untouched(app: web.Application) -> bool:
    """No handshake reached the server: the per-address connection counter never opened."""
    return len(app[CONNECTION_LIMITS]) == 0 and len(app[SESSIONS]) == 0


async def test_the_limits_endpoint_is_off_by_default(
    server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> None:
    async with http.get(server[0] + "/loadtest/limits") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "NOT_FOUND"


async def test_the_limits_endpoint_when_enabled_answers_the_limits_and_no_secret(
    start_server: ServerFactory, http: aiohttp.ClientSession, settings: Settings
) -> None:
    url, _ = await start_server(
        loadtest_limits_endpoint=True, rate_limit_connections_per_ip=(7, 2), sockets_per_user=3
    )

    async with http.get(url + "/loadtest/limits") as response:
        assert response.status == 200
        text = await response.text()
    body = orjson.loads(text)

    assert body["settings"]["RATE_LIMIT_CONNECTIONS_PER_IP"] == "7/2"
    assert body["settings"]["SOCKETS_PER_USER"] == 3
    assert body["settings"]["STARTING_CREDITS"] == 1000
    assert body["settings"]["RATE_LIMIT_BETS_PER_USER"] == "20/1"
    assert body["feed"] == "off"
    assert body["trustedProxies"] is False
    assert body["clientAddress"] == "127.0.0.1"
    for secret in (
        settings.jwt_access_secret,
        settings.jwt_refresh_secret,
        settings.database_url,
        settings.redis_url,
    ):
        assert secret
        assert secret not in text
    assert "secret" not in text.lower()


async def test_with_metrics_token_set_the_limits_need_it(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    url, _ = await start_server(loadtest_limits_endpoint=True, metrics_token=METRICS_TOKEN)

    async with http.get(url + "/loadtest/limits") as response:
        assert response.status == 401
    wrong = {"Authorization": "Bearer wrong-token-0123456789abcdef"}
    async with http.get(url + "/loadtest/limits", headers=wrong) as response:
        assert response.status == 401
    right = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with http.get(url + "/loadtest/limits", headers=right) as response:
        assert response.status == 200
        assert METRICS_TOKEN not in await response.text()


async def test_a_server_that_does_not_publish_its_limits_stops_the_run_in_one_line(
    server: tuple[str, web.Application],
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = await players_file(settings, tmp_path)

    code = await command(loadtest_args("--players-file", str(path), "--url", server[0]))

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert "LOADTEST_LIMITS_ENDPOINT=true" in line
    assert "--skip-preflight" in line
    assert untouched(server[1])


@pytest.mark.slow
async def test_a_plan_past_the_connection_cap_is_refused_before_any_socket_opens(
    start_server: ServerFactory,
    db: asyncpg.Pool,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, app = await start_with_markets(start_server, db, rate_limit_connections_per_ip=(4, 60))
    path = await players_file(settings, tmp_path)

    code = await command(
        loadtest_args("--players-file", str(path), "--url", url, "--rate", "6", "--duration", "2")
    )

    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert lines == [
        "preflight: RATE_LIMIT_CONNECTIONS_PER_IP=4/60 refuses up to 2 of 6 sockets from "
        "127.0.0.1 (at most 4 new connections per 60 s from one address): start the server with "
        "RATE_LIMIT_CONNECTIONS_PER_IP=12/1 or RATE_LIMIT_ENABLED=false",
        "loadtest: not started (1 problem(s) above); fix them, or pass --skip-preflight to run "
        "anyway",
    ]
    assert untouched(app)


@pytest.mark.slow
async def test_a_plan_that_stakes_more_than_the_players_credits_is_refused(
    start_server: ServerFactory,
    db: asyncpg.Pool,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, app = await start_with_markets(start_server, db)
    path = await players_file(settings, tmp_path, credits=30)

    code = await command(
        loadtest_args(
            "--players-file",
            str(path),
            "--url",
            url,
            "--rate",
            "20",
            "--duration",
            "3",
            "--mix",
            "bet=1",
            "--amount",
            "10-20",
        )  # fmt: skip
    )

    captured = capsys.readouterr()
    assert code == 2, captured.err
    (problem, refusal) = captured.err.strip().splitlines()
    assert problem.startswith(
        "preflight: INSUFFICIENT_CREDITS before the end: players hold 30 credits"
    )
    assert "(`thisthat seed --credits 500`)" in problem
    assert refusal.startswith("loadtest: not started (1 problem(s) above)")
    assert untouched(app)


@pytest.mark.slow
async def test_a_plan_within_the_limits_starts_and_runs_clean(
    start_server: ServerFactory,
    db: asyncpg.Pool,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = await start_with_markets(start_server, db)
    path = await players_file(settings, tmp_path)

    code = await command(
        loadtest_args(
            "--players-file",
            str(path),
            "--url",
            url,
            "--rate",
            "30",
            "--duration",
            "3",
            "--mix",
            "bet=70,wallet=10,bets=10,leaderboard=5,reward=5",
            "--amount",
            "10-20",
            "--max-slippage",
            "0.5",
            "--processes",
            "2",
        )  # fmt: skip
    )

    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert captured.err.splitlines()[0].startswith(
        "preflight: the server's limits fit the plan (6 sockets from 127.0.0.1, "
    )
    assert "verdict: ok" in captured.out


async def test_more_sign_ups_than_the_per_address_limit_are_refused_before_any(
    start_server: ServerFactory, db: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    url, app = await start_server(loadtest_limits_endpoint=True)

    code = await command(
        loadtest_args("--signup", "20", "--url", url, "--mode", "idle", "--duration", "1")
    )

    captured = capsys.readouterr()
    assert code == 2, captured.err
    problem = captured.err.strip().splitlines()[0]
    assert problem.startswith(
        "preflight: RATE_LIMIT_SIGNUP_PER_IP=10/3600 refuses 10 of the 20 sign-ups from 127.0.0.1"
    )
    assert "RATE_LIMIT_SIGNUP_PER_IP=40/3600 or RATE_LIMIT_ENABLED=false" in problem
    assert await db.fetchval("SELECT count(*) FROM users") == 0
    assert untouched(app)
