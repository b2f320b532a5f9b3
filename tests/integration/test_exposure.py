"""What a node shows of itself: /metrics and /readyz's details only to the operator, no software
versions in any response's headers, no token text in any log line."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from tests.conftest import ServerFactory
from tests.players import Player

METRICS_TOKEN = "metrics-token-0123456789abcdef"


async def raw_response_head(base: str, request: bytes) -> tuple[int, dict[str, str]]:
    """Send raw bytes and read the status and headers of the answer (nothing parses them first)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


async def test_metrics_and_readiness_detail_need_the_metrics_token(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(metrics_token=METRICS_TOKEN)
    operator = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}):
        async with http.get(base + "/metrics", headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "AUTH_REQUIRED"
            assert "thisthat_" not in await response.text()
        async with http.get(base + "/readyz", headers=headers) as response:
            assert (response.status, await response.json()) == (200, {"status": "ok"})
    async with http.get(base + "/metrics", headers=operator) as response:
        assert response.status == 200 and "thisthat_db_pool_in_use" in await response.text()
    async with http.get(base + "/readyz", headers=operator) as response:
        body = await response.json()
        assert response.status == 200 and body["checks"]["database"] == "ok"
    async with http.get(base + "/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})


async def test_a_production_node_without_a_metrics_token_shows_no_detail(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(node_env="production")
    async with http.get(base + "/metrics") as response:
        assert response.status == 404
    async with http.get(base + "/readyz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})


async def test_no_response_names_the_server_software(
    server: Any, http: aiohttp.ClientSession
) -> None:
    base = server[0]
    async with http.get(base + "/healthz") as rest:
        served = [rest.headers.get("Server", "")]
    async with http.post(base + "/auth/login", json={}) as refused:
        served.append(refused.headers.get("Server", ""))
    async with http.get(base + "/socket.io/", params={"EIO": "4", "transport": "polling"}) as poll:
        assert poll.status == 200
        served.append(poll.headers.get("Server", ""))
    status, upgrade = await raw_response_head(
        base,
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    assert status == 101
    served.append(upgrade.get("server", ""))
    status, unparsable = await raw_response_head(base, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    assert status == 400
    served.append(unparsable.get("server", ""))
    assert served == ["thisthat"] * 5


async def test_an_over_long_authorization_header_puts_no_token_text_in_the_logs(
    server: Any, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    base = server[0]
    player = await Player(base, http).signup()
    token = player.access_token
    caplog.set_level(logging.DEBUG)
    over_long = f"Bearer {token}{'x' * 9000}".encode()
    status, _ = await raw_response_head(
        base,
        b"GET /auth/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + over_long + b"\r\n\r\n",
    )
    assert status == 400
    assert any("unparsable HTTP request" in record.getMessage() for record in caplog.records)
    logged = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    # Any 12 characters of the token: the JWT header part is the same for every token, so the
    # signature and payload are what must not appear.
    payload_and_signature = token.split(".", 1)[1]
    assert not any(
        payload_and_signature[start : start + 12] in logged
        for start in range(0, len(payload_and_signature) - 12)
    )
    assert "Traceback" not in caplog.text
