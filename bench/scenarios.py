"""The measurements of `make bench`, each driving the servers with the same load client."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import asyncpg
import orjson
import redis.asyncio as redis

from loadtest.plan import LoadPlan, parse_mix
from loadtest.runner import run_load
from loadtest.stats import new_histogram, record_seconds, summarize
from loadtest.system import cpu_seconds, rss_kb
from server.fanout import pushes

BETS_ONLY: Final = parse_mix("bet=1")

INSERT_FANOUT_MARKET: Final = """
INSERT INTO markets (source_id, question, this_label, that_label, this_token_id, that_token_id,
                     this_odds, that_odds, odds_updated_at, ends_at)
VALUES ($1, 'Fan-out benchmark market', 'Yes', 'No', $1 || '-1', $1 || '-2', 0.5, 0.5, now(),
        now() + interval '30 days')
RETURNING id
"""


async def wait_quiet(pid: int, busy_cpu_share: float = 0.15, max_wait_s: float = 60) -> None:
    """Wait until the server process is nearly idle: a backlog from the last run must not colour the next."""
    for _ in range(int(max_wait_s / 0.5)):
        before = cpu_seconds(pid)
        await asyncio.sleep(0.5)
        if cpu_seconds(pid) - before < busy_cpu_share * 0.5:
            return


def plan(url: str, players: list[dict[str, Any]], **options: Any) -> LoadPlan:
    return LoadPlan(base_url=url, players=players, run_tag=secrets.token_hex(4), **options)


async def closed_loop(
    url: str, players: list[dict[str, Any]], processes: int, duration_s: float, concurrency: int
) -> dict[str, Any]:
    """Max throughput: `concurrency` bets in flight, the next one sent when an ack arrives."""
    return await run_load(
        plan(
            url,
            players,
            mode="closed",
            concurrency=concurrency,
            duration_s=duration_s,
            warmup_s=2,
            mix=BETS_ONLY,
        ),
        processes,
    )


async def open_loop(
    url: str, players: list[dict[str, Any]], processes: int, rate: float, duration_s: float
) -> dict[str, Any]:
    """Bets arriving at a fixed rate; latency from each bet's scheduled send time."""
    return await run_load(
        plan(
            url, players, mode="open", rate=rate, duration_s=duration_s, warmup_s=2, mix=BETS_ONLY
        ),
        processes,
    )


async def with_logins(
    url: str,
    players: list[dict[str, Any]],
    password: str,
    processes: int,
    rate: float,
    duration_s: float,
    logins_per_s: float = 5,
) -> dict[str, Any]:
    """The open-loop bet run again while REST logins (bcrypt) arrive at `logins_per_s`."""
    started = asyncio.Event()
    load = asyncio.ensure_future(
        run_load(
            plan(
                url,
                players,
                mode="open",
                rate=rate,
                duration_s=duration_s,
                warmup_s=2,
                mix=BETS_ONLY,
            ),
            processes,
            started=started,
        )
    )
    await started.wait()
    latencies = new_histogram()
    failures = 0
    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession() as http:

        async def login(username: str, scheduled: float) -> None:
            nonlocal failures
            async with http.post(
                f"{url}/auth/login", json={"username": username, "password": password}
            ) as answer:
                await answer.read()
                failures += answer.status != 200
            record_seconds(latencies, time.monotonic() - scheduled)

        begin = time.monotonic()
        for index in range(int((duration_s + 2) * logins_per_s)):
            scheduled = begin + index / logins_per_s
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            tasks.append(asyncio.create_task(login(random.choice(players)["username"], scheduled)))
        await asyncio.gather(*tasks)
    report = await load
    report["logins"] = {"rate": logins_per_s, "failures": failures, "latency": summarize(latencies)}
    return report


async def fanout(
    url: str,
    server_pid: int,
    database_url: str,
    redis_url: str,
    players: list[dict[str, Any]],
    processes: int,
    ticks: int = 5,
) -> dict[str, Any]:
    """One odds tick at a time to every socket of one market room; last delivery and CPU per recipient.

    The tick goes through the same Redis channel the poller's pushes use (server.fanout.pushes).
    """
    connection = await asyncpg.connect(database_url)
    try:
        market_id = str(
            await connection.fetchval(INSERT_FANOUT_MARKET, f"bench-fanout-{secrets.token_hex(4)}")
        )
    finally:
        await connection.close()
    started = asyncio.Event()
    duration = 4 + ticks * 2.0
    load = asyncio.ensure_future(
        run_load(
            plan(url, players, mode="idle", duration_s=duration, market_ids=(market_id,)),
            processes,
            started=started,
        )
    )
    await started.wait()
    client = redis.Redis.from_url(redis_url)
    cpu_per_tick, idle_cpu = [], []
    await asyncio.sleep(2)
    for index in range(ticks):
        before = cpu_seconds(server_pid)
        await asyncio.sleep(1.0)
        idle_cpu.append(cpu_seconds(server_pid) - before)
        odds = round(0.4 + index * 0.01, 4)
        before = cpu_seconds(server_pid)
        tick = {
            "marketId": market_id,
            "thisOdds": odds,
            "thatOdds": round(1 - odds, 4),
            "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        await client.publish(pushes.CHANNEL, orjson.dumps([["odds", f"market:{market_id}", tick]]))
        await asyncio.sleep(1.0)
        cpu_per_tick.append(cpu_seconds(server_pid) - before)
    report = await load
    await client.aclose()
    sockets = report["connections"]["connected"]
    ours = [tick for tick in report["oddsTicks"]["ticks"] if tick["tick"].startswith(market_id)]
    idle = sum(idle_cpu) / len(idle_cpu)
    per_tick = [max(0.0, cpu - idle) for cpu in cpu_per_tick]
    return {
        "sockets": sockets,
        "ticks": ours,
        "lastDeliveryMs": max((tick["lastDeliveryMs"] for tick in ours), default=None),
        "medianLastDeliveryMs": sorted(tick["lastDeliveryMs"] for tick in ours)[len(ours) // 2]
        if ours
        else None,
        "allDelivered": all(tick["recipients"] == sockets for tick in ours) and len(ours) == ticks,
        "cpuUsPerRecipient": round(1e6 * sum(per_tick) / len(per_tick) / max(1, sockets), 2),
        "idleCpuSecondsPerSecond": round(idle, 4),
        "dropped": report["socketsDropped"],
    }


async def idle_memory(
    url: str, server_pid: int, players: list[dict[str, Any]], processes: int
) -> dict[str, Any]:
    """Server RSS with these players connected and idle (each subscribed to 3 markets)."""
    started = asyncio.Event()
    before = rss_kb(server_pid)
    load = asyncio.ensure_future(
        run_load(plan(url, players, mode="idle", duration_s=4), processes, started=started)
    )
    await started.wait()
    await asyncio.sleep(2)
    during = rss_kb(server_pid)
    report = await load
    sockets = report["connections"]["connected"]
    return {
        "sockets": sockets,
        "rssBeforeKb": before,
        "rssKb": during,
        "kbPerSocket": round((during - before) / max(1, sockets), 2),
        "failed": report["connections"]["failed"],
        "connectMs": report["connections"]["time"],
    }
