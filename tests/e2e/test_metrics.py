"""/metrics tells an operator what the bet path is doing: events by outcome, batches, errors by code."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import asyncpg

from tests.betting_fixtures import insert_market
from tests.conftest import PlayerFactory, ServerFactory


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def test_bets_and_refusals_show_in_metrics(
    server: tuple[str, Any],
    new_player: PlayerFactory,
    db: asyncpg.Pool,
    http: aiohttp.ClientSession,
) -> None:
    async def scrape() -> str:
        async with http.get(server[0] + "/metrics") as response:
            return await response.text()

    before = await scrape()
    player = await new_player()
    market = str(await insert_market(db))
    await player.ok(
        "bet:place", {"marketId": market, "side": "this", "amount": 10, "clientBetId": "m1"}
    )
    await player.error(
        "bet:place", {"marketId": market, "side": "this", "amount": 5, "clientBetId": "m2"}
    )
    after = await scrape()

    ok = 'thisthat_socket_events_total{event="bet:place",outcome="ok"}'
    refused = 'thisthat_socket_events_total{event="bet:place",outcome="BET_AMOUNT_OUT_OF_RANGE"}'

    def delta(name: str) -> float:
        return sample(after, name) - (sample(before, name) if name in before else 0)

    assert delta(ok) == 1
    assert delta(refused) == 1
    assert delta("thisthat_bet_batch_size_count") == 1
    assert 'thisthat_errors_total{code="BET_AMOUNT_OUT_OF_RANGE"}' in after
    assert "thisthat_event_loop_lag_seconds" in after
    assert sample(after, "thisthat_connected_sockets") >= 1


async def test_wrong_metrics_tokens_from_one_address_are_refused_past_the_limit(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    token = "metrics-token-0123456789abcdef"
    base, _ = await start_server(metrics_token=token, rate_limit_operator_token_per_ip=(2, 300))
    right = {"Authorization": f"Bearer {token}"}
    for _ in range(3):
        async with http.get(base + "/metrics", headers=right) as response:
            assert response.status == 200
    statuses = []
    for path in ("/metrics", "/readyz", "/metrics", "/readyz"):
        async with http.get(base + path, headers={"Authorization": "Bearer guess"}) as response:
            statuses.append(response.status)
    assert statuses == [401, 200, 429, 429]  # /readyz answers its status, without the checks
    async with http.get(base + "/metrics", headers=right) as response:
        assert response.status == 429
        assert (await response.json())["error"]["code"] == "RATE_LIMITED"
    # A balancer's health check presents no token: it is neither counted nor refused.
    async with http.get(base + "/readyz") as response:
        assert response.status == 200
