"""Websocket frames as the game writes them: the compression threshold, one prepared message for
every recipient, one transport write per loop turn, and a bounded buffer for a peer that does not
read; and the reading side's budget, which inflates a compressed message only as far as its
connection may still read."""

from __future__ import annotations

import asyncio
import zlib
from types import SimpleNamespace
from typing import Any

from aiohttp._websocket.models import WebSocketError
from aiohttp._websocket.reader import WebSocketDataQueue

from server.transport.read_budget import InflatingReader, ReadBudget, ReadBudgetSpent, ReadLimits
from server.transport.websocket import (
    OPCODE_TEXT,
    RSV1,
    FrameWriter,
    PreparedMessage,
    ReadDeadline,
    WireLimits,
    deflate_message,
    frame_header,
)


class FakeTransport:
    """Records writes; `backlog` stands for bytes the kernel could not take yet."""

    def __init__(self, backlog: int = 0) -> None:
        self.writes: list[bytes] = []
        self.backlog = backlog
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


def writer(transport: FakeTransport, *, deflate: int = 15, **limits: int) -> FrameWriter:
    overflows: list[bool] = []
    made = FrameWriter(transport, deflate, WireLimits(**limits), lambda: overflows.append(True))  # type: ignore[arg-type]
    made.overflows = overflows  # type: ignore[attr-defined]
    return made


def inflate(body: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff")


def test_a_frame_under_the_threshold_goes_out_plain_even_with_deflate_negotiated() -> None:
    frame = PreparedMessage('3["ok"]').frame(15, compress_min_bytes=1024)
    assert frame == frame_header(OPCODE_TEXT, 7) + b'3["ok"]'
    assert not frame[0] & RSV1


def test_a_frame_at_the_threshold_is_deflated_and_inflates_back() -> None:
    payload = "4" + '["odds",{"marketId":"m"}]' * 60
    frame = PreparedMessage(payload).frame(15, compress_min_bytes=1024)
    assert frame[0] & RSV1
    body = frame[4:] if frame[1] == 126 else frame[2:]
    assert inflate(body) == payload.encode()


def test_without_deflate_negotiated_nothing_is_compressed() -> None:
    payload = "4" + "x" * 5000
    frame = PreparedMessage(payload).frame(0, compress_min_bytes=1024)
    assert not frame[0] & RSV1 and frame.endswith(payload.encode())


def test_deflated_messages_decode_one_after_another_in_one_context() -> None:
    # Each message is deflated from a fresh state, so a client that keeps its context
    # (no_context_takeover not negotiated) still inflates every one of them.
    inflater = zlib.decompressobj(-15)
    for text in ("a" * 2000, "b" * 3000, "a" * 2000):
        body = deflate_message(text.encode(), 15)
        assert inflater.decompress(body + b"\x00\x00\xff\xff") == text.encode()


def test_frame_lengths_use_the_right_header_size() -> None:
    assert len(frame_header(OPCODE_TEXT, 125)) == 2
    assert len(frame_header(OPCODE_TEXT, 126)) == 4
    assert len(frame_header(OPCODE_TEXT, 70000)) == 10


async def test_every_recipient_gets_the_same_bytes_built_once() -> None:
    message = PreparedMessage("4" + "y" * 3000, droppable=True)
    transports = [FakeTransport() for _ in range(3)]
    for transport in transports:
        writer(transport).send(message)
    await asyncio.sleep(0)
    first = transports[0].writes[0]
    assert all(t.writes == [first] for t in transports)
    # Built once: every writer was handed the very same bytes object.
    assert all(t.writes[0] is first for t in transports)


async def test_frames_sent_in_one_loop_turn_go_out_in_one_write() -> None:
    transport = FakeTransport()
    socket = writer(transport)
    for n in range(5):
        socket.send(PreparedMessage(f"3{n}[]"))
    assert transport.writes == []
    await asyncio.sleep(0)
    assert len(transport.writes) == 1
    assert transport.writes[0].count(b"[]") == 5


async def test_a_slow_reader_skips_superseded_pushes_but_keeps_acks() -> None:
    transport = FakeTransport(backlog=300_000)
    socket = writer(transport, high_water_bytes=256_000, limit_bytes=4_000_000)
    assert socket.send(PreparedMessage('4["odds",{}]', droppable=True)) is False
    assert socket.send(PreparedMessage('31["ack"]')) is True
    await asyncio.sleep(0)
    assert len(transport.writes) == 1 and b"ack" in transport.writes[0]
    assert socket.skipped == 1 and not transport.aborted


async def test_a_reader_past_the_limit_is_dropped_not_buffered() -> None:
    transport = FakeTransport(backlog=5_000_000)
    socket = writer(transport, high_water_bytes=256_000, limit_bytes=4_000_000)
    assert socket.send(PreparedMessage('31["ack"]')) is False
    await asyncio.sleep(0)
    assert transport.aborted and transport.writes == []
    assert socket.overflows == [True]  # type: ignore[attr-defined]
    # Nothing more is queued once it is gone.
    assert socket.send(PreparedMessage('4["odds",{}]')) is False


async def test_a_peer_silent_past_the_read_deadline_has_its_read_ended() -> None:
    async def read_until_silent() -> bool:
        deadline = ReadDeadline(0.05)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return deadline.expired
        return False

    assert await asyncio.wait_for(read_until_silent(), 5) is True


async def test_a_read_within_the_deadline_keeps_the_connection() -> None:
    loop = asyncio.get_running_loop()
    made: list[ReadDeadline] = []

    async def reader() -> None:
        made.append(ReadDeadline(100))
        await asyncio.sleep(10)

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    deadline = made[0]
    # The timer fires at the deadline's first end; the last read was 99 s ago, so it re-arms.
    deadline.last_read = loop.time() - 99
    deadline._check()
    await asyncio.sleep(0)
    assert not deadline.expired and not task.done()
    deadline.last_read = loop.time() - 101
    deadline._check()
    assert deadline.expired
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()
    deadline.cancel()


def test_the_read_budget_allows_the_burst_then_refuses_until_time_refills_it() -> None:
    budget = ReadBudget(ReadLimits(frames_per_s=10, frames_burst=5), now=100.0)
    assert all(budget.charge(100.0, 10) for _ in range(5))
    assert not budget.charge(100.0, 10)
    # A tenth of a second pays for one more frame (the refused one is owed too).
    assert not budget.charge(100.1, 10)
    assert budget.charge(100.5, 10)


def test_the_read_budget_counts_bytes_with_one_largest_message_in_a_burst() -> None:
    limits = ReadLimits(bytes_per_s=1000, max_message_bytes=4000)
    budget = ReadBudget(limits, now=0.0)
    assert budget.bytes_left(0.0) == 4000
    assert budget.charge(0.0, 4000)
    assert budget.bytes_left(0.0) == 0
    assert not budget.charge(0.0, 1)
    assert budget.bytes_left(10.0) == 4000


def client_frame(payload: bytes, *, compressed: bool) -> bytes:
    """A masked client frame; a zero mask leaves the payload as it is."""
    assert len(payload) < 126
    return bytes((0x81 | (RSV1 if compressed else 0), 0x80 | len(payload))) + b"\0\0\0\0" + payload


def inflating_reader(budget: ReadBudget, max_message_bytes: int) -> tuple[InflatingReader, Any]:
    protocol = SimpleNamespace(_reading_paused=False, pause_reading=lambda: None)
    queue = WebSocketDataQueue(protocol, 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    return InflatingReader(queue, max_message_bytes, True, budget), queue


async def test_a_compressed_message_inflates_no_further_than_the_budget_has_left() -> None:
    loop = asyncio.get_running_loop()
    budget = ReadBudget(ReadLimits(bytes_per_s=20_000, max_message_bytes=20_000), loop.time())
    reader, queue = inflating_reader(budget, 20_000)
    # Each about 40 bytes on the wire, 15,000 once inflated.
    bomb = client_frame(deflate_message(b"4" + b"x" * 14_999, 15), compressed=True)
    reader.feed_data(bomb)
    message = await queue.read()
    assert len(message.data) == 15_000
    budget.charge(loop.time(), len(message.data))
    inflated: list[int] = []
    real = reader._inflater

    class Spy:
        def decompress(self, data: bytes, max_length: int) -> bytes:
            out = real.decompress(data, max_length)
            inflated.append(len(out))
            return out

    reader._inflater = Spy()  # type: ignore[assignment]  # records what each call inflates
    assert reader.feed_data(bomb)[0]  # the reader failed: the budget has ~5,000 bytes left
    assert isinstance(queue.exception(), ReadBudgetSpent)
    assert inflated and inflated[0] <= budget.bytes_left(loop.time()) + 1 < 15_000


async def test_a_compressed_message_over_the_size_limit_is_refused_and_a_plain_one_passes() -> None:
    loop = asyncio.get_running_loop()
    budget = ReadBudget(ReadLimits(bytes_per_s=1_000_000, max_message_bytes=1000), loop.time())
    reader, queue = inflating_reader(budget, 1000)
    reader.feed_data(client_frame(b'42["wallet:get",{}]', compressed=False))
    assert (await queue.read()).data == '42["wallet:get",{}]'
    reader.feed_data(client_frame(deflate_message(b"x" * 5000, 15), compressed=True))
    assert isinstance(queue.exception(), WebSocketError)
    assert not isinstance(queue.exception(), ReadBudgetSpent)
