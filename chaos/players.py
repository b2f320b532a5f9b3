"""Players that bet on both nodes through every fault and write down every answer they got.

Each player is a real Socket.IO client over a websocket. A bet is one `clientBetId`; the player
sends it up to `ATTEMPTS` times while the answer leaves its fate open (no answer, NOT_READY,
INTERNAL_ERROR, RATE_LIMITED), as the protocol tells clients to, and records every attempt: ok
with the bet id, a refusal code, or no answer. The checks compare that journal with the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

import aiohttp
import socketio

ATTEMPTS: Final = 12
# Pauses between attempts whose answer left the bet open: about 15 s in all, longer than any
# outage of the schedule, so a bet's fate is normally known by its last attempt.
BACKOFF_S: Final = (0.3, 0.5, 1.0, 1.0, 1.5, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0)
CALL_TIMEOUT_S: Final = 5.0
SESSION_WAIT_S: Final = 5.0
# How long a player whose client reconnects by itself waits for it before connecting anew: longer
# than any node outage of the schedule, restart included.
SELF_RECONNECT_WAIT_S: Final = 20.0
# Codes that say "nothing decided, try again": the same clientBetId is sent again.
TRANSIENT: Final = frozenset({"NOT_READY", "INTERNAL_ERROR", "RATE_LIMITED"})

Outcome = Literal["ok", "refused", "unanswered"]


@dataclass(frozen=True, slots=True)
class Attempt:
    outcome: Outcome
    node: str
    code: str | None = None
    bet: dict[str, Any] | None = None


@dataclass
class BetIntent:
    """One clientBetId as the player meant it, and every answer it got."""

    user_id: str
    client_bet_id: str
    market_id: str
    side: str
    amount: Decimal
    terms: dict[str, str] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def acks(self) -> list[dict[str, Any]]:
        return [a.bet for a in self.attempts if a.outcome == "ok" and a.bet is not None]

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]

    @property
    def fate(self) -> Literal["acked", "refused", "unknown"]:
        """acked: some answer was ok. refused: the answers say it was not placed (a decisive
        refusal last, or only refusals). unknown: some attempt got no answer and none decided."""
        if self.acks:
            return "acked"
        if not self.attempts:
            return "unknown"
        if self.final.outcome == "refused" and self.final.code not in TRANSIENT:
            return "refused"
        if all(a.outcome == "refused" for a in self.attempts):
            return "refused"
        return "unknown"


@dataclass
class Journal:
    """Everything every player sent and heard, shared by all players of a run."""

    intents: dict[tuple[str, str], BetIntent] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # user id -> username
    repeats: int = 0
    connects: Counter[str] = field(default_factory=Counter)
    # Every balance a player was told, as (user id, balance, balanceVersion), from acks and pushes.
    balances: list[tuple[str, Decimal, int]] = field(default_factory=list)
    # REST logins with the right password: how each was answered (status code).
    logins: Counter[int] = field(default_factory=Counter)
    # Players whose client reconnects by itself: drops it came back from, and drops it did not.
    self_reconnects: int = 0
    stranded: int = 0

    def counts(self) -> Counter[str]:
        seen: Counter[str] = Counter()
        for intent in self.intents.values():
            seen["bets sent (clientBetIds)"] += 1
            seen["bet:place calls"] += len(intent.attempts)
            fate = intent.fate
            if fate == "acked":
                seen["acked ok"] += 1
            elif fate == "refused":
                seen[f"refused {intent.final.code}"] += 1
            else:
                seen["unanswered (fate unknown)"] += 1
            if len(intent.attempts) > 1 and intent.attempts[0].outcome == "unanswered":
                seen["retried after no answer"] += 1
        seen["repeats of an acked clientBetId"] = self.repeats
        seen["socket connects"] = sum(self.connects.values())
        seen["versioned balances heard"] = len(self.balances)
        seen["reconnected by the client itself"] = self.self_reconnects
        for status, count in self.logins.items():
            seen[f"logins answered {status}"] = count
        return seen


class ChaosPlayer:
    def __init__(
        self,
        number: int,
        nodes: list[str],
        http: aiohttp.ClientSession,
        journal: Journal,
        rng: random.Random,
        password: str = "chaos-player-password",
    ) -> None:
        self.number = number
        self.nodes = nodes  # its home node first
        self.http = http
        self.journal = journal
        self.rng = rng
        self.username = f"chaos_{number}_{rng.randrange(16**6):06x}"
        self.password = password
        self.user_id = ""
        self.token = ""
        self.client: socketio.AsyncClient | None = None
        self.node = ""
        self.markets: list[dict[str, Any]] = []
        self.session = asyncio.Event()
        self.sequence = 0
        self.last_acked: BetIntent | None = None
        # Every other player leaves reconnecting to python-socketio, as most clients do; the
        # others connect anew themselves, to whichever node is up.
        self.reconnects_itself = number % 2 == 1

    # --- account and socket ---------------------------------------------------------------

    async def signup(self, stop: asyncio.Event) -> bool:
        body = {"username": self.username, "password": self.password}
        for attempt in range(60):
            if stop.is_set():
                return False
            url = self.nodes[attempt % len(self.nodes)]
            try:
                async with self.http.post(url + "/auth/signup", json=body) as response:
                    data = await response.json(content_type=None)
                    if response.status in (201, 409):
                        if response.status == 409:  # the first try landed; its answer was lost
                            async with self.http.post(url + "/auth/login", json=body) as again:
                                data = await again.json(content_type=None)
                                if again.status != 200:
                                    raise aiohttp.ClientError(str(data))
                        self.user_id = str(data["user"]["id"])
                        self.token = data["accessToken"]
                        self.journal.users[self.user_id] = self.username
                        return True
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.5)
        return False

    async def login(self, node: str) -> None:
        """Log in again with the right password, as a player coming back does. An answer other
        than 200 or NOT_READY's 503 (a 429: failed attempts counted against the right password)
        is a finding of the checks."""
        body = {"username": self.username, "password": self.password}
        try:
            async with self.http.post(node + "/auth/login", json=body) as response:
                data = await response.json(content_type=None)
                self.journal.logins[response.status] += 1
                if response.status == 200:
                    self.token = data["accessToken"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            pass

    def heard_balance(self, data: Any) -> None:
        if isinstance(data, dict) and "balanceVersion" in data:
            self.journal.balances.append(
                (self.user_id, Decimal(str(data["balance"])), int(data["balanceVersion"]))
            )

    async def connect(self, stop: asyncio.Event) -> bool:
        """A socket with its `session` greeting, on the home node or, while it is down, the other."""
        for attempt in range(1000):
            if stop.is_set():
                return False
            node = self.nodes[(attempt // 2) % len(self.nodes)]
            if self.rng.random() < 0.3:
                await self.login(node)
            client = socketio.AsyncClient(
                reconnection=self.reconnects_itself,
                reconnection_delay=0.2,
                reconnection_delay_max=1.0,
                http_session=self.http,
            )
            self.session.clear()

            async def greeted(data: Any = None) -> None:
                self.session.set()

            client.on("session", greeted)
            client.on("balance", self.heard_balance)
            client.on("bet:settled", self.heard_balance)

            try:
                await client.connect(
                    node,
                    auth={"token": self.token},
                    transports=["websocket"],
                    wait_timeout=5,
                )
                await asyncio.wait_for(self.session.wait(), SESSION_WAIT_S)
            except (socketio.exceptions.SocketIOError, TimeoutError, OSError):
                with contextlib.suppress(Exception):
                    await client.disconnect()
                await asyncio.sleep(0.3 + 0.2 * self.rng.random())
                continue
            self.client = client
            self.node = node
            self.journal.connects[node] += 1
            return True
        return False

    async def ensure_connected(self, stop: asyncio.Event) -> bool:
        """A live socket: the client's own reconnection if it has one, else a new connection."""
        if self.client is not None and self.client.connected:
            return True
        if self.client is not None and self.reconnects_itself:
            loop = asyncio.get_running_loop()
            until = loop.time() + SELF_RECONNECT_WAIT_S
            while not stop.is_set() and loop.time() < until:
                if self.client.connected:
                    self.journal.self_reconnects += 1
                    return True
                await asyncio.sleep(0.1)
            if not stop.is_set():
                self.journal.stranded += 1
        await self.drop()
        return await self.connect(stop)

    async def drop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.disconnect()
        self.client = None

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The ack, or None when none came (timeout, or the socket went away)."""
        if self.client is None or not self.client.connected:
            return None
        try:
            answer = await self.client.call(event, payload, timeout=CALL_TIMEOUT_S)
        except (socketio.exceptions.SocketIOError, TimeoutError, OSError):
            return None
        return answer if isinstance(answer, dict) else None

    # --- betting --------------------------------------------------------------------------

    async def refresh_markets(self) -> None:
        answer = await self.call("markets:list", {"limit": 200})
        if answer is not None and answer.get("ok"):
            self.markets = [m for m in answer["data"]["markets"] if m["status"] == "open"]

    async def play(self, stop: asyncio.Event) -> None:
        if not await self.signup(stop) or not await self.connect(stop):
            return
        await self.refresh_markets()
        while not stop.is_set():
            if self.client is None or not self.client.connected:
                if not await self.ensure_connected(stop):
                    return
                await self.refresh_markets()
            if not self.markets or self.rng.random() < 0.05:
                await self.refresh_markets()
            if self.markets:
                await self.bet_once(stop)
            await asyncio.sleep(0.1 + 0.4 * self.rng.random())
        await self.drop()

    async def bet_once(self, stop: asyncio.Event) -> None:
        roll = self.rng.random()
        if roll < 0.03 and self.last_acked is not None:
            self.journal.repeats += 1
            await self.send(self.last_acked, stop)  # a repeat: must answer the original bet
            return
        market = self.rng.choice(self.markets)
        side = self.rng.choice(("this", "that"))
        odds = Decimal(str(market[f"{side}Odds"]))
        amount = Decimal(self.rng.randrange(1000, 4000)) / 100
        terms: dict[str, str] = {"expectedOdds": str(odds), "maxSlippage": "0.05"}
        if roll < 0.06:
            amount = Decimal(5)  # below the minimum: BET_AMOUNT_OUT_OF_RANGE, nothing stored
        elif roll < 0.10:
            # Odds better than any the market offers: ODDS_CHANGED, nothing stored.
            terms = {"expectedOdds": str(max(odds - Decimal("0.2"), Decimal("0.0001")))}
        self.sequence += 1
        intent = BetIntent(
            user_id=self.user_id,
            client_bet_id=f"c{self.number}-{self.sequence}",
            market_id=market["id"],
            side=side,
            amount=amount,
            terms=terms,
        )
        self.journal.intents[(self.user_id, intent.client_bet_id)] = intent
        await self.send(intent, stop)
        if intent.acks:
            self.last_acked = intent
        elif intent.attempts and intent.final.code == "MARKET_CLOSED":
            self.markets = [m for m in self.markets if m["id"] != intent.market_id]

    async def send(self, intent: BetIntent, stop: asyncio.Event) -> None:
        """Send until the answer decides the bet, at most ATTEMPTS times, reconnecting as needed."""
        payload = {
            "marketId": intent.market_id,
            "side": intent.side,
            "amount": str(intent.amount),
            "clientBetId": intent.client_bet_id,
            **intent.terms,
        }
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)])
                if (self.client is None or not self.client.connected) and not (
                    await self.ensure_connected(stop)
                ):
                    return
            answer = await self.call("bet:place", payload)
            if answer is None:
                intent.attempts.append(Attempt("unanswered", self.node))
                await self.drop()
                continue
            if answer.get("ok"):
                intent.attempts.append(Attempt("ok", self.node, bet=answer["data"]["bet"]))
                self.heard_balance(answer["data"])
                return
            code = str(answer.get("error", {}).get("code"))
            intent.attempts.append(Attempt("refused", self.node, code=code))
            if code not in TRANSIENT:
                return
