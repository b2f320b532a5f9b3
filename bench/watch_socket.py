"""A watching player's socket at the lowest client cost: Socket.IO v5 over a websocket spoken
directly on an asyncio transport, for the thousands of sockets that only listen in a bench.

The stream bench's watchers receive about 20 pushes a second each; 5,000 of them through
aiohttp's websocket reader (a task wake-up and a message object per frame) need a whole core,
which on a small machine is taken from the server being measured. Here a read is parsed in place:
no task, no message object, one `orjson.loads` per event. The server sees the same client as
any browser: the same handshake (permessage-deflate offered), the same packets, the same pongs,
so its work per push is what it is for real players. Players that bet are the official client.

Frames from the server are never masked; frames to the server are (RFC 6455 section 5.3), with
a fresh key per frame. A compressed frame (RSV1) is inflated with one window per connection, as
the offer allows context takeover.

`arrival_time()` tells a push handler when the read carrying its push arrived. By default that is
when the client got to it; after `stamp_arrivals()` it is the kernel's receive timestamp
(SO_TIMESTAMPNS), when the bytes reached the socket whatever the client process was doing: the
arrival at a client on another machine, with no queueing of its own.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import socket
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

# (event name, payload) of every server push.
PushHandler = Callable[[str, Any], None]

_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA
_FLUSH_TAIL = b"\x00\x00\xff\xff"
_READ_BYTES = 1 << 18
_STAMP = struct.Struct("@qq")  # struct timespec: seconds, nanoseconds
# Linux's SO_TIMESTAMPNS (include/uapi/asm-generic/socket.h), which Python does not name; its
# control message (SCM_TIMESTAMPNS) has the same number.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_arrival = 0.0


def arrival_time() -> float:
    """The wall time the read being handled arrived (see the module's doc)."""
    return _arrival


class WatchRefused(Exception):
    """The upgrade or the Socket.IO CONNECT was refused; the message says which and why."""


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame: masked with a fresh key, as every client frame must be."""
    key = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    repeated = (key * (length // 4 + 1))[:length]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return header + key + body


class WatchSocket(asyncio.Protocol):
    """One listening player. `open` connects and signs in; `call` sends an event and waits for its
    answer; every push goes to `on_push`. `dropped` is set when the server ends the connection
    before `close`."""

    def __init__(self, on_push: PushHandler) -> None:
        self.on_push = on_push
        self.dropped = False
        self.closing = False
        self.compressed_frames = 0
        self.stamped_reads = 0  # reads the kernel gave a receive timestamp with
        self._transport: asyncio.Transport | None = None
        self._upgraded = False
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragment_compressed = False
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._token = ""
        self._ready: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] | None = None
        self._stamped: socket.socket | None = None  # our own handle, reading with timestamps

    # --- the caller's side -------------------------------------------------------------------

    async def open(self, base_url: str, token: str, timeout_s: float = 30) -> None:
        loop = asyncio.get_running_loop()
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self._token = token
        self._ready = loop.create_future()
        self._lost = loop.create_future()
        await asyncio.wait_for(loop.create_connection(lambda: self, host, port), timeout_s)
        assert self._transport is not None
        key = base64.b64encode(os.urandom(16)).decode()
        self._transport.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            ).encode()
        )
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except BaseException:
            self._transport.abort()
            raise

    def stamp_arrivals(self) -> None:
        """From now on, read through a second handle on the connection, with the kernel's receive
        timestamp of each read (the transport keeps writing)."""
        assert self._transport is not None
        raw = self._transport.get_extra_info("socket")
        stamped = socket.socket(fileno=os.dup(raw.fileno()))
        try:
            stamped.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            stamped.setblocking(False)
        except OSError:
            stamped.close()
            raise
        self._transport.pause_reading()
        self._stamped = stamped
        asyncio.get_running_loop().add_reader(stamped.fileno(), self._read_stamped)

    def _read_stamped(self) -> None:
        global _arrival
        assert self._stamped is not None
        try:
            data, ancillary, _, _ = self._stamped.recvmsg(_READ_BYTES, socket.CMSG_SPACE(16))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        if not data:  # the server closed: the transport, paused, would not see it
            self._unstamp()
            self._abort()
            return
        _arrival = time.time()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = _STAMP.unpack_from(value)
                _arrival = seconds + nanoseconds / 1e9
                self.stamped_reads += 1
        self._handle(data)

    def _unstamp(self) -> None:
        if self._stamped is not None:
            asyncio.get_running_loop().remove_reader(self._stamped.fileno())
            self._stamped.close()
            self._stamped = None

    async def call(self, event: str, payload: Any, timeout_s: float = 30) -> Any:
        """Send an event and wait for its answer (the ack's first argument)."""
        ack_id = next(self._ids)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ack_id] = answer
        self._send(b"42%d" % ack_id + orjson.dumps([event, payload]))
        try:
            return await asyncio.wait_for(answer, timeout_s)
        finally:
            self._pending.pop(ack_id, None)

    async def close(self, timeout_s: float = 5) -> None:
        """Leave the namespace and close; bounded, the server's close frame is not awaited."""
        self.closing = True
        self._unstamp()
        if self._transport is None or self._transport.is_closing():
            return
        self._send(b"41")
        self._transport.write(masked_frame(_CLOSE, (1000).to_bytes(2, "big")))
        self._transport.close()
        if self._lost is not None:
            with_timeout = asyncio.wait_for(asyncio.shield(self._lost), timeout_s)
            await asyncio.gather(with_timeout, return_exceptions=True)

    # --- asyncio's side ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream transport (uvloop's too)

    def connection_lost(self, exc: Exception | None) -> None:
        self._unstamp()
        if not self.closing:
            self.dropped = True
        self._fail(WatchRefused(f"connection lost: {exc or 'closed by the server'}"))
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        global _arrival
        _arrival = time.time()
        self._handle(data)

    def _handle(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return
            status = buffer[: buffer.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self._fail(WatchRefused(f"upgrade refused: {status.decode(errors='replace')}"))
                self._abort()
                return
            self._upgraded = True
            buffer = buffer[end + 4 :]
        self._buffer = self._frames(buffer)

    # --- frames and packets ------------------------------------------------------------------

    def _frames(self, data: bytes) -> bytes:
        """Handle every whole frame in `data`; returns the incomplete rest."""
        at, size = 0, len(data)
        while size - at >= 2:
            first, second = data[at], data[at + 1]
            length, start = second & 0x7F, at + 2
            if length == 126:
                if size - at < 4:
                    break
                length, start = int.from_bytes(data[at + 2 : at + 4], "big"), at + 4
            elif length == 127:
                if size - at < 10:
                    break
                length, start = int.from_bytes(data[at + 2 : at + 10], "big"), at + 10
            end = start + length
            if end > size:
                break
            self._frame(first, data[start:end])
            at = end
        return data[at:]

    def _frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode >= 0x8:
            if opcode == _PING:
                self._write(_PONG, payload)
            elif opcode == _CLOSE:
                self._abort()
            return
        if opcode != 0:  # a new message: text (binary carries nothing a watcher reads)
            self._fragments.clear()
            self._fragment_compressed = bool(first & 0x40)
        if not first & 0x80:
            self._fragments.append(payload)
            return
        if self._fragments:
            payload = b"".join((*self._fragments, payload))
            self._fragments.clear()
        if self._fragment_compressed:
            payload = self._inflater.decompress(payload + _FLUSH_TAIL)
            self._fragment_compressed = False
            self.compressed_frames += 1
        self._packet(payload)

    def _packet(self, packet: bytes) -> None:
        kind = packet[:2]
        if kind == b"42":
            index = 2
            while packet[index] != 0x5B:  # "[" after an ack id, if any
                index += 1
            event = orjson.loads(packet[index:])
            self.on_push(event[0], event[1] if len(event) > 1 else None)
        elif packet == b"2":
            self._send(b"3")
        elif kind == b"43":
            index = 2
            while packet[index] != 0x5B:
                index += 1
            answer = self._pending.get(int(packet[2:index]))
            if answer is not None and not answer.done():
                arguments = orjson.loads(packet[index:])
                answer.set_result(arguments[0] if arguments else None)
        elif kind == b"40":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif kind == b"44":
            self._fail(WatchRefused(f"CONNECT refused: {packet[2:].decode(errors='replace')}"))
        elif kind == b"41":
            self._abort()
        elif packet[:1] == b"0":
            self._send(b"40" + orjson.dumps({"token": self._token}))

    def _send(self, text: bytes) -> None:
        self._write(_TEXT, text)

    def _write(self, opcode: int, payload: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(masked_frame(opcode, payload))

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, error: Exception) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(error)


async def open_watchers(
    url: str,
    plan: list[tuple[str, list[str]]],
    on_push: PushHandler,
    failures: Counter[str],
    *,
    at_once: int = 100,
    timeout_s: float = 60,
    stamped: bool = False,
) -> list[WatchSocket]:
    """A socket per (access token, markets) of `plan`, signed in and subscribed to its markets,
    `at_once` connecting at a time; what failed is counted in `failures` by kind. `stamped`:
    each then reads with the kernel's receive timestamps (`stamp_arrivals`)."""
    gate = asyncio.Semaphore(at_once)
    sockets: list[WatchSocket] = []

    async def join(token: str, markets: list[str]) -> None:
        async with gate:
            socket = WatchSocket(on_push)
            try:
                await socket.open(url, token, timeout_s)
                answer = await socket.call("market:subscribe", {"marketIds": markets}, timeout_s)
            except (WatchRefused, TimeoutError, OSError) as error:
                failures[type(error).__name__] += 1
                return
            if not (isinstance(answer, dict) and answer.get("ok")):
                failures["subscribe"] += 1
            if stamped:
                socket.stamp_arrivals()
            sockets.append(socket)

    await asyncio.gather(*(join(token, markets) for token, markets in plan))
    return sockets
