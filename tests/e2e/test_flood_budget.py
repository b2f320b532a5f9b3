"""What one hostile client can take from a node: a flood of frames no game limit counts, or of
compressed frames that inflate 600-fold, while four honest players bet every 100 ms on the same
node (a real `thisthat serve` process; the flood from a process of its own).

Run with `-s` to see the figures of each run.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
import orjson
import psutil
import pytest
import redis.asyncio as redis

from tests.betting_fixtures import insert_market
from tests.nodes import ServerNode
from tests.players import Player

pytestmark = pytest.mark.slow

HONEST_PLAYERS: Final = 4
BET_EVERY_S: Final = 0.1
WALLET_EVERY_S: Final = 0.5
ANSWER_WITHIN_S: Final = 5.0
ATTACK_S: Final = 6.0
TOKENLESS_KINDS: Final = ("unknown-event", "reserved-event", "broken-json", "upgrade")


@pytest.fixture
async def node(
    service_urls: tuple[str, str],
    tmp_path: Path,
    db: asyncpg.Pool,
    redis_client: redis.Redis,
) -> AsyncIterator[ServerNode]:
    server = ServerNode(*service_urls, tmp_path, log_level="WARNING")
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Answers:
    """Each honest request's outcome and latency (a request unanswered in time counts as a
    failure that took ANSWER_WITHIN_S)."""

    bets: list[tuple[bool, float]] = field(default_factory=list)
    wallet_s: list[float] = field(default_factory=list)

    def ok_share(self) -> float:
        return sum(ok for ok, _ in self.bets) / len(self.bets)

    def p99_s(self) -> float:
        return statistics.quantiles([took for _, took in self.bets], n=100)[98]

    def figures(self) -> dict[str, Any]:
        return {
            "bets": len(self.bets),
            "ok": sum(ok for ok, _ in self.bets),
            "busy": len(self.bets) - sum(ok for ok, _ in self.bets),
            "bet_p50_ms": round(statistics.median(t for _, t in self.bets) * 1000, 1),
            "bet_p99_ms": round(self.p99_s() * 1000, 1),
            "wallet_get_p50_ms": round(statistics.median(self.wallet_s) * 1000, 1),
        }


async def timed(player: Player, event: str, payload: dict[str, Any]) -> tuple[bool, float]:
    started = time.monotonic()
    try:
        answer = await asyncio.wait_for(player.call(event, payload), ANSWER_WITHIN_S)
    except (TimeoutError, aiohttp.ClientError, OSError):
        return False, ANSWER_WITHIN_S
    return bool(answer.get("ok")), time.monotonic() - started


async def play_honestly(
    players: list[Player], market: uuid.UUID, seconds: float, answers: Answers
) -> None:
    """Every player bets every BET_EVERY_S and asks its wallet every WALLET_EVERY_S, whatever
    the latency (open loop): a late answer does not delay the next request."""
    pending: set[asyncio.Task[None]] = set()

    async def bet(player: Player, n: int) -> None:
        payload = {
            "marketId": str(market),
            "side": "this",
            "amount": 10,
            "clientBetId": f"{player.username}-{n}",
        }
        answers.bets.append(await timed(player, "bet:place", payload))

    async def wallet(player: Player) -> None:
        answers.wallet_s.append((await timed(player, "wallet:get", {}))[1])

    started = time.monotonic()
    for n in range(int(seconds / BET_EVERY_S)):
        await asyncio.sleep(max(0.0, started + n * BET_EVERY_S - time.monotonic()))
        for player in players:
            pending.add(asyncio.ensure_future(bet(player, n)))
            if n % round(WALLET_EVERY_S / BET_EVERY_S) == 0:
                pending.add(asyncio.ensure_future(wallet(player)))
    await asyncio.gather(*pending)


async def attacker(url: str, kind: str, seconds: float, tokens: list[str]) -> Any:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.hostile_flood",
        url,
        kind,
        str(seconds),
        *tokens,
        stdout=asyncio.subprocess.PIPE,
    )


async def signed_up(url: str, http: aiohttp.ClientSession, count: int) -> list[Player]:
    return [await Player(url, http).signup() for _ in range(count)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", [*TOKENLESS_KINDS, "compressed"])
async def test_honest_players_keep_betting_while_one_client_floods_the_node(
    node: ServerNode, http: aiohttp.ClientSession, db: asyncpg.Pool, kind: str
) -> None:
    market = await insert_market(db)
    players = await signed_up(node.url, http, HONEST_PLAYERS)
    tokens = (
        [p.access_token for p in await signed_up(node.url, http, 4)] if kind == "compressed" else []
    )
    for player in players:
        await player.connect()
    flood = await attacker(node.url, kind, ATTACK_S + 1, tokens)
    try:
        await asyncio.sleep(0.5)
        answers = Answers()
        await play_honestly(players, market, ATTACK_S, answers)
        out, _ = await asyncio.wait_for(flood.communicate(), 30)
    finally:
        if flood.returncode is None:
            flood.kill()
            await flood.wait()
        for player in players:
            await player.close()
    figures = {"kind": kind, **answers.figures(), "attacker": orjson.loads(out)}
    print(orjson.dumps(figures).decode())  # noqa: T201 - the run's figures, shown with -s
    assert answers.ok_share() >= 0.9, figures
    assert answers.p99_s() < 0.5, figures


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)


@pytest.mark.timeout(150)
async def test_memory_comes_back_after_a_burst_of_compressed_frames(
    node: ServerNode, http: aiohttp.ClientSession
) -> None:
    tokens = [p.access_token for p in await signed_up(node.url, http, 4)]
    # Warm the node up (imports, pools, first sockets) so the baseline is its resting size.
    warm = await signed_up(node.url, http, 1)
    await warm[0].connect()
    await warm[0].ok("wallet:get")
    await warm[0].close()
    await asyncio.sleep(1)
    baseline = rss_mib(node.pid)
    flood = await attacker(node.url, "compressed", 4, tokens)
    peak = baseline
    try:
        for _ in range(100):  # bounded: the flood lasts 4 s
            peak = max(peak, rss_mib(node.pid))
            if flood.returncode is not None:
                break
            try:
                await asyncio.wait_for(flood.wait(), 0.1)
            except TimeoutError:
                continue
        out, _ = await asyncio.wait_for(flood.communicate(), 30)
    finally:
        if flood.returncode is None:
            flood.kill()
            await flood.wait()
    after = baseline
    for _ in range(60):
        await asyncio.sleep(1)
        after = rss_mib(node.pid)
        peak = max(peak, after)
        if after - baseline < 20:
            break
    figures = {
        "baseline_mib": round(baseline, 1),
        "peak_mib": round(peak, 1),
        "after_mib": round(after, 1),
        "attacker": orjson.loads(out),
    }
    print(orjson.dumps(figures).decode())  # noqa: T201 - the run's figures, shown with -s
    assert peak - baseline < 50, figures
    assert after - baseline < 20, figures
