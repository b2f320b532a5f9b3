"""What docs/protocol.md promises about odd requests, checked with a real python-socketio client."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import socketio

from tests.conftest import PlayerFactory


async def test_an_unknown_event_gets_an_unknown_event_error_ack(new_player: PlayerFactory) -> None:
    player = await new_player()
    for event in ("bet:cancel", "wallet:gett", "connect_error"):
        ack = await player.call(event, {"anything": 1})
        assert ack["ok"] is False
        assert ack["error"]["code"] == "UNKNOWN_EVENT"
        assert event in ack["error"]["message"]
    # Without an ack asked for, nothing comes back and the socket carries on.
    await player.sockets[0].emit("no:such:event", {})
    assert (await player.call("wallet:get"))["ok"] is True
    assert player.sockets[0].connected


async def test_a_payload_over_64_kib_closes_the_connection_and_one_under_it_does_not(
    new_player: PlayerFactory,
) -> None:
    player = await new_player()
    socket = player.sockets[0]
    under = await player.call("wallet:history", {"cursor": "x" * 60_000})
    assert under["error"]["code"] == "VALIDATION_ERROR"
    assert socket.connected

    await socket.emit("wallet:history", {"cursor": "x" * 70_000})
    for _ in range(200):
        if not socket.connected:
            break
        await asyncio.sleep(0.05)
    assert not socket.connected


async def test_a_python_socketio_client_reads_a_refusal_from_connect_error(
    server: Any, http: aiohttp.ClientSession
) -> None:
    """The docs' python-socketio recipe: a `connect_error` handler gets {message, code, data}."""
    client = socketio.AsyncClient(reconnection=False, http_session=http)
    refusals: list[Any] = []

    @client.event
    async def connect_error(data: Any) -> None:
        refusals.append(data)

    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            server[0], auth={"token": "junk"}, transports=["websocket"], wait_timeout=5
        )
    assert refusals == [
        {
            "message": refusals[0]["message"],
            "code": "TOKEN_INVALID",
            "data": {"code": "TOKEN_INVALID", "message": refusals[0]["message"]},
        }
    ]


async def test_a_rest_body_over_64_kib_gets_413(server: Any, http: aiohttp.ClientSession) -> None:
    body = {"username": "big_body", "password": "x" * 70_000}
    async with http.post(server[0] + "/auth/signup", json=body) as response:
        assert response.status == 413
