"""The official socket.io-client from npm as a load client: what real players' clients pay; and
the Node peer server (socket.io + pg, one transaction per bet) that ThisThat is measured against.

Both are installed by `npm ci` into an untracked cache folder (var/bench/node) from the
committed bench/node/package-lock.json, the first time a bench needs them. Without Node.js the
measurements that need it are skipped with one clear line.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.phase import say
from bench.processes import CpuWindow

SOURCE = Path(__file__).resolve().parent / "node"
CACHE = Path(__file__).resolve().parent.parent / "var" / "bench" / "node"
# ES modules resolve packages beside the script, so the scripts run from the cache.
SCRIPTS = ("closed_loop.mjs", "peer_server.mjs")


def copy_scripts(cache: Path) -> None:
    for name in SCRIPTS:
        shutil.copyfile(SOURCE / name, cache / name)


def ensure_installed(cache: Path = CACHE) -> Path | None:
    """The folder holding the Node packages and scripts, installed if needed; None when Node.js
    is missing or npm could not install."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        say("skipped: the official socket.io-client runs need Node.js and npm, not found on PATH")
        return None
    cache.mkdir(parents=True, exist_ok=True)
    lock = (SOURCE / "package-lock.json").read_bytes()
    installed_lock = cache / "package-lock.json"
    if (cache / "node_modules" / "socket.io-client").is_dir() and (
        installed_lock.is_file() and installed_lock.read_bytes() == lock
    ):
        copy_scripts(cache)
        return cache
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(SOURCE / name, cache / name)
    copy_scripts(cache)
    say(f"installing socket.io-client, socket.io and pg with npm into {cache}")
    done = subprocess.run(  # noqa: S603 - npm from PATH with fixed arguments
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=cache,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        say(f"skipped: npm ci failed: {done.stderr.decode(errors='replace').strip()[-300:]}")
        return None
    return cache


async def closed_loop(
    cache: Path,
    url: str,
    tokens: list[str],
    cpu: CpuWindow,
    *,
    event: str,
    sockets: int = 100,
    in_flight: int = 1,
    warmup_s: float = 3,
    duration_s: float = 15,
    amount: int = 10,
    deflate: bool = True,
    open_rate: float | None = None,
    markets: list[list[str]] | None = None,
    on_connected: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """`sockets` official clients, each with `in_flight` emits awaiting their ack (or, with
    `open_rate`, events sent at that rate whatever the answers); CPU by process. With `markets`
    (one list of market ids per socket), each socket subscribes to its list and bets over it;
    `on_connected` is awaited once every socket is connected, before the warm-up."""
    config = cache / f"run-{event.replace(':', '-')}-{'open' if open_rate else 'closed'}.json"
    config.write_bytes(
        orjson.dumps(
            {
                "url": url,
                "tokens": tokens[:sockets],
                "sockets": sockets,
                "inFlight": in_flight,
                "warmupS": warmup_s,
                "durationS": duration_s,
                "event": event,
                "amount": amount,
                "noDeflate": not deflate,
                "mode": "closed" if open_rate is None else "open",
                "rate": open_rate or 0,
                **({"markets": markets} if markets is not None else {}),
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        "node",
        str(cache / "closed_loop.mjs"),
        str(config),
        cwd=cache,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    cpu.groups["client"] = [process.pid]
    result: dict[str, Any] = {}
    async with asyncio.timeout(warmup_s + duration_s + 180):
        async for raw in process.stdout:
            line = raw.decode().strip()
            if line == "CONNECTED" and on_connected is not None:
                await on_connected()
            elif line == "START":
                cpu.start()
            elif line == "STOP":
                cpu.stop()
            elif line.startswith("{"):
                result = orjson.loads(line)
        await process.wait()
    if not result:
        raise RuntimeError(f"the node client ended with {process.returncode} and no result")
    seconds = cpu.seconds()
    # The client's own figure is exact for its process (child processes are none).
    seconds["client"] = round(result["clientCpuS"], 3)
    ops = result["ok"] + result["refused"]
    result["cpuSeconds"] = seconds
    result["cpuUsPerOp"] = {
        name: round(total / ops * 1e6, 1) if ops else None for name, total in seconds.items()
    }
    result["deflate"] = deflate
    return result


@dataclass
class Peer:
    """A running peer server: its URL and its process (the one process its CPU is counted in)."""

    url: str
    process: asyncio.subprocess.Process

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_peer(
    cache: Path, database_url: str, access_secret: str, log: Path, **extra: str
) -> Peer:
    """The peer server on a free loopback port, on ThisThat's database and access-token secret;
    returns once it listens. Its output goes to `log`."""
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(cache / "peer_server.mjs"),
            cwd=cache,
            env={
                **os.environ,
                "HOST": "127.0.0.1",
                "PORT": "0",
                "DATABASE_URL": database_url,
                "JWT_ACCESS_SECRET": access_secret,
                **extra,
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=output,
        )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode().strip()
    except TimeoutError:
        line = ""
    if not line.startswith("LISTENING "):
        if process.returncode is None:
            process.kill()
        await process.wait()
        raise RuntimeError(f"the peer server did not start ({line!r}); see {log}")
    return Peer(f"http://127.0.0.1:{int(line.split()[1])}", process)
