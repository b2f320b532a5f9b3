"""An operator's first day, as the operator lives it: real `thisthat` processes.

Commands run next to a live server share its embedded PostgreSQL and Redis and leave them
running; a second server on the same folder is refused; start-up failures are one line naming
what to fix; a feed that dies shows on /readyz; a replay starts over on a used database.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from feeds.replay import SAMPLE_TIMELINE
from storage import keys
from storage.embedded import STATE_FILE, free_port
from tests.nodes import ServerNode

SECRETS = {
    "JWT_ACCESS_SECRET": "test-access-secret-0123456789abcdef",
    "JWT_REFRESH_SECRET": "test-refresh-secret-0123456789abcdef",
}


def operator_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a shell on a development machine: no DATABASE_URL/REDIS_URL set."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "PORT", "HOST", "FEED"}
    }
    return {
        **env,
        **SECRETS,
        "DATA_DIR": str(data_dir),
        "HOST": "127.0.0.1",
        "BCRYPT_COST": "4",
        "FEED": "off",
        **settings,
    }


def thisthat(env: dict[str, str], *args: str, timeout_s: float = 90) -> tuple[int, str, str]:
    """Run one command to its end: exit code, stdout, stderr."""
    done = subprocess.run(  # noqa: S603 - our own CLI with fixed arguments
        [sys.executable, "-m", "server.cli", *args],
        env=env,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback test URL
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status, json.loads(response.read())


def error_lines(stderr: str) -> list[str]:
    """The lines meant for the operator (the rest of stderr is JSON log lines)."""
    return [line for line in stderr.splitlines() if line.startswith("thisthat:")]


@dataclass
class EmbeddedServer:
    url: str
    port: int
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.data_dir / STATE_FILE).read_text())
        return state

    def assert_still_serving(self) -> None:
        assert self.process.poll() is None, self.log_path.read_text()[-2000:]
        status, body = get(self.url + "/readyz")
        assert status == 200, body
        assert self.state()["ownerPid"] == self.process.pid


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """`thisthat serve` as `make run` starts it: embedded PostgreSQL and Redis under DATA_DIR."""
    data_dir = tmp_path_factory.mktemp("var")
    port = free_port()
    env = operator_env(data_dir, PORT=str(port))
    log_path = data_dir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
            [sys.executable, "-m", "server.cli", "serve"], env=env, stdout=log, stderr=log
        )
    server = EmbeddedServer(f"http://127.0.0.1:{port}", port, data_dir, env, process, log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                if get(server.url + "/readyz")[0] == 200:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def test_the_server_logs_the_urls_an_operator_can_use(embedded_server: EmbeddedServer) -> None:
    state = embedded_server.state()
    lines = [json.loads(line) for line in embedded_server.log_path.read_text().splitlines()]
    services = next(line for line in lines if line["msg"] == "services")
    assert services["DATABASE_URL"] == state["databaseUrl"]
    assert services["REDIS_URL"] == state["redisUrl"]
    assert state["serverPid"] == embedded_server.process.pid
    assert state["serverPort"] == embedded_server.port
    # "serving" comes after the services and the migrations, never before.
    messages = [line["msg"] for line in lines]
    assert messages.index("serving") > messages.index("services")


def test_audit_rebuild_migrate_and_seed_share_the_servers_services_and_leave_them_running(
    embedded_server: EmbeddedServer, tmp_path: Path
) -> None:
    status, body = post(
        embedded_server.url + "/auth/signup",
        {"username": f"op{uuid.uuid4().hex[:8]}", "password": "operator-password"},
    )
    assert status == 201, body
    user_id = body["user"]["id"]
    # A score the ledger does not back, planted in the server's own Redis: an audit that looks
    # there must see it, and a rebuild that writes there must remove it.
    board = redis.Redis.from_url(embedded_server.state()["redisUrl"], decode_responses=True)
    try:
        board.zadd(keys.leaderboard("all"), {user_id: 5})

        code, out, err = thisthat(embedded_server.env, "audit")
        assert code == 1, err
        assert f"invariant 4 violated for user {user_id} on leaderboard all" in out
        assert "attached to the embedded services" in err
        embedded_server.assert_still_serving()

        code, out, err = thisthat(embedded_server.env, "leaderboard", "rebuild")
        assert code == 0, err
        assert board.zscore(keys.leaderboard("all"), user_id) is None
        embedded_server.assert_still_serving()

        code, out, err = thisthat(embedded_server.env, "audit")
        assert (code, out.strip().splitlines()[-1]) == (
            0,
            "audit passed: every ledger and leaderboard invariant holds",
        ), err
        embedded_server.assert_still_serving()

        code, out, err = thisthat(embedded_server.env, "migrate")
        assert (code, out.strip()) == (0, "schema is up to date"), err
        embedded_server.assert_still_serving()

        players = tmp_path / "players.json"
        code, out, err = thisthat(
            embedded_server.env, "seed", "--players", "3", "--out", str(players)
        )
        assert code == 0, err
        assert len(json.loads(players.read_text())["players"]) == 3
        embedded_server.assert_still_serving()
        assert board.ping()
    finally:
        board.close()


def test_a_second_serve_on_the_same_data_dir_says_it_is_already_running(
    embedded_server: EmbeddedServer,
) -> None:
    env = {**embedded_server.env, "PORT": str(free_port())}

    code, out, err = thisthat(env, "serve", timeout_s=30)

    assert code == 1
    assert error_lines(err) == [
        f"thisthat: already running (pid {embedded_server.process.pid}, "
        f"port {embedded_server.port}) with DATA_DIR={embedded_server.data_dir}; "
        "stop it first or use another DATA_DIR"
    ]
    assert "Traceback" not in err
    embedded_server.assert_still_serving()


def test_a_taken_port_is_one_line_naming_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        code, out, err = thisthat(operator_env(tmp_path, PORT=str(port)), "serve", timeout_s=30)

    assert code == 1
    assert error_lines(err) == [
        f"thisthat: port {port} is already in use: cannot listen on 127.0.0.1:{port} "
        f"(HOST=127.0.0.1, PORT={port}); stop what uses it or set PORT"
    ]
    assert "Traceback" not in err and "serving" not in err
    # It failed before starting anything: no embedded services were left behind.
    assert not (tmp_path / STATE_FILE).exists()


def test_an_unreachable_database_is_one_line_naming_database_url(
    tmp_path: Path, service_urls: tuple[str, str]
) -> None:
    closed = free_port()
    url = f"postgresql://bob:hunter2@127.0.0.1:{closed}/game"
    env = operator_env(tmp_path, PORT=str(free_port()), DATABASE_URL=url, REDIS_URL=service_urls[1])

    code, out, err = thisthat(env, "serve", timeout_s=60)

    assert code == 1
    [line] = error_lines(err)
    assert line.startswith(
        f"thisthat: database unreachable at 127.0.0.1:{closed} "
        f"(DATABASE_URL=postgresql://bob:***@127.0.0.1:{closed}/game): "
    )
    assert "hunter2" not in err and "Traceback" not in err and '"serving"' not in err


def test_an_unreachable_redis_is_one_line_naming_redis_url(
    tmp_path: Path, service_urls: tuple[str, str]
) -> None:
    closed = free_port()
    env = operator_env(
        tmp_path,
        PORT=str(free_port()),
        DATABASE_URL=service_urls[0],
        REDIS_URL=f"redis://127.0.0.1:{closed}/0",
    )

    code, out, err = thisthat(env, "serve", timeout_s=60)

    assert code == 1
    [line] = error_lines(err)
    assert line.startswith(
        f"thisthat: redis unreachable at 127.0.0.1:{closed} "
        f"(REDIS_URL=redis://127.0.0.1:{closed}/0): "
    )
    assert "Traceback" not in err and '"serving"' not in err


async def readyz(node: ServerNode) -> tuple[int, Any]:
    return await asyncio.to_thread(get, node.url + "/readyz")


async def test_a_feed_job_that_dies_is_logged_and_makes_the_node_unready(
    service_urls: tuple[str, str], tmp_path: Path, db: asyncpg.Pool
) -> None:
    # The replay cannot store odds: an error no retry fixes, so the job dies.
    await db.execute("ALTER TABLE odds_minutes RENAME TO odds_minutes_away")
    node = ServerNode(
        *service_urls,
        tmp_path,
        feed=f"replay:{SAMPLE_TIMELINE}",
        feed_replay_speed=20,
        **SECRETS,
    )
    try:
        node.spawn()
        for _ in range(300):
            assert node.process is not None and node.process.poll() is None
            try:
                status, body = await readyz(node)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            if status == 503:
                break
            await asyncio.sleep(0.1)
        assert status == 503, body
        feed = body["checks"]["feed"]
        assert feed["error"] == "feed job(s) died: replay"
        assert feed["jobs"]["replay"]["state"] == "died"
        assert "UndefinedTableError" in feed["jobs"]["replay"]["lastError"]
        assert body["checks"]["database"] == "ok" and body["checks"]["redis"] == "ok"
        logged = [json.loads(line) for line in node.log_path.read_text().splitlines()]
        died = [line for line in logged if line["msg"] == "feed job died"]
        assert died and died[0]["job"] == "replay" and "odds_minutes" in died[0]["error"]
    finally:
        node.stop()
        await db.execute("ALTER TABLE odds_minutes_away RENAME TO odds_minutes")


async def wait_for_markets(db: asyncpg.Pool, count: int, ended: bool) -> list[asyncpg.Record]:
    for _ in range(600):
        rows = list(await db.fetch("SELECT source_id, status, resolved_side FROM markets"))
        if len(rows) == count and (
            not ended or all(row["status"] in {"resolved", "cancelled"} for row in rows)
        ):
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"markets never reached {count} (ended={ended}): {rows}")


async def test_every_sample_market_ends_and_reset_replay_plays_it_again_as_new_markets(
    service_urls: tuple[str, str], tmp_path: Path, db: asyncpg.Pool
) -> None:
    replay = {
        "feed": f"replay:{SAMPLE_TIMELINE}",
        "feed_replay_speed": 40,
        "feed_odds_interval_s": 0.5,
        **SECRETS,
    }
    first = await ServerNode(*service_urls, tmp_path, **replay).start()
    try:
        rows = await wait_for_markets(db, 8, ended=True)
    finally:
        first.stop()
    assert Counter(row["status"] for row in rows) == Counter({"resolved": 6, "cancelled": 2})

    second = await ServerNode(*service_urls, tmp_path, args=["--reset-replay"], **replay).start()
    try:
        rows = await wait_for_markets(db, 16, ended=True)
    finally:
        second.stop()
    replayed = [row for row in rows if row["source_id"].endswith("~1")]
    assert len(replayed) == 8
    assert Counter(row["status"] for row in replayed) == Counter({"resolved": 6, "cancelled": 2})
