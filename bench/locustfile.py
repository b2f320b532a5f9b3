"""Locust scenario for ThisThat: each Locust user is one seeded player on one Socket.IO socket
(python-socketio's client over a websocket), betting, reading its wallet and the leaderboard.

    thisthat seed --players 1000 --out players.json --reset --base-url http://127.0.0.1:3000
    PLAYERS_FILE=players.json locust -f bench/locustfile.py --headless -u 200 -r 50 -t 60s

The host defaults to the players file's `baseUrl` (or pass `--host`). Each ack is one Locust
request (type `socketio`, named by event); a refusal counts as a failure named by its error code.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import socketio
from locust import User, between, events, task
from locust.env import Environment

PLAYERS_FILE = Path(os.environ.get("PLAYERS_FILE", "players.json"))
SUBSCRIBE = 3
MAX_SLIPPAGE = "0.05"
_players: dict[str, Any] = {}
_seats = itertools.count()


def players() -> dict[str, Any]:
    if not _players:
        _players.update(json.loads(PLAYERS_FILE.read_text()))
    return _players


@events.init.add_listener
def use_players_file_host(environment: Environment, **_: Any) -> None:
    if not environment.host:
        environment.host = players().get("baseUrl") or "http://127.0.0.1:3000"


class Refused(Exception):
    """An `{ok: false}` ack; its message is the protocol's error code."""


class SocketIOPlayer(User):
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        document = players()
        seat = next(_seats) % len(document["players"])
        self.player = document["players"][seat]
        self.odds: dict[str, tuple[str, str]] = {}
        self.bets = itertools.count()
        # A game client, not a browser: no Origin header (the server checks those against CORS).
        self.socket = socketio.Client(
            reconnection=False, websocket_extra_options={"suppress_origin": True}
        )
        self.socket.on("odds", self._on_odds)
        started = time.perf_counter()
        error: Exception | None = None
        try:
            self.socket.connect(
                self.host,
                auth={"token": self.player["accessToken"]},
                transports=["websocket"],
                wait_timeout=10,
            )
        except Exception as raised:  # noqa: BLE001 - reported to Locust as a failed connect
            error = raised
        self._report("connect", started, error)
        if error is not None:
            self.stop()
            return
        page = self.call("markets:list", {"status": "open", "limit": 50})
        markets = random.sample(page["markets"], min(SUBSCRIBE, len(page["markets"])))
        for market in markets:
            self.odds[market["id"]] = (str(market["thisOdds"]), str(market["thatOdds"]))
        if markets:
            self.call("market:subscribe", {"marketIds": [m["id"] for m in markets]})

    def on_stop(self) -> None:
        if self.socket.connected:
            self.socket.disconnect()

    def _on_odds(self, tick: dict[str, Any]) -> None:
        self.odds[tick["marketId"]] = (str(tick["thisOdds"]), str(tick["thatOdds"]))

    def _report(self, name: str, started: float, error: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="socketio",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=error,
            context={},
        )

    def call(self, event: str, payload: dict[str, Any]) -> Any:
        started = time.perf_counter()
        error: Exception | None = None
        data: Any = None
        try:
            answer = self.socket.call(event, payload, timeout=10)
            if answer["ok"]:
                data = answer["data"]
            else:
                error = Refused(answer["error"]["code"])
        except Exception as raised:  # noqa: BLE001 - timeouts and disconnects are failures
            error = raised
        self._report(event, started, error)
        return data

    @task(8)
    def bet(self) -> None:
        if not self.odds:
            return
        market_id = random.choice(list(self.odds))
        side = random.choice(["this", "that"])
        this_odds, that_odds = self.odds[market_id]
        self.call(
            "bet:place",
            {
                "marketId": market_id,
                "side": side,
                "amount": random.randint(10, 50),
                "clientBetId": uuid.uuid4().hex,
                "expectedOdds": str(Decimal(this_odds if side == "this" else that_odds)),
                "maxSlippage": MAX_SLIPPAGE,
            },
        )

    @task(1)
    def wallet(self) -> None:
        self.call("wallet:get", {})

    @task(1)
    def leaderboard(self) -> None:
        self.call("leaderboard:get", {"period": "all", "limit": 20})
