"""A local fake of Polymarket's CLOB market websocket channel (`/ws/market`), for tests.

Frames are cloned from the recorded shapes in tests/fixtures/polymarket/ws/. It behaves as the
real channel was observed to: a PING before the subscription is closed with 1008, a subscription
gets one array of books (`[]` when no token is known), a second `type: market` gets
`INVALID OPERATION`, a subscribe with nothing new gets `NO NEW ASSETS`, PING gets PONG, and the
server never pings first. Tests add markets, push frames and switch modes (silent, refusing,
ignoring, dropping); every connection records what it was sent.

    fake = FakeMarketChannel()
    market = fake.add_newsom()
    async with fake.serve():
        stream = MarketStream(fake.url, session, on_frame)
        ...
        await fake.publish(price_change(market, price="0.231", size="2710", side="BUY",
                                        best_bid="0.232", best_ask="0.233"))
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

FIXTURES: Final = Path(__file__).resolve().parent / "fixtures" / "polymarket" / "ws"
PATH: Final = "/ws/market"
INVALID_PAYLOAD: Final = b"invalid subscription payload"
POLICY_VIOLATION: Final = 1008

Side = Literal["BUY", "SELL"]
Level = tuple[str, str]


def load_samples(name: str) -> dict[str, Any]:
    """The frames of one recorded file, by sample name."""
    raw = orjson.loads((FIXTURES / name).read_bytes())
    return {sample["name"]: sample["frame"] for sample in raw["samples"]}


def now_ms() -> str:
    return str(int(time.time() * 1000))


def _complement(price: str) -> str:
    return str(1 - Decimal(price))


def _hash(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()


@dataclass
class ChannelMarket:
    """One binary market: the Yes book is kept, the No book is its mirror (No bid 1-p per Yes ask p)."""

    condition_id: str
    yes_token: str
    no_token: str
    bids: list[Level]
    asks: list[Level]
    tick_size: str = "0.01"
    last_trade_price: str = ""
    outcomes: tuple[str, str] = ("Yes", "No")
    question: str = "Synthetic market?"

    @property
    def tokens(self) -> tuple[str, str]:
        return self.yes_token, self.no_token

    def levels(self, token: str) -> tuple[list[Level], list[Level]]:
        """Bids ascending and asks descending (best level last), as the live server sends them."""
        if token == self.yes_token:
            bids, asks = self.bids, self.asks
        else:
            bids = [(_complement(price), size) for price, size in self.asks]
            asks = [(_complement(price), size) for price, size in self.bids]
        return (
            sorted(bids, key=lambda level: Decimal(level[0])),
            sorted(asks, key=lambda level: Decimal(level[0]), reverse=True),
        )


_BOOKS: Final = load_samples("book.json")
_TRADES: Final = load_samples("last_trade_price.json")
_RESOLVED: Final = load_samples("market_resolved.json")
_NEW: Final = load_samples("new_market.json")
_PRICE_CHANGES: Final = load_samples("price_change.json")


def book(market: ChannelMarket, token: str, *, snapshot: bool = True, ts: str | None = None) -> Any:
    """A `book` for one token; a refresh after a trade (`snapshot=False`) has no tick/last trade."""
    frame = copy.deepcopy(_BOOKS["initial_dump_newsom_2028_both_tokens"][0])
    bids, asks = market.levels(token)
    timestamp = ts or now_ms()
    frame.update(
        market=market.condition_id,
        asset_id=token,
        timestamp=timestamp,
        hash=_hash(token, bids, asks, timestamp),
        bids=[{"price": price, "size": size} for price, size in bids],
        asks=[{"price": price, "size": size} for price, size in asks],
        tick_size=market.tick_size,
        last_trade_price=market.last_trade_price,
    )
    if not snapshot:
        del frame["tick_size"], frame["last_trade_price"]
    return frame


def price_change(
    market: ChannelMarket,
    *,
    price: str,
    size: str,
    side: Side,
    best_bid: str,
    best_ask: str,
    ts: str | None = None,
) -> Any:
    """A current-format `price_change` for the Yes token, mirrored on No (1-p, opposite side)."""
    frame = copy.deepcopy(_PRICE_CHANGES["newsom_2028_deep_bid_added"])
    timestamp = ts or now_ms()
    yes, no = frame["price_changes"]
    yes.update(
        asset_id=market.yes_token,
        price=price,
        size=size,
        side=side,
        hash=_hash(market.yes_token, price, size, timestamp),
        best_bid=best_bid,
        best_ask=best_ask,
    )
    no.update(
        asset_id=market.no_token,
        price=_complement(price),
        size=size,
        side="SELL" if side == "BUY" else "BUY",
        hash=_hash(market.no_token, price, size, timestamp),
        best_bid=_complement(best_ask),
        best_ask=_complement(best_bid),
    )
    frame.update(market=market.condition_id, timestamp=timestamp)
    return frame


def last_trade_price(
    market: ChannelMarket,
    token: str,
    *,
    price: str,
    size: str,
    side: Side = "BUY",
    ts: str | None = None,
) -> Any:
    frame = copy.deepcopy(_TRADES["newsom_2028_taker_buy"])
    timestamp = ts or now_ms()
    frame.update(
        market=market.condition_id,
        asset_id=token,
        price=price,
        size=size,
        side=side,
        timestamp=timestamp,
        transaction_hash="0x" + _hash(token, price, size, timestamp) + "0" * 24,
    )
    return frame


def market_resolved(market: ChannelMarket, winning_token: str, *, ts: str | None = None) -> Any:
    frame = copy.deepcopy(_RESOLVED["katana_fdv_resolved_no"])
    winner = market.tokens.index(winning_token)
    frame.update(
        id=str(int(market.condition_id, 16) % 10**7),
        market=market.condition_id,
        assets_ids=list(market.tokens),
        winning_asset_id=winning_token,
        winning_outcome=market.outcomes[winner],
        timestamp=ts or now_ms(),
    )
    return frame


def new_market(market: ChannelMarket, *, active: bool = True, ts: str | None = None) -> Any:
    frame = copy.deepcopy(_NEW["docs_example_nvda"])
    slug = market.question.lower().replace(" ", "-").strip("?")
    frame.update(
        id=str(int(market.condition_id, 16) % 10**7),
        question=market.question,
        slug=slug,
        market=market.condition_id,
        condition_id=market.condition_id,
        assets_ids=list(market.tokens),
        clob_token_ids=list(market.tokens),
        outcomes=list(market.outcomes),
        order_price_min_tick_size=market.tick_size,
        active=active,
        timestamp=ts or now_ms(),
    )
    return frame


@dataclass(eq=False)
class FakeConnection:
    """One client connection and everything it sent."""

    number: int
    ws: web.WebSocketResponse
    request: web.BaseRequest
    received: list[str] = field(default_factory=list)
    messages: list[Any] = field(default_factory=list)
    pings: int = 0
    assets: set[str] = field(default_factory=set)
    subscribed: bool = False
    custom_features: bool = False
    # "data": PONG only, no data; "all": not even PONG.
    silent: Literal["data", "all"] | None = None
    closed: bool = False

    @property
    def initial_subscriptions(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if isinstance(m, dict) and "type" in m]

    @property
    def operations(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if isinstance(m, dict) and "operation" in m]


@dataclass
class FakeMarketChannel:
    """The fake's markets, connections and modes. Tests drive it through these methods."""

    markets: dict[str, ChannelMarket] = field(default_factory=dict)
    connections: list[FakeConnection] = field(default_factory=list)
    url: str = ""
    _refuse: int = field(default=0, init=False, repr=False)
    _ignore: int = field(default=0, init=False, repr=False)

    # --- markets --------------------------------------------------------------------------

    def add_market(
        self,
        condition_id: str,
        yes_token: str,
        no_token: str,
        *,
        bids: Sequence[Level] = (("0.48", "100"),),
        asks: Sequence[Level] = (("0.52", "100"),),
        tick_size: str = "0.01",
        last_trade_price: str = "",
    ) -> ChannelMarket:
        market = ChannelMarket(
            condition_id,
            yes_token,
            no_token,
            list(bids),
            list(asks),
            tick_size=tick_size,
            last_trade_price=last_trade_price,
        )
        self.markets[condition_id] = market
        return market

    def add_newsom(self) -> ChannelMarket:
        """The recorded Newsom 2028 market with its synthesized top of book (0.232 / 0.233)."""
        yes = _BOOKS["initial_dump_newsom_2028_both_tokens"][0]
        no = _BOOKS["initial_dump_newsom_2028_both_tokens"][1]
        market = self.add_market(
            yes["market"],
            yes["asset_id"],
            no["asset_id"],
            bids=[(level["price"], level["size"]) for level in yes["bids"]],
            asks=[(level["price"], level["size"]) for level in yes["asks"]],
            tick_size=yes["tick_size"],
            last_trade_price=yes["last_trade_price"],
        )
        market.question = "Will Gavin Newsom win the 2028 US Presidential Election?"
        return market

    def market_of(self, token: str) -> ChannelMarket | None:
        for market in self.markets.values():
            if token in market.tokens:
                return market
        return None

    def books(self, tokens: Collection[str]) -> list[Any]:
        """Snapshots of the known tokens among `tokens`, in their order; unknown ones are left out."""
        frames = []
        for token in tokens:
            market = self.market_of(token)
            if market is not None:
                frames.append(book(market, token))
        return frames

    # --- connections and modes ------------------------------------------------------------

    @property
    def open_connections(self) -> list[FakeConnection]:
        return [conn for conn in self.connections if not conn.closed]

    def subscribers(self, tokens: Collection[str]) -> list[FakeConnection]:
        wanted = set(tokens)
        return [conn for conn in self.open_connections if conn.assets & wanted]

    def go_silent(self, *, fully: bool = False) -> None:
        """Open connections stop getting data; with `fully`, PING goes unanswered too.

        Connections made later behave normally again.
        """
        for conn in self.open_connections:
            conn.silent = "all" if fully else "data"

    def refuse_subscriptions(self, count: int = 1) -> None:
        """The next `count` initial subscriptions get `INVALID OPERATION` instead of books."""
        self._refuse += count

    def ignore_subscriptions(self, count: int = 1) -> None:
        """The next `count` initial subscriptions are taken but get no snapshot."""
        self._ignore += count

    async def drop_all(
        self, *, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"", abrupt: bool = False
    ) -> int:
        """Close every open connection (a close frame, or with `abrupt` just the TCP connection)."""
        dropped = self.open_connections
        for conn in dropped:
            conn.closed = True
            if abrupt and conn.request.transport is not None:
                conn.request.transport.abort()
        if not abrupt:
            await asyncio.gather(*(c.ws.close(code=code, message=message) for c in dropped))
        return len(dropped)

    # --- pushing frames -------------------------------------------------------------------

    async def broadcast(self, frame: Any) -> int:
        """Send to every open, subscribed connection that is not silent; answers how many."""
        targets = [conn for conn in self.open_connections if conn.subscribed]
        return await self._send_all(targets, frame)

    async def send_to_tokens(self, frame: Any, tokens: Collection[str]) -> int:
        """Send to every open connection subscribed to one of `tokens`; answers how many."""
        return await self._send_all(self.subscribers(tokens), frame)

    async def publish(self, frame: Any) -> int:
        """Send an event where the real server would: by its tokens, custom ones to custom subscribers."""
        event = frame.get("event_type") if isinstance(frame, dict) else None
        if event == "new_market":
            targets = [c for c in self.open_connections if c.subscribed and c.custom_features]
            return await self._send_all(targets, frame)
        if event == "market_resolved":
            targets = [c for c in self.subscribers(frame["assets_ids"]) if c.custom_features]
            return await self._send_all(targets, frame)
        if event == "price_change":
            tokens = [change["asset_id"] for change in frame["price_changes"]]
            return await self.send_to_tokens(frame, tokens)
        if isinstance(frame, dict) and "asset_id" in frame:
            return await self.send_to_tokens(frame, [frame["asset_id"]])
        return await self.broadcast(frame)

    async def _send_all(self, targets: Collection[FakeConnection], frame: Any) -> int:
        text = frame if isinstance(frame, str) else orjson.dumps(frame).decode()
        sent = 0
        for conn in targets:
            if conn.silent is None and await self._send(conn, text):
                sent += 1
        return sent

    async def _send(self, conn: FakeConnection, text: str) -> bool:
        try:
            await conn.ws.send_str(text)
        except ConnectionError:
            conn.closed = True
            return False
        return True

    # --- server ---------------------------------------------------------------------------

    def create_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(PATH, self._handle)
        return app

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[FakeMarketChannel]:
        """Run on 127.0.0.1 with an ephemeral port; `url` is set while it runs."""
        runner = web.AppRunner(self.create_app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.url = f"ws://{host}:{port}{PATH}"
            yield self
        finally:
            await self.drop_all()
            await runner.cleanup()
            self.url = ""

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        # No compression, as the real channel; a short close timeout keeps test teardown quick.
        ws = web.WebSocketResponse(compress=False, timeout=1.0, max_msg_size=32 * 1024 * 1024)
        await ws.prepare(request)
        conn = FakeConnection(len(self.connections) + 1, ws, request)
        self.connections.append(conn)
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await self._on_text(conn, message.data)
        finally:
            conn.closed = True
        return ws

    async def _on_text(self, conn: FakeConnection, text: str) -> None:
        conn.received.append(text)
        if text == "PING":
            conn.pings += 1
            if conn.silent == "all":
                return
            if not conn.subscribed:
                await conn.ws.close(code=POLICY_VIOLATION, message=INVALID_PAYLOAD)
                return
            await self._send(conn, "PONG")
            return
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            message = None
        conn.messages.append(message)
        if conn.silent == "all":
            return
        if not isinstance(message, dict):
            if not conn.subscribed:
                await conn.ws.close(code=POLICY_VIOLATION, message=INVALID_PAYLOAD)
            return
        raw_assets = message.get("assets_ids")
        assets: list[str] | None = None
        if isinstance(raw_assets, list) and all(isinstance(a, str) for a in raw_assets):
            assets = raw_assets
        if "type" in message:
            await self._on_subscription(conn, message, assets)
        elif "operation" in message and conn.subscribed and assets is not None:
            # The official SDK turns custom features on this way, so the server must honour it.
            if message.get("custom_feature_enabled") is True:
                conn.custom_features = True
            await self._on_operation(conn, message["operation"], assets)
        elif not conn.subscribed:
            await conn.ws.close(code=POLICY_VIOLATION, message=INVALID_PAYLOAD)
        else:
            await self._send(conn, "INVALID OPERATION")

    async def _on_subscription(
        self, conn: FakeConnection, message: dict[str, Any], assets: list[str] | None
    ) -> None:
        if conn.subscribed:
            await self._send(conn, "INVALID OPERATION")
            return
        if assets is None or str(message["type"]).lower() != "market":
            await conn.ws.close(code=POLICY_VIOLATION, message=INVALID_PAYLOAD)
            return
        if self._refuse > 0:
            self._refuse -= 1
            await self._send(conn, "INVALID OPERATION")
            return
        conn.subscribed = True
        conn.assets = set(assets)
        conn.custom_features = message.get("custom_feature_enabled") is True
        if self._ignore > 0:
            self._ignore -= 1
            return
        if conn.silent is None and message.get("initial_dump", True) is not False:
            await self._send(conn, orjson.dumps(self.books(assets)).decode())

    async def _on_operation(
        self, conn: FakeConnection, operation: object, assets: list[str]
    ) -> None:
        if operation == "unsubscribe":
            conn.assets.difference_update(assets)
            return
        if operation != "subscribe":
            await self._send(conn, "INVALID OPERATION")
            return
        new = [asset for asset in assets if asset not in conn.assets]
        if not new:
            await self._send(conn, "NO NEW ASSETS")
            return
        conn.assets.update(new)
        books = self.books(new)
        if books and conn.silent is None:
            await self._send(conn, orjson.dumps(books).decode())
