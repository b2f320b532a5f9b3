"""A real player over a real websocket: session, reward, balance push, history, refusals, expiry."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import socketio

from tests.conftest import PlayerFactory, ServerFactory
from tests.players import Player


async def test_session_reward_balance_and_history(new_player: PlayerFactory) -> None:
    player = await new_player(connect=False)
    await player.connect()
    session = await player.next("session")
    assert session["user"]["id"] == player.user_id and session["user"]["balance"] == 1000
    assert session["serverTime"].endswith("Z")

    claimed = await player.ok("reward:claim")
    assert claimed["amount"] == 100 and claimed["balance"] == 1100
    assert claimed["nextClaimAt"].endswith("T00:00:00.000Z")
    assert await player.next("balance") == {
        "balance": 1100,
        "reason": "reward",
        "balanceVersion": claimed["balanceVersion"],
    }

    again = await player.error("reward:claim")
    assert (
        again["code"] == "REWARD_ALREADY_CLAIMED" and again["nextClaimAt"] == claimed["nextClaimAt"]
    )

    wallet = await player.ok("wallet:get")
    assert wallet == {
        "balance": 1100,
        "balanceVersion": claimed["balanceVersion"],
        "openStake": 0,
        "openPotentialPayout": 0,
    }
    history = await player.ok("wallet:history", {"limit": 1})
    assert [entry["kind"] for entry in history["entries"]] == ["daily_reward"]
    rest = await player.ok("wallet:history", {"limit": 1, "cursor": history["nextCursor"]})
    assert [entry["kind"] for entry in rest["entries"]] == ["signup_bonus"] and rest[
        "nextCursor"
    ] is None
    entries = history["entries"] + rest["entries"]
    assert sum(Decimal(str(entry["amount"])) for entry in entries) == Decimal(
        str(wallet["balance"])
    )
    sync = await player.ok("sync")
    assert sync["user"]["balance"] == 1100 and sync["openBets"] == []


async def test_balance_reaches_every_socket_of_the_user(new_player: PlayerFactory) -> None:
    player = await new_player()
    second = await player.connect()
    await player.next("session")
    await player.call("reward:claim", socket=second)
    assert (await player.next("balance"))["reason"] == "reward"
    assert (await player.next("balance"))["reason"] == "reward"


async def test_many_sockets_claiming_at_once_are_paid_once(new_player: PlayerFactory) -> None:
    player = await new_player()
    for _ in range(4):
        await player.connect()
    answers = await asyncio.gather(
        *(player.call("reward:claim", socket=s) for s in player.sockets for _ in range(3))
    )
    assert sum(answer["ok"] for answer in answers) == 1
    assert {answer["error"]["code"] for answer in answers if not answer["ok"]} == {
        "REWARD_ALREADY_CLAIMED"
    }
    assert (await player.ok("wallet:get"))["balance"] == 1100


async def test_bad_payloads_get_validation_errors_and_keep_the_socket(
    new_player: PlayerFactory,
) -> None:
    player = await new_player()
    cases: list[tuple[str, Any, str]] = [
        ("wallet:history", {"limit": 0}, "limit"),
        ("wallet:history", {"limit": "ten"}, "limit"),
        ("wallet:history", {"cursor": "!!!"}, "cursor"),
        ("wallet:get", {"extra": 1}, "extra"),
        ("reward:claim", [1, 2], ""),
        ("auth:refresh", {}, "token"),
    ]
    for event, payload, field in cases:
        error = await player.error(event, payload)
        assert error["code"] == "VALIDATION_ERROR", (event, payload, error)
        if field:
            assert error["details"]["field"] == field
        assert "Traceback" not in error["message"]
    assert player.sockets[0].connected
    assert (await player.ok("wallet:get"))["balance"] == 1000


async def test_bad_missing_or_expired_tokens_are_refused_at_the_handshake(
    server: Any, http: aiohttp.ClientSession
) -> None:
    player = await Player(server[0], http).signup()
    for token, code in (
        ("", "AUTH_REQUIRED"),
        ("junk", "TOKEN_INVALID"),
        (player.refresh_token, "TOKEN_INVALID"),
    ):
        client = socketio.AsyncClient(reconnection=False, http_session=http)
        refusals: list[Any] = []
        client.on("connect_error", refusals.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(
                server[0], auth={"token": token}, transports=["websocket"], wait_timeout=5
            )
        assert refusals and refusals[0]["code"] == code and refusals[0]["data"]["code"] == code


async def test_foreign_origin_is_refused_and_listed_origin_accepted(
    server: Any, http: aiohttp.ClientSession
) -> None:
    player = await Player(server[0], http).signup()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await player.connect(headers={"Origin": "https://evil.example"})
    await player.connect(headers={"Origin": "http://localhost:5173"})
    assert (await player.next("session"))["user"]["id"] == player.user_id
    await player.close()


async def test_token_expiry_warns_then_disconnects_unless_refreshed(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, app = await start_server(jwt_access_expires_in=3, token_expiry_warning_s=2)
    lazy = await Player(base, http).signup()
    await lazy.connect()
    diligent = await Player(base, http).signup()
    await diligent.connect()

    warning = await lazy.next("auth:expiring", wait_s=5)
    assert warning["expiresAt"].endswith("Z")
    # The diligent player logs in again (3 s tokens) and hands the new token to the live socket.
    await diligent.next("auth:expiring", wait_s=5)
    status, fresh, _ = await diligent.post(
        "/auth/login", {"username": diligent.username, "password": diligent.password}
    )
    assert status == 200
    refreshed = await diligent.ok("auth:refresh", {"token": fresh["accessToken"]})
    assert refreshed["expiresAt"].endswith("Z")

    # The lazy one is told why before it is disconnected: a code it can act on.
    expired = await lazy.next("auth:expired", wait_s=5)
    assert expired["code"] == "TOKEN_EXPIRED"
    for _ in range(50):
        if not lazy.sockets[0].connected:
            break
        await asyncio.sleep(0.1)
    assert not lazy.sockets[0].connected
    assert diligent.sockets[0].connected
    assert diligent.received["auth:expired"].empty()
    await diligent.close()


async def test_auth_refresh_refuses_another_users_token(new_player: PlayerFactory) -> None:
    alice = await new_player()
    bob = await new_player()
    error = await alice.error("auth:refresh", {"token": bob.access_token})
    assert error["code"] == "TOKEN_INVALID"


async def test_socket_events_are_rate_limited_per_user(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(rate_limit_events_per_user=(5, 10))
    player = await Player(base, http).signup()
    await player.connect()
    answers = [await player.call("wallet:get") for _ in range(7)]
    assert [a["ok"] for a in answers] == [True] * 5 + [False] * 2
    assert (
        answers[-1]["error"]["code"] == "RATE_LIMITED" and answers[-1]["error"]["retryAfterMs"] > 0
    )
    await player.close()


async def test_concurrent_events_are_counted_exactly_by_the_batched_limiter(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(rate_limit_events_per_user=(5, 10))
    player = await Player(base, http).signup()
    await player.connect()
    await player.connect()
    answers = await asyncio.gather(
        *(player.call("wallet:get", socket=s) for s in player.sockets for _ in range(6))
    )
    assert sum(a["ok"] for a in answers) == 5
    assert {a["error"]["code"] for a in answers if not a["ok"]} == {"RATE_LIMITED"}
    await player.close()


async def test_a_dependency_down_answers_not_ready_and_keeps_the_socket(
    new_player: PlayerFactory, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storage import wallet

    player = await new_player()

    async def unreachable(*args: object) -> int:
        raise ConnectionRefusedError("connection refused")

    # The database's connection refused, as when PostgreSQL is down.
    monkeypatch.setattr(wallet, "get_wallet", unreachable)
    error = await player.error("wallet:get")
    assert error["code"] == "NOT_READY"
    assert player.sockets[0].connected
    monkeypatch.undo()
    assert (await player.ok("wallet:get"))["balance"] == 1000
