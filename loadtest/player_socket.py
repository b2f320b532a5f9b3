"""A lean Socket.IO v5 client (engine.io v4, websocket transport only) over aiohttp.

python-socketio's AsyncClient costs several times more CPU per event than the server side does,
and the load client shares the machine with the server; this speaks just enough of the protocol
for a player: the CONNECT with `auth`, events with acks, server pushes, and engine.io pings.

Packets on the wire (text frames): `0{...}` engine.io open, `2`/`3` ping/pong, and `4` + a
Socket.IO packet: `0{auth}` connect, `44{error}` connect refused, `42<id>["event", payload]`
an event (the id asks for an ack), `43<id>[answer]` the ack.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp._websocket.writer import WebSocketWriter

FAST_WRITE = hasattr(WebSocketWriter, "_write_websocket_frame")
_sending: set[asyncio.Future[None]] = set()

PushHandler = Callable[[str, Any], None]
# Called once per call with the call and its answer (the ack's first argument).
AckHandler = Callable[["PendingCall", Any], None]


class ConnectRefused(Exception):
    """The server refused the Socket.IO CONNECT (bad token, ...); `error` is its error object."""

    def __init__(self, error: Any) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class PendingCall:
    operation: str
    scheduled: float
    on_answer: AckHandler
    future: asyncio.Future[Any] | None = None
    market_id: str | None = None  # a bet's market


def settle_future(call: PendingCall, answer: Any) -> None:
    if call.future is not None and not call.future.done():
        call.future.set_result(answer)


def socket_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[len("http") :]
    return f"{base}/socket.io/?EIO=4&transport=websocket"


class PlayerSocket:
    """One player's connection. `emit` returns at once; the ack reaches the handler given."""

    def __init__(self, on_push: PushHandler | None = None) -> None:
        self.on_push = on_push
        self.pending: dict[int, PendingCall] = {}
        self.connected = False
        self.closing = False
        self.dropped = False
        self._ids = itertools.count(1)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._on_close: Callable[[PlayerSocket], None] | None = None

    async def connect(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        token: str,
        timeout_s: float = 30,
        on_close: Callable[[PlayerSocket], None] | None = None,
        *,
        deflate: bool = True,
    ) -> None:
        self._on_close = on_close
        self._ws = await http.ws_connect(
            socket_url(base_url),
            autoping=True,
            timeout=aiohttp.ClientWSTimeout(ws_close=5),
            max_msg_size=0,
            # Offered like the official client does; small frames are still sent uncompressed.
            compress=15 if deflate else 0,
        )
        opened = await asyncio.wait_for(self._ws.receive(), timeout_s)
        if opened.type != aiohttp.WSMsgType.TEXT or not opened.data.startswith("0"):
            await self._ws.close()
            raise ConnectionError(f"unexpected engine.io open: {opened.type} {opened.data!r}")
        await self._ws.send_str("40" + orjson.dumps({"token": token}).decode())
        while True:
            message = await asyncio.wait_for(self._ws.receive(), timeout_s)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"socket closed during CONNECT: {message.type}")
            data: str = message.data
            if data == "2":
                await self._ws.send_str("3")
            elif data.startswith("40"):
                break
            elif data.startswith("44"):
                await self._ws.close()
                raise ConnectRefused(orjson.loads(data[2:]) if len(data) > 2 else None)
            else:
                self._handle(data)
        self.connected = True
        self._reader = asyncio.create_task(self._read())

    def emit(self, event: str, payload: Any, call: PendingCall) -> bool:
        """Send an event asking for an ack; False if the socket is gone (nothing was sent)."""
        if not self.connected or self._ws is None:
            return False
        ack_id = next(self._ids)
        self.pending[ack_id] = call
        frame = f"42{ack_id}" + orjson.dumps([event, payload]).decode()
        self._send(frame)
        return True

    def _send(self, frame: str) -> None:
        """Write a text frame now, without a task per frame.

        aiohttp's uncompressed send path writes into the transport synchronously and only then
        may await the drain; its frame writer is called directly (private API, checked at import),
        falling back to a task around `send_str` if it is missing.
        """
        assert self._ws is not None
        writer = getattr(self._ws, "_writer", None)
        if FAST_WRITE and writer is not None and not writer._closing:
            writer._write_websocket_frame(frame.encode(), aiohttp.WSMsgType.TEXT, 0)
        else:
            task = asyncio.ensure_future(self._ws.send_str(frame))
            _sending.add(task)
            task.add_done_callback(_sending.discard)

    async def call(self, event: str, payload: Any, timeout_s: float = 30) -> Any:
        """Send an event and wait for its answer (setup calls: markets:list, market:subscribe)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call = PendingCall(event, time.monotonic(), settle_future, future)
        if not self.emit(event, payload, call):
            raise ConnectionError("socket is not connected")
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            self.pending = {key: value for key, value in self.pending.items() if value is not call}
            raise

    def expire(self, now: float, timeout_s: float) -> list[PendingCall]:
        """Forget and return the calls waiting longer than `timeout_s` (they count as timeouts)."""
        overdue = [
            ack_id for ack_id, call in self.pending.items() if now - call.scheduled > timeout_s
        ]
        return [self.pending.pop(ack_id) for ack_id in overdue]

    def _handle(self, data: str) -> None:
        kind = data[0]
        if kind == "2":
            if self._ws is not None and not self._ws.closed:
                self._send("3")
            return
        if kind != "4" or len(data) < 2:
            return
        packet = data[1]
        if packet == "3":
            start = end = 2
            while end < len(data) and data[end].isdigit():
                end += 1
            call = self.pending.pop(int(data[start:end]), None)
            if call is not None:
                answer = orjson.loads(data[end:])
                call.on_answer(call, answer[0] if answer else None)
        elif packet == "2":
            index = 2
            while index < len(data) and data[index].isdigit():
                index += 1
            event = orjson.loads(data[index:])
            if self.on_push is not None and event:
                self.on_push(event[0], event[1] if len(event) > 1 else None)
        elif packet == "1":
            self.connected = False

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._handle(message.data)
                elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                    break
        finally:
            was_connected = self.connected
            self.connected = False
            if not self.closing and was_connected:
                self.dropped = True
            if self._on_close is not None:
                self._on_close(self)

    async def close(self) -> None:
        """Disconnect and close the websocket; bound it from outside (the close handshake waits
        for the server's close frame and for unsent bytes to drain)."""
        self.closing = True
        self.connected = False
        if self._ws is not None and not self._ws.closed:
            try:
                # Written at once: awaiting `send_str` would wait for the drain first.
                self._send("41")
                await self._ws.close()
            except (ConnectionError, aiohttp.ClientError):
                pass
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
