"""Every place the server reaches into a library's internals, listed once and checked.

The pinned versions (requirements/*.txt) are the ones tested; `library_surface_problems()` reads
the installed libraries and names each seam that moved, and tests/unit/test_library_seams.py fails
with those names when an upgrade changes one. The lower bounds in pyproject.toml are the first
releases with what the code uses (`reason` on disconnects, python-engineio 4.12; python-socketio
5.12 passes it on).

python-socketio (`socketio.AsyncServer`, server/transport/socketio_server.py), since 5.12:
- `_engineio_server_class()` returns GameEngineServer, the Engine.IO server with the game's
  websocket transport and task spawning;
- `_send_packet(eio_sid, pkt)`: a packet for a websocket socket goes to its frame writer instead
  of Engine.IO's queue and writer task;
- `_handle_eio_connect(eio_sid, environ)`: starts the authentication deadline;
- `_handle_eio_message(eio_sid, data)` and the `_binary_packet` dict it keeps per socket: the
  attachment count and size limits, and an error ack for a packet that does not decode;
- `_handle_event(eio_sid, namespace, id, data)`: reserved event names are refused;
- `_handle_event_internal(server, sid, eio_sid, data, namespace, id)`, with `handlers`,
  `_trigger_event` and `not_handled`: a registered handler is called directly and its ack
  encoded in one step;
- `_handle_eio_disconnect(eio_sid, reason)`: per-socket limits state is dropped;
- `_handle_connect(eio_sid, namespace, data)` (server/transport/recovery.py): connection state
  recovery, which python-socketio lacks: the CONNECT answer carries a `pid`, a resumed socket
  gets its old `sid` back (through the engine's `generate_id`, below);
- `packet_class`, `manager.get_participants(namespace, room)`: pushes are encoded once per room
  (server/fanout/pushes.py).
- `socketio.AsyncRedisManager._redis_connect()` and the `redis_url`, `redis`, `pubsub` and
  `connected` attributes it sets (server/transport/redis_manager.py): a bounded connection pool,
  and the client it replaces closed; at shutdown the listener task `initialize()` keeps in
  `thread` is cancelled and the client closed (the library does neither).

python-engineio (server/transport/websocket.py, server/transport/engineio_poll.py), since 4.12:
- `AsyncServer._async["websocket"]` is replaced by the game's websocket loop, which is handed
  the socket's bound `handle_get_request` (it reads `__self__`);
- on `AsyncSocket` it reads and sets `queue`, `send`, `connected`, `upgraded`, `upgrading`,
  `closed`, `server`, and calls `check_ping_timeout()`, `receive(pkt)` and
  `close(wait=, abort=, reason=)`; on the server it reads `sockets`, `handlers`,
  `ping_interval`, `ping_timeout` and `reason.TRANSPORT_CLOSE`;
- `AsyncSocket.poll` is replaced process-wide by a leaner wait, and
  `AsyncSocket.handle_post_request(environ)` by one that charges the read budget first
  (`engineio_poll.install()`; it reads `environ["wsgi.input"]`, `CONTENT_LENGTH`,
  `server.max_http_buffer_size` and raises `exceptions.EngineIOError`, which the server answers
  400 after dropping the socket);
- `AsyncServer.disconnect(sid)` closes without waiting for a long-poll to take the queue (with
  `reason.SERVER_DISCONNECT`), `start_background_task(target, ...)` keeps the loop it found, and
  `generate_id()` hands out a resumed socket's id once (`manager.pre_connect` takes its sid
  from it).

aiohttp (server/http/exposure.py), since 3.11:
- `aiohttp.web_response.SERVER_SOFTWARE` is overwritten so no `Server` header names versions.

aiohttp (server/transport/read_budget.py), written against the pinned 3.14:
- `aiohttp._websocket.reader.WebSocketReader(queue, max_msg_size, compress, decode_text)` is
  subclassed and its `_handle_frame(fin, opcode, payload, compressed)` overridden (a `cpdef` in
  the compiled reader, so the override is called per frame), so that compressed messages are
  inflated within the connection's read budget; `_websocket.models.WebSocketError` is raised;
- `web.WebSocketResponse._post_start(request, protocol, writer)` is extended to put that reader
  in place of the stock one when permessage-deflate was negotiated: it reads `_compress`,
  `_reader`, `_max_msg_size` and `_decode_text`, sets `_parser`, and on the request's
  `RequestHandler` reads `_message_tail` and sets `_payload_parser`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, Final

import engineio
import socketio
from aiohttp import web, web_protocol, web_response
from aiohttp._websocket.reader import WebSocketReader
from engineio import async_socket

# Overridden methods and the parameters the overrides are written against, in order.
OVERRIDDEN: Final[tuple[tuple[type[Any], str, tuple[str, ...]], ...]] = (
    (socketio.AsyncServer, "_engineio_server_class", ("self",)),
    (socketio.AsyncServer, "_send_packet", ("self", "eio_sid", "pkt")),
    (socketio.AsyncServer, "_handle_eio_connect", ("self", "eio_sid", "environ")),
    (socketio.AsyncServer, "_handle_eio_message", ("self", "eio_sid", "data")),
    (socketio.AsyncServer, "_handle_event", ("self", "eio_sid", "namespace", "id", "data")),
    (
        socketio.AsyncServer,
        "_handle_event_internal",
        ("self", "server", "sid", "eio_sid", "data", "namespace", "id"),
    ),
    (socketio.AsyncServer, "_handle_eio_disconnect", ("self", "eio_sid", "reason")),
    (socketio.AsyncServer, "disconnect", ("self", "sid", "namespace", "ignore_queue")),
    (socketio.AsyncServer, "_handle_connect", ("self", "eio_sid", "namespace", "data")),
    (socketio.AsyncServer, "_trigger_event", ("self", "event", "namespace", "args")),
    (socketio.AsyncRedisManager, "_redis_connect", ("self",)),
    (engineio.AsyncServer, "disconnect", ("self", "sid")),
    (engineio.AsyncServer, "start_background_task", ("self", "target")),
    (engineio.AsyncServer, "generate_id", ("self",)),
    (async_socket.AsyncSocket, "poll", ("self",)),
    (async_socket.AsyncSocket, "handle_post_request", ("self", "environ")),
    (async_socket.AsyncSocket, "check_ping_timeout", ("self",)),
    (async_socket.AsyncSocket, "receive", ("self", "pkt")),
    (async_socket.AsyncSocket, "close", ("self", "wait", "abort", "reason")),
    (async_socket.AsyncSocket, "handle_get_request", ("self", "environ")),
    (WebSocketReader, "_handle_frame", ("self", "fin", "opcode", "payload", "compressed")),
    (web.WebSocketResponse, "_post_start", ("self", "request", "protocol", "writer")),
)

SOCKETIO_SERVER_ATTRIBUTES: Final = (
    "_binary_packet",
    "handlers",
    "not_handled",
    "packet_class",
    "manager",
    "eio",
)
ENGINEIO_SERVER_ATTRIBUTES: Final = (
    "_async",
    "sockets",
    "handlers",
    "ping_interval",
    "ping_timeout",
    "reason",
)
ENGINEIO_SOCKET_ATTRIBUTES: Final = (
    "queue",
    "send",
    "connected",
    "upgraded",
    "upgrading",
    "closed",
    "server",
)

WEBSOCKET_RESPONSE_ATTRIBUTES: Final = (
    "_compress",
    "_reader",
    "_max_msg_size",
    "_decode_text",
    "_parser",
)
REQUEST_HANDLER_ATTRIBUTES: Final = ("_message_tail", "_payload_parser")


def _parameters(function: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    )


def _missing(owner: object, names: Iterable[str], what: str) -> list[str]:
    return [f"{what} has no attribute {name!r}" for name in names if not hasattr(owner, name)]


def library_surface_problems() -> list[str]:
    """Each seam above that the installed libraries no longer offer as the code expects."""
    problems = []
    for owner, name, expected in OVERRIDDEN:
        where = f"{owner.__module__}.{owner.__qualname__}.{name}"
        function = getattr(owner, name, None)
        if function is None:
            problems.append(f"{where} is gone")
            continue
        found = _parameters(function)
        # A trailing `*args` in the library (`_trigger_event(self, event, namespace, *args)`) is
        # listed by name in `expected`; compare what both declare.
        if found != expected[: len(found)] or len(found) < len(expected) - 1:
            problems.append(f"{where} takes {found}, the override expects {expected}")
    sio = socketio.AsyncServer(async_mode="aiohttp")
    problems += _missing(sio, SOCKETIO_SERVER_ATTRIBUTES, "socketio.AsyncServer")
    if not isinstance(getattr(sio, "_binary_packet", None), dict):
        problems.append("socketio.AsyncServer._binary_packet is no longer a dict")
    if not hasattr(sio.manager, "get_participants"):
        problems.append("socketio's manager has no get_participants")
    eio = sio.eio
    problems += _missing(eio, ENGINEIO_SERVER_ATTRIBUTES, "engineio.AsyncServer")
    if "websocket" not in getattr(eio, "_async", {}):
        problems.append("engineio.AsyncServer._async has no 'websocket' entry")
    for reason in ("TRANSPORT_CLOSE", "SERVER_DISCONNECT"):
        if not hasattr(getattr(eio, "reason", None), reason):
            problems.append(f"engineio.AsyncServer.reason has no {reason}")
    socket = async_socket.AsyncSocket(eio, "seam-check")
    problems += _missing(socket, ENGINEIO_SOCKET_ATTRIBUTES, "engineio.AsyncSocket")
    if not isinstance(eio, engineio.AsyncServer):
        problems.append("socketio.AsyncServer.eio is not an engineio.AsyncServer")
    if not isinstance(getattr(web_response, "SERVER_SOFTWARE", None), str):
        problems.append("aiohttp.web_response.SERVER_SOFTWARE is gone")
    problems += _missing(
        web.WebSocketResponse(), WEBSOCKET_RESPONSE_ATTRIBUTES, "aiohttp.web.WebSocketResponse"
    )
    problems += _missing(
        web_protocol.RequestHandler, REQUEST_HANDLER_ATTRIBUTES, "aiohttp's RequestHandler"
    )
    return problems
