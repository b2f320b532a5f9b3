"""The Node peer of the benchmark (bench/node/peer_server.mjs) writes into ThisThat's own schema:
driven by the official socket.io-client through the bench's closed loop, and by a python-socketio
client for its refusals, every row it writes keeps the ledger invariants `thisthat audit` checks.
Counts and rows are asserted, never timings. Skipped only where Node.js and npm are absent."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import socketio

from bench import node_client
from bench.processes import CpuWindow
from server.auth.tokens import TokenService
from server.settings import Settings
from storage import audit
from tests.betting_fixtures import balance_of, insert_market, make_user

pytestmark = pytest.mark.slow


def access_token(settings: Settings, user_id: uuid.UUID) -> str:
    tokens = TokenService(
        access_secret=settings.jwt_access_secret,
        refresh_secret=settings.jwt_refresh_secret,
        access_ttl_s=settings.jwt_access_expires_in,
        refresh_ttl_s=settings.jwt_refresh_expires_in,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    return tokens.issue("access", user_id, datetime.now(UTC)).token


@pytest.fixture
async def peer(
    settings: Settings, db: asyncpg.Pool, tmp_path: Path
) -> AsyncIterator[tuple[Path, node_client.Peer]]:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed (apt-get install nodejs npm)")
    cache = node_client.ensure_installed()
    if cache is None:
        pytest.fail("npm could not install bench/node/package-lock.json (see the line above)")
    assert settings.database_url is not None
    running = await node_client.start_peer(
        cache, settings.database_url, settings.jwt_access_secret, tmp_path / "peer.log"
    )
    yield cache, running
    await running.stop()


async def audit_clean(db: asyncpg.Pool, settings: Settings) -> None:
    async with db.acquire() as connection:
        assert await audit.check_ledger(connection, settings.max_balance) == []


@pytest.mark.timeout(120)
async def test_official_client_bets_on_the_peer_keep_the_ledger_whole(
    peer: tuple[Path, node_client.Peer], db: asyncpg.Pool, settings: Settings
) -> None:
    cache, running = peer
    market_id = await insert_market(db, ends_in_s=60)
    # A later-ending open market: the client bets on the first one markets:list answers.
    await insert_market(db, ends_in_s=7200)
    users = [await make_user(db, f"peerbench{n}", credits="100000") for n in range(4)]
    tokens = [access_token(settings, user) for user in users]

    result = await node_client.closed_loop(
        cache,
        running.url,
        tokens,
        CpuWindow({"server": [running.process.pid]}),
        event="bet:place",
        sockets=4,
        warmup_s=0,
        duration_s=1,
    )

    assert result["ok"] > 0, result
    assert result["refused"] == 0 and result["timeouts"] == 0, result
    placed: list[Any] = await db.fetch(
        "SELECT user_id, market_id, amount, odds, potential_payout FROM bets"
    )
    # Acks counted in the window, plus those around it: every acked bet is written.
    assert len(placed) >= result["ok"]
    assert {row["market_id"] for row in placed} == {market_id}
    for user in users:
        mine = [row for row in placed if row["user_id"] == user]
        stakes = await db.fetchval(
            "SELECT count(*) FROM ledger WHERE user_id = $1 AND kind = 'bet_stake'", user
        )
        assert stakes == len(mine)
        assert await balance_of(db, user) == Decimal("100000") - sum(r["amount"] for r in mine)
        assert await db.fetchval(
            "SELECT open_potential_payout FROM users WHERE id = $1", user
        ) == sum(r["potential_payout"] for r in mine)
    await audit_clean(db, settings)


@pytest.mark.timeout(60)
async def test_peer_answers_like_thisthat_and_refusals_write_nothing(
    peer: tuple[Path, node_client.Peer], db: asyncpg.Pool, settings: Settings
) -> None:
    _, running = peer
    market_id = str(await insert_market(db, this_odds="0.4000"))
    closed_id = str(await insert_market(db, status="closed"))
    user = await make_user(db, "peerrules", credits="100")
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        running.url, auth={"token": access_token(settings, user)}, transports=["websocket"]
    )
    try:

        async def place(**payload: Any) -> dict[str, Any]:
            answer: dict[str, Any] = await client.call("bet:place", payload, timeout=15)
            return answer

        bet = {"marketId": market_id, "side": "this", "amount": 40, "clientBetId": "peer-1"}
        first = await place(**bet)
        assert first["ok"] is True, first
        assert first["data"]["balance"] == 60
        assert first["data"]["bet"]["potentialPayout"] == 100
        assert first["data"]["bet"]["odds"] == 0.4
        # A repeat answers the original bet and debits nothing, whatever it says.
        again = await place(**{**bet, "amount": 50})
        assert again["ok"] is True and again["data"]["bet"] == first["data"]["bet"]
        assert again["data"]["balance"] == 60

        refusals = [
            ({**bet, "clientBetId": "peer-2", "amount": 70}, "INSUFFICIENT_CREDITS"),
            ({**bet, "clientBetId": "peer-3", "marketId": closed_id}, "MARKET_CLOSED"),
            ({**bet, "clientBetId": "peer-4", "marketId": str(uuid.uuid4())}, "MARKET_NOT_FOUND"),
            ({**bet, "clientBetId": "peer-5", "expectedOdds": 0.3}, "ODDS_CHANGED"),
            ({**bet, "clientBetId": "peer-6", "amount": 5}, "BET_AMOUNT_OUT_OF_RANGE"),
            ({**bet, "clientBetId": "peer-7", "side": "other"}, "VALIDATION_ERROR"),
        ]
        for payload, code in refusals:
            answer = await place(**payload)
            assert answer["ok"] is False and answer["error"]["code"] == code, (payload, answer)
        unknown = await client.call("wallet:get", {}, timeout=15)
        assert unknown["error"]["code"] == "UNKNOWN_EVENT"
    finally:
        await client.disconnect()

    assert await db.fetchval("SELECT count(*) FROM bets") == 1
    assert await balance_of(db, user) == Decimal("60")
    await audit_clean(db, settings)


@pytest.mark.timeout(60)
async def test_peer_refuses_a_token_signed_with_another_secret(
    peer: tuple[Path, node_client.Peer], db: asyncpg.Pool, settings: Settings
) -> None:
    _, running = peer
    user = await make_user(db, "peerforged")
    forged = TokenService(
        access_secret="another-secret-0123456789abcdef0123",
        refresh_secret="another-secret-0123456789abcdef0123",
        access_ttl_s=60,
        refresh_ttl_s=60,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    ).issue("access", user, datetime.now(UTC))
    client = socketio.AsyncClient(reconnection=False)
    refused: list[Any] = []
    client.on("connect_error", refused.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(running.url, auth={"token": forged.token}, transports=["websocket"])
    assert refused and refused[0]["data"]["code"] == "TOKEN_INVALID", refused
