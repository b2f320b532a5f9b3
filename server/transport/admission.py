"""Who may open a new connection: capped per client address, and nobody while the node drains."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from game.errors import ErrorCode, NotReady, RateLimited
from server.runtime import metrics
from server.runtime.local_limits import CONNECTION_LIMITS
from server.settings import SETTINGS
from server.transport.client_address import client_ip
from server.transport.drain import DRAIN
from server.transport.socketio_server import SIO
from server.wire.refusals import error_response


@web.middleware
async def connection_admission(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """New Engine.IO connections are capped per client address, and refused while the node
    drains. A request passes uncounted only when its `sid` names a connection this node holds:
    an empty or made-up one is counted as the handshake it would otherwise be."""
    if not request.path.startswith("/socket.io") or _names_a_connection(request):
        return await handler(request)
    if request.app[DRAIN].draining:
        return error_response(NotReady("this node is restarting; connect to another"))
    limit, window = request.app[SETTINGS].rate_limit_connections_per_ip
    wait_ms = request.app[CONNECTION_LIMITS].hit("connect", client_ip(request), limit, window)
    if wait_ms:
        metrics.ERRORS.labels(ErrorCode.RATE_LIMITED.value).inc()
        return error_response(
            RateLimited(
                f"too many new connections from this address; retry in {wait_ms} ms", wait_ms
            )
        )
    return await handler(request)


def _names_a_connection(request: web.Request) -> bool:
    sid = request.query.get("sid")
    sio = request.app.get(SIO)
    return bool(sid) and sio is not None and sid in sio.eio.sockets
