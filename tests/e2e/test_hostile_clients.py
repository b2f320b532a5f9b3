"""What one signed-up player, or a stranger, can make a node do over raw Engine.IO/Socket.IO:
nothing the server does not answer, bound and log once."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket as stdlib_socket
import struct

import aiohttp
import asyncpg
import orjson
import pytest
import socketio

from server.fanout.pushes import PUSHES
from server.fanout.rooms import user_room
from server.runtime.overload import LOOP_LAG
from server.sockets.sessions import SESSIONS
from server.transport import websocket
from server.transport.socketio_server import SIO
from server.transport.websocket import BetResends, writer_of
from storage import accounts
from tests.betting_fixtures import insert_market
from tests.conftest import ServerFactory
from tests.players import Player
from tests.raw_socket import RawSocket


async def signed_up(base: str, http: aiohttp.ClientSession) -> Player:
    return await Player(base, http).signup()


async def test_a_binary_header_announcing_millions_of_attachments_ends_the_connection(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server()
    player = await signed_up(base, http)
    raw = await RawSocket(base, http).open()
    await raw.authenticate(player.access_token)
    # Engine.IO message (4), Socket.IO BINARY_EVENT (5) announcing 9,999,999 attachments.
    await raw.send('459999999-["wallet:get",{"_placeholder":true,"num":0}]')
    assert await raw.closed_by_server()


async def test_attachments_past_the_message_size_are_not_buffered(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, app = await start_server(socket_max_message_bytes=4096)
    player = await signed_up(base, http)
    raw = await RawSocket(base, http).open()
    await raw.authenticate(player.access_token)
    # Two attachments announced, so the second is expected: it is refused for its size alone.
    await raw.send('452-["wallet:get",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    for _ in range(2):  # 2 x 3 KiB: the second crosses the 4 KiB limit
        await raw.send(b"\x04" + b"x" * 3000)
    assert await raw.closed_by_server()
    assert not app[SIO]._binary_packet


async def test_a_client_sent_disconnect_event_is_refused_and_the_session_stays(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, app = await start_server()
    player = await signed_up(base, http)
    raw = await RawSocket(base, http).open()
    await raw.authenticate(player.access_token)
    sessions = app[SESSIONS]
    before = len(sessions)
    await raw.send('421["disconnect",{}]')
    answer = await raw.ack(1)
    assert answer["ok"] is False and answer["error"]["code"] == "UNKNOWN_EVENT"
    assert len(sessions) == before
    # Still a live, authenticated socket of the same user.
    await raw.send('422["wallet:get",{}]')
    assert (await raw.ack(2))["data"]["balance"] == 1000
    await raw.close()


async def test_a_client_sent_connect_event_cannot_switch_user(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server()
    alice, bob = await signed_up(base, http), await signed_up(base, http)
    raw = await RawSocket(base, http).open()
    await raw.authenticate(alice.access_token)
    await raw.send('423["connect",{"token":"' + bob.access_token + '"}]')
    answer = await raw.ack(3)
    assert answer["error"]["code"] == "UNKNOWN_EVENT"
    await raw.send('424["sync",{}]')
    assert (await raw.ack(4))["data"]["user"]["username"] == alice.username
    await raw.close()


async def test_undecodable_frames_from_a_stranger_end_the_connection_with_one_log_line(
    start_server: ServerFactory, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    base, _ = await start_server()
    caplog.set_level(logging.WARNING)
    closed = 0
    for _ in range(20):
        raw = await RawSocket(base, http).open()
        await raw.send("x")
        closed += await raw.closed_by_server()
    assert closed == 20
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    # At most one line a second for the lot, however many came.
    bad = [r for r in caplog.records if "packet" in r.getMessage()]
    assert 1 <= len(bad) <= 5


@pytest.mark.parametrize(
    "payload", ["NaN", "Infinity", "1e309", '{"a":"\\ud800"}', "[" * 2000 + "]" * 2000]
)
async def test_json_the_parser_refuses_is_answered_with_validation_error(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    payload: str,
) -> None:
    base, _ = await start_server()
    caplog.set_level(logging.WARNING)
    player = await signed_up(base, http)
    raw = await RawSocket(base, http).open()
    await raw.authenticate(player.access_token)
    await raw.send('427["wallet:get",' + payload + "]")
    answer = await raw.ack(7)
    assert answer["ok"] is False and answer["error"]["code"] == "VALIDATION_ERROR"
    assert not [r for r in caplog.records if r.exc_info]
    await raw.close()


async def test_new_connections_per_address_are_capped(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(rate_limit_connections_per_ip=(5, 10))
    statuses = []
    for _ in range(7):
        async with http.get(f"{base}/socket.io/?EIO=4&transport=polling") as response:
            statuses.append(response.status)
            if response.status == 429:
                body = await response.json()
                assert body["error"]["code"] == "RATE_LIMITED"
                assert int(response.headers["Retry-After"]) >= 1
    assert statuses == [200] * 5 + [429] * 2


async def test_sockets_per_user_are_capped(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(sockets_per_user=2)
    player = await signed_up(base, http)
    await player.connect()
    await player.connect()
    refused: list[object] = []
    third = socketio.AsyncClient(reconnection=False)
    third.on("connect_error", lambda data: refused.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await third.connect(
            base, auth={"token": player.access_token}, transports=["websocket"], wait_timeout=10
        )
    assert refused and refused[0]["code"] == "RATE_LIMITED"  # type: ignore[index]
    await player.close()


async def test_a_connection_that_never_authenticates_is_closed(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, app = await start_server(socket_auth_timeout_s=0.5)
    raw = await RawSocket(base, http).open()
    assert await raw.closed_by_server(timeout_s=10)
    assert not app[SIO].eio.sockets


@pytest.mark.parametrize("body", ["1:2", "1:6", "1:0", "2:40" + "x" * 70000])
async def test_a_bad_polling_post_is_answered_at_once(
    start_server: ServerFactory, http: aiohttp.ClientSession, body: str
) -> None:
    base, _ = await start_server()
    async with http.get(f"{base}/socket.io/?EIO=4&transport=polling") as response:
        opened = await response.text()
    sid = opened.split('"sid":"')[1].split('"')[0]
    url = f"{base}/socket.io/?EIO=4&transport=polling&sid={sid}"
    async with asyncio.timeout(10):
        async with http.post(url, data=body.split(":", 1)[1]) as response:
            assert response.status in (200, 400, 413)


async def test_during_a_database_outage_a_new_socket_is_refused_with_not_ready(
    start_server: ServerFactory, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = await start_server()
    player = await signed_up(base, http)

    async def unreachable(*args: object) -> None:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(accounts, "get_user", unreachable)
    refused: list[object] = []
    client = socketio.AsyncClient(reconnection=False)
    client.on("connect_error", lambda data: refused.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            base, auth={"token": player.access_token}, transports=["websocket"], wait_timeout=10
        )
    assert refused and refused[0]["code"] == "NOT_READY"  # type: ignore[index]
    monkeypatch.undo()
    await player.connect()
    assert (await player.next("session"))["user"]["username"] == player.username
    await player.close()


async def open_non_reading_socket(base: str, token: str) -> tuple[asyncio.StreamWriter, str]:
    """A websocket whose client stops reading once authenticated, on a tiny receive buffer."""
    host, port = base.removeprefix("http://").split(":")
    raw = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
    raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=raw)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")

    async def frame() -> str:
        head = await reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
        return (await reader.readexactly(length)).decode()

    def send(text: str) -> None:
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(text.encode()))
        head = (
            struct.pack("!BB", 0x81, 0x80 | len(body))
            if len(body) < 126
            else struct.pack("!BBH", 0x81, 0x80 | 126, len(body))
        )
        writer.write(head + mask + body)

    opened = await frame()
    assert opened.startswith("0")
    send("40" + orjson.dumps({"token": token}).decode())
    while not (text := await frame()).startswith("40"):
        pass
    sid = orjson.loads(text[2:])["sid"]
    return writer, sid


async def test_a_client_that_reads_nothing_is_bounded_then_dropped(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, app = await start_server(
        ws_buffer_high_water_bytes=64 * 1024, ws_buffer_limit_bytes=512 * 1024
    )
    player = await signed_up(base, http)
    writer, sid = await open_non_reading_socket(base, player.access_token)
    sio = app[SIO]
    eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
    frame_writer = writer_of(sio.eio.sockets[eio_sid])
    assert frame_writer is not None
    pushes = app[PUSHES]
    tick = {"marketId": "m", "blob": "o" * 8000}
    # Odds are superseded state: past the high-water mark they are skipped, not buffered.
    for n in range(1500):
        await pushes.deliver_here("odds", tick, user_room(player.user_id))
        if n % 20 == 0:
            await asyncio.sleep(0.001)
    assert frame_writer.skipped > 0
    assert frame_writer.buffered() <= 64 * 1024 + 9000
    # Updates that must not be skipped pile up past the limit: the socket is dropped, not kept.
    for _ in range(200):
        await pushes.deliver_here("market:update", tick, user_room(player.user_id))
        if frame_writer.closed:
            break
        await asyncio.sleep(0.001)
    assert frame_writer.closed and frame_writer.transport.is_closing()
    async with asyncio.timeout(10):
        while app[SESSIONS].get(sid) is not None:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.05)
    writer.close()


async def test_past_capacity_a_bet_is_refused_at_the_edge_and_not_written(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    db: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, app = await start_server()
    player = await signed_up(base, http)
    market = await insert_market(db)
    lag = app[LOOP_LAG]
    monkeypatch.setattr(lag, "adjust", lambda: None)  # hold the share the test sets
    monkeypatch.setattr(BetResends, "FIRST_BETS", 1)
    raw = await RawSocket(base, http).open()
    await raw.authenticate(player.access_token)
    written = {"marketId": str(market), "side": "this", "amount": 10, "clientBetId": "edge-0"}
    await raw.send("424" + orjson.dumps(["bet:place", written]).decode())
    original = (await raw.ack(4))["data"]["bet"]

    lag.admitted_fraction = 0.0
    bet = {**written, "clientBetId": "edge-1"}
    await raw.send("425" + orjson.dumps(["bet:place", bet]).decode())
    answer = await raw.ack(5)
    assert answer["error"]["code"] == "RATE_LIMITED" and answer["error"]["retryAfterMs"] > 0
    # Other events are not shed, and the refused bet was never written.
    await raw.send('426["wallet:get",{}]')
    assert (await raw.ack(6))["data"]["balance"] == 990
    # A bet sent again, on the same socket or as the first bets of a new one (a reconnect), may
    # have been written: it gets its original, never "busy" (which says "not written").
    await raw.send("427" + orjson.dumps(["bet:place", written]).decode())
    assert (await raw.ack(7))["data"]["bet"] == original
    again = await RawSocket(base, http).open()
    await again.authenticate(player.access_token)
    await again.send("421" + orjson.dumps(["bet:place", written]).decode())
    assert (await again.ack(1))["data"]["bet"] == original
    assert await db.fetchval("SELECT count(*) FROM bets") == 1
    await raw.close()
    await again.close()


@pytest.mark.parametrize("query", ["sid=", "sid=made-up"])
async def test_a_handshake_with_an_empty_or_made_up_sid_counts_against_the_address_cap(
    start_server: ServerFactory, http: aiohttp.ClientSession, query: str
) -> None:
    base, _ = await start_server(rate_limit_connections_per_ip=(5, 10))
    statuses = []
    for _ in range(7):
        async with http.get(f"{base}/socket.io/?EIO=4&transport=polling&{query}") as response:
            statuses.append(response.status)
    assert statuses[5:] == [429, 429], statuses


async def test_ipv6_clients_of_one_64_share_the_address_cap(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(
        rate_limit_connections_per_ip=(3, 10), trusted_proxies=("127.0.0.1",)
    )
    statuses = []
    for host in range(1, 6):  # five addresses of one /64, then one of another /64
        forwarded = {"X-Forwarded-For": f"2001:db8:1:2::{host:x}"}
        async with http.get(
            f"{base}/socket.io/?EIO=4&transport=polling", headers=forwarded
        ) as response:
            statuses.append(response.status)
    other = {"X-Forwarded-For": "2001:db8:1:3::1"}
    async with http.get(f"{base}/socket.io/?EIO=4&transport=polling", headers=other) as response:
        statuses.append(response.status)
    assert statuses == [200, 200, 200, 429, 429, 200]


async def test_a_socket_that_leaves_the_namespace_is_closed_after_the_auth_deadline(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, app = await start_server(socket_auth_timeout_s=0.5)
    player = await signed_up(base, http)
    raw = await RawSocket(base, http).open()
    await raw.authenticate(player.access_token)
    await asyncio.sleep(0.8)  # past the deadline the socket met when it connected
    await raw.send("41")
    assert await raw.closed_by_server(timeout_s=5)
    assert not app[SIO].eio.sockets


async def test_a_socket_the_server_disconnected_is_closed_after_the_auth_deadline(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    """A server-side disconnect (an expired token) leaves the Engine.IO connection to its client
    to close; one that keeps it open without a namespace is closed after the auth deadline."""
    base, app = await start_server(socket_auth_timeout_s=0.5)
    player = await signed_up(base, http)
    raw = await RawSocket(base, http).open()
    await raw.authenticate(player.access_token)
    await asyncio.sleep(0.8)  # past the deadline the socket met when it connected
    [session] = app[SESSIONS].all()
    await app[SIO].disconnect(session.sid)
    assert await raw.closed_by_server(timeout_s=5)
    assert not app[SIO].eio.sockets


async def test_a_numeric_event_name_is_answered_validation_error_with_one_log_line(
    start_server: ServerFactory, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    base, _ = await start_server()
    caplog.set_level(logging.WARNING)
    player = await signed_up(base, http)
    raw = await RawSocket(base, http).open()
    await raw.authenticate(player.access_token)
    for ack_id in range(1, 21):
        await raw.send(f"42{ack_id}[{ack_id},{{}}]")
        answer = await raw.ack(ack_id)
        assert answer["ok"] is False and answer["error"]["code"] == "VALIDATION_ERROR"
    await raw.send('4221[{"name":"wallet:get"}]')
    assert (await raw.ack(21))["error"]["code"] == "VALIDATION_ERROR"
    await raw.send('4222["wallet:get",{}]')
    assert (await raw.ack(22))["data"]["balance"] == 1000
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert 1 <= len(caplog.records) <= 2
    await raw.close()


async def test_a_binary_event_announcing_no_attachments_is_refused_not_left_waiting(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, app = await start_server()
    player = await signed_up(base, http)
    raw = await RawSocket(base, http).open()
    await raw.authenticate(player.access_token)
    await raw.send('450-["wallet:get",{}]')
    assert await raw.closed_by_server(timeout_s=5)
    assert not app[SIO]._binary_packet


def forget_earlier_budget_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one line a second is per process: an earlier test's line must not hold this one's."""
    monkeypatch.setattr(websocket._over_budget_log, "_last", float("-inf"))


@pytest.mark.parametrize("frame", ["upgrade packet", "unknown event", "ping"])
async def test_a_socket_past_its_frame_budget_is_closed_with_one_log_line(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    frame: str,
) -> None:
    base, app = await start_server(ws_frames_per_s=10, ws_frames_burst=20)
    caplog.set_level(logging.WARNING)
    forget_earlier_budget_lines(monkeypatch)
    raw = await RawSocket(base, http).open()  # never signs in
    assert raw.ws is not None
    for n in range(200):
        if raw.ws.closed:
            break
        if frame == "ping":
            await raw.ws.ping()
        else:
            await raw.send("5" if frame == "upgrade packet" else f'42{n}["no:such:event",{{}}]')
    assert await raw.closed_by_server(timeout_s=5)
    budget_lines = [r for r in caplog.records if "read budget" in r.getMessage()]
    assert len(budget_lines) == 1
    assert not app[SIO].eio.sockets


async def test_a_polling_post_pays_for_each_packet_it_carries(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Long-polling is no way around the frame budget: one POST of many packets costs each."""
    base, app = await start_server(ws_frames_per_s=10, ws_frames_burst=20)
    caplog.set_level(logging.WARNING)
    forget_earlier_budget_lines(monkeypatch)
    async with http.get(f"{base}/socket.io/?EIO=4&transport=polling") as response:
        opened = await response.text()
    sid = opened.split('"sid":"')[1].split('"')[0]
    url = f"{base}/socket.io/?EIO=4&transport=polling&sid={sid}"
    async with http.post(url, data="\x1e".join(["40"] + ["3"] * 9)) as response:
        assert response.status == 200  # ten packets: within the burst
    flood = "\x1e".join(f'42{n}["no:such:event",{{}}]' for n in range(200))
    async with http.post(url, data=flood) as response:
        assert response.status == 400
    assert sid not in app[SIO].eio.sockets
    budget_lines = [r for r in caplog.records if "read budget" in r.getMessage()]
    assert len(budget_lines) == 1


async def test_a_compressed_message_past_the_byte_budget_is_not_inflated(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One second of the budget holds one message of the largest size and no more.
    base, _ = await start_server(ws_inflated_bytes_per_s=1024, socket_max_message_bytes=16384)
    caplog.set_level(logging.WARNING)
    forget_earlier_budget_lines(monkeypatch)
    player = await signed_up(base, http)
    url = base.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with http.ws_connect(url, compress=15) as ws:
        assert (await ws.receive_str()).startswith("0")
        await ws.send_str("40" + orjson.dumps({"token": player.access_token}).decode())
        while not (await ws.receive_str()).startswith("40"):
            pass
        # Each inflates from about 60 bytes to 16,000.
        for n in range(1, 4):
            await ws.send_str(f'42{n}["wallet:get",{{"pad":"' + "x" * 15_950 + '"}]')
        async with asyncio.timeout(5):
            while (await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                pass
        assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
    assert [r for r in caplog.records if "read budget" in r.getMessage()]


async def test_simultaneous_connects_on_two_nodes_cannot_pass_the_per_user_cap(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    first, _ = await start_server(sockets_per_user=10)
    second, _ = await start_server(sockets_per_user=10)
    player = await signed_up(first, http)
    clients = [socketio.AsyncClient(reconnection=False) for _ in range(30)]

    async def connect(n: int, client: socketio.AsyncClient) -> bool:
        try:
            await client.connect(
                first if n % 2 else second,
                auth={"token": player.access_token},
                transports=["websocket"],
                wait_timeout=10,
            )
        except socketio.exceptions.ConnectionError:
            return False
        return True

    accepted = await asyncio.gather(*(connect(n, c) for n, c in enumerate(clients)))
    assert sum(accepted) == 10, sum(accepted)
    # A place freed on one node is free on the other.
    await next(c for c, ok in zip(clients, accepted, strict=True) if ok).disconnect()
    late = socketio.AsyncClient(reconnection=False)
    for _ in range(50):  # the disconnect reaches the server a moment after the client returns
        if await connect(1, late):
            break
        await asyncio.sleep(0.1)
    assert late.connected
    for client in [*clients, late]:
        if client.connected:
            await client.disconnect()
