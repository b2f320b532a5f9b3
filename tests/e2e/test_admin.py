"""The read-only admin view: off without ADMIN_TOKEN, refused without the token, and showing the
real nodes, sockets, rooms, feed, settlements and audit with it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.conftest import ServerFactory
from tests.nodes import ServerNode
from tests.players import Player

TOKEN = "admin-token-0123456789abcdef"


async def test_admin_view_is_off_when_no_token_is_set(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server()
    for path in ("/admin", "/admin/admin.js", "/admin/state"):
        async with http.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "NOT_FOUND"


async def test_admin_state_is_refused_without_the_right_token(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(admin_token=TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        async with http.get(base + "/admin/state", headers=headers) as response:
            assert response.status == 401
            body = await response.json()
            assert body["error"]["code"] == "AUTH_REQUIRED"
            assert "nodes" not in body


async def test_admin_state_shows_sockets_rooms_feed_settlements_and_audit(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(admin_token=TOKEN)
    player = await Player(base, http).signup()
    await player.connect()
    await player.next("session")
    await player.ok("leaderboard:subscribe", {"period": "day"})

    async with http.get(base + "/admin") as response:
        assert response.status == 200
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    async with http.get(
        base + "/admin/state", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as response:
        assert response.status == 200
        state = await response.json()

    assert state["node"] in {node["id"] for node in state["nodes"]}
    here = next(node for node in state["nodes"] if node["id"] == state["node"])
    assert here["sockets"] == 1 and here["users"] == 1
    [socket] = state["sockets"]
    assert socket["userId"] == player.user_id and socket["username"] == player.username
    assert set(socket["rooms"]) == {f"user:{player.user_id}", "leaderboard:day"}
    rooms = {room["room"]: room["size"] for room in state["rooms"]}
    assert rooms == {f"user:{player.user_id}": 1, "leaderboard:day": 1}
    assert state["feed"]["mode"] == "off"
    assert state["settlements"] == []
    assert state["audit"]["passed"] is True and state["audit"]["violations"] == 0
    await player.close()


async def test_admin_state_reports_a_failed_audit(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: object
) -> None:
    base, _ = await start_server(admin_token=TOKEN)
    player = await Player(base, http).signup()
    # A balance the ledger does not explain breaks the first invariant.
    await db.execute("UPDATE users SET balance = balance + 1")  # type: ignore[attr-defined]
    async with http.get(
        base + "/admin/state", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as response:
        state = await response.json()
    assert state["audit"]["passed"] is False
    assert any(
        player.username in line or player.user_id in line for line in state["audit"]["first"]
    )


async def test_wrong_admin_tokens_from_one_address_are_refused_past_the_limit(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(admin_token=TOKEN, rate_limit_operator_token_per_ip=(3, 300))
    right = {"Authorization": f"Bearer {TOKEN}"}
    statuses = []
    for _ in range(3):
        # The operator's own requests are given back: they never fill the budget.
        async with http.get(base + "/admin/state", headers=right) as response:
            assert response.status == 200
    for guess in range(5):
        headers = {"Authorization": f"Bearer guess-{guess:020d}"}
        async with http.get(base + "/admin/state", headers=headers) as response:
            statuses.append(response.status)
            body = await response.json()
    assert statuses == [401, 401, 401, 429, 429]
    assert body["error"]["code"] == "RATE_LIMITED" and int(response.headers["Retry-After"]) > 0
    # Past the limit even the right token is refused from there: no answer tells a guess apart.
    async with http.get(base + "/admin/state", headers=right) as response:
        assert response.status == 429


async def test_a_short_admin_or_metrics_token_is_refused_at_start_in_one_line(
    service_urls: tuple[str, str], tmp_path: Path
) -> None:
    for variable in ("ADMIN_TOKEN", "METRICS_TOKEN"):
        node = ServerNode(*service_urls, tmp_path, **{variable: "short-token-0123456789"})
        process = node.spawn()
        try:
            assert await asyncio.to_thread(process.wait, 30) != 0
        finally:
            node.stop()
        lines = [line for line in node.log_path.read_text().splitlines() if variable in line]
        assert len(lines) == 1, lines
        assert f"{variable} must be at least 24 characters long (it has 22)" in lines[0]
        assert "short-token" not in lines[0]  # the value itself is never echoed
        node.log_path.unlink()
