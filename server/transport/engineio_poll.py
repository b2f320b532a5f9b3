"""Engine.IO's long-polling transport, adjusted: a leaner writer wait, and a read budget.

python-engineio's socket writer waits for its next outgoing packet with `asyncio.wait_for`,
which on Python 3.11 wraps the wait in a new task for every packet: for every ack, every
`balance` push, and every recipient of an odds tick. `asyncio.timeout` gives the same timeout
and the same answers (QueueEmpty on timeout or cancel) without that task.

A long-polling POST may carry many packets (up to the HTTP buffer size of them). Each is paid for
from the same per-connection budget a websocket frame is (server/transport/read_budget.py), before
it is decoded; past it the connection is closed and the POST answered 400, so polling is no way
around the budget. `install()` is called once, by create_app.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from engineio import async_socket, exceptions, payload

from server.transport.read_budget import ReadBudget, ReadLimits
from server.transport.websocket import over_budget

# Engine.IO separates the packets of one long-polling payload with this character.
PACKET_SEPARATOR: Final = "\x1e"


class PastReadBudget(exceptions.EngineIOError):  # type: ignore[misc]  # untyped library base
    """A long-polling POST carried more than its connection may send: the server drops it."""


async def poll(self: Any) -> list[Any]:
    """Wait for packets to send to the client (engineio.async_socket.AsyncSocket.poll, leaner)."""
    try:
        async with asyncio.timeout(self.server.ping_interval + self.server.ping_timeout):
            first = await self.queue.get()
        self.queue.task_done()
    except (TimeoutError, asyncio.CancelledError):
        raise exceptions.QueueEmpty() from None
    if first is None:
        return []
    packets = [first]
    while True:
        try:
            pkt = self.queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        self.queue.task_done()
        if pkt is None:
            self.queue.put_nowait(None)
            break
        packets.append(pkt)
    return packets


async def handle_post_request(self: Any, environ: dict[str, Any]) -> None:
    """Take a long-polling POST (engineio.async_socket.AsyncSocket.handle_post_request), each of
    its packets paid for from the connection's read budget before any is decoded."""
    length = int(environ.get("CONTENT_LENGTH", "0"))
    if length > self.server.max_http_buffer_size:
        raise exceptions.ContentTooLongError()
    body = (await environ["wsgi.input"].read(length)).decode("utf-8")
    now = asyncio.get_running_loop().time()
    budget: ReadBudget | None = getattr(self, "read_budget", None)
    if budget is None:
        limits: ReadLimits = getattr(self.server, "read_limits", ReadLimits())
        budget = self.read_budget = ReadBudget(limits, now)
    paid = budget.charge(now, len(body))
    for _ in range(body.count(PACKET_SEPARATOR)):
        paid = paid and budget.charge(now, 0)
    if not paid:
        over_budget(self.sid, environ["aiohttp.request"])
        raise PastReadBudget()
    for pkt in payload.Payload(encoded_payload=body).packets:
        await self.receive(pkt)


def install() -> None:
    async_socket.AsyncSocket.poll = poll
    async_socket.AsyncSocket.handle_post_request = handle_post_request
