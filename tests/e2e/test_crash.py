"""SIGKILL in the middle of bets: after a restart every acknowledged bet is there and the audit passes."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as redis
import socketio

from storage import audit
from tests.betting_fixtures import insert_market
from tests.nodes import ServerNode
from tests.players import Player


@pytest.mark.timeout(120)
async def test_kill_nine_mid_load_loses_no_acknowledged_bet(
    service_urls: tuple[str, str],
    tmp_path: Path,
    db: asyncpg.Pool,
    redis_client: redis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    market_id = str(await insert_market(db, this_odds="0.5000", that_odds="0.5000"))
    node = await ServerNode(
        *service_urls, tmp_path, rate_limit_enabled="false", odds_max_age_s=3600
    ).start()
    players = [await Player(node.url, http).signup() for _ in range(4)]
    for player in players:
        await player.connect()

    acked: list[dict[str, Any]] = []
    stop = asyncio.Event()

    async def bet_until_killed(player: Player, number: int) -> None:
        for sequence in range(500):
            if stop.is_set():
                return
            try:
                answer = await player.sockets[0].call(
                    "bet:place",
                    {
                        "marketId": market_id,
                        "side": "this",
                        "amount": 10,
                        "clientBetId": f"p{number}-{sequence}",
                    },
                    timeout=3,
                )
            except (TimeoutError, socketio.exceptions.SocketIOError):
                return  # the server died under this request: no ack, no promise
            if answer["ok"]:
                acked.append(answer["data"]["bet"])

    load = [asyncio.create_task(bet_until_killed(p, n)) for n, p in enumerate(players)]
    for _ in range(200):
        if len(acked) >= 40:
            break
        await asyncio.sleep(0.05)
    node.kill()
    stop.set()
    await asyncio.gather(*load)
    for player in players:
        with contextlib.suppress(Exception):
            await player.close()
    assert len(acked) >= 40

    restarted = await ServerNode(*service_urls, tmp_path, odds_max_age_s=3600).start()
    try:
        stored = {str(row["id"]) for row in await db.fetch("SELECT id FROM bets")}
        assert {bet["id"] for bet in acked} <= stored
        async with db.acquire() as connection:
            assert (
                await audit.check_all(
                    connection, redis_client, Decimal("1000000"), datetime.now(UTC)
                )
                == []
            )
        # The restarted node serves a player exactly the bets it acknowledged before the crash.
        survivor = Player(restarted.url, http)
        status, body, _ = await survivor.post(
            "/auth/login", {"username": players[0].username, "password": players[0].password}
        )
        assert status == 200
        survivor._take(body)
        await survivor.connect()
        mine = {bet["id"] for bet in acked if bet["clientBetId"].startswith("p0-")}
        listed = await survivor.ok("bets:list", {"status": "open", "limit": 200})
        assert mine <= {bet["id"] for bet in listed["bets"]}
        await survivor.close()
    finally:
        restarted.stop()
