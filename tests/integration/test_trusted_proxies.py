"""TRUSTED_PROXIES: X-Forwarded-For moves the rate-limit key only when the peer is a trusted proxy."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from server.transport.client_address import resolve
from tests.conftest import ServerFactory
from tests.players import Player, unique_name


async def signup(http: aiohttp.ClientSession, base: str, forwarded_for: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    body = {"username": unique_name("proxied"), "password": "correct-horse"}
    async with http.post(base + "/auth/signup", json=body, headers=headers) as response:
        return response.status


async def test_spoofed_forwarded_for_from_an_untrusted_peer_keeps_the_peer_key(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(rate_limit_signup_per_ip=(2, 3600), trusted_proxies=())
    assert await signup(http, base, "203.0.113.1") == 201
    assert await signup(http, base, "203.0.113.2") == 201
    # Every spoofed address lands in the peer's (127.0.0.1) bucket, which is now full.
    assert await signup(http, base, "203.0.113.3") == 429
    assert await signup(http, base, None) == 429


async def test_a_trusted_proxy_s_forwarded_for_is_the_key_read_from_the_right(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(
        rate_limit_signup_per_ip=(2, 3600), trusted_proxies=("127.0.0.0/8", "10.0.0.0/8")
    )
    assert await signup(http, base, "203.0.113.7") == 201
    # A client's own left-hand entries are ignored: the rightmost untrusted hop is the key.
    assert await signup(http, base, "198.51.100.99, 203.0.113.7") == 201
    assert await signup(http, base, "198.51.100.1, 203.0.113.7, 10.1.2.3") == 429
    # Another client behind the same proxy has its own budget.
    assert await signup(http, base, "203.0.113.8") == 201
    # No header: the proxy itself is the client.
    assert await signup(http, base, None) == 201


async def test_the_socket_handshake_logs_the_forwarded_client_address(
    start_server: ServerFactory, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    base, _ = await start_server(trusted_proxies=("127.0.0.1",))
    player = await Player(base, http).signup()
    caplog.set_level(logging.INFO, logger="thisthat.realtime")
    await player.connect(headers={"X-Forwarded-For": "198.51.100.4, 203.0.113.9"})
    try:
        connected: list[Any] = [
            record for record in caplog.records if record.getMessage() == "socket connected"
        ]
        assert [record.ip for record in connected] == ["203.0.113.9"]
    finally:
        await player.close()


@pytest.mark.parametrize(
    ("peer", "header", "trusted", "client"),
    [
        ("127.0.0.1", ["1.2.3.4"], (), "127.0.0.1"),
        ("192.0.2.1", ["1.2.3.4"], ("127.0.0.1/32",), "192.0.2.1"),
        ("127.0.0.1", ["1.2.3.4"], ("127.0.0.1/32",), "1.2.3.4"),
        ("127.0.0.1", ["9.9.9.9, 1.2.3.4"], ("127.0.0.1/32",), "1.2.3.4"),
        ("127.0.0.1", ["9.9.9.9", "1.2.3.4, 10.0.0.2"], ("127.0.0.1/32", "10.0.0.0/8"), "1.2.3.4"),
        ("127.0.0.1", ["10.0.0.3, 10.0.0.2"], ("127.0.0.1/32", "10.0.0.0/8"), "10.0.0.3"),
        ("127.0.0.1", ["not-an-ip"], ("127.0.0.1/32",), "127.0.0.1"),
        ("127.0.0.1", [], ("127.0.0.1/32",), "127.0.0.1"),
        ("::1", ["2001:db8::7"], ("::1/128",), "2001:db8::7"),
    ],
)
def test_resolve(peer: str, header: list[str], trusted: tuple[str, ...], client: str) -> None:
    assert resolve(peer, header, trusted) == client
