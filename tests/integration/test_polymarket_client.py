"""The Polymarket client against the local fake: paging, batching, retries and failures."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import aiohttp
import pytest

from feeds.parsing import parse_gamma_markets, resolution_from_clob, resolution_from_gamma
from feeds.polymarket import GAMMA_MAX_OFFSET, USER_AGENT, PolymarketClient, UpstreamError
from game.markets import Resolution
from tests.fake_polymarket import FakeMarket, FakePolymarket

NEWSOM = "0x0f49db97f71c68b1e42a6d16e3de93d85dbf7d4148e3f018eb79e88554be9f75"
NEWSOM_YES = "54533043819946592547517511176940999955633860128497669742211153063842200957669"
KATANA = "0x8ccc3f4951ff02c1d34b87988752b4444ad17228732780a6cf22afefe8478bb6"


class RecordedSleep:
    """Stands in for asyncio.sleep so backoff delays are checked without waiting for them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def fake() -> AsyncIterator[FakePolymarket]:
    polymarket = FakePolymarket()
    async with polymarket.serve():
        yield polymarket


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def sleep() -> RecordedSleep:
    return RecordedSleep()


@pytest.fixture
def client(
    fake: FakePolymarket, session: aiohttp.ClientSession, sleep: RecordedSleep
) -> PolymarketClient:
    return PolymarketClient(
        session,
        fake.gamma_url,
        fake.clob_url,
        api_key="test-key",
        timeout_s=5,
        max_retries=3,
        sleep=sleep,
        rng=random.Random(7),
    )


# --- Gamma ----------------------------------------------------------------------------------


async def test_listing_pages_by_offset_in_volume_order(
    fake: FakePolymarket, client: PolymarketClient
) -> None:
    fake.add_markets(250)

    markets = await client.list_open_markets(230)

    assert len(markets) == 230
    assert markets[0]["conditionId"] == NEWSOM  # the recorded market has the biggest volume
    volumes = [m["volumeNum"] for m in markets]
    assert volumes == sorted(volumes, reverse=True)
    assert all(m["closed"] is False for m in markets)
    assert fake.requests["/gamma/markets"] == 3  # 100 + 100 + 30
    assert len(parse_gamma_markets(markets)) == 230
    assert fake.last_headers["User-Agent"] == USER_AGENT
    assert fake.last_headers["POLY_API_KEY"] == "test-key"


async def test_listing_stops_at_a_short_page(
    fake: FakePolymarket, client: PolymarketClient
) -> None:
    fake.add_markets(120)

    markets = await client.list_open_markets(1000)

    assert len(markets) == 121  # 120 synthetic + the open recorded one; the resolved one is closed
    assert fake.requests["/gamma/markets"] == 2


async def test_listing_never_asks_beyond_gammas_offset_cap(
    fake: FakePolymarket, session: aiohttp.ClientSession
) -> None:
    fake.add_markets(2600)
    client = PolymarketClient(session, fake.gamma_url, fake.clob_url, gamma_page_size=500)

    markets = await client.list_open_markets(5000)

    # Offsets 0, 500, ..., 2000: five full pages, then the cap.
    assert len(markets) == GAMMA_MAX_OFFSET + 500
    assert fake.requests["/gamma/markets"] == 5
    assert client.requests_made == 5


async def test_markets_by_condition_id_include_closed_ones(
    fake: FakePolymarket, client: PolymarketClient
) -> None:
    synthetic = fake.add_markets(60)
    fake.resolve(synthetic[0].condition_id, "this")
    ids = [NEWSOM, KATANA, *(m.condition_id for m in synthetic), "0xunknown"]

    markets = await client.get_gamma_markets(ids)

    by_id = {m["conditionId"]: m for m in markets}
    assert set(by_id) == set(ids) - {"0xunknown"}
    # 63 ids in chunks of 50: two chunks, each asked once open and once closed.
    assert fake.requests["/gamma/markets"] == 4
    katana = resolution_from_gamma(by_id[KATANA])
    assert katana is not None
    assert katana.resolution is Resolution.THAT
    won = resolution_from_gamma(by_id[synthetic[0].condition_id])
    assert won is not None
    assert won.resolution is Resolution.THIS


async def test_without_closed_gamma_hides_closed_markets(fake: FakePolymarket) -> None:
    """The fake reproduces the upstream quirk the client works around."""
    async with aiohttp.ClientSession() as raw_session:
        url = f"{fake.gamma_url}/markets?condition_ids={KATANA}"
        async with raw_session.get(url) as response:
            assert await response.json() == []


# --- CLOB -----------------------------------------------------------------------------------


async def test_midpoints_are_batched_by_one_hundred_tokens(
    fake: FakePolymarket, client: PolymarketClient
) -> None:
    markets = fake.add_markets(125)
    tokens = [token for m in markets for token in (m.this_token, m.that_token)]

    midpoints = await client.get_midpoints(tokens)

    assert len(midpoints) == 250
    assert sorted(fake.midpoint_batch_sizes) == [50, 100, 100]
    assert fake.requests["/clob/midpoints"] == 3
    assert midpoints[markets[0].this_token] == markets[0].this_price
    assert midpoints[markets[0].that_token] == 1 - markets[0].this_price


async def test_midpoints_follow_price_changes_and_skip_closed_markets(
    fake: FakePolymarket, client: PolymarketClient
) -> None:
    first, second = fake.add_markets(2)
    fake.set_price(first.condition_id, "0.615")
    fake.close(second.condition_id)

    midpoints = await client.get_midpoints([first.this_token, second.this_token])

    assert midpoints == {first.this_token: Decimal("0.615")}
    assert await client.get_midpoint(first.this_token) == Decimal("0.615")
    assert await client.get_midpoint(second.this_token) is None


async def test_one_failed_midpoint_batch_leaves_the_others(
    fake: FakePolymarket, session: aiohttp.ClientSession, sleep: RecordedSleep
) -> None:
    markets = fake.add_markets(100)
    tokens = [token for m in markets for token in (m.this_token, m.that_token)]
    # One batch at a time, so the first batch takes every injected failure.
    client = PolymarketClient(
        session, fake.gamma_url, fake.clob_url, max_retries=3, max_concurrency=1, sleep=sleep
    )
    fake.fail_next(4, status=503, path="/clob/midpoints")

    midpoints = await client.get_midpoints(tokens)

    assert len(midpoints) == 100
    assert midpoints.keys() == set(tokens[100:])

    fake.fail_next(8, status=503, path="/clob/midpoints")
    with pytest.raises(UpstreamError):
        await client.get_midpoints(tokens)


async def test_clob_market_by_condition_id(fake: FakePolymarket, client: PolymarketClient) -> None:
    (market,) = fake.add_markets(1)
    fake.resolve(market.condition_id, "split")

    raw = await client.get_clob_market(market.condition_id)
    state = resolution_from_clob(raw)
    assert state is not None
    assert state.resolution is Resolution.SPLIT

    fake.remove(market.condition_id)
    assert await client.get_clob_market(market.condition_id) is None


@pytest.mark.parametrize(
    ("resolution", "expected"),
    [
        ("this", Resolution.THIS),
        ("that", Resolution.THAT),
        ("split", Resolution.SPLIT),
        ("cancelled", Resolution.CANCELLED),
    ],
)
async def test_fake_resolutions_read_the_same_from_gamma_and_clob(
    fake: FakePolymarket, client: PolymarketClient, resolution: str, expected: Resolution
) -> None:
    (market,) = fake.add_markets(1)
    fake.resolve(market.condition_id, resolution)  # type: ignore[arg-type]

    (gamma,) = await client.get_gamma_markets([market.condition_id])
    clob = await client.get_clob_market(market.condition_id)

    from_gamma, from_clob = resolution_from_gamma(gamma), resolution_from_clob(clob)
    assert from_gamma is not None
    assert from_gamma.resolution is expected
    assert from_clob is not None
    assert from_clob.resolution is expected


async def test_clob_markets_are_paged_by_cursor_until_the_end_marker(
    fake: FakePolymarket, client: PolymarketClient
) -> None:
    fake.add_markets(248)

    seen = [record["condition_id"] async for record in client.iter_clob_markets()]

    assert len(seen) == 250
    assert len(set(seen)) == 250
    assert fake.requests["/clob/markets"] == 3


# --- failures -------------------------------------------------------------------------------


async def test_server_errors_are_retried_with_jittered_backoff(
    fake: FakePolymarket, client: PolymarketClient, sleep: RecordedSleep
) -> None:
    fake.fail_next(2, status=500)

    markets = await client.list_open_markets(10)

    assert len(markets) == 1
    assert client.requests_made == 3
    assert len(sleep.delays) == 2
    assert 0 <= sleep.delays[0] <= 0.5
    assert 0 <= sleep.delays[1] <= 1.0


async def test_rate_limits_honour_retry_after(
    fake: FakePolymarket, client: PolymarketClient, sleep: RecordedSleep
) -> None:
    fake.rate_limit_next(2, retry_after=3)

    assert await client.get_clob_market(NEWSOM) is not None
    assert sleep.delays == [3.0, 3.0]


async def test_a_hang_beyond_the_timeout_is_retried(
    fake: FakePolymarket, session: aiohttp.ClientSession, sleep: RecordedSleep
) -> None:
    client = PolymarketClient(session, fake.gamma_url, fake.clob_url, timeout_s=0.3, sleep=sleep)
    fake.hang_next(1, seconds=1.5)

    midpoints = await client.get_midpoints([NEWSOM_YES])

    assert midpoints == {NEWSOM_YES: Decimal("0.2325")}
    assert client.requests_made == 2


async def test_truncated_json_is_retried(fake: FakePolymarket, client: PolymarketClient) -> None:
    fake.truncate_next(1)

    assert await client.get_clob_market(NEWSOM) is not None
    assert client.requests_made == 2


async def test_persistent_truncated_json_raises_upstream_error(
    fake: FakePolymarket, client: PolymarketClient
) -> None:
    fake.truncate_next(10)

    with pytest.raises(UpstreamError, match="bad JSON"):
        await client.get_clob_market(NEWSOM)
    assert client.requests_made == 4  # the first try and three retries


async def test_persistent_server_errors_raise_upstream_error(
    fake: FakePolymarket, client: PolymarketClient
) -> None:
    fake.fail_next(10, status=502)

    with pytest.raises(UpstreamError) as caught:
        await client.list_open_markets(10)
    assert caught.value.status == 502


async def test_client_errors_are_not_retried(
    fake: FakePolymarket, client: PolymarketClient
) -> None:
    fake.fail_next(1, status=400)

    with pytest.raises(UpstreamError) as caught:
        await client.list_open_markets(10)
    assert caught.value.status == 400
    assert client.requests_made == 1


async def test_connection_refused_is_retried_then_raises(
    session: aiohttp.ClientSession, sleep: RecordedSleep
) -> None:
    stopped = FakePolymarket()
    async with stopped.serve():
        gamma_url = stopped.gamma_url
    client = PolymarketClient(session, gamma_url, gamma_url, max_retries=2, sleep=sleep)

    with pytest.raises(UpstreamError):
        await client.list_open_markets(10)
    assert client.requests_made == 3
    assert len(sleep.delays) == 2


# --- what the poller reads ------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A stored market as the odds reader sees it (feeds.polymarket.Quoted)."""

    source_id: str
    this_token_id: str
    that_token_id: str


def stored(market: FakeMarket) -> Stored:
    return Stored(market.condition_id, market.this_token, market.that_token)


async def test_odds_come_from_midpoints_and_from_gamma_where_a_batch_failed(
    fake: FakePolymarket, session: aiohttp.ClientSession, sleep: RecordedSleep
) -> None:
    markets = fake.add_markets(100)
    fake.set_price(markets[0].condition_id, "0.615")
    # One batch at a time, so the first batch (the first 50 markets) takes every failure.
    client = PolymarketClient(
        session, fake.gamma_url, fake.clob_url, max_retries=3, max_concurrency=1, sleep=sleep
    )
    fake.fail_next(4, status=503, path="/clob/midpoints")

    odds = await client.read_odds([stored(market) for market in markets])

    assert odds == {market.condition_id: market.prices for market in markets}
    assert odds[markets[0].condition_id] == (Decimal("0.615"), Decimal("0.385"))
    assert fake.requests["/gamma/markets"] >= 1


async def test_a_closed_market_has_no_odds_to_read(
    fake: FakePolymarket, client: PolymarketClient
) -> None:
    trading, closed = fake.add_markets(2)
    fake.close(closed.condition_id)

    odds = await client.read_odds([stored(trading), stored(closed)])

    assert odds == {trading.condition_id: trading.prices}


async def test_upstream_state_open_resolved_and_gone(
    fake: FakePolymarket, client: PolymarketClient
) -> None:
    trading, resolved, gone = fake.add_markets(3)
    fake.resolve(resolved.condition_id, "that")
    fake.remove(gone.condition_id)

    open_state = await client.upstream_state(trading.condition_id)
    assert open_state is not None
    assert (open_state.closed, open_state.resolution) == (False, None)
    resolved_state = await client.upstream_state(resolved.condition_id)
    assert resolved_state is not None
    assert resolved_state.resolution is Resolution.THAT
    assert await client.upstream_state(gone.condition_id) is None
