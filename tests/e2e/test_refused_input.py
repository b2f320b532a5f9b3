"""Input the server did not write or cannot store, over a real socket and real HTTP: each gets a
protocol error (VALIDATION_ERROR naming the field, or TOKEN_INVALID) and changes nothing.

Cursors out of range or in another form, ids with their dashes moved, decimals that are not
numbers or too long to store, login passwords over bcrypt's 72 bytes, tokens with an `exp` the
server could not have written.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio
from aiohttp import web

from server.application.services import SERVICES
from server.settings import SETTINGS
from server.wire.views import encode_cursor
from tests.betting_fixtures import insert_market
from tests.conftest import PlayerFactory
from tests.players import Player

ODD_DECIMALS = ["NaN", "sNaN", "1E-999999999", "1" * 20_000, "0." + "1" * 20_000]


async def state(db: asyncpg.Pool, player: Player) -> tuple[Any, ...]:
    """The player's balance, bets and ledger entries, and every refresh token."""
    user_id = uuid.UUID(player.user_id)
    row = await db.fetchrow(
        "SELECT balance, (SELECT count(*) FROM bets WHERE user_id = $1) AS bets,"
        " (SELECT count(*) FROM ledger WHERE user_id = $1) AS ledger,"
        " (SELECT count(*) FROM refresh_tokens) AS tokens FROM users WHERE id = $1",
        user_id,
    )
    assert row is not None
    return tuple(row)


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not errors, [record.getMessage() for record in errors]


async def test_a_ledger_cursor_out_of_range_or_not_ours_is_a_validation_error(
    new_player: PlayerFactory, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    player = await new_player()
    await player.ok("reward:claim")
    first = await player.ok("wallet:history", {"limit": 1})
    assert first["nextCursor"] is not None
    # The cursor the server wrote still pages.
    second = await player.ok("wallet:history", {"limit": 1, "cursor": first["nextCursor"]})
    assert second["entries"][0]["id"] != first["entries"][0]["id"]
    before = await state(db, player)
    for cursor in ["²", encode_cursor("²"), encode_cursor(2**64), encode_cursor(2**63)]:
        error = await player.error("wallet:history", {"cursor": cursor})
        assert error["code"] == "VALIDATION_ERROR", (cursor, error)
        assert error["details"] == {"field": "cursor"}, (cursor, error)
    assert await state(db, player) == before
    no_errors_logged(caplog)


async def test_a_bet_cursor_at_the_far_offsets_of_year_1_or_9999_is_a_validation_error(
    new_player: PlayerFactory, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    player = await new_player()
    market = await insert_market(db)
    for n in range(2):
        await player.ok(
            "bet:place",
            {"marketId": str(market), "side": "this", "amount": 10, "clientBetId": f"c{n}"},
        )
    first = await player.ok("bets:list", {"limit": 1})
    second = await player.ok("bets:list", {"limit": 1, "cursor": first["nextCursor"]})
    assert second["bets"][0]["id"] != first["bets"][0]["id"]
    before = await state(db, player)
    bet_id = uuid.UUID(first["bets"][0]["id"])
    for placed_at in ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]:
        error = await player.error("bets:list", {"cursor": encode_cursor(placed_at, bet_id)})
        assert error["code"] == "VALIDATION_ERROR", (placed_at, error)
        assert error["details"] == {"field": "cursor"}, (placed_at, error)
    assert await state(db, player) == before
    no_errors_logged(caplog)


def moved_dashes(market: uuid.UUID) -> str:
    plain = market.hex
    return f"{plain[:4]}-{plain[4:12]}-{plain[12:14]}-{plain[14:22]}-{plain[22:]}"


async def test_a_market_id_with_its_dashes_moved_is_a_validation_error(
    new_player: PlayerFactory, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    player = await new_player()
    market = await insert_market(db)
    odd = moved_dashes(market)
    assert len(odd) == 36 and odd != str(market)
    error = await player.error("market:get", {"marketId": odd})
    assert (error["code"], error["details"]) == ("VALIDATION_ERROR", {"field": "marketId"})
    error = await player.error("market:subscribe", {"marketIds": [str(market), odd]})
    assert (error["code"], error["details"]) == ("VALIDATION_ERROR", {"field": "marketIds[1]"})
    # Subscribed to neither.
    assert (await player.ok("sync"))["markets"] == []
    # The same id spelled as UUIDs are spelled names the market.
    for spelling in (str(market).upper(), market.hex):
        got = await player.ok("market:get", {"marketId": spelling})
        assert got["market"]["id"] == str(market)
    no_errors_logged(caplog)


@pytest.mark.parametrize("field", ["expectedOdds", "maxSlippage"])
async def test_a_bet_with_odd_decimal_odds_is_a_validation_error_and_changes_nothing(
    field: str, new_player: PlayerFactory, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    player = await new_player()
    market = await insert_market(db)
    before = await state(db, player)
    for n, value in enumerate(ODD_DECIMALS):
        error = await player.error(
            "bet:place",
            {
                "marketId": str(market),
                "side": "this",
                "amount": 10,
                "clientBetId": f"odd{n}",
                "expectedOdds": "0.5",
                field: value,
            },
        )
        assert error["code"] == "VALIDATION_ERROR", (value[:20], error)
        assert error["details"] == {"field": field}, (value[:20], error)
    assert await state(db, player) == before
    no_errors_logged(caplog)


async def test_odd_decimals_sent_among_good_bets_are_refused_at_the_schema_alone(
    new_player: PlayerFactory, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Good bets and bets with odd decimals sent together: the odd ones are refused at the
    schema, before the bet queue, and every good one is placed."""
    player = await new_player()
    market = await insert_market(db)

    def bet(n: int, **odd: str) -> dict[str, Any]:
        return {
            "marketId": str(market),
            "side": "that",
            "amount": 10,
            "clientBetId": f"m{n}",
            **odd,
        }

    payloads = []
    for n, value in enumerate(ODD_DECIMALS):
        payloads.append(bet(2 * n))
        payloads.append(bet(2 * n + 1, expectedOdds="0.7", maxSlippage=value))
    answers = await asyncio.gather(*(player.call("bet:place", p) for p in payloads))
    good = [answer for answer, p in zip(answers, payloads, strict=True) if "maxSlippage" not in p]
    bad = [answer for answer, p in zip(answers, payloads, strict=True) if "maxSlippage" in p]
    assert all(answer["ok"] for answer in good), good
    assert [answer["error"]["code"] for answer in bad] == ["VALIDATION_ERROR"] * len(bad)
    assert len((await player.ok("bets:list", {"limit": 50}))["bets"]) == len(good)
    # No batch failed and fell back to placing its bets one by one.
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not warnings, [record.getMessage() for record in warnings]


async def test_bets_refused_inside_a_batch_refuse_only_themselves(
    server: tuple[str, web.Application],
    new_player: PlayerFactory,
    db: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bets that pass the schema but not the rules reach the bet queue beside good ones and are
    written in the same batches: each bad one gets its own refusal, every good one is placed,
    and no batch fails as a whole (which would place its bets again one by one)."""
    _, app = server
    player = await new_player()
    open_market = await insert_market(db)
    closed_market = await insert_market(db, status="closed")
    unknown_market = uuid.uuid4()

    def bet(n: int, market: uuid.UUID, **extra: object) -> dict[str, Any]:
        return {
            "marketId": str(market),
            "side": "this",
            "amount": 10,
            "clientBetId": f"b{n}",
        } | extra

    bad = {
        "INSUFFICIENT_CREDITS": bet(1, open_market, amount=5000),
        "MARKET_NOT_FOUND": bet(2, unknown_market),
        "MARKET_CLOSED": bet(3, closed_market),
        "ODDS_CHANGED": bet(4, open_market, expectedOdds="0.1", maxSlippage="0.01"),
    }
    good = [bet(10 + n, open_market) for n in range(8)]
    payloads = [*bad.values(), *good]
    batcher = app[SERVICES].batcher
    queued_before = batcher.bets
    answers = await asyncio.gather(*(player.call("bet:place", p) for p in payloads))
    codes = [answer.get("error", {}).get("code") for answer in answers[: len(bad)]]
    assert codes == list(bad), answers[: len(bad)]
    assert all(answer["ok"] for answer in answers[len(bad) :]), answers[len(bad) :]
    # Every one of them, bad ones included, was written through the bet queue's batches.
    assert batcher.bets - queued_before == len(payloads)
    assert len((await player.ok("bets:list", {"limit": 50}))["bets"]) == len(good)
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not warnings, [record.getMessage() for record in warnings]


async def test_a_login_password_over_72_bytes_is_a_validation_error_like_at_signup(
    new_player: PlayerFactory, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    player = await new_player(connect=False)
    before = await state(db, player)
    password = "é" * 37  # 37 characters, 74 bytes
    for path, username in [
        ("/auth/login", player.username),
        ("/auth/login", "nobody_here"),
        ("/auth/signup", "new_player_x"),
    ]:
        status, body, _ = await player.post(path, {"username": username, "password": password})
        assert status == 400, (path, body)
        assert body["error"]["code"] == "VALIDATION_ERROR", (path, body)
        assert body["error"]["details"] == {"field": "password"}, (path, body)
    assert await state(db, player) == before
    status, _, _ = await player.post(
        "/auth/login", {"username": player.username, "password": player.password}
    )
    assert status == 200
    no_errors_logged(caplog)


def hand_signed(app: web.Application, user_id: str, exp: object, secret: str = "access") -> str:
    """A token signed with the server's key, with the claims it writes but an odd `exp`
    (`...` leaves it out). PyJWT refuses to write some of these, so it is signed by hand."""
    settings = app[SETTINGS]
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {
        "sub": user_id,
        "typ": "access" if secret == "access" else "refresh",
        "jti": str(uuid.uuid4()),
        "iat": now,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "fam": str(uuid.uuid4()),
    }
    if exp is not ...:
        claims["exp"] = exp
    key = settings.jwt_access_secret if secret == "access" else settings.jwt_refresh_secret

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    return (
        signing_input
        + "."
        + part(hmac.new(key.encode(), signing_input.encode(), "sha256").digest())
    )


def odd_exps() -> list[object]:
    now = int(datetime.now(UTC).timestamp())
    return [now + 900.5, str(now + 900), 10**20, 1e300, -1, -(10**20), ...]


async def test_a_signed_token_with_an_odd_exp_is_token_invalid_everywhere(
    new_player: PlayerFactory,
    server: tuple[str, web.Application],
    http: aiohttp.ClientSession,
    db: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, app = server
    player = await new_player()
    # The control: the hand signer writes tokens the server takes.
    good = hand_signed(app, player.user_id, int(datetime.now(UTC).timestamp()) + 900)
    async with http.get(base + "/auth/me", headers={"Authorization": f"Bearer {good}"}) as got:
        assert got.status == 200
    before = await state(db, player)
    for exp in odd_exps():
        token = hand_signed(app, player.user_id, exp)
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(base + "/auth/me", headers=headers) as response:
            body = await response.json()
            assert (response.status, body["error"]["code"]) == (401, "TOKEN_INVALID"), exp
        refresh = hand_signed(app, player.user_id, exp, secret="refresh")
        for path in ("/auth/refresh", "/auth/logout"):
            status, body, _ = await player.post(path, {"refreshToken": refresh})
            assert (status, body["error"]["code"]) == (401, "TOKEN_INVALID"), (path, exp)
        error = await player.error("auth:refresh", {"token": token})
        assert error["code"] == "TOKEN_INVALID", exp
        # A session of its own: engine.io's client closes the one it was given when collected.
        async with aiohttp.ClientSession() as session:
            client = socketio.AsyncClient(reconnection=False, http_session=session)
            refusals: list[Any] = []
            client.on("connect_error", refusals.append)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect(
                    base, auth={"token": token}, transports=["websocket"], wait_timeout=10
                )
        assert [refusal["code"] for refusal in refusals] == ["TOKEN_INVALID"], exp
    assert await state(db, player) == before
    # The player's own socket and tokens still work.
    assert (await player.call("wallet:get"))["ok"] is True
    no_errors_logged(caplog)
