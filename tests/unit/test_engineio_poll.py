"""The leaner engine.io writer wait answers exactly what the library's own did."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from engineio import exceptions

from server.transport.engineio_poll import poll


def socket_with(*queued: object, wait_s: float = 5.0) -> SimpleNamespace:
    queue: asyncio.Queue[object] = asyncio.Queue()
    for item in queued:
        queue.put_nowait(item)
    return SimpleNamespace(
        queue=queue, server=SimpleNamespace(ping_interval=wait_s / 2, ping_timeout=wait_s / 2)
    )


async def test_it_drains_everything_queued_in_order() -> None:
    assert await poll(socket_with("a", "b", "c")) == ["a", "b", "c"]


async def test_a_close_marker_ends_the_batch_and_stays_for_the_next_wait() -> None:
    socket = socket_with("a", None)
    assert await poll(socket) == ["a"]
    assert await poll(socket) == []


async def test_nothing_to_send_within_the_ping_window_is_queue_empty() -> None:
    with pytest.raises(exceptions.QueueEmpty):
        await poll(socket_with(wait_s=0.05))


async def test_a_cancelled_writer_stops_with_queue_empty() -> None:
    waiting = asyncio.ensure_future(poll(socket_with()))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(exceptions.QueueEmpty):
        await waiting
