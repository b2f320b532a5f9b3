"""The bet path against the bare Socket.IO ack and against a plain Node peer, all driven by the
official socket.io-client.

`python -m bench.wire [--sockets 100] [--seconds 15] [--no-deflate]` starts a private stack
(embedded PostgreSQL and Redis, one `thisthat serve`, the echo server), and runs the same
closed loop against the echo server, against `bet:place`, and against the peer server
(bench/node/peer_server.mjs: socket.io + pg, one transaction per bet, on the same database),
printing rates, latencies and CPU per operation by process. `make bench` runs it as one of its
scenarios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import node_client
from bench.processes import CpuWindow
from bench.stack import BenchStack
from bench.timeline import write_bench_timeline
from loadtest.system import raise_open_file_limit


async def compare(
    stack: BenchStack,
    bet_url: str,
    bet_pid: int,
    echo_url: str,
    echo_pid: int,
    tokens: list[str],
    *,
    sockets: int,
    seconds: float,
    deflate: bool,
) -> dict[str, Any] | None:
    cache = node_client.ensure_installed()
    if cache is None:
        return None
    pgdata = stack.pgdata()
    redis_pids = stack.redis_pids()
    runs: dict[str, Any] = {}
    for name, url, pid, event in (
        ("echo", echo_url, echo_pid, "wallet:get"),
        ("bet", bet_url, bet_pid, "bet:place"),
    ):
        node_client.say(f"official client, {sockets} sockets, closed loop: {name} ({event})")
        window = CpuWindow({"server": [pid], "redis": redis_pids}, pgdata=pgdata)
        runs[name] = await node_client.closed_loop(
            cache,
            url,
            tokens,
            window,
            event=event,
            sockets=sockets,
            duration_s=seconds,
            deflate=deflate,
        )
    runs["peer"] = await peer_run(
        stack, cache, tokens, sockets=sockets, seconds=seconds, deflate=deflate
    )
    echo, bet = runs["echo"]["cpuUsPerOp"], runs["bet"]["cpuUsPerOp"]
    runs["serverCpuRatio"] = (
        round(bet["server"] / echo["server"], 2)
        if echo.get("server") and bet.get("server")
        else None
    )
    runs["betsVsPeer"] = (
        round(runs["bet"]["okRate"] / runs["peer"]["okRate"], 2) if runs["peer"]["okRate"] else None
    )
    return runs


async def peer_run(
    stack: BenchStack,
    cache: Path,
    tokens: list[str],
    *,
    sockets: int,
    seconds: float,
    deflate: bool,
) -> dict[str, Any]:
    """The same closed loop of bets against the Node peer on ThisThat's own database; the peer
    runs only for this measurement (its CPU is its one process; it uses no Redis)."""
    peer = await node_client.start_peer(
        cache,
        stack.database_url,
        stack.secrets["JWT_ACCESS_SECRET"],
        stack.workdir / "peer.log",
    )
    try:
        node_client.say(f"official client, {sockets} sockets, closed loop: peer (bet:place)")
        window = CpuWindow({"server": [peer.process.pid]}, pgdata=stack.pgdata())
        return await node_client.closed_loop(
            cache,
            peer.url,
            tokens,
            window,
            event="bet:place",
            sockets=sockets,
            duration_s=seconds,
            deflate=deflate,
        )
    finally:
        await peer.stop()


def table(runs: dict[str, Any]) -> str:
    lines = [
        "| run | ok/s | p50 ms | p99 ms | server µs/op | PostgreSQL µs/op | Redis µs/op | client µs/op |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("echo", "bet", "peer"):
        run = runs[name]
        cpu = {key: "n/a" if value is None else value for key, value in run["cpuUsPerOp"].items()}
        lines.append(
            f"| {name} | {run['okRate']:,} | {run['latencyMs']['p50']} | {run['latencyMs']['p99']}"
            f" | {cpu.get('server', 'n/a')} | {cpu.get('postgres', 'n/a')}"
            f" | {cpu.get('redis', 'n/a')} | {cpu.get('client', 'n/a')} |"
        )
    if runs.get("betsVsPeer") is not None:
        lines.append(f"\nbets/s vs the peer: x{runs['betsVsPeer']}")
    return "\n".join(lines)


async def main_async(sockets: int, seconds: float, deflate: bool) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory(prefix="thisthat-wire-") as folder:
        workdir = Path(folder)
        stack = BenchStack(workdir, write_bench_timeline(workdir / "bench-timeline.jsonl"))
        try:
            stack.start_services()
            url, server = await stack.start_server()
            echo_url, echo = await stack.start_echo()
            seeded = await stack.seed_players(sockets)
            tokens = [player["accessToken"] for player in seeded["players"]]
            return await compare(
                stack,
                url,
                server.pid,
                echo_url,
                echo.pid,
                tokens,
                sockets=sockets,
                seconds=seconds,
                deflate=deflate,
            )
        finally:
            stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.wire", description=__doc__)
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--no-deflate", action="store_true", help="do not offer permessage-deflate")
    args = parser.parse_args(argv)
    raise_open_file_limit()
    runs = uvloop.run(main_async(args.sockets, args.seconds, not args.no_deflate))
    if runs is None:
        return 0
    print(table(runs), file=sys.stderr)
    print(orjson.dumps(runs).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
