"""A leaner engine.io writer wait: one less task per packet sent.

python-engineio's socket writer waits for its next outgoing packet with `asyncio.wait_for`,
which on Python 3.11 wraps the wait in a new task for every packet: for every ack, every
`balance` push, and every recipient of an odds tick. `asyncio.timeout` gives the same timeout
and the same answers (QueueEmpty on timeout or cancel) without that task. `install()` is called
once, by create_app.
"""

from __future__ import annotations

import asyncio
from typing import Any

from engineio import async_socket, exceptions


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


def install() -> None:
    async_socket.AsyncSocket.poll = poll
