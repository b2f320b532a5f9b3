"""The engine.io websocket transport, written for a game server's traffic: many small frames out.

python-engineio's own websocket loop gives every socket a writer task that wakes once per packet
and makes one transport write (one syscall) per frame, and compresses every frame when the client
negotiated permessage-deflate. Here a socket that reached the websocket transport writes its
frames itself:

- frames queued during one turn of the event loop go out in one transport write;
- frames under `compress_min_bytes` go out uncompressed even when deflate was negotiated (a
  50-byte ack gains nothing from deflate but costs the client an inflate); larger frames are
  deflated, each on its own (no context carried between messages), so one compressed frame is
  valid for every recipient and a fan-out compresses once;
- a push goes to many sockets as one prepared message: encoded, framed and compressed once, and
  the same bytes appended to each recipient's buffer, with no task per recipient;
- a socket whose peer does not read is bounded: above the high-water mark, pushes that a newer
  one supersedes (odds, leaderboards, balances) are skipped for it, and past the limit it is
  disconnected instead of being buffered without bound.

Sockets still on HTTP long-polling keep python-engineio's queue, unchanged. The reading side is
one loop per socket with one idle timer (`ReadDeadline`) and no task per message, and every frame
it reads (pings and pongs included) is paid for from the connection's read budget before anything
decodes it (server/transport/read_budget.py); past the budget the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import socketio
from aiohttp import WSCloseCode, WSMsgType, web
from engineio import packet as eio_packet

from game.errors import ServerBusy
from server.runtime import metrics
from server.runtime.local_limits import CONNECTION_LIMITS
from server.runtime.logs import RateLimitedLog
from server.runtime.overload import LOOP_LAG, RETRY_AFTER_MS
from server.settings import SETTINGS, Settings
from server.transport.client_address import client_ip
from server.transport.read_budget import (
    BudgetedWebSocketResponse,
    ReadBudget,
    ReadBudgetSpent,
    ReadLimits,
)
from server.wire.codec import dumps_bytes
from server.wire.refusals import ack_error

logger = logging.getLogger("thisthat.websocket")

OPCODE_TEXT: Final = 0x1
OPCODE_BINARY: Final = 0x2
OPCODE_CLOSE: Final = 0x8
OPCODE_PONG: Final = 0xA
FIN: Final = 0x80
RSV1: Final = 0x40
DEFLATE_TAIL: Final = b"\x00\x00\xff\xff"
CLOSE_TIMEOUT_S: Final = 2.0
# What a client may send: every kind is paid for from the read budget.
_FRAMES: Final = frozenset({WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG})
# A `bet:place` event asking for an ack, as the engine.io message carries it: 4, 2, ack id.
_BET_FRAME: Final = re.compile(r'42(\d{1,15})\["bet:place"')
# The same refusal the router gives a bet while the server is busy, encoded once.
BUSY_ACK: Final = dumps_bytes([ack_error(ServerBusy(RETRY_AFTER_MS))]).decode()
# A bet's clientBetId, read without decoding the frame: the schema allows no character that JSON
# escapes, so a quoted run of them is the whole id.
_CLIENT_BET_ID: Final = re.compile(r'"clientBetId"\s*:\s*"([A-Za-z0-9_-]{1,64})"')


class BetResends:
    """Which bet frames of one connection may repeat a bet already written, so the edge must not
    answer them busy ("not written"): the connection's first bets (a client that reconnects sends
    again the bets it got no answer for) and any clientBetId it sent before. Those go on to the
    router, which answers a written bet with the original before any load refusal."""

    __slots__ = ("_first_left", "_sent")

    FIRST_BETS: Final = 16
    REMEMBERED: Final = 256

    def __init__(self) -> None:
        self._first_left = self.FIRST_BETS
        self._sent: dict[str, None] = {}  # insertion-ordered: the oldest is forgotten first

    def may_repeat(self, frame: str) -> bool:
        if self._first_left > 0:
            return True
        found = _CLIENT_BET_ID.search(frame)
        return found is not None and found.group(1) in self._sent

    def passed(self, frame: str) -> None:
        """A bet frame went on to be decoded: later frames with its clientBetId may repeat it."""
        self._first_left -= 1
        found = _CLIENT_BET_ID.search(frame)
        if found is None:
            return
        self._sent[found.group(1)] = None
        if len(self._sent) > self.REMEMBERED:
            del self._sent[next(iter(self._sent))]


@dataclass(frozen=True, slots=True)
class WireLimits:
    """How a websocket's outgoing side is bounded; from settings."""

    compress_min_bytes: int = 1024
    # Above this many bytes waiting to be sent, superseded pushes are skipped for the socket.
    high_water_bytes: int = 256 * 1024
    # Past this many, the socket is dropped: its peer is not reading.
    limit_bytes: int = 4 * 1024 * 1024


def frame_header(opcode: int, length: int, rsv: int = 0) -> bytes:
    """An unmasked (server to client) websocket frame header, RFC 6455 section 5.2."""
    first = FIN | rsv | opcode
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def deflate_message(payload: bytes, wbits: int) -> bytes:
    """One message deflated from a fresh state (RFC 7692 section 7.2.1): valid for any receiver."""
    compressor = zlib.compressobj(zlib.Z_BEST_SPEED, zlib.DEFLATED, -wbits)
    body = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return body.removesuffix(DEFLATE_TAIL)


class PreparedMessage:
    """One engine.io packet as websocket frames, built once and shared by every recipient."""

    __slots__ = ("_deflated", "_plain", "droppable", "opcode", "payload")

    def __init__(self, encoded: str | bytes, *, droppable: bool = False) -> None:
        if isinstance(encoded, str):
            self.payload = encoded.encode()
            self.opcode = OPCODE_TEXT
        else:
            self.payload = bytes(encoded)
            self.opcode = OPCODE_BINARY
        # A newer message of the same kind makes this one useless (odds, leaderboards, balance).
        self.droppable = droppable
        self._plain: bytes | None = None
        self._deflated: dict[int, bytes] = {}

    @classmethod
    def text(cls, payload: bytes, *, droppable: bool = False) -> PreparedMessage:
        """A text message from bytes that are UTF-8 already (orjson's JSON), not decoded and
        encoded again."""
        message = cls("", droppable=droppable)
        message.payload = payload
        return message

    def frame(self, deflate_wbits: int, compress_min_bytes: int) -> bytes:
        if deflate_wbits and len(self.payload) >= compress_min_bytes:
            framed = self._deflated.get(deflate_wbits)
            if framed is None:
                body = deflate_message(self.payload, deflate_wbits)
                framed = frame_header(self.opcode, len(body), RSV1) + body
                self._deflated[deflate_wbits] = framed
            return framed
        if self._plain is None:
            self._plain = frame_header(self.opcode, len(self.payload)) + self.payload
        return self._plain


class FrameWriter:
    """The outgoing side of one websocket: frames gathered per loop turn, written once, bounded."""

    def __init__(
        self,
        transport: asyncio.Transport,
        deflate_wbits: int,
        limits: WireLimits,
        on_overflow: Callable[[], None],
    ) -> None:
        self.transport = transport
        self.deflate_wbits = deflate_wbits
        self.limits = limits
        self._on_overflow = on_overflow
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flush_scheduled = False
        # Looked up once: on Python 3.11 each lookup of the running loop is a getpid() call.
        self._loop = asyncio.get_running_loop()
        self.closed = False
        self.skipped = 0

    def buffered(self) -> int:
        return self._pending_bytes + self.transport.get_write_buffer_size()

    def send(self, message: PreparedMessage) -> bool:
        """Queue one message; False when it was skipped or the socket is gone."""
        if self.closed or self.transport.is_closing():
            return False
        waiting = self.buffered()
        if waiting > self.limits.high_water_bytes:
            if waiting > self.limits.limit_bytes:
                metrics.SLOW_SOCKETS_DROPPED.inc()
                self.abort()
                self._on_overflow()
                return False
            if message.droppable:
                self.skipped += 1
                metrics.PUSHES_SKIPPED.inc()
                return False
        frame = message.frame(self.deflate_wbits, self.limits.compress_min_bytes)
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)
        return True

    def write_all(self, messages: list[PreparedMessage]) -> None:
        """Write a batch's messages to this socket now, with anything queued before them, in one
        write: the caller's time for the socket includes the write (fan-out slices are timed
        so). Bounds are checked once for the batch while the socket keeps up, message by message
        (`send`) once it is behind."""
        if self.closed or self.transport.is_closing():
            return
        if self.buffered() > self.limits.high_water_bytes:
            for message in messages:
                self.send(message)
            return
        wbits, threshold, pending = (
            self.deflate_wbits,
            self.limits.compress_min_bytes,
            self._pending,
        )
        for message in messages:
            pending.append(message.frame(wbits, threshold))
        self._write_pending()

    def flush(self) -> None:
        self._flush_scheduled = False
        self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        if self.closed or self.transport.is_closing():
            return
        self.transport.write(data)

    def send_control(self, opcode: int, payload: bytes) -> None:
        """A control frame (a pong) with the frames of this loop turn."""
        if self.closed or self.transport.is_closing():
            return
        self._pending.append(frame_header(opcode, len(payload)) + payload)
        self._pending_bytes += len(payload) + 2
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def close_now(self, code: int) -> None:
        """Send a close frame with `code` and end the connection without waiting for the peer's
        answer (what it sends meanwhile is not read)."""
        if self.closed or self.transport.is_closing():
            return
        self._pending.append(frame_header(OPCODE_CLOSE, 2) + struct.pack("!H", code))
        self.flush()
        self.closed = True
        self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once, discarding what it has not read."""
        self.closed = True
        self._pending.clear()
        self._pending_bytes = 0
        self.transport.abort()


class ReadDeadline:
    """Ends the read of a connection whose peer has sent nothing for `timeout_s`.

    One timer per connection, re-armed only when it fires, instead of a timeout context around
    every received frame: that context (a timer, a task lookup and a running-loop lookup, each a
    getpid() on Python 3.11) cost more per frame than the rest of the read loop. On expiry the
    reading task is cancelled and `expired` is set, as `asyncio.timeout` would.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.expired = False
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self.last_read = self._loop.time()
        self._timer = self._loop.call_later(timeout_s, self._check)

    def read(self) -> float:
        """Note a frame read; returns the loop's time."""
        now = self.last_read = self._loop.time()
        return now

    def _check(self) -> None:
        quiet = self._loop.time() - self.last_read
        if quiet < self.timeout_s:
            self._timer = self._loop.call_later(self.timeout_s - quiet, self._check)
        elif self._task is not None:
            self.expired = True
            self._task.cancel()

    def cancel(self) -> None:
        self._timer.cancel()


class GameWebSocket:
    """Stands in for python-engineio's aiohttp websocket wrapper (`server._async['websocket']`).

    engine.io hands it the socket's own handler; instead of running that handler (a reader loop
    plus a writer task), it runs `serve_socket` for the same engine.io socket.
    """

    limits: WireLimits = WireLimits()
    read_limits: ReadLimits = ReadLimits()

    def __init__(self, handler: Any, server: Any) -> None:
        self.engineio_socket = handler.__self__
        self.server = server

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request: web.Request = environ["aiohttp.request"]
        budget = ReadBudget(self.read_limits, asyncio.get_running_loop().time())
        # Pings are answered by the read loop, which pays for them like any other frame.
        ws = BudgetedWebSocketResponse(
            budget, max_msg_size=self.server.max_http_buffer_size, autoping=False
        )
        await ws.prepare(request)
        await serve_socket(self.engineio_socket, ws, request, self.limits, budget)
        return ws


def websocket_class(limits: WireLimits, read_limits: ReadLimits) -> type[GameWebSocket]:
    """A GameWebSocket bound to `limits`, for `engineio_server._async['websocket']`."""
    return type(
        "ConfiguredGameWebSocket",
        (GameWebSocket,),
        {"limits": limits, "read_limits": read_limits},
    )


async def serve_socket(
    socket: Any,
    ws: web.WebSocketResponse,
    request: web.Request,
    limits: WireLimits,
    budget: ReadBudget,
) -> None:
    """Run one engine.io socket over an open websocket until either side closes it."""
    server = socket.server
    if socket.connected and not await _finish_upgrade(socket, ws):
        return
    socket.connected = True
    socket.upgraded = True
    transport = request.transport
    assert transport is not None
    closing: list[asyncio.Task[None]] = []

    def overflowed() -> None:
        # The aborted transport ends the read loop below, which closes the socket properly.
        logger.warning("socket dropped: peer is not reading", extra={"sid": socket.sid})

    writer = FrameWriter(transport, int(ws.compress or 0), limits, overflowed)
    socket.frame_writer = writer

    async def send(pkt: eio_packet.Packet) -> None:
        if not await socket.check_ping_timeout():
            return
        writer.send(PreparedMessage(pkt.encode()))
        if pkt.packet_type == eio_packet.CLOSE:
            writer.flush()
            closing.append(asyncio.ensure_future(_close(ws, writer)))

    # Packets queued while the socket was on polling or upgrading go out first, in order.
    while not socket.queue.empty():
        pkt = socket.queue.get_nowait()
        socket.queue.task_done()
        if pkt is not None:
            writer.send(PreparedMessage(pkt.encode()))
    socket.send = send

    deadline = ReadDeadline(server.ping_interval + server.ping_timeout)
    on_message = server.handlers.get("message")
    lag = request.app.get(LOOP_LAG)
    resends = BetResends()
    try:
        while not socket.closed and not writer.closed:
            message = await ws.receive()
            now = deadline.read()
            kind = message.type
            if kind not in _FRAMES:
                if isinstance(message.data, ReadBudgetSpent):
                    over_budget(socket.sid, request)
                break
            if not budget.charge(now, len(message.data)):
                over_budget(socket.sid, request)
                writer.close_now(WSCloseCode.POLICY_VIOLATION)
                break
            if kind is WSMsgType.PING:
                writer.send_control(OPCODE_PONG, message.data)
                continue
            if kind is WSMsgType.PONG:
                continue
            bet = _BET_FRAME.match(message.data) if kind is WSMsgType.TEXT else None
            if bet is not None:
                if (
                    lag is not None
                    and lag.sheds_some()
                    and not resends.may_repeat(message.data)
                    and lag.sheds_at_edge()
                ):
                    # Past capacity: answered before Socket.IO decodes it (server/runtime/overload.py).
                    writer.send(PreparedMessage(f"43{bet.group(1)}{BUSY_ACK}"))
                    continue
                resends.passed(message.data)
            try:
                pkt = eio_packet.Packet(encoded_packet=message.data)
            except Exception:  # noqa: BLE001 - whatever a peer sends must not raise out of here
                _log_protocol_error(socket.sid, "undecodable engine.io packet")
                break
            if pkt.packet_type == eio_packet.MESSAGE and on_message is not None:
                # Straight to Socket.IO, which starts its own task per event: engine.io's
                # `receive` would start one more per message.
                try:
                    await on_message(socket.sid, pkt.data)
                except Exception:  # noqa: BLE001 - logged as the library would, then go on
                    server.logger.exception("message async handler error")
                continue
            try:
                await socket.receive(pkt)
            except Exception:  # noqa: BLE001 - an unknown packet type ends this socket, quietly
                if socket.closed:
                    break
                _log_protocol_error(socket.sid, "unexpected engine.io packet")
                break
    except asyncio.CancelledError:
        # The read deadline cancels this task wherever it waits: in the read, or in a packet's
        # handling (a connect handler's database call, say). Either way the socket just closes.
        if not deadline.expired:
            raise
        asyncio.current_task().uncancel()  # type: ignore[union-attr]  # in a task
    finally:
        deadline.cancel()
        await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
        writer.flush()
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)
        elif not ws.closed and not writer.closed:
            await _close(ws, writer)


async def _finish_upgrade(socket: Any, ws: web.WebSocketResponse) -> bool:
    """The polling to websocket upgrade of engine.io v4: probe ping, pong, then UPGRADE."""
    socket.upgrading = True
    try:
        probe = await ws.receive(socket.server.ping_timeout)
        if probe.type != WSMsgType.TEXT or probe.data != "2probe":
            return False
        await ws.send_str("3probe")
        # Ends the pending long-poll GET so the client can complete the switch.
        await socket.queue.put(eio_packet.Packet(eio_packet.NOOP))
        upgrade = await ws.receive(socket.server.ping_timeout)
        return upgrade.type == WSMsgType.TEXT and upgrade.data == "5"
    except TimeoutError:
        return False
    finally:
        socket.upgrading = False


async def _close(ws: web.WebSocketResponse, writer: FrameWriter) -> None:
    """A closing handshake that cannot hang on a peer that stopped reading."""
    if writer.closed:
        return
    if writer.buffered() > writer.limits.high_water_bytes:
        writer.abort()
        return
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await ws.close()
    except (TimeoutError, ConnectionError):
        writer.abort()


# At most one line a second for bad frames, however many a peer sends.
_bad_frames = RateLimitedLog(logger, "socket closed: bad engine.io packet")


def _log_protocol_error(sid: str, what: str) -> None:
    metrics.PROTOCOL_ERRORS.inc()
    _bad_frames.warn(sid=sid, reason=what)


# At most one line a second for connections closed for their read budget.
_over_budget_log = RateLimitedLog(logger, "socket closed: past its read budget")


def over_budget(sid: str, request: web.Request) -> None:
    """A connection past its read budget: logged, and its address may open no new connection
    for the connection window, so reconnecting does not buy a fresh budget at once."""
    metrics.PROTOCOL_ERRORS.inc()
    address = client_ip(request)
    _over_budget_log.warn(sid=sid, ip=address)
    limits = request.app.get(CONNECTION_LIMITS)
    if limits is not None:
        limits.fill("connect", address, request.app[SETTINGS].rate_limit_connections_per_ip[1])


def writer_of(socket: Any) -> FrameWriter | None:
    """The frame writer of an engine.io socket on the websocket transport, else None."""
    writer: FrameWriter | None = getattr(socket, "frame_writer", None)
    return writer


def use_game_websocket(sio: socketio.AsyncServer, settings: Settings) -> None:
    """Sockets on the websocket transport write their own frames (this module)."""
    wire = WireLimits(
        compress_min_bytes=settings.ws_compress_min_bytes,
        high_water_bytes=settings.ws_buffer_high_water_bytes,
        limit_bytes=settings.ws_buffer_limit_bytes,
    )
    reads = ReadLimits(
        frames_per_s=settings.ws_frames_per_s,
        frames_burst=settings.ws_frames_burst,
        bytes_per_s=settings.ws_inflated_bytes_per_s,
        max_message_bytes=settings.socket_max_message_bytes,
    )
    sio.eio._async = {**sio.eio._async, "websocket": websocket_class(wire, reads)}
    # Long-polling POSTs pay from the same budget (server/transport/engineio_poll.py).
    sio.eio.read_limits = reads
