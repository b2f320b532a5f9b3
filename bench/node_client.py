"""The official socket.io-client from npm as a load client: what real players' clients pay.

The client is installed by `npm ci` into an untracked cache folder (var/bench/node) from the
committed bench/node/package-lock.json, the first time a bench needs it. Without Node.js the
measurements that need it are skipped with one clear line.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from bench.processes import CpuWindow

SOURCE = Path(__file__).resolve().parent / "node"
CACHE = Path(__file__).resolve().parent.parent / "var" / "bench" / "node"


def say(text: str) -> None:
    print(f"== {text}", file=sys.stderr, flush=True)


def ensure_installed(cache: Path = CACHE) -> Path | None:
    """The folder holding socket.io-client, installed if needed; None when Node.js is missing."""
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
        shutil.copyfile(SOURCE / "closed_loop.mjs", cache / "closed_loop.mjs")
        return cache
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(SOURCE / name, cache / name)
    # ES modules resolve packages beside the script, so the script runs from the cache.
    shutil.copyfile(SOURCE / "closed_loop.mjs", cache / "closed_loop.mjs")
    say(f"installing socket.io-client with npm into {cache}")
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
) -> dict[str, Any]:
    """`sockets` official clients, each with `in_flight` emits awaiting their ack (or, with
    `open_rate`, events sent at that rate whatever the answers); CPU by process."""
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
            if line == "START":
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
