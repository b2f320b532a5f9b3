"""HTTP client for Polymarket's public read APIs: Gamma (market listings) and CLOB (prices).

Every call has a timeout and retries timeouts, connection errors, 429 and 5xx
with exponential backoff and full jitter; what still fails raises UpstreamError.
The `get_*`/`list_*` calls answer raw JSON; the three the poller uses (`open_listings`,
`read_odds`, `upstream_state`) answer game objects, read by `feeds.parsing`, so this module
is the feed's one entry point.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, Protocol

import aiohttp
import orjson

from feeds.parsing import (
    ParseStats,
    complete_odds,
    midpoint_value,
    parse_gamma_markets,
    resolution_from_clob,
    resolution_from_gamma,
)
from game.markets import MarketListing, UpstreamState

logger = logging.getLogger("thisthat.feed")

USER_AGENT: Final = "thisthat-feed/0.1"
API_KEY_HEADER: Final = "POLY_API_KEY"
# Gamma refuses offsets beyond this; deeper pages are unreachable by offset paging.
GAMMA_MAX_OFFSET: Final = 2000
# CLOB cursor paging: the cursor of the first page, and the marker that there are no more.
CLOB_FIRST_CURSOR: Final = "MA=="
CLOB_END_CURSOR: Final = "LTE="

_NOT_FOUND: Final = object()

Params = Sequence[tuple[str, str]]


class UpstreamError(Exception):
    """Polymarket did not give a usable answer, even after the retries."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(f"{message} ({url})")
        self.url = url
        self.status = status


class _Retryable(Exception):
    """One failed attempt worth repeating; `delay` overrides the backoff (Retry-After)."""

    def __init__(
        self, reason: str, *, status: int | None = None, delay: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.delay = delay


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


class Quoted(Protocol):
    """A stored market as far as reading its odds goes."""

    @property
    def source_id(self) -> str: ...
    @property
    def this_token_id(self) -> str: ...
    @property
    def that_token_id(self) -> str: ...


class PolymarketClient:
    """Reads Gamma and CLOB over one shared aiohttp session (owned by the caller).

    `requests_made` counts every HTTP attempt, retries included.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        gamma_url: str,
        clob_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 10,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30,
        retry_after_max_s: float = 60,
        gamma_page_size: int = 100,
        gamma_ids_per_request: int = 50,
        midpoints_per_request: int = 100,
        max_concurrency: int = 4,
        max_clob_pages: int = 10_000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._session = session
        self._gamma_url = gamma_url.rstrip("/")
        self._clob_url = clob_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._retry_after_max_s = retry_after_max_s
        self._gamma_page_size = gamma_page_size
        self._gamma_ids_per_request = gamma_ids_per_request
        self._midpoints_per_request = midpoints_per_request
        self._max_concurrency = max_concurrency
        self._max_clob_pages = max_clob_pages
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            self._headers[API_KEY_HEADER] = api_key
        self.requests_made = 0

    # --- Gamma ----------------------------------------------------------------------------

    async def list_open_markets(self, limit_total: int) -> list[dict[str, Any]]:
        """Up to `limit_total` open markets by volume, highest first (raw Gamma records)."""
        by_id: dict[str, dict[str, Any]] = {}
        offset = 0
        while len(by_id) < limit_total and offset <= GAMMA_MAX_OFFSET:
            page_size = min(self._gamma_page_size, limit_total - len(by_id))
            params = [
                ("active", "true"),
                ("closed", "false"),
                ("order", "volumeNum"),
                ("ascending", "false"),
                ("limit", str(page_size)),
                ("offset", str(offset)),
            ]
            page = self._records(await self._get(f"{self._gamma_url}/markets", params), "markets")
            for record in page:
                key = record.get("conditionId")
                # Volume order shifts between pages; a market seen twice is kept once.
                by_id.setdefault(key if isinstance(key, str) else f"#{len(by_id)}", record)
            if len(page) < page_size:
                break
            offset += len(page)
        return list(by_id.values())[:limit_total]

    async def get_gamma_markets(self, condition_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The Gamma records of these markets, open or closed.

        Gamma applies `closed=false` unless `closed` is sent, even with
        `condition_ids`, so every chunk is asked for both states.
        """
        queries: list[Params] = []
        for chunk in _chunks(_unique(condition_ids), self._gamma_ids_per_request):
            ids = [("condition_ids", condition_id) for condition_id in chunk]
            limit = ("limit", str(len(chunk)))
            queries.append([*ids, ("closed", "false"), limit])
            queries.append([*ids, ("closed", "true"), limit])
        url = f"{self._gamma_url}/markets"
        answers = await self._bounded(
            [functools.partial(self._get, url, params) for params in queries]
        )
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        merged: dict[str, dict[str, Any]] = {}
        for answer in answers:
            for record in self._records(answer, "markets"):
                key = record.get("conditionId")
                if isinstance(key, str):
                    merged[key] = record
        return list(merged.values())

    # --- what the poller reads -------------------------------------------------------------

    async def open_listings(self, limit_total: int) -> tuple[list[MarketListing], int]:
        """Up to `limit_total` open markets as listings, and how many records were unreadable."""
        stats = ParseStats()
        listings = parse_gamma_markets(await self.list_open_markets(limit_total), stats)
        return listings, stats.skipped

    async def listing(self, condition_id: str) -> MarketListing | None:
        """One market as the listing would have it (the same parsing and filters), if it is an
        open binary market; None otherwise."""
        records = [
            record
            for record in await self.get_gamma_markets([condition_id])
            # What the listing asks Gamma for: `active=true&closed=false`.
            if record.get("active") is True and record.get("closed") is not True
        ]
        for listing in parse_gamma_markets(records):
            if listing.source_id == condition_id:
                return listing
        return None

    async def read_odds(self, markets: Sequence[Quoted]) -> dict[str, tuple[Decimal, Decimal]]:
        """(this, that) odds by source id: CLOB midpoints, Gamma prices where CLOB has none.

        A market neither prices (or one Gamma reports closed) is left out.
        """
        tokens = [token for row in markets for token in (row.this_token_id, row.that_token_id)]
        midpoints = await self.get_midpoints(tokens) if tokens else {}
        odds: dict[str, tuple[Decimal, Decimal]] = {}
        missing: list[str] = []
        for row in markets:
            read = complete_odds(
                midpoint_value(midpoints.get(row.this_token_id)),
                midpoint_value(midpoints.get(row.that_token_id)),
            )
            if read is None:
                missing.append(row.source_id)
            else:
                odds[row.source_id] = read
        if missing:
            wanted = set(missing)
            for raw in await self.get_gamma_markets(missing):
                state = resolution_from_gamma(raw)
                if state is None or state.closed or state.source_id not in wanted:
                    continue
                if state.this_odds is not None and state.that_odds is not None:
                    odds[state.source_id] = (state.this_odds, state.that_odds)
        return odds

    async def upstream_state(self, source_id: str) -> UpstreamState | None:
        """CLOB first; Gamma when CLOB does not know the market. None means gone from both."""
        clob = await self.get_clob_market(source_id)
        state = resolution_from_clob(clob) if clob is not None else None
        if state is not None and (state.resolution is not None or not state.closed):
            return state
        for raw in await self.get_gamma_markets([source_id]):
            gamma_state = resolution_from_gamma(raw)
            # Prefer Gamma's view only when it knows more (a resolution CLOB has not shown yet).
            known = gamma_state is not None and gamma_state.source_id == source_id
            if known and (state is None or gamma_state.resolution is not None):  # type: ignore[union-attr]
                return gamma_state
        return state

    # --- CLOB -----------------------------------------------------------------------------

    async def get_midpoints(self, token_ids: Sequence[str]) -> dict[str, Decimal]:
        """Midpoint prices by token id. Unreadable entries are left out.

        A batch that still fails after its retries is logged and left out too,
        so one bad batch does not blank every market; if every batch fails,
        UpstreamError is raised.
        """
        batches = _chunks(_unique(token_ids), self._midpoints_per_request)
        if not batches:
            return {}
        url = f"{self._clob_url}/midpoints"
        calls = [
            functools.partial(self._post, url, [{"token_id": token} for token in batch])
            for batch in batches
        ]
        answers = await self._bounded(calls)
        midpoints: dict[str, Decimal] = {}
        errors: list[UpstreamError] = []
        for answer in answers:
            if isinstance(answer, UpstreamError):
                errors.append(answer)
                continue
            if isinstance(answer, BaseException):
                raise answer
            if not isinstance(answer, Mapping):
                logger.warning("CLOB midpoints answered a %s, not an object", type(answer).__name__)
                continue
            for token, value in answer.items():
                price = midpoint_value(value)
                if isinstance(token, str) and price is not None:
                    midpoints[token] = price
        if errors:
            logger.warning(
                "%d of %d midpoint batches failed: %s", len(errors), len(batches), errors[0]
            )
            if len(errors) == len(batches):
                raise errors[0]
        return midpoints

    async def get_midpoint(self, token_id: str) -> Decimal | None:
        """One token's midpoint via `GET /midpoint` (live answers `mid`, docs say `mid_price`)."""
        url = f"{self._clob_url}/midpoint"
        answer = await self._request("GET", url, [("token_id", token_id)], allow_404=True)
        return None if answer is _NOT_FOUND else midpoint_value(answer)

    async def get_clob_market(self, condition_id: str) -> dict[str, Any] | None:
        """The CLOB record of one market, or None when CLOB does not know it (404)."""
        url = f"{self._clob_url}/markets/{condition_id}"
        answer = await self._request("GET", url, None, allow_404=True)
        if answer is _NOT_FOUND:
            return None
        if not isinstance(answer, dict):
            raise UpstreamError("CLOB market is not an object", url=url)
        return answer

    async def iter_clob_markets(self) -> AsyncIterator[dict[str, Any]]:
        """Every CLOB market record, following `next_cursor` until `LTE=`."""
        cursor = CLOB_FIRST_CURSOR
        seen: set[str] = set()
        for _ in range(self._max_clob_pages):
            seen.add(cursor)
            page = await self._get(f"{self._clob_url}/markets", [("next_cursor", cursor)])
            if not isinstance(page, Mapping):
                raise UpstreamError(
                    "CLOB markets page is not an object", url=f"{self._clob_url}/markets"
                )
            for record in self._records(page.get("data"), "CLOB markets"):
                yield record
            next_cursor = page.get("next_cursor")
            if (
                not isinstance(next_cursor, str)
                or not next_cursor
                or next_cursor == CLOB_END_CURSOR
            ):
                return
            if next_cursor in seen:
                logger.warning("CLOB markets cursor %r repeats; stopping", next_cursor)
                return
            cursor = next_cursor
        logger.warning("CLOB markets paging stopped after %d pages", self._max_clob_pages)

    # --- transport ------------------------------------------------------------------------

    @staticmethod
    def _records(answer: object, what: str) -> list[dict[str, Any]]:
        if not isinstance(answer, list):
            logger.warning("%s answer is a %s, not a list", what, type(answer).__name__)
            return []
        records = [record for record in answer if isinstance(record, dict)]
        if len(records) != len(answer):
            logger.warning("skipped %d non-object %s records", len(answer) - len(records), what)
        return records

    async def _bounded(self, calls: Sequence[Callable[[], Awaitable[object]]]) -> list[object]:
        """Run the calls at most `max_concurrency` at a time; failures come back as values. Each
        call starts only once it has its turn, so a cancelled wait leaves no coroutine behind."""
        semaphore = asyncio.Semaphore(self._max_concurrency)

        async def run(call: Callable[[], Awaitable[object]]) -> object:
            async with semaphore:
                return await call()

        return list(await asyncio.gather(*(run(call) for call in calls), return_exceptions=True))

    async def _get(self, url: str, params: Params) -> object:
        return await self._request("GET", url, params)

    async def _post(self, url: str, body: object) -> object:
        return await self._request("POST", url, None, body=orjson.dumps(body))

    async def _request(
        self,
        method: str,
        url: str,
        params: Params | None,
        *,
        body: bytes | None = None,
        allow_404: bool = False,
    ) -> object:
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(self._max_retries + 1):
            try:
                return await self._attempt(method, url, params, body, headers, allow_404)
            except _Retryable as failure:
                if attempt == self._max_retries:
                    raise UpstreamError(
                        f"{method} failed after {attempt + 1} attempts: {failure.reason}",
                        url=url,
                        status=failure.status,
                    ) from failure
                delay = failure.delay if failure.delay is not None else self._backoff(attempt)
                logger.warning(
                    "%s %s: %s; retry %d/%d in %.2fs",
                    method,
                    url,
                    failure.reason,
                    attempt + 1,
                    self._max_retries,
                    delay,
                )
                await self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _attempt(
        self,
        method: str,
        url: str,
        params: Params | None,
        body: bytes | None,
        headers: Mapping[str, str],
        allow_404: bool,
    ) -> object:
        self.requests_made += 1
        try:
            async with self._session.request(
                method, url, params=params, data=body, headers=headers, timeout=self._timeout
            ) as response:
                status = response.status
                if status == 404 and allow_404:
                    return _NOT_FOUND
                if status == 429:
                    raise _Retryable(
                        "rate limited (429)", status=status, delay=self._retry_after(response)
                    )
                if status >= 500:
                    raise _Retryable(f"server error {status}", status=status)
                if status >= 400:
                    text = (await response.text(errors="replace"))[:200]
                    raise UpstreamError(f"refused with {status}: {text}", url=url, status=status)
                payload = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            # A cancel that lands while a request timeout fires can surface as TimeoutError
            # (Python 3.11's asyncio.timeout); a task being cancelled must stop, not retry.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from exc
            # TimeoutError also covers aiohttp's ServerTimeoutError.
            raise _Retryable(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            ) from exc
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise _Retryable(f"bad JSON ({len(payload)} bytes): {exc}", status=status) from exc

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        ceiling = min(self._backoff_max_s, self._backoff_base_s * (2**attempt))
        return self._rng.uniform(0, ceiling)

    def _retry_after(self, response: aiohttp.ClientResponse) -> float | None:
        header = response.headers.get("Retry-After")
        if header is None:
            return None
        try:
            seconds = float(header)
        except ValueError:
            return None  # an HTTP date: fall back to our own backoff
        if seconds != seconds or seconds < 0:  # NaN or negative
            return None
        return min(seconds, self._retry_after_max_s)
