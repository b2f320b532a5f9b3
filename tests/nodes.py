"""Real server processes (`thisthat serve`) for multi-node and crash tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from storage.embedded import free_port


class ServerNode:
    """One `thisthat serve` process on a loopback port, sharing the test's PostgreSQL and Redis."""

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        data_dir: Path,
        *,
        args: Sequence[str] = (),
        **env: Any,
    ) -> None:
        self.args = list(args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"node-{self.port}.log"
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DATA_DIR": str(data_dir),
            "BCRYPT_COST": "4",
            "JWT_ACCESS_SECRET": "test-access-secret-0123456789abcdef",
            "JWT_REFRESH_SECRET": "test-refresh-secret-0123456789abcdef",
            "FEED": "off",
            **{key.upper(): str(value) for key, value in env.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
                [sys.executable, "-m", "server.cli", "serve", *self.args],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        return self.process

    async def start(self, ready_within_s: float = 30) -> ServerNode:
        """Spawn and wait until /readyz answers 200."""
        self.spawn()
        assert self.process is not None
        async with aiohttp.ClientSession() as http:
            for _ in range(int(ready_within_s * 10)):
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"node exited early; log:\n{self.log_path.read_text()[-3000:]}"
                    )
                try:
                    async with http.get(self.url + "/readyz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(
            f"node not ready in {ready_within_s}s; log:\n{self.log_path.read_text()[-3000:]}"
        )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease release; the crash the tests are about."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
