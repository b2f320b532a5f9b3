"""A local fake of Polymarket's Gamma and CLOB read APIs, for tests and benchmarks.

`FakePolymarket` holds the markets (cloned from the recorded fixture shapes)
and the injected faults; `fake.serve()` runs it on 127.0.0.1 with an ephemeral
port. Gamma is served under `/gamma`, CLOB under `/clob`:

    fake = FakePolymarket()
    fake.add_markets(300)
    async with fake.serve():
        client = PolymarketClient(session, fake.gamma_url, fake.clob_url)
"""

from __future__ import annotations

import asyncio
import base64
import copy
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from aiohttp import web

FIXTURES: Final = Path(__file__).resolve().parent / "fixtures" / "polymarket"
GAMMA_MAX_OFFSET: Final = 2000
GAMMA_MAX_LIMIT: Final = 500
CLOB_END_CURSOR: Final = "LTE="

ResolutionName = Literal["this", "that", "split", "cancelled"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_fixture(name: str) -> Any:
    """A recorded Polymarket answer from tests/fixtures/polymarket/."""
    return orjson.loads((FIXTURES / name).read_bytes())


@dataclass
class FakeMarket:
    """One binary market as the fake knows it; rendered as Gamma and CLOB records on demand."""

    condition_id: str
    question: str
    slug: str
    this_token: str
    that_token: str
    this_price: Decimal
    volume: float
    end_date: str = "2030-12-31T00:00:00Z"
    labels: tuple[str, str] = ("Yes", "No")
    closed: bool = False
    resolution: ResolutionName | None = None

    @property
    def prices(self) -> tuple[Decimal, Decimal]:
        if self.resolution == "this":
            return Decimal(1), Decimal(0)
        if self.resolution == "that":
            return Decimal(0), Decimal(1)
        if self.resolution == "split":
            return Decimal("0.5"), Decimal("0.5")
        if self.resolution == "cancelled":
            return Decimal(0), Decimal(0)
        return self.this_price, 1 - self.this_price


@dataclass
class _Fault:
    kind: Literal["fail", "rate_limit", "hang", "truncate"]
    path: str | None
    status: int = 500
    seconds: float = 0.0


@dataclass
class FakePolymarket:
    """The fake's state and its controls. Tests change markets and inject faults here."""

    with_fixture_markets: bool = True
    clob_page_size: int = 100
    markets: dict[str, FakeMarket] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    midpoint_batch_sizes: list[int] = field(default_factory=list)
    last_headers: dict[str, str] = field(default_factory=dict)
    base_url: str = ""
    _faults: deque[_Fault] = field(default_factory=deque, init=False, repr=False)
    _synthetic_count: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._gamma_open = load_fixture("gamma_market_open.json")
        self._gamma_resolved = load_fixture("gamma_market_resolved.json")
        self._clob_open = load_fixture("clob_market_open.json")
        if self.with_fixture_markets:
            self._add_fixture_markets()

    # --- urls -----------------------------------------------------------------------------

    @property
    def gamma_url(self) -> str:
        return f"{self.base_url}/gamma"

    @property
    def clob_url(self) -> str:
        return f"{self.base_url}/clob"

    # --- markets --------------------------------------------------------------------------

    def _add_fixture_markets(self) -> None:
        self._add_recorded(self._gamma_open, None)
        self._add_recorded(self._gamma_resolved, "that")

    def _add_recorded(self, raw: dict[str, Any], resolution: ResolutionName | None) -> None:
        this_token, that_token = orjson.loads(raw["clobTokenIds"])
        labels = orjson.loads(raw["outcomes"])
        market = FakeMarket(
            condition_id=raw["conditionId"],
            question=raw["question"],
            slug=raw["slug"],
            this_token=this_token,
            that_token=that_token,
            this_price=Decimal(orjson.loads(raw["outcomePrices"])[0]),
            volume=float(raw.get("volumeNum", 0)),
            end_date=raw["endDate"],
            labels=(labels[0], labels[1]),
        )
        if resolution is not None:
            market.closed = True
            market.resolution = resolution
            market.this_price = Decimal("0.005")
        self.markets[market.condition_id] = market

    def add_markets(self, count: int, *, first_volume: float = 1_000_000.0) -> list[FakeMarket]:
        """Clone `count` open markets with distinct ids, token ids and falling volumes."""
        start = self._synthetic_count
        self._synthetic_count += count
        added = []
        for n in range(start, start + count):
            market = FakeMarket(
                condition_id=f"0x{n + 1:064x}",
                question=f"Synthetic market #{n}?",
                slug=f"synthetic-market-{n}",
                this_token=str(10**70 + 2 * n),
                that_token=str(10**70 + 2 * n + 1),
                this_price=Decimal(f"0.{(n * 37) % 90 + 5:02d}"),
                volume=first_volume - n,
            )
            self.markets[market.condition_id] = market
            added.append(market)
        return added

    def set_price(self, condition_id: str, this_price: Decimal | str | float) -> None:
        self.markets[condition_id].this_price = Decimal(str(this_price))

    def close(self, condition_id: str) -> None:
        """Trading stops; the market waits for its resolution."""
        self.markets[condition_id].closed = True

    def resolve(self, condition_id: str, resolution: ResolutionName) -> None:
        market = self.markets[condition_id]
        market.closed = True
        market.resolution = resolution

    def remove(self, condition_id: str) -> None:
        """The market disappears from Gamma and CLOB (404)."""
        del self.markets[condition_id]

    # --- faults ---------------------------------------------------------------------------
    # Each fault is used by one request; `path` (e.g. "/clob/midpoints") limits which.

    def fail_next(self, n: int, status: int = 500, *, path: str | None = None) -> None:
        self._faults.extend(_Fault("fail", path, status=status) for _ in range(n))

    def rate_limit_next(self, n: int, retry_after: float = 1, *, path: str | None = None) -> None:
        self._faults.extend(_Fault("rate_limit", path, seconds=retry_after) for _ in range(n))

    def hang_next(self, n: int, seconds: float, *, path: str | None = None) -> None:
        self._faults.extend(_Fault("hang", path, seconds=seconds) for _ in range(n))

    def truncate_next(self, n: int, *, path: str | None = None) -> None:
        self._faults.extend(_Fault("truncate", path) for _ in range(n))

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.path is None or fault.path == path:
                self._faults.remove(fault)
                return fault
        return None

    # --- rendering ------------------------------------------------------------------------

    def gamma_record(self, market: FakeMarket) -> dict[str, Any]:
        template = self._gamma_resolved if market.closed else self._gamma_open
        record: dict[str, Any] = copy.deepcopy(template)
        this_price, that_price = market.prices
        record.update(
            id=str(int(market.condition_id, 16) % 10**9),
            conditionId=market.condition_id,
            question=market.question,
            slug=market.slug,
            endDate=market.end_date,
            outcomes=orjson.dumps(list(market.labels)).decode(),
            outcomePrices=orjson.dumps([str(this_price), str(that_price)]).decode(),
            clobTokenIds=orjson.dumps([market.this_token, market.that_token]).decode(),
            volume=str(market.volume),
            volumeNum=market.volume,
            active=True,
            closed=market.closed,
            acceptingOrders=not market.closed,
        )
        record.pop("umaResolutionStatus", None)
        if market.resolution in ("this", "that", "split"):
            record["umaResolutionStatus"] = "resolved"
        elif market.closed and market.resolution is None:
            record["umaResolutionStatus"] = "proposed"
        return record

    def clob_record(self, market: FakeMarket) -> dict[str, Any]:
        record: dict[str, Any] = copy.deepcopy(self._clob_open)
        this_price, that_price = market.prices
        record.update(
            condition_id=market.condition_id,
            question=market.question,
            market_slug=market.slug,
            end_date_iso=market.end_date,
            active=True,
            closed=market.closed,
            accepting_orders=not market.closed,
            enable_order_book=not market.closed,
            is_50_50_outcome=market.resolution == "split",
            tokens=[
                {
                    "token_id": market.this_token,
                    "outcome": market.labels[0],
                    "price": float(this_price),
                    "winner": market.resolution == "this",
                },
                {
                    "token_id": market.that_token,
                    "outcome": market.labels[1],
                    "price": float(that_price),
                    "winner": market.resolution == "that",
                },
            ],
        )
        return record

    def _midpoint(self, token_id: str) -> Decimal | None:
        for market in self.markets.values():
            if market.closed:
                continue  # no order book once trading stops
            if token_id == market.this_token:
                return market.this_price
            if token_id == market.that_token:
                return 1 - market.this_price
        return None

    # --- server ---------------------------------------------------------------------------

    def create_app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_middleware])
        app.router.add_get("/gamma/markets", self._gamma_markets)
        app.router.add_post("/clob/midpoints", self._clob_midpoints)
        app.router.add_get("/clob/midpoint", self._clob_midpoint)
        app.router.add_get("/clob/markets", self._clob_markets)
        app.router.add_get("/clob/markets/{condition_id}", self._clob_market)
        return app

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[FakePolymarket]:
        """Run on 127.0.0.1 with an ephemeral port; `base_url` is set while it runs."""
        runner = web.AppRunner(self.create_app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.base_url = f"http://{host}:{port}"
            yield self
        finally:
            await runner.cleanup()
            self.base_url = ""

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests[request.path] += 1
        self.last_headers = dict(request.headers)
        fault = self._take_fault(request.path)
        if fault is None:
            return await handler(request)
        if fault.kind == "fail":
            return web.json_response({"error": "injected failure"}, status=fault.status)
        if fault.kind == "rate_limit":
            return web.json_response(
                {"error": "Too Many Requests"},
                status=429,
                headers={"Retry-After": f"{fault.seconds:g}"},
            )
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
            return await handler(request)
        response = await handler(request)
        body = response.body if isinstance(response, web.Response) else None
        assert isinstance(body, bytes), "only JSON answers can be truncated"
        return web.Response(body=body[: len(body) // 2], content_type="application/json")

    async def _gamma_markets(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            limit = min(int(query.get("limit", "100")), GAMMA_MAX_LIMIT)
            offset = int(query.get("offset", "0"))
        except ValueError:
            return web.json_response({"error": "bad limit or offset"}, status=422)
        if offset > GAMMA_MAX_OFFSET or offset < 0 or limit < 0:
            return web.json_response({"error": "offset out of range"}, status=422)
        markets = list(self.markets.values())
        if "active" in query:
            markets = [m for m in markets if query["active"] == "true"]
        # The quirk this fake exists to reproduce: closed=false applies unless `closed` is sent.
        want_closed = query.get("closed", "false") == "true"
        markets = [m for m in markets if m.closed == want_closed]
        ids = query.getall("condition_ids", [])
        if ids:
            wanted = set(ids)
            markets = [m for m in markets if m.condition_id in wanted]
        if query.get("order") in ("volumeNum", "volume"):
            descending = query.get("ascending", "true") == "false"
            markets.sort(key=lambda m: m.volume, reverse=descending)
        page = markets[offset : offset + limit]
        return web.json_response([self.gamma_record(m) for m in page], dumps=_dumps)

    async def _clob_midpoints(self, request: web.Request) -> web.Response:
        try:
            wanted = orjson.loads(await request.read())
            tokens = [str(item["token_id"]) for item in wanted]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            return web.json_response({"error": "Invalid payload"}, status=400)
        self.midpoint_batch_sizes.append(len(tokens))
        answer = {}
        for token in tokens:
            mid = self._midpoint(token)
            if mid is not None:
                answer[token] = str(mid)
        return web.json_response(answer, dumps=_dumps)

    async def _clob_midpoint(self, request: web.Request) -> web.Response:
        mid = self._midpoint(request.query.get("token_id", ""))
        if mid is None:
            return web.json_response(
                {"error": "No orderbook exists for the requested token id"}, status=404
            )
        return web.json_response({"mid": str(mid)})

    async def _clob_market(self, request: web.Request) -> web.Response:
        market = self.markets.get(request.match_info["condition_id"])
        if market is None:
            return web.json_response({"error": "market not found"}, status=404)
        return web.json_response(self.clob_record(market), dumps=_dumps)

    async def _clob_markets(self, request: web.Request) -> web.Response:
        cursor = request.query.get("next_cursor", "")
        try:
            start = int(base64.b64decode(cursor).decode()) if cursor else 0
        except ValueError:
            return web.json_response({"error": "invalid next_cursor"}, status=400)
        markets = list(self.markets.values())
        page = markets[start : start + self.clob_page_size]
        end = start + len(page)
        next_cursor = (
            base64.b64encode(str(end).encode()).decode() if end < len(markets) else CLOB_END_CURSOR
        )
        body = {
            "data": [self.clob_record(m) for m in page],
            "next_cursor": next_cursor,
            "limit": self.clob_page_size,
            "count": len(page),
        }
        return web.json_response(body, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
