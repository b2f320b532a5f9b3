"""What the market screen costs: `market:activity` pushes and presence beside bets, and the odds
history's writes, as ratios within one run.

    python -m bench.market_screen [--quick] [--listeners 1000] [--screen-bettors 100]
                                  [--screen-seconds 12]

(`python -m bench.run --only market-screen` is the same run; `make bench` runs it after the
stream phase.)

Features off, then on, on the same stack: a node with MARKET_ACTIVITY_PUSH_INTERVAL_MS=0 and
PRESENCE_INTERVAL_S longer than the run (presence has no off switch: its pass then never comes
during the run; what it does on `market:subscribe` stays), stopped, then a node with the
defaults. Each carries `--listeners` listening sockets (bench/watch_socket.py, in client
processes that count every push by event) subscribed to `--markets` markets of the replay
timeline and to one more market that only gets the fan-out ticks; then, in turn:
  idle   nothing sent: the CPU floor;
  ticks  odds ticks published to the extra market's room (as scenarios.fanout does): server
         CPU per recipient of one push, over the floor;
  bets   `--bettors` official clients (bench/node/closed_loop.mjs) bet in a closed loop over the
         same markets, subscribed to them: bets/s, CPU per bet, activity pushes delivered.
Then storage/markets.py `record_odds` at 2,000 odds changes a second over 200 markets, and the
30-day chart (bench/odds_writes.py), with no node running.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import os
import secrets
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import asyncpg
import orjson
import redis.asyncio as redis
import uvloop

from bench import node_client, odds_writes
from bench.markdown import market_screen_section
from bench.phase import on_own_stack, run_phase, say
from bench.scenarios import INSERT_FANOUT_MARKET, wait_quiet
from bench.stack import BenchStack
from bench.stream import TimedWindow, recv
from bench.watch_socket import open_watchers
from loadtest.system import raise_open_file_limit
from server.cli.seed import mint_tokens
from server.fanout import pushes

# Longer than any run: the presence pass sleeps first, so it never runs.
PRESENCE_NEVER_S: Final = "86400"
FEATURES: Final[dict[str, dict[str, str]]] = {
    "off": {"MARKET_ACTIVITY_PUSH_INTERVAL_MS": "0", "PRESENCE_INTERVAL_S": PRESENCE_NEVER_S},
    "on": {},
}
# Enough ticks that their fan-out is well above the idle floor's noise (the presence pass every
# PRESENCE_INTERVAL_S falls a time more or less in a window): 100,000 deliveries to 1,000 listeners.
TICKS: Final = 100
TICK_SPACING_S: Final = 0.05
IDLE_S: Final = 5.0
# The bench timeline moves every market every 5 s; odds older than this wait for the next move.
FRESH_ODDS_S: Final = 20

OPEN_MARKETS: Final = """
SELECT id::text FROM markets
WHERE status = 'open' AND source_id LIKE '0x%' AND question LIKE 'Benchmark market%'
ORDER BY volume DESC NULLS LAST LIMIT $1
"""
OLDEST_ODDS_S: Final = """
SELECT extract(epoch FROM now() - min(odds_updated_at)) FROM markets WHERE id = ANY($1::uuid[])
"""


@dataclass(frozen=True)
class ScreenSizes:
    bettors: int = 100
    listeners: int = 1_000
    markets: int = 4
    seconds: float = 12
    warmup_s: float = 3
    changes_per_s: float = 2_000
    history_markets: int = 200
    history_s: float = 10


FULL_SIZES: Final = ScreenSizes()
QUICK_SIZES: Final = ScreenSizes(listeners=500, seconds=6, history_s=5)


# --- the listening sockets ------------------------------------------------------------------


def run_listeners(
    url: str, tokens: list[str], markets: list[str], tick_market: str, control: Connection
) -> None:
    """Client process: these players' sockets, subscribed to `markets` and the tick market,
    noting the arrival time of every push by event (odds of the tick market apart)."""
    raise_open_file_limit()
    uvloop.run(_listen(url, tokens, markets, tick_market, control))


async def _listen(
    url: str, tokens: list[str], markets: list[str], tick_market: str, control: Connection
) -> None:
    arrivals: dict[str, array[float]] = {}
    activity_bets: array[float] = array("d")

    def on_push(event: str, data: Any) -> None:
        now = time.time()
        if event == "odds" and isinstance(data, dict) and data.get("marketId") == tick_market:
            event = "odds:tick"
        elif event == "market:activity" and isinstance(data, dict):
            activity_bets.append(len(data.get("bets", ())))
        arrivals.setdefault(event, array("d")).append(now)

    failures: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    subscribed = [*markets, tick_market]
    sockets = await open_watchers(url, [(token, subscribed) for token in tokens], on_push, failures)
    control.send({"connected": len(sockets), "failed": dict(failures)})
    windows: list[tuple[str, float, float]] = await loop.run_in_executor(None, control.recv)
    counts = {
        name: {
            event: sum(1 for at in times if start <= at < end) for event, times in arrivals.items()
        }
        for name, start, end in windows
    }
    control.send(
        {
            "counts": counts,
            "activityBets": sum(activity_bets),
            "activityPushes": len(activity_bets),
            "dropped": sum(socket.dropped for socket in sockets),
        }
    )
    await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)


# --- one node, features off or on -----------------------------------------------------------


async def bench_markets(database_url: str, count: int, timeout_s: float = 90) -> list[str]:
    """The timeline's `count` busiest markets, once each is listed and its odds moved lately (a
    new node lists them and takes the feed lease first)."""
    deadline = time.monotonic() + timeout_s
    connection = await asyncpg.connect(database_url)
    try:
        while True:
            market_ids = [row[0] for row in await connection.fetch(OPEN_MARKETS, count)]
            age = await connection.fetchval(OLDEST_ODDS_S, market_ids)
            if len(market_ids) == count and age is not None and age <= FRESH_ODDS_S:
                return market_ids
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(market_ids)} of {count} markets open, odds {age}s old, after {timeout_s}s"
                )
            await asyncio.sleep(1)
    finally:
        await connection.close()


async def publish_ticks(redis_url: str, market_id: str) -> None:
    """TICKS odds pushes to the market's room, through the channel every node delivers from."""
    client = redis.Redis.from_url(redis_url)
    try:
        for index in range(TICKS):
            odds = round(0.4 + index * 0.01, 4)
            tick = {
                "marketId": market_id,
                "thisOdds": odds,
                "thatOdds": round(1 - odds, 4),
                "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
            await client.publish(
                pushes.CHANNEL, orjson.dumps([["odds", f"market:{market_id}", tick]])
            )
            await asyncio.sleep(TICK_SPACING_S)
    finally:
        await client.aclose()


async def features_run(
    stack: BenchStack,
    cache: Path,
    players: list[dict[str, Any]],
    sizes: ScreenSizes,
    processes: int,
    tick_market: str,
    features: str,
) -> dict[str, Any]:
    """One node with the features `features` (off or on): idle, ticks and bets windows."""
    say(f"market screen, features {features}: starting a node")
    url, node = await stack.start_server(require_markets=True, **FEATURES[features])
    context = multiprocessing.get_context("spawn")
    listeners: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        market_ids = await bench_markets(stack.database_url, sizes.markets)
        listening, betting = players[: sizes.listeners], players[-sizes.bettors :]
        share = max(1, min(processes, sizes.listeners))
        say(f"market screen: connecting {sizes.listeners} listening sockets")
        for index in range(share):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=run_listeners,
                args=(
                    url,
                    [player["accessToken"] for player in listening[index::share]],
                    market_ids,
                    tick_market,
                    child_end,
                ),
                daemon=True,
                name=f"bench-listeners-{index}",
            )
            process.start()
            listeners.append((process, parent_end))
        ready = [await recv(end, 300) for _, end in listeners]
        connected = sum(entry["connected"] for entry in ready)
        failed: Counter[str] = Counter()
        for entry in ready:
            failed.update(entry["failed"])
        groups = {
            "server": [node.pid],
            "redis": stack.redis_pids(),
            "listeners": [process.pid for process, _ in listeners if process.pid],
        }

        def window() -> TimedWindow:
            return TimedWindow(dict(groups), pgdata=stack.pgdata())

        await wait_quiet(node.pid)
        idle = window()
        idle.start()
        await asyncio.sleep(IDLE_S)
        idle.stop()
        ticks = window()
        ticks.start()
        await publish_ticks(stack.redis_url, tick_market)
        await asyncio.sleep(0.5)
        ticks.stop()
        await wait_quiet(node.pid)
        say(f"market screen, features {features}: {sizes.bettors} sockets bet, closed loop")
        bets_window = window()
        bets = await node_client.closed_loop(
            cache,
            url,
            [player["accessToken"] for player in betting],
            bets_window,
            event="bet:place",
            sockets=sizes.bettors,
            duration_s=sizes.seconds,
            warmup_s=sizes.warmup_s,
            markets=[market_ids] * sizes.bettors,
        )
        await asyncio.sleep(1)
        windows = [
            (name, part.started_at, part.stopped_at)
            for name, part in (("idle", idle), ("ticks", ticks), ("bets", bets_window))
        ]
        for _, end in listeners:
            end.send(windows)
        heard = [await recv(end, 120) for _, end in listeners]
    finally:
        for listener, end in listeners:
            listener.join(timeout=15)
            if listener.is_alive():
                listener.kill()
            end.close()
        stack.stop_process(node)
    counts: dict[str, Counter[str]] = {name: Counter() for name, _, _ in windows}
    for entry in heard:
        for name, by_event in entry["counts"].items():
            counts[name].update(by_event)
    return features_report(
        sizes,
        features=features,
        connected=connected,
        failed=dict(failed),
        cpu={"idle": idle, "ticks": ticks, "bets": bets_window},
        counts={name: dict(counter) for name, counter in counts.items()},
        bets=bets,
        activity_bets=sum(entry["activityBets"] for entry in heard),
        activity_pushes=sum(entry["activityPushes"] for entry in heard),
        dropped=sum(entry["dropped"] for entry in heard),
    )


def features_report(
    sizes: ScreenSizes,
    *,
    features: str,
    connected: int,
    failed: dict[str, int],
    cpu: dict[str, TimedWindow],
    counts: dict[str, dict[str, int]],
    bets: dict[str, Any],
    activity_bets: int,
    activity_pushes: int,
    dropped: int,
) -> dict[str, Any]:
    idle, ticks, bets_window = cpu["idle"], cpu["ticks"], cpu["bets"]
    idle_rate = {name: total / idle.wall_s for name, total in idle.seconds().items()}
    tick_recipients = counts["ticks"].get("odds:tick", 0)
    tick_server = ticks.seconds().get("server", 0.0) - idle_rate.get("server", 0.0) * ticks.wall_s
    wall = bets_window.wall_s
    heard = counts["bets"]
    activity = heard.get("market:activity", 0)
    per_listener = activity / connected / wall if connected and wall else 0.0
    return {
        "features": features,
        "settings": FEATURES[features],
        "listeners": connected,
        "connectFailures": failed,
        "listenerSocketsDropped": dropped,
        "idleCpuPerS": {name: round(rate, 4) for name, rate in idle_rate.items()},
        "ticks": {
            "recipients": tick_recipients,
            "expected": TICKS * connected,
            "seconds": round(ticks.wall_s, 2),
            "serverCpuUsPerRecipient": round(max(0.0, tick_server) / tick_recipients * 1e6, 2)
            if tick_recipients
            else None,
        },
        "bets": bets,
        "pushesHeardPerS": {event: round(count / wall, 1) for event, count in heard.items()},
        "activityPushesPerS": round(activity / wall, 1),
        # The bettors sit in the same rooms: they get what each listener gets.
        "activityPushesPerSAllRecipients": round(per_listener * (connected + sizes.bettors), 1),
        "activityBetsPerPush": round(activity_bets / activity_pushes, 1)
        if activity_pushes
        else None,
    }


# --- the phase ------------------------------------------------------------------------------


async def market_screen_run(
    stack: BenchStack, players: list[dict[str, Any]], sizes: ScreenSizes, processes: int
) -> dict[str, Any]:
    """The phase on a started stack with seeded players (at least listeners + bettors) and no
    node running (a node started here takes the replay feed's lease)."""
    cache = node_client.ensure_installed()
    if cache is None:
        return {"skipped": "Node.js and npm are needed for the betting sockets"}
    needed = sizes.listeners + sizes.bettors
    if len(players) < needed:
        raise ValueError(f"the market screen run needs {needed} players, {len(players)} seeded")
    # Fresh tokens: in `make bench` the seeded ones are many minutes old by now.
    chosen = [dict(player) for player in players[:needed]]
    mint_tokens(chosen, stack.settings(), ttl_s=3600)
    connection = await asyncpg.connect(stack.database_url)
    try:
        tick_market = str(
            await connection.fetchval(
                INSERT_FANOUT_MARKET, f"bench-screen-ticks-{secrets.token_hex(4)}"
            )
        )
    finally:
        await connection.close()
    runs = {
        features: await features_run(stack, cache, chosen, sizes, processes, tick_market, features)
        for features in FEATURES
    }
    history = await odds_writes.history_run(
        stack.database_url,
        stack.pgdata(),
        changes_per_s=sizes.changes_per_s,
        markets=sizes.history_markets,
        seconds=sizes.history_s,
        say=say,
    )
    return {"sizes": dataclasses.asdict(sizes), **runs, "history": history}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def summary(screen: dict[str, Any]) -> dict[str, Any]:
    """The keys this phase adds to a summary line."""
    if "skipped" in screen:
        return {"market_screen_skipped": screen["skipped"]}
    off, on = screen["off"], screen["on"]
    off_cpu, on_cpu = off["bets"]["cpuUsPerOp"], on["bets"]["cpuUsPerOp"]
    # What the features add to each bet, times the bets a second, over the activity pushes
    # delivered a second: per push, whatever the two runs' throughput (the machine is shared).
    extra_per_bet_us = (
        on_cpu["server"] - off_cpu["server"]
        if on_cpu.get("server") is not None and off_cpu.get("server") is not None
        else None
    )
    delivered = on["activityPushesPerSAllRecipients"]
    runs = screen["history"]["runs"]
    paced, every = runs["paced"], runs["everyChange"]
    charts = screen["history"]["charts"]
    return {
        "screen_bets_per_s_off": off["bets"]["okRate"],
        "screen_bets_per_s_on": on["bets"]["okRate"],
        "screen_server_cpu_us_per_bet_off": off_cpu.get("server"),
        "screen_server_cpu_us_per_bet_on": on_cpu.get("server"),
        "screen_server_cpu_per_bet_on_vs_off": _ratio(on_cpu.get("server"), off_cpu.get("server")),
        "screen_pg_cpu_us_per_bet_off": off_cpu.get("postgres"),
        "screen_pg_cpu_us_per_bet_on": on_cpu.get("postgres"),
        "screen_activity_pushes_per_s": delivered,
        "screen_activity_bets_per_push": on["activityBetsPerPush"],
        "screen_server_cpu_us_per_activity_push": round(
            extra_per_bet_us * on["bets"]["okRate"] / delivered, 2
        )
        if extra_per_bet_us is not None and delivered
        else None,
        "screen_fanout_cpu_us_per_recipient_off": off["ticks"]["serverCpuUsPerRecipient"],
        "screen_fanout_cpu_us_per_recipient_on": on["ticks"]["serverCpuUsPerRecipient"],
        "screen_fanout_on_vs_off": _ratio(
            on["ticks"]["serverCpuUsPerRecipient"], off["ticks"]["serverCpuUsPerRecipient"]
        ),
        "history_changes_per_s_paced": paced["changesPerS"],
        "history_rows_per_s_paced": {
            table: entry["inserted"] + entry["updated"]
            for table, entry in paced["rowsPerS"].items()
        },
        "history_pg_cpu_us_per_change_paced": paced["pgCpuUsPerChange"],
        "history_statement_p99_ms_paced": paced["statementLatency"].get("p99Ms"),
        "history_changes_per_s_every": every["changesPerS"],
        "history_rows_per_s_every": {
            table: entry["inserted"] + entry["updated"]
            for table, entry in every["rowsPerS"].items()
        },
        "history_pg_cpu_us_per_change_every": every["pgCpuUsPerChange"],
        "history_statement_p99_ms_every": every["statementLatency"].get("p99Ms"),
        "history_bytes_per_market_day_every": every["bytesPerMarketPerDay"],
        "chart_30d_p50_ms": charts["month"]["latency"].get("p50Ms"),
        "chart_30d_p99_ms": charts["month"]["latency"].get("p99Ms"),
    }


# --- on its own -----------------------------------------------------------------------------


async def main_async(sizes: ScreenSizes, processes: int) -> dict[str, Any]:
    return await on_own_stack(
        "screen",
        sizes.listeners + sizes.bettors,
        lambda stack, players: market_screen_run(stack, players, sizes, processes),
    )


def sizes_from(args: argparse.Namespace) -> ScreenSizes:
    base = QUICK_SIZES if args.quick else FULL_SIZES
    chosen = {
        name: getattr(args, f"screen_{name}")
        for name in ("bettors", "listeners", "seconds")
        if getattr(args, f"screen_{name}", None) is not None
    }
    return dataclasses.replace(base, **chosen)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listeners",
        dest="screen_listeners",
        type=int,
        help="market screen: listening sockets (default 1,000; quick 500)",
    )
    parser.add_argument(
        "--screen-bettors",
        dest="screen_bettors",
        type=int,
        help="market screen: betting sockets (default 100)",
    )
    parser.add_argument(
        "--screen-seconds",
        dest="screen_seconds",
        type=float,
        help="market screen: each bets window (default 12; quick 6)",
    )


def run(args: argparse.Namespace) -> int:
    return run_phase(
        "market-screen",
        "marketScreen",
        args.quick,
        main_async(sizes_from(args), args.processes),
        summary,
        market_screen_section,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.market_screen",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller run, about three minutes")
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="listening client processes"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
