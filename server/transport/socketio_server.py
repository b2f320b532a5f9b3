"""Python-socketio's server with the game's send path and the limits a hostile client meets.

Sending: packets for a socket on the websocket transport go straight to its frame writer
(server/transport/websocket.py). The stock path builds an engine.io packet object, awaits the socket's
ping check and queues the packet for a writer task, for every ack; here an ack is one string
handed to the writer. The game never sends binary payloads, so outgoing packets skip the
library's recursive search for bytes in every payload.

Receiving, nothing a client sends may cost the node more than answering it:
- a packet that does not decode gets a VALIDATION_ERROR ack when its ack id can be read, and
  otherwise ends the connection; either way with at most one log line a second, no traceback;
- the reserved event names (`connect`, `disconnect`, ...) are not events a client may send: they
  get UNKNOWN_EVENT and never reach the connect or disconnect handlers;
- an event name that is not a string gets VALIDATION_ERROR, with one log line a second;
- a binary message must announce from 1 to `max_attachments` attachments and carry at most
  `max_message_bytes` in them, with no text message before they all came, or the connection
  ends before anything is buffered;
- an Engine.IO connection must authenticate (Socket.IO CONNECT) within `auth_timeout_s`, and
  again within it after leaving the namespace.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import engineio
import socketio
from aiohttp import web

from game.errors import ErrorCode, UnknownEvent, ValidationFailed
from server.runtime import metrics
from server.runtime.logs import RateLimitedLog
from server.transport.recovery import RecoveringServer
from server.transport.websocket import PreparedMessage, writer_of
from server.wire.codec import dumps_bytes
from server.wire.refusals import ack_error

logger = logging.getLogger("thisthat.socketio")

# Event names Socket.IO keeps for itself; a client sending one is refused (socket.io-client
# refuses to send them at all).
RESERVED_EVENTS: Final = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
# The ack id of an EVENT packet, readable even when its JSON is not: `2` [`/ns,`] id `[`.
_ACK_ID: Final = re.compile(r"^2(?:/[^,]*,)?(\d{1,15})\[")


@dataclass(frozen=True, slots=True)
class ClientLimits:
    max_attachments: int = 2
    max_message_bytes: int = 64 * 1024
    auth_timeout_s: float = 10.0


class TextPacket(socketio.packet.Packet):  # type: ignore[misc]  # untyped library base
    """Socket.IO packets whose outgoing payloads are JSON only (no binary attachments)."""

    uses_binary_events = False


class GameEngineServer(engineio.AsyncServer):  # type: ignore[misc]  # untyped library base
    """Engine.IO's server, except that dropping a socket never waits for its peer.

    The stock `disconnect` waits until every queued packet was taken by a long-poll GET; a
    polling client that sent a bad packet (or stopped polling) never takes them, so the POST
    that caused the disconnect was held unanswered for minutes. Closing without waiting answers
    it at once; the packets left in the queue were meant for a client that is gone.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    # A resumed socket's id, handed out by the next `generate_id` (server/transport/recovery.py).
    next_id: str | None = None

    def generate_id(self) -> str:
        if self.next_id is not None:
            return self.next_id
        return str(super().generate_id())

    async def disconnect(self, sid: str | None = None) -> None:
        if sid is None:
            await super().disconnect()
            return
        socket = self.sockets.get(sid)
        if socket is not None:
            await socket.close(wait=False, reason=self.reason.SERVER_DISCONNECT)
            self.sockets.pop(sid, None)

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> asyncio.Task[Any]:
        """A task on the running loop, as the stock one, minus a loop lookup per event.

        Both servers start a task per received event; on Python 3.11 every lookup of the running
        loop is a getpid() system call, which profiling found among the costliest lines of the
        bet path. The loop is looked up once and kept while it lives.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop.create_task(target(*args, **kwargs))


class QuietLibraryLog(logging.Filter):
    """Tracebacks python-engineio and python-socketio log for what a client sent become one
    warning line a second: a client must not be able to fill the log."""

    def __init__(self) -> None:
        super().__init__()
        self.limited = RateLimitedLog(logger, "client packet refused by the socket library")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and not record.exc_info:
            return True
        self.limited.warn(library=record.name, what=record.getMessage()[:200])
        return False


def quiet_library_logs() -> None:
    for name in ("engineio.server", "socketio.server"):
        library = logging.getLogger(name)
        if not any(isinstance(f, QuietLibraryLog) for f in library.filters):
            library.addFilter(QuietLibraryLog())


class GameSocketServer(RecoveringServer):
    def _engineio_server_class(self) -> type[GameEngineServer]:
        return GameEngineServer

    def __init__(self, *, limits: ClientLimits | None = None, **options: Any) -> None:
        super().__init__(serializer=TextPacket, **options)
        self._init_recovery()
        self.limits = limits or ClientLimits()
        self._binary_bytes: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.bad_packets = RateLimitedLog(logger, "bad socket.io packet")
        self.reserved = RateLimitedLog(logger, "reserved event name sent by a client")

    async def _send_packet(self, eio_sid: str, pkt: socketio.packet.Packet) -> None:
        socket = self.eio.sockets.get(eio_sid)
        writer = writer_of(socket) if socket is not None else None
        if writer is None or socket.closed:
            # Long-polling (or closing) sockets keep engine.io's own queue.
            await super()._send_packet(eio_sid, pkt)
            return
        writer.send(PreparedMessage("4" + pkt.encode()))

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        result = await super()._handle_eio_connect(eio_sid, environ)
        loop = asyncio.get_running_loop()
        loop.call_later(self.limits.auth_timeout_s, self._close_if_anonymous, eio_sid)
        return result

    async def disconnect(
        self, sid: str, namespace: str | None = None, ignore_queue: bool = False
    ) -> None:
        """Disconnect a socket from a namespace (the token expired, an operator's or a node's
        order). The Engine.IO connection under it stays open until its client closes it: a
        client that does not gets the auth deadline to connect again, as one that left by itself
        does, and is then closed."""
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace or "/")
        await super().disconnect(sid, namespace, ignore_queue)
        if eio_sid is not None and eio_sid in self.eio.sockets:
            asyncio.get_running_loop().call_later(
                self.limits.auth_timeout_s, self._close_if_anonymous, eio_sid
            )

    def _close_if_anonymous(self, eio_sid: str) -> None:
        if eio_sid not in self.eio.sockets or self.manager.sid_from_eio_sid(eio_sid, "/"):
            return
        metrics.PROTOCOL_ERRORS.inc()
        self._spawn(self.eio.disconnect(eio_sid))

    async def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        try:
            if eio_sid in self._binary_packet:
                if isinstance(data, str):
                    self._refuse(eio_sid, "a text message while binary attachments are due")
                    return
                if not self._attachment_fits(eio_sid, data):
                    return
            elif isinstance(data, str) and data[:1] in ("5", "6") and not self._announces_ok(data):
                self._refuse(eio_sid, "binary attachments announced out of bounds")
                return
            elif isinstance(data, bytes):
                self._refuse(eio_sid, "a binary frame with no binary message announced")
                return
            await super()._handle_eio_message(eio_sid, data)
            if data[:1] == "1":
                # A socket that left its namespace is one that never authenticated again: it
                # gets the same deadline to connect once more.
                asyncio.get_running_loop().call_later(
                    self.limits.auth_timeout_s, self._close_if_anonymous, eio_sid
                )
        except (ValueError, TypeError, IndexError, KeyError) as error:
            # The packet does not decode (bad JSON such as NaN or 1e309, a broken header).
            match = _ACK_ID.match(data) if isinstance(data, str) else None
            self.bad_packets.warn(eioSid=eio_sid, reason=type(error).__name__)
            metrics.PROTOCOL_ERRORS.inc()
            if match is None:
                self._spawn(self.eio.disconnect(eio_sid))
                return
            refusal = ValidationFailed("the message is not valid JSON")
            await self._send_packet(
                eio_sid,
                self.packet_class(
                    socketio.packet.ACK,
                    namespace="/",
                    id=int(match.group(1)),
                    data=[ack_error(refusal)],
                ),
            )

    def _announces_ok(self, header: str) -> bool:
        # `5<count>-...`: the count of attachments that will follow as binary frames; a binary
        # message with none would wait for an attachment that never comes.
        count, dash, _ = header[1:].partition("-")
        return bool(dash) and count.isdigit() and 1 <= int(count[:9]) <= self.limits.max_attachments

    def _attachment_fits(self, eio_sid: str, data: str | bytes) -> bool:
        total = self._binary_bytes.get(eio_sid, 0) + len(data)
        if total > self.limits.max_message_bytes:
            self._binary_packet.pop(eio_sid, None)
            self._binary_bytes.pop(eio_sid, None)
            self._refuse(eio_sid, "binary attachments over the message size limit")
            return False
        self._binary_bytes[eio_sid] = total
        return True

    def _refuse(self, eio_sid: str, reason: str) -> None:
        self.bad_packets.warn(eioSid=eio_sid, reason=reason)
        metrics.PROTOCOL_ERRORS.inc()
        self._spawn(self.eio.disconnect(eio_sid))

    async def _handle_event(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> None:
        self._binary_bytes.pop(eio_sid, None)
        name = data[0] if isinstance(data, list) and data else None
        if type(name) is not str or not name:
            # A number, an object, nothing: no event has that name, and no handler may see it.
            self.bad_packets.warn(
                eioSid=eio_sid, reason=f"event name of type {type(name).__name__}"
            )
            metrics.ERRORS.labels(ErrorCode.VALIDATION_ERROR.value).inc()
            if id is not None:
                await self._send_packet(
                    eio_sid,
                    self.packet_class(
                        socketio.packet.ACK,
                        namespace=namespace or "/",
                        id=id,
                        data=[ack_error(ValidationFailed("the event name must be a string"))],
                    ),
                )
            return
        if name in RESERVED_EVENTS:
            self.reserved.warn(eioSid=eio_sid, event=name)
            metrics.ERRORS.labels(ErrorCode.UNKNOWN_EVENT.value).inc()
            if id is not None:
                refusal = UnknownEvent(name, f"{name!r} is a reserved event name")
                await self._send_packet(
                    eio_sid,
                    self.packet_class(
                        socketio.packet.ACK,
                        namespace=namespace or "/",
                        id=id,
                        data=[ack_error(refusal)],
                    ),
                )
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_event_internal(
        self,
        server: socketio.AsyncServer,
        sid: str,
        eio_sid: str,
        data: list[Any],
        namespace: str,
        id: int | None,
    ) -> None:
        """Run the handler and send its ack; an ack of the default namespace to a websocket is
        encoded in one step (`43<id>[<result>]`, what python-socketio's packet would encode).

        A registered event of the default namespace calls its handler directly (they are all
        coroutine functions); python-socketio's general lookup serves everything else.
        """
        name = data[0]
        routes = self.handlers.get("/") if namespace == "/" and type(name) is str else None
        handler = routes.get(name) if routes else None
        if handler is None:
            result = await server._trigger_event(data[0], namespace, sid, *data[1:])
        else:
            try:
                result = await handler(sid, *data[1:])
            except asyncio.CancelledError:
                result = None  # as python-socketio answers a handler cancelled mid-way
        if id is None or result is self.not_handled:
            return
        socket = self.eio.sockets.get(eio_sid)
        writer = writer_of(socket) if socket is not None else None
        if writer is not None and not socket.closed and namespace == "/" and type(result) is dict:
            writer.send(PreparedMessage.text(b"43%d[%b]" % (id, dumps_bytes(result))))
            return
        if result is None:
            payload = []
        elif isinstance(result, tuple):
            payload = list(result)
        else:
            payload = [result]
        await server._send_packet(
            eio_sid,
            self.packet_class(socketio.packet.ACK, namespace=namespace, id=id, data=payload),
        )

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self._binary_bytes.pop(eio_sid, None)
        self._binary_packet.pop(eio_sid, None)
        await super()._handle_eio_disconnect(eio_sid, reason)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # held until done, so it is never collected mid-flight
        task.add_done_callback(self._tasks.discard)


# socketio is untyped (mypy sees Any); the alias names what the rooms above hold.
SocketServer: TypeAlias = socketio.AsyncServer

# The Socket.IO server of this node (built by server/sockets/server.py).
SIO: Final = web.AppKey("sio", SocketServer)


def encode_event(sio: SocketServer, event: str, data: object, offset: int | None = None) -> str:
    """An event of the default namespace as the Engine.IO message text (`42[...]`), encoded by
    the server's own packet class, so its JSON module and binary rules apply. With an `offset`
    (a recoverable socket's), it rides as the last argument, a string (docs/protocol.md)."""
    args = [event, data] if offset is None else [event, data, str(offset)]
    packet = sio.packet_class(socketio.packet.EVENT, namespace="/", data=args)
    return "4" + str(packet.encode())
