"""A rolling restart under bet load: SIGTERM answers every event, hands the sockets back so the
players move to the other node, loses no acked bet, exits 0 and logs no error; and clients of
python-socketio and socket.io-client reconnect by themselves."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import socketio
from aiohttp import WSCloseCode

from tests.betting_fixtures import insert_market
from tests.nodes import ServerNode
from tests.players import Player
from tests.raw_socket import RawSocket

PLAYERS = 12
RECONNECTING_CLIENTS = 20
BET_SECONDS_AFTER_SIGTERM = 4.0


MAX_MOVES = 50


class Bettor:
    """One player betting in a loop over a raw websocket, as a client that reads until its
    connection really ends; when a node hands it back, it moves to the next node, and a bet its
    connection ended without answering is sent again there with the same clientBetId."""

    def __init__(self, player: Player, urls: list[str], market: str) -> None:
        self.player = player
        self.urls = urls
        self.market = market
        self.acked: dict[str, str] = {}  # clientBetId -> bet id, for bets acked ok
        self.refused: dict[str, str] = {}  # clientBetId -> code
        self.unanswered: str | None = None  # a bet whose connection ended before its answer
        self.resent = 0
        self.close_codes: list[object] = []
        self.moves = 0
        self._ids = itertools.count()

    async def run(self, until: float) -> None:
        node = 0
        while (time.monotonic() < until or self.unanswered) and self.moves < MAX_MOVES:
            await self.bet_on(self.urls[node], until)
            node = (node + 1) % len(self.urls)
            self.moves += 1

    async def bet_on(self, url: str, until: float) -> None:
        raw = await RawSocket(url, self.player.http).open()
        await raw.authenticate(self.player.access_token)
        assert raw.ws is not None
        try:
            while time.monotonic() < until or self.unanswered:
                bet = self.unanswered or f"{self.player.username}-{next(self._ids)}"
                if self.unanswered:
                    self.resent += 1
                self.unanswered = None
                ack_id = next(self._ids)
                payload = {
                    "marketId": self.market,
                    "side": "this",
                    "amount": 10,
                    "clientBetId": bet,
                }
                await raw.send(f"42{ack_id}" + orjson.dumps(["bet:place", payload]).decode())
                answered = False
                async with asyncio.timeout(15):
                    while not answered:
                        message = await raw.ws.receive()
                        if message.type != aiohttp.WSMsgType.TEXT:
                            self.close_codes.append(message.data)
                            break  # the connection ended
                        text = str(message.data)
                        assert text != "1", "an Engine.IO close: clients would not reconnect"
                        if text == "2":
                            await raw.send("3")
                        elif text.startswith(f"43{ack_id}["):
                            answer = orjson.loads(text[len(f"43{ack_id}") :])[0]
                            answered = True
                            self.refused.pop(bet, None)
                            if answer["ok"]:
                                self.acked[bet] = answer["data"]["bet"]["id"]
                            else:
                                self.refused[bet] = answer["error"]["code"]
                if not answered:
                    self.unanswered = bet
                    return
        finally:
            await raw.close()


@pytest.mark.timeout(120)
async def test_a_rolling_restart_under_bet_load_loses_nothing_and_answers_everything(
    service_urls: tuple[str, str], tmp_path: Path, db: asyncpg.Pool, http: aiohttp.ClientSession
) -> None:
    limits = {
        "rate_limit_bets_per_user": "1000/1",
        "rate_limit_events_per_user": "1000/1",
        "rate_limit_signup_per_ip": "1000/60",
        "starting_credits": "100000",
    }
    first = ServerNode(*service_urls, tmp_path / "a", **limits)
    second = ServerNode(*service_urls, tmp_path / "b", **limits)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        await first.start()
        await second.start()
        market = str(await insert_market(db))
        players = [await Player(first.url, http).signup() for _ in range(PLAYERS)]
        bettors = [Bettor(p, [first.url, second.url], market) for p in players]
        until = time.monotonic() + 1.5 + BET_SECONDS_AFTER_SIGTERM
        load = asyncio.gather(*(b.run(until) for b in bettors))
        await asyncio.sleep(1.5)
        assert first.process is not None
        first.process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(first.process.wait, 30)
        await load
    finally:
        first.stop()
        second.stop()

    assert exit_code == 0
    log = first.log_path.read_text()
    assert '"level": "error"' not in log and "Traceback" not in log, log[-3000:]
    assert '"drained"' in log

    acked = {bet: bet_id for b in bettors for bet, bet_id in b.acked.items()}
    refused = {bet: code for b in bettors for bet, code in b.refused.items()}
    assert not [b.unanswered for b in bettors if b.unanswered]
    assert sum(b.moves for b in bettors) >= PLAYERS  # every player moved to the other node
    # Handed back with a WebSocket close saying the server restarts.
    assert WSCloseCode.SERVICE_RESTART in {code for b in bettors for code in b.close_codes}
    # Refusals say "not written, try again": NOT_READY while the node drains, and RATE_LIMITED
    # if a node is momentarily past its capacity (a busy machine); never anything else.
    assert set(refused.values()) <= {"NOT_READY", "RATE_LIMITED"}
    rows: list[Any] = await db.fetch("SELECT id, client_bet_id FROM bets")
    stored = {row["client_bet_id"]: str(row["id"]) for row in rows}
    assert len(rows) == len(stored)  # no bet stored twice
    assert {bet: stored.get(bet) for bet in acked} == acked  # every acked bet, as acked
    assert not set(refused) & set(stored)  # nothing stored for a refused bet
    # A bet re-sent after a NOT_READY is answered as itself on the other node.
    assert not set(refused) & set(acked)


class Reconnecting:
    """A python-socketio client with its own reconnection, as players use it."""

    def __init__(self, player: Player) -> None:
        self.player = player
        self.client = socketio.AsyncClient(
            reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1
        )
        self.connects = 0
        self.reasons: list[str] = []
        self.client.on("connect", self.on_connect)
        self.client.on("disconnect", self.on_disconnect)

    async def on_connect(self) -> None:
        self.connects += 1

    async def on_disconnect(self, reason: str = "") -> None:
        self.reasons.append(reason)

    async def connect(self, url: str) -> None:
        await self.client.connect(
            url, auth={"token": self.player.access_token}, transports=["websocket"]
        )


async def _until(condition: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_python_socketio_clients_reconnect_by_themselves_after_a_sigterm(
    service_urls: tuple[str, str], tmp_path: Path, db: asyncpg.Pool, http: aiohttp.ClientSession
) -> None:
    first = ServerNode(*service_urls, tmp_path, rate_limit_signup_per_ip="1000/60")
    # The restarted node listens where the first did, as behind a balancer.
    restarted = ServerNode(*service_urls, tmp_path, rate_limit_signup_per_ip="1000/60")
    restarted.port, restarted.url = first.port, first.url
    restarted.env["PORT"] = str(first.port)
    clients: list[Reconnecting] = []
    try:
        await first.start()
        players = [await Player(first.url, http).signup() for _ in range(RECONNECTING_CLIENTS)]
        clients = [Reconnecting(player) for player in players]
        for client in clients:
            await client.connect(first.url)
        assert first.process is not None
        first.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.process.wait, 30) == 0
        await restarted.start()
        await _until(lambda: all(c.connects == 2 and c.client.connected for c in clients), 30)
        answers = [await c.client.call("wallet:get", {}, timeout=10) for c in clients]
    finally:
        for client in clients:
            await client.client.disconnect()
        first.stop()
        restarted.stop()

    assert [c.connects for c in clients] == [2] * RECONNECTING_CLIENTS
    assert {reason for c in clients for reason in c.reasons[:1]} == {"transport error"}
    assert all(answer["ok"] for answer in answers)
