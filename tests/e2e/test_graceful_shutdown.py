"""A rolling restart under bet load: SIGTERM answers every event, hands the sockets back so the
players move to the other node, loses no acked bet, exits 0 and logs no error."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from tests.betting_fixtures import insert_market
from tests.nodes import ServerNode
from tests.players import Player
from tests.raw_socket import RawSocket

PLAYERS = 12
BET_SECONDS_AFTER_SIGTERM = 4.0


class Bettor:
    """One player betting in a loop over a raw websocket, as a client that reads until its
    connection really ends; when a node hands it back, it moves to the next node."""

    def __init__(self, player: Player, urls: list[str], market: str) -> None:
        self.player = player
        self.urls = urls
        self.market = market
        self.acked: dict[str, str] = {}  # clientBetId -> bet id, for bets acked ok
        self.refused: dict[str, str] = {}  # clientBetId -> code
        self.unanswered: list[str] = []
        self.moves = 0
        self._ids = itertools.count()

    async def run(self, until: float) -> None:
        node = 0
        while time.monotonic() < until:
            await self.bet_on(self.urls[node], until)
            node = (node + 1) % len(self.urls)
            self.moves += 1

    async def bet_on(self, url: str, until: float) -> None:
        raw = await RawSocket(url, self.player.http).open()
        await raw.authenticate(self.player.access_token)
        assert raw.ws is not None
        leaving = False
        try:
            while time.monotonic() < until and not leaving:
                bet = f"{self.player.username}-{next(self._ids)}"
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
                            break  # the connection ended
                        text = str(message.data)
                        if text == "2":
                            await raw.send("3")
                        elif text == "1":
                            leaving = True  # the node asks us to go; its answer may still come
                        elif text.startswith(f"43{ack_id}["):
                            answer = orjson.loads(text[len(f"43{ack_id}") :])[0]
                            answered = True
                            if answer["ok"]:
                                self.acked[bet] = answer["data"]["bet"]["id"]
                            else:
                                self.refused[bet] = answer["error"]["code"]
                if not answered:
                    self.unanswered.append(bet)
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
    assert not [bet for b in bettors for bet in b.unanswered]
    assert sum(b.moves for b in bettors) >= PLAYERS  # every player moved to the other node
    assert set(refused.values()) <= {"NOT_READY"}
    rows: list[Any] = await db.fetch("SELECT id, client_bet_id FROM bets")
    stored = {row["client_bet_id"]: str(row["id"]) for row in rows}
    assert len(rows) == len(stored)  # no bet stored twice
    assert {bet: stored.get(bet) for bet in acked} == acked  # every acked bet, as acked
    assert not set(refused) & set(stored)  # nothing stored for a refused bet
