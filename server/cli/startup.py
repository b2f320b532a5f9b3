"""Bringing `thisthat serve` up: the listening socket, the dependency checks, the serve loop.

Each way start-up can fail (port taken, database or Redis unreachable) becomes one `StartupError`
line naming the setting to fix; "serving" is logged only once the port listens and the app's
resources (migrations, pools, Redis) are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
import socket
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import redis.asyncio as redis
from aiohttp import web

from server.transport.drain import drain_sockets

logger = logging.getLogger("thisthat.startup")

CHECK_TIMEOUT_S = 10.0
# Young-generation collections start after this many new objects (CPython's default is 700). A
# bet makes a few hundred short-lived objects, so the default ran a collection every few bets;
# profiling put the collector at about 5% of the server's CPU under load.
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Move everything start-up made into the collector's permanent generation and collect the
    young generation less often: what lives for the whole process is never scanned again."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class StartupError(RuntimeError):
    """The server cannot start; the message is the one line an operator needs."""


def masked_url(url: str) -> str:
    """The URL with its password replaced, fit for a log line or an error message."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def address_of(url: str, default_port: int) -> str:
    """Where a service URL points: host:port, or the Unix socket folder of a local PostgreSQL."""
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    if socket_dir.startswith("/"):
        return f"{socket_dir} (unix socket)"
    return f"{parts.hostname or 'localhost'}:{parts.port or default_port}"


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def check_database(url: str) -> None:
    try:
        connection = await asyncpg.connect(url, timeout=CHECK_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - whatever the driver raises, the operator gets one line
        raise StartupError(
            f"database unreachable at {address_of(url, 5432)} "
            f"(DATABASE_URL={masked_url(url)}): {_reason(error)}"
        ) from error
    await connection.close()


async def check_redis(url: str) -> None:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S
    )
    try:
        await client.ping()
    except Exception as error:  # noqa: BLE001 - as above
        raise StartupError(
            f"redis unreachable at {address_of(url, 6379)} "
            f"(REDIS_URL={masked_url(url)}): {_reason(error)}"
        ) from error
    finally:
        await client.aclose()


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Bind the server's port before anything else starts, so a taken port fails in a second.

    The sockets listen only once the app is ready; until then connections are refused.
    """
    where = f"{host}:{port} (HOST={host}, PORT={port})"
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise StartupError(f"cannot listen on {where}: {error.strerror}") from error
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as error:
        for sock in sockets:
            sock.close()
        if error.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} is already in use: cannot listen on {where}; "
                "stop what uses it or set PORT"
            ) from error
        raise StartupError(f"cannot listen on {where}: {error.strerror or error}") from error
    return sockets


async def run_server(
    app: web.Application,
    sockets: list[socket.socket],
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Start the app's resources, listen, serve until SIGINT/SIGTERM, then shut down cleanly."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    try:
        for sock in sockets:
            await web.SockSite(runner, sock, backlog=2048).start()
        port = sockets[0].getsockname()[1]
        if on_listening is not None:
            on_listening(port)
        settle_heap()
        logger.info(
            "serving",
            extra={
                "addresses": [str(site.name) for site in runner.sites],
                # Where to point a browser or a client: a wildcard address is no place to open.
                "open": [_openable(str(site.name)) for site in runner.sites],
            },
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)
        logger.info("shutting down")
        # Stop accepting, then drain while every connection is still read: aiohttp's own
        # shutdown stops reading from open connections before its shutdown hooks run.
        for site in list(runner.sites):
            await site.stop()
        await drain_sockets(app)
    finally:
        await runner.cleanup()


def _openable(address: str) -> str:
    """`http://0.0.0.0:3000` (every interface) as the address to open: `http://localhost:3000`."""
    for wildcard in ("//0.0.0.0:", "//[::]:"):
        if wildcard in address:
            return address.replace(wildcard, "//localhost:")
    return address
