"""`make bench` (`python -m bench.run [--quick]`): every figure of the load-testing issue in one run.

Starts embedded PostgreSQL and Redis under a temp dir, one `thisthat serve` node on a generated
replay timeline, and the bare echo server; seeds players; measures idle memory, fan-out, the echo
ceiling, bet throughput and latency, and logins during bets. Prints one JSON summary line last and
files the results under bench/results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import market_screen, node_client, scenarios, stream, wire
from bench.phase import RUNS, say
from bench.processes import CpuWindow
from bench.stack import BenchStack
from bench.timeline import write_bench_timeline
from loadtest.system import machine, raise_open_file_limit

# Committed reference results change only on purpose (`--save`); every run writes here.
RESULTS = Path(__file__).resolve().parent / "results"

FULL: dict[str, Any] = {
    "players": 10_000,
    "load_players": 2_000,
    "closed_s": 20,
    "concurrency": 400,
    "open_rate": 1_000,
    "open_s": 60,
    "peak_rate": 5_000,
    "peak_s": 30,
    "login_s": 30,
    "fanout": 5_000,
    "memory": (1_000, 10_000),
    "official_sockets": 100,
    "official_s": 20,
    "overload_s": 30,
    "stream": dataclasses.asdict(stream.FULL_SIZES),
    "marketScreen": dataclasses.asdict(market_screen.FULL_SIZES),
}
QUICK: dict[str, Any] = {
    "players": 2_000,
    "load_players": 1_000,
    "closed_s": 8,
    "concurrency": 200,
    "open_rate": 1_000,
    "open_s": 10,
    "peak_rate": 5_000,
    "peak_s": 8,
    "login_s": 10,
    "fanout": 1_000,
    "memory": (1_000, 2_000),
    "official_sockets": 100,
    "official_s": 10,
    "overload_s": 10,
    "stream": dataclasses.asdict(stream.QUICK_SIZES),
    "marketScreen": dataclasses.asdict(market_screen.QUICK_SIZES),
}


async def bench(quick: bool, processes: int) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    results: dict[str, Any] = {
        "quick": quick,
        "machine": machine(),
        "sizes": sizes,
        "startedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    with tempfile.TemporaryDirectory(prefix="thisthat-bench-") as folder:
        workdir = Path(folder)
        stack = BenchStack(workdir, write_bench_timeline(workdir / "bench-timeline.jsonl"))
        try:
            say("starting embedded PostgreSQL and Redis")
            stack.start_services()
            url, server = await stack.start_server()
            echo_url, echo = await stack.start_echo()
            say(f"seeding {sizes['players']} players")
            seeded = await stack.seed_players(sizes["players"])
            players = seeded["players"]
            load_players = players[: sizes["load_players"]]

            # First, while the server and the echo server have the same history (none). Once the
            # memory phase's 10,000 sockets have come and gone, a process keeps its grown heap
            # (RSS stays near 520 MiB) and spends more CPU per operation (in one comparison: echo
            # 50 -> 55 us per ack, bet 67 -> 71 us), and only the server goes through that phase.
            results["official"] = await official_client_runs(
                stack, url, server.pid, echo_url, echo.pid, players, sizes
            )

            await scenarios.wait_quiet(server.pid)
            memory = {}
            for count in sizes["memory"]:
                say(f"memory: {count} idle sockets")
                memory[str(count)] = await scenarios.idle_memory(
                    url, server.pid, players[:count], processes
                )
            results["memory"] = memory

            say(f"fan-out: one odds tick to {sizes['fanout']} sockets")
            results["fanout"] = await scenarios.fanout(
                url,
                server.pid,
                stack.database_url,
                stack.redis_url,
                players[: sizes["fanout"]],
                processes,
            )

            say("ceiling: echo server, closed loop")
            results["echo"] = await scenarios.closed_loop(
                echo_url, load_players, processes, sizes["closed_s"], sizes["concurrency"]
            )
            say("bet:place, closed loop")
            await scenarios.wait_quiet(server.pid)
            results["betsClosed"] = await scenarios.closed_loop(
                url, load_players, processes, sizes["closed_s"], sizes["concurrency"]
            )
            say(f"bet:place, open loop at {sizes['open_rate']}/s for {sizes['open_s']}s")
            await scenarios.wait_quiet(server.pid)
            results["betsOpen"] = await scenarios.open_loop(
                url, load_players, processes, sizes["open_rate"], sizes["open_s"]
            )
            say(
                f"bet:place at {sizes['open_rate']}/s for {sizes['login_s']}s, without then with logins at 5/s"
            )
            await scenarios.wait_quiet(server.pid)
            results["betsWithoutLogins"] = await scenarios.open_loop(
                url, load_players, processes, sizes["open_rate"], sizes["login_s"]
            )
            await scenarios.wait_quiet(server.pid)
            results["betsWithLogins"] = await scenarios.with_logins(
                url,
                load_players,
                seeded["password"],
                processes,
                sizes["open_rate"],
                sizes["login_s"],
            )
            # Last: an overload leaves a backlog in the server that would colour any later run.
            say(f"bet:place, open loop at {sizes['peak_rate']}/s for {sizes['peak_s']}s")
            await scenarios.wait_quiet(server.pid)
            results["betsPeak"] = await scenarios.open_loop(
                url, load_players, processes, sizes["peak_rate"], sizes["peak_s"]
            )
            # After everything else: it stops the replay node (the feed lease is one per
            # deployment, and its feed node must take it) and runs on two fresh nodes, with
            # 5,000 more sockets and a second node that no earlier figure was measured beside.
            stream_sizes = stream.StreamSizes(**sizes["stream"])
            say(
                f"stream: {stream_sizes.frames_per_s:g} frames/s to {stream_sizes.sockets} sockets"
                f" while {stream_sizes.bettors} bet"
            )
            results["stream"] = await stream.stream_run(
                stack, players, stream_sizes, processes, feed_node=server
            )
            # After the stream: its nodes are stopped first, as the nodes of this phase take the
            # replay feed's lease in turn.
            for process in stack.processes:
                stack.stop_process(process)
            screen_sizes = market_screen.ScreenSizes(**sizes["marketScreen"])
            say(
                f"market screen: bets with activity pushes and presence off, then on"
                f" ({screen_sizes.listeners} listening sockets), then the odds history's writes"
            )
            results["marketScreen"] = await market_screen.market_screen_run(
                stack, players, screen_sizes, processes
            )
        finally:
            stack.stop()
    results["summary"] = summary(results)
    return results


async def official_client_runs(
    stack: BenchStack,
    url: str,
    server_pid: int,
    echo_url: str,
    echo_pid: int,
    players: list[dict[str, Any]],
    sizes: dict[str, Any],
) -> dict[str, Any] | None:
    """The official socket.io-client (permessage-deflate offered): echo, bets and the Node peer's
    bets closed loop, CPU per operation by process, then bets open loop at 3x the closed-loop
    capacity (goodput)."""
    tokens = [player["accessToken"] for player in players]
    runs = await wire.compare(
        stack,
        url,
        server_pid,
        echo_url,
        echo_pid,
        tokens,
        sockets=sizes["official_sockets"],
        seconds=sizes["official_s"],
        deflate=True,
    )
    cache = node_client.ensure_installed()
    if runs is None or cache is None:
        return None
    capacity = runs["bet"]["okRate"]
    offered = round(3 * capacity)
    say(f"official client: bets offered at {offered}/s (3x capacity) for {sizes['overload_s']}s")
    await scenarios.wait_quiet(server_pid)
    window = CpuWindow({"server": [server_pid], "redis": stack.redis_pids()}, pgdata=stack.pgdata())
    runs["overload"] = await node_client.closed_loop(
        cache,
        url,
        tokens,
        window,
        event="bet:place",
        sockets=sizes["official_sockets"],
        duration_s=sizes["overload_s"],
        open_rate=offered,
    )
    runs["overload"]["offeredRate"] = offered
    runs["overloadGoodputRatio"] = (
        round(runs["overload"]["okRate"] / capacity, 3) if capacity else None
    )
    return runs


def summary(results: dict[str, Any]) -> dict[str, Any]:
    echo, closed, opened, peak = (
        results[key] for key in ("echo", "betsClosed", "betsOpen", "betsPeak")
    )
    with_logins, without = results["betsWithLogins"], results["betsWithoutLogins"]
    largest = max(results["memory"].values(), key=lambda entry: entry["sockets"])
    bets_per_s = closed["okRate"]
    official = results.get("official") or {}
    bet_cpu = official.get("bet", {}).get("cpuUsPerOp", {})
    echo_cpu = official.get("echo", {}).get("cpuUsPerOp", {})
    overload = official.get("overload", {})
    peer = official.get("peer", {})
    streamed = stream.summary(results["stream"]) if "stream" in results else {}
    screen = market_screen.summary(results["marketScreen"]) if "marketScreen" in results else {}
    return {
        "official_echo_acks_per_s": official.get("echo", {}).get("okRate"),
        "official_bets_per_s": official.get("bet", {}).get("okRate"),
        "server_cpu_us_per_bet": bet_cpu.get("server"),
        "echo_cpu_us_per_ack": echo_cpu.get("server"),
        "server_cpu_ratio_bet_vs_echo": official.get("serverCpuRatio"),
        "pg_cpu_us_per_bet": bet_cpu.get("postgres"),
        "redis_cpu_us_per_bet": bet_cpu.get("redis"),
        "client_cpu_us_per_bet": bet_cpu.get("client"),
        "peer_bets_per_s": peer.get("okRate"),
        "peer_server_cpu_us_per_bet": peer.get("cpuUsPerOp", {}).get("server"),
        "peer_pg_cpu_us_per_bet": peer.get("cpuUsPerOp", {}).get("postgres"),
        "bets_vs_peer": official.get("betsVsPeer"),
        "overload_offered_per_s": overload.get("offeredRate"),
        "overload_ok_per_s": overload.get("okRate"),
        "overload_goodput_ratio": official.get("overloadGoodputRatio"),
        "overload_ok_p99_ms": overload.get("latencyMs", {}).get("p99"),
        "overload_refusal_p99_ms": overload.get("refusalLatencyMs", {}).get("p99"),
        "overload_timeouts": overload.get("timeouts"),
        "echo_acks_per_s": echo["okRate"],
        "bets_per_s": bets_per_s,
        "bet_vs_echo": round(bets_per_s / echo["okRate"], 3) if echo["okRate"] else None,
        "bet_p50_ms": opened["latency"].get("p50Ms"),
        "bet_p99_ms": opened["latency"].get("p99Ms"),
        "bet_open_rate": opened["targetRate"],
        "bet_open_errors": opened["unexpectedErrors"],
        "bet_peak_offered_per_s": peak["offeredRate"],
        "bet_peak_achieved_per_s": peak["okRate"],
        "bet_peak_p95_ms": peak["latency"].get("p95Ms"),
        "fanout_sockets": results["fanout"]["sockets"],
        "fanout_last_ms": results["fanout"]["lastDeliveryMs"],
        "fanout_cpu_us_per_recipient": results["fanout"]["cpuUsPerRecipient"],
        "idle_sockets": largest["sockets"],
        "idle_rss_mib": round(largest["rssKb"] / 1024, 1),
        "idle_kb_per_socket": largest["kbPerSocket"],
        "bet_p99_ms_with_logins": with_logins["latency"].get("p99Ms"),
        "bet_p99_ms_without_logins": without["latency"].get("p99Ms"),
        "login_p99_ms": with_logins["logins"]["latency"].get("p99Ms"),
        **streamed,
        **screen,
    }


def file_results(results: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    kind = "-quick" if results["quick"] else ""
    path = folder / f"{stamp}-{results['machine']['host']}{kind}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    from bench.markdown import write_latest

    write_latest(results, folder / "latest.md", path.name)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, a few minutes")
    parser.add_argument(
        "--save",
        action="store_true",
        help="also update the committed reference results in bench/results/",
    )
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="load client processes"
    )
    parser.add_argument(
        "--only",
        choices=["stream", "market-screen"],
        help="run one phase on its own stack (stream: bench/stream.py; market-screen:"
        " bench/market_screen.py; a few minutes each)",
    )
    stream.add_arguments(parser)
    market_screen.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.only == "stream":
        return stream.run(args)
    if args.only == "market-screen":
        return market_screen.run(args)
    raise_open_file_limit()
    started = time.monotonic()
    results = uvloop.run(bench(args.quick, args.processes))
    results["wallSeconds"] = round(time.monotonic() - started, 1)
    path = file_results(results, RUNS)
    say(f"results in {path} and {RUNS / 'latest.md'} ({results['wallSeconds']}s)")
    if args.save:
        saved = file_results(results, RESULTS)
        say(f"reference results updated: {saved} and {RESULTS / 'latest.md'}")
    print(orjson.dumps(results["summary"]).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
