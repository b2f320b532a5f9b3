"""One client process of a load run: connects its share of players, then drives their requests.

The parent (runner.py) starts several of these; each runs its own uvloop, reports progress once a
second on a queue, waits for the common start signal, and ships its final counters at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Awaitable
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any

import aiohttp
import uvloop

from loadtest.plan import OPERATIONS, LoadPlan
from loadtest.player_socket import ConnectRefused, PendingCall, PlayerSocket
from loadtest.stats import (
    MARKET_CLOSED_RACED,
    LatencyBook,
    arrival_offsets,
    encode,
    new_histogram,
    record_seconds,
)
from loadtest.system import raise_open_file_limit

TIMEOUT_ANSWER: dict[str, Any] = {"ok": False, "error": {"code": "TIMEOUT"}}
DISCONNECTED_ANSWER: dict[str, Any] = {"ok": False, "error": {"code": "DISCONNECTED"}}
DRAIN_S = 5.0
# Closing the sockets (and the HTTP session under them) after the results are sent.
CLOSE_S = 10.0
MARKET_REFRESH_S = 2.0
# Closes given up on, held until they end so they are not collected mid-cancellation.
_abandoned: set[asyncio.Future[Any]] = set()


def rate_limit_kind(error: Any) -> str:
    """Which limit a RATE_LIMITED answer met: the server's overload refusal ("busy"), or the
    per-player budget of bets or of other events, told apart by the refusal's message."""
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    if "busy" in message:
        return "busy"
    if "too many bets" in message:
        return "bets"
    if "too many events" in message:
        return "events"
    return "other"


async def bounded(awaitable: Awaitable[object], timeout_s: float) -> None:
    """Await `awaitable` for at most `timeout_s`, then cancel it without waiting for it to stop:
    `asyncio.wait_for` would wait for the cancellation, which a close stuck in a drain or a
    close handshake may never finish."""
    task = asyncio.ensure_future(awaitable)
    _, pending = await asyncio.wait([task], timeout=timeout_s)
    for late in pending:
        late.cancel()
        _abandoned.add(late)
        late.add_done_callback(_abandoned.discard)
    if not pending:
        with contextlib.suppress(Exception):
            task.result()


def run_worker(plan: LoadPlan, results: Queue[dict[str, Any]], control: Connection) -> None:
    """Process entry point (spawned)."""
    raise_open_file_limit()
    uvloop.run(LoadWorker(plan, results, control).run())


class LoadWorker:
    def __init__(self, plan: LoadPlan, results: Queue[dict[str, Any]], control: Connection) -> None:
        self.plan = plan
        self.results = results
        self.control = control
        self.rng = random.Random(f"{plan.run_tag}-{plan.process_index}")
        self.sockets: list[PlayerSocket] = []
        self.subscribed: dict[int, list[str]] = {}
        self.odds: dict[str, tuple[float, float]] = {}
        self.open_markets: set[str] = set()
        self.closed_markets: set[str] = set()
        self.closed_refusals: Counter[str] = Counter()  # MARKET_CLOSED answers by market
        self.book = LatencyBook()
        self.connect_times = new_histogram()
        self.connect_errors: Counter[str] = Counter()
        self.tick_delays = new_histogram()
        self.fanout: dict[str, list[float]] = {}  # "<marketId>@<at>" -> [count, max delay s]
        self.pushes: Counter[str] = Counter()
        self.bet_ids = itertools.count()
        operations = list(plan.mix)
        self.operations = operations
        self.weights = list(itertools.accumulate(plan.mix[name] for name in operations))
        self.measure_from = float("inf")
        self.measure_until = float("inf")
        self.window_answers = 0
        self.window_ok = 0
        self.dropped = 0
        self.next_player = 0
        self.rate_limited: Counter[str] = Counter()
        self.bets_asked = 0
        self.bets_without_market = 0

    # -- pushes and answers ------------------------------------------------------------------
    def on_push(self, event: str, data: Any) -> None:
        self.pushes[event] += 1
        if event == "odds" and isinstance(data, dict):
            delay = time.time() - datetime.fromisoformat(data["at"]).timestamp()
            record_seconds(self.tick_delays, delay)
            self.odds[data["marketId"]] = (float(data["thisOdds"]), float(data["thatOdds"]))
            key = f"{data['marketId']}@{data['at']}"
            tick = self.fanout.get(key)
            if tick is None:
                self.fanout[key] = [1, delay]
            else:
                tick[0] += 1
                tick[1] = max(tick[1], delay)
        elif event == "market:update" and isinstance(data, dict):
            market = data.get("market") or {}
            market_id = market.get("id")
            if market.get("status") != "open" and isinstance(market_id, str):
                self.open_markets.discard(market_id)
                self.closed_markets.add(market_id)

    def on_answer(self, call: PendingCall, answer: Any) -> None:
        now = time.monotonic()
        error_code = None
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = answer.get("error") if isinstance(answer, dict) else None
            error_code = error.get("code", "UNKNOWN") if isinstance(error, dict) else "BAD_ACK"
            if error_code == "RATE_LIMITED" and call.scheduled >= self.measure_from:
                self.rate_limited[rate_limit_kind(error)] += 1
            if (
                error_code == "MARKET_CLOSED"
                and call.market_id
                and call.scheduled >= self.measure_from
            ):
                self.closed_refusals[call.market_id] += 1
        if call.scheduled >= self.measure_from:
            self.book.answered_one(call.operation, call.scheduled, now, error_code)
            if now <= self.measure_until:
                self.window_answers += 1
                self.window_ok += error_code is None
        if call.future is not None and not call.future.done():
            call.future.set_result(answer)

    def on_close(self, socket: PlayerSocket) -> None:
        if socket.dropped:
            self.dropped += 1
        calls, socket.pending = list(socket.pending.values()), {}
        for call in calls:
            self.on_answer(call, DISCONNECTED_ANSWER)

    # -- setup --------------------------------------------------------------------------------
    async def connect_all(self, http: aiohttp.ClientSession) -> None:
        gate = asyncio.Semaphore(self.plan.connect_concurrency)

        async def connect(player: dict[str, Any]) -> None:
            async with gate:
                socket = PlayerSocket(self.on_push)
                started = time.monotonic()
                try:
                    await socket.connect(
                        http,
                        self.plan.base_url,
                        player["accessToken"],
                        self.plan.timeout_s * 3,
                        on_close=self.on_close,
                        deflate=self.plan.deflate,
                    )
                except ConnectRefused as refusal:
                    error = refusal.error if isinstance(refusal.error, dict) else {}
                    self.connect_errors[f"connect:{error.get('code', 'REFUSED')}"] += 1
                    return
                except aiohttp.WSServerHandshakeError as refusal:
                    self.connect_errors[f"handshake:{refusal.status}"] += 1
                    return
                except (TimeoutError, OSError, aiohttp.ClientError, ConnectionError) as error:
                    self.connect_errors[f"network:{type(error).__name__}"] += 1
                    return
                record_seconds(self.connect_times, time.monotonic() - started)
                self.sockets.append(socket)

        await asyncio.gather(*(connect(player) for player in self.plan.players))

    async def subscribe_all(self) -> None:
        if not self.sockets:
            return
        if self.plan.market_ids:
            market_ids = list(self.plan.market_ids)
        else:
            answer = await self.sockets[0].call("markets:list", {"status": "open", "limit": 200})
            markets = answer["data"]["markets"] if answer and answer.get("ok") else []
            market_ids = [market["id"] for market in markets]
        if not market_ids:
            return
        gate = asyncio.Semaphore(self.plan.connect_concurrency)
        per_player = (
            min(len(market_ids), self.plan.subscribe)
            if not self.plan.market_ids
            else len(market_ids)
        )

        async def subscribe(index: int, socket: PlayerSocket) -> None:
            start = (index * per_player + self.plan.process_index) % len(market_ids)
            chosen = [market_ids[(start + k) % len(market_ids)] for k in range(per_player)]
            async with gate:
                answer = await socket.call(
                    "market:subscribe", {"marketIds": chosen}, self.plan.timeout_s * 3
                )
            if not (answer and answer.get("ok")):
                code = (answer or {}).get("error", {}).get("code", "UNKNOWN")
                self.connect_errors[f"subscribe:{code}"] += 1
                return
            for market in answer["data"]["markets"]:
                self.odds[market["id"]] = (float(market["thisOdds"]), float(market["thatOdds"]))
                if market.get("status") == "open":
                    self.open_markets.add(market["id"])
            self.subscribed[index] = chosen

        await asyncio.gather(
            *(subscribe(index, socket) for index, socket in enumerate(self.sockets))
        )

    # -- requests -----------------------------------------------------------------------------
    def request(
        self, index: int, scheduled: float, future: asyncio.Future[Any] | None = None
    ) -> bool:
        """Send one request of the mix from player `index`, as scheduled at `scheduled`."""
        socket = self.sockets[index]
        operation = self.operations[self._pick(self.rng.random() * self.weights[-1])]
        payload = self.payload(operation, index)
        measured = scheduled >= self.measure_from
        if operation == "bet" and measured:
            self.bets_asked += 1
        if payload is None:
            self.bets_without_market += measured
            operation, payload = "wallet", {}
        call = PendingCall(operation, scheduled, self.on_answer, future)
        if operation == "bet" and payload is not None:
            call.market_id = payload["marketId"]
        if measured:
            self.book.sent_one()
        if not socket.emit(OPERATIONS[operation], payload, call):
            self.on_answer(call, DISCONNECTED_ANSWER)
            return False
        return True

    def _pick(self, point: float) -> int:
        for position, bound in enumerate(self.weights):
            if point < bound:
                return position
        return len(self.weights) - 1

    def payload(self, operation: str, index: int) -> dict[str, Any] | None:
        if operation == "bet":
            mine = [
                market for market in self.subscribed.get(index, ()) if market in self.open_markets
            ]
            pool = mine or list(self.open_markets)
            if not pool:
                return None
            market_id = self.rng.choice(pool)
            side = "this" if self.rng.random() < 0.5 else "that"
            bet: dict[str, Any] = {
                "marketId": market_id,
                "side": side,
                "amount": self.rng.randint(*self.plan.amount),
                "clientBetId": f"{self.plan.run_tag}-{self.plan.process_index}-{next(self.bet_ids)}",
            }
            odds = self.odds.get(market_id)
            if odds is not None:
                bet["expectedOdds"] = odds[0] if side == "this" else odds[1]
                bet["maxSlippage"] = self.plan.max_slippage
            return bet
        if operation in ("bets", "markets"):
            return {"limit": 20}
        if operation == "leaderboard":
            return {"period": "all", "limit": 20}
        return {}

    async def open_loop(self, start: float, end: float) -> None:
        offsets = arrival_offsets(
            self.plan.rate, end - start, poisson=self.plan.poisson, rng=self.rng
        )
        for offset in offsets:
            scheduled = start + offset
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.sockets:
                # Players take turns, so each sends rate / players a second, evenly: the
                # per-player limits a run needs follow from the plan. A late loop sends the
                # backlog at once; each request keeps its scheduled time.
                self.next_player = (self.next_player + 1) % len(self.sockets)
                self.request(self.next_player, scheduled)

    async def closed_loop(self, end: float) -> None:
        loop = asyncio.get_running_loop()

        async def lane(lane_index: int) -> None:
            index = lane_index % len(self.sockets)
            while time.monotonic() < end:
                future: asyncio.Future[Any] = loop.create_future()
                if not self.request(index, time.monotonic(), future):
                    return
                await future

        if self.sockets:
            await asyncio.gather(*(lane(index) for index in range(self.plan.concurrency)))

    async def refresh_open_markets(self) -> None:
        """Markets close during a run (a replay pass ends, a market resolves) and new ones open:
        every few seconds the open ones are listed again, so bets go only to open markets.

        The list replaces what this process believed open, except markets it already saw close
        (a closed market never reopens; its push may overtake the list). One socket subscribes
        to each market no player here watches, so that market's close arrives as a push too and
        bets stop going to it at once; odds of those markets come from the list and that socket.
        """
        watched = {market for chosen in self.subscribed.values() for market in chosen}
        while True:
            await asyncio.sleep(MARKET_REFRESH_S)
            live = [socket for socket in self.sockets if socket.connected]
            if not live:
                continue
            try:
                answer = await live[0].call(
                    "markets:list", {"status": "open", "limit": 200}, self.plan.timeout_s
                )
            except (TimeoutError, ConnectionError):
                continue
            if not (isinstance(answer, dict) and answer.get("ok")):
                continue
            listed = [
                market
                for market in answer["data"]["markets"]
                if market["id"] not in self.closed_markets
            ]
            self.open_markets = {market["id"] for market in listed}
            for market in listed:
                if market["id"] not in watched:
                    self.odds[market["id"]] = (
                        float(market["thisOdds"]),
                        float(market["thatOdds"]),
                    )
            unwatched = [market["id"] for market in listed if market["id"] not in watched]
            if unwatched:
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await live[0].call(
                        "market:subscribe", {"marketIds": unwatched[:100]}, self.plan.timeout_s
                    )
                watched.update(unwatched[:100])

    async def expire_overdue(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for socket in self.sockets:
                if socket.pending:
                    for call in socket.expire(now, self.plan.timeout_s):
                        self.on_answer(call, TIMEOUT_ANSWER)

    async def report_progress(self, start: float) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.results.put(
                {
                    "type": "progress",
                    "process": self.plan.process_index,
                    "t": round(time.monotonic() - start),
                    "sent": self.book.sent,
                    "answered": self.book.answered,
                    "succeeded": self.book.succeeded,
                    "errors": sum(self.book.errors.values()),
                    "errorsByCode": dict(self.book.errors),
                    "interval": encode(self.book.take_interval()),
                    "sockets": sum(socket.connected for socket in self.sockets),
                    "dropped": self.dropped,
                    "windowAnswers": self.window_answers,
                    "windowOk": self.window_ok,
                    "rateLimited": dict(self.rate_limited),
                    "betsAsked": self.bets_asked,
                    "betsWithoutMarket": self.bets_without_market,
                }
            )

    # -- the run ------------------------------------------------------------------------------
    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
        http = aiohttp.ClientSession(connector=connector)
        try:
            await self.get_ready(http)
            start = await self.wait_for_start()
            helpers = [
                asyncio.create_task(self.expire_overdue()),
                asyncio.create_task(self.report_progress(start)),
                asyncio.create_task(self.refresh_open_markets()),
            ]
            try:
                await self.drive(start)
                await self.drain()
            finally:
                await self.stop_helpers(helpers)
            for socket in self.sockets:
                for call in socket.expire(float("inf"), -1):
                    self.on_answer(call, TIMEOUT_ANSWER)
            self.results.put(self.final())
            await self.close_sockets()
        finally:
            # The session's close waits for every connection to flush what it still has to send,
            # which never happens while the server reads nothing; the process exits regardless.
            await bounded(http.close(), CLOSE_S)

    async def get_ready(self, http: aiohttp.ClientSession) -> None:
        connect_started = time.monotonic()
        await self.connect_all(http)
        await self.subscribe_all()
        self.results.put(
            {
                "type": "ready",
                "process": self.plan.process_index,
                "connected": len(self.sockets),
                "connectErrors": dict(self.connect_errors),
                "connectSeconds": time.monotonic() - connect_started,
            }
        )

    async def wait_for_start(self) -> float:
        """The common start (this process's monotonic clock), from the parent's wall-clock time."""
        start_wall: float = await asyncio.get_running_loop().run_in_executor(
            None, self.control.recv
        )
        start = time.monotonic() + (start_wall - time.time())
        self.measure_from = start + self.plan.warmup_s
        self.measure_until = self.measure_from + self.plan.duration_s
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        return start

    async def drive(self, start: float) -> None:
        if self.plan.mode == "open":
            await self.open_loop(start, self.measure_until)
        elif self.plan.mode == "closed":
            await self.closed_loop(self.measure_until)
        else:
            await asyncio.sleep(max(0.0, self.measure_until - time.monotonic()))

    async def drain(self) -> None:
        """Late answers still count (from their scheduled time); then the rest time out."""
        for _ in range(int(min(DRAIN_S, self.plan.timeout_s) / 0.05)):
            if not any(socket.pending for socket in self.sockets):
                return
            await asyncio.sleep(0.05)

    async def stop_helpers(self, helpers: list[asyncio.Task[None]]) -> None:
        for helper in helpers:
            helper.cancel()
        await asyncio.wait(helpers, timeout=CLOSE_S)

    async def close_sockets(self) -> None:
        """Say goodbye on every socket, within CLOSE_S in all.

        A websocket close waits for the server's close frame, and for the socket's unsent bytes
        to drain; from a server too busy to read, neither comes. Sockets still closing at the
        deadline are left to the process's exit.
        """
        for socket in self.sockets:
            socket.closing = True
        gate = asyncio.Semaphore(500)

        async def close(socket: PlayerSocket) -> None:
            async with gate:
                with contextlib.suppress(Exception):
                    await socket.close()

        await bounded(asyncio.gather(*(close(socket) for socket in self.sockets)), CLOSE_S)

    def count_raced_closes(self) -> None:
        """MARKET_CLOSED answers to bets on markets whose close this process heard of by push are
        bets that were in flight when their market closed (a bet goes only to a market this
        process believes open); they move to MARKET_CLOSED:raced. The others mean the client
        bet on a market it never heard close (a push lost or not subscribed) and stay failures.
        """
        raced = sum(
            count for market, count in self.closed_refusals.items() if market in self.closed_markets
        )
        if raced:
            self.book.errors["MARKET_CLOSED"] -= raced
            self.book.errors += Counter()  # drops the code when none is left
            self.book.errors[MARKET_CLOSED_RACED] += raced

    def final(self) -> dict[str, Any]:
        self.count_raced_closes()
        return {
            "type": "final",
            "process": self.plan.process_index,
            "book": self.book.snapshot(),
            "windowAnswers": self.window_answers,
            "windowOk": self.window_ok,
            "connected": len(self.sockets),
            "connectErrors": dict(self.connect_errors),
            "connectTimes": encode(self.connect_times),
            "tickDelays": encode(self.tick_delays),
            "fanout": self.fanout,
            "pushes": dict(self.pushes),
            "dropped": self.dropped,
            "rateLimited": dict(self.rate_limited),
            "betsAsked": self.bets_asked,
            "betsWithoutMarket": self.bets_without_market,
        }
