"""The benchmark's world: embedded PostgreSQL and Redis under a temp dir, server processes started
as `thisthat serve` subprocesses, the echo server, and seeded players."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from server.cli.seed import SeedPlan, seed
from server.settings import Settings, load_settings
from storage import database
from storage.embedded import EmbeddedServices, free_port

REPO = Path(__file__).resolve().parent.parent


@dataclass
class BenchStack:
    workdir: Path
    timeline: Path
    services: EmbeddedServices | None = None
    database_url: str = ""
    redis_url: str = ""
    secrets: dict[str, str] = field(
        default_factory=lambda: {
            "JWT_ACCESS_SECRET": secrets.token_urlsafe(48),
            "JWT_REFRESH_SECRET": secrets.token_urlsafe(48),
        }
    )
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_services(self) -> None:
        self.services = EmbeddedServices(self.workdir / "services")
        self.database_url, self.redis_url = self.services.start(None, None)

    def pgdata(self) -> Path | None:
        """The embedded PostgreSQL's data folder, for counting its processes' CPU."""
        if self.services is None or self.services.postgres is None:
            return None
        return (self.services.postgres.data_dir / "postgres").resolve()

    def redis_pids(self) -> list[int]:
        if self.services is None or self.services.redis is None:
            return []
        process = self.services.redis._process
        return [process.pid] if process is not None else []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.secrets,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "DATA_DIR": str(self.workdir / "data"),
            "FEED": f"replay:{self.timeline}",
            "FEED_ODDS_INTERVAL_S": "10",
            "BCRYPT_COST": "12",
            # Limits stay on (the bet path includes its rate-limit check), set above the load.
            "RATE_LIMIT_ENABLED": "true",
            "RATE_LIMIT_BETS_PER_USER": "1000/1",
            "RATE_LIMIT_EVENTS_PER_USER": "1000/1",
            "RATE_LIMIT_LOGIN_PER_IP": "100000/60",
            "RATE_LIMIT_LOGIN_PER_USERNAME": "100000/60",
            # Every load-test socket comes from one address.
            "RATE_LIMIT_CONNECTIONS_PER_IP": "100000/1",
            # The overload phase drives each of 100 sockets at hundreds of bets a second: the
            # per-connection frame budget sits above that (the budget's own cost stays measured).
            "WS_FRAMES_PER_S": "5000",
            "WS_FRAMES_BURST": "10000",
            "LOG_LEVEL": "WARNING",
            **extra,
        }

    def settings(self) -> Settings:
        return load_settings(environ=self.env())

    def _spawn(self, args: list[str], log_name: str, **extra: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / log_name).open("ab")
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, *args],
            cwd=REPO,
            env=self.env(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    async def start_server(
        self, *, require_markets: bool = True, **extra: str
    ) -> tuple[str, subprocess.Popen[bytes]]:
        """One `thisthat serve` node with `extra` env on top of the bench's; returns once /readyz
        is green (and, with `require_markets`, markets are open)."""
        await database.migrate(self.database_url)
        port = free_port()
        process = self._spawn(
            ["-m", "server.cli", "serve"],
            f"server-{port}.log",
            PORT=str(port),
            HOST="127.0.0.1",
            **extra,
        )
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url, process, require_markets=require_markets)
        return url, process

    def stop_process(self, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
        """Stop one process this stack started (SIGTERM, then SIGKILL after `timeout_s`)."""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    async def start_echo(self) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        process = self._spawn(["-m", "bench.echo_server", "--port", str(port)], "echo.log")
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url, process, require_markets=False)
        return url, process

    async def seed_players(self, count: int) -> dict[str, Any]:
        # Enough credits that no player runs dry during the longest run (bets of 10-50 credits).
        plan = SeedPlan(players=count, reset=True, credits=Decimal("100000"))
        return await seed(self.settings(), plan, show_progress=True)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.services is not None:
            self.services.stop()


async def wait_ready(
    url: str, process: subprocess.Popen[bytes], *, require_markets: bool, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server at {url} exited with {process.returncode}; see its log")
            try:
                if not require_markets:
                    async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as response:
                        if response.status == 200:
                            return
                else:
                    async with http.get(f"{url}/readyz") as response:
                        body = await response.json()
                        if (
                            response.status == 200
                            and body["checks"]["feed"].get("openMarkets", 0) > 0
                        ):
                            return
            except (aiohttp.ClientError, KeyError, ValueError):
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"server at {url} not ready after {timeout_s}s")
