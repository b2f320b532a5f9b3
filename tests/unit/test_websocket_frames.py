"""Websocket frames as the game writes them: the compression threshold, one prepared message for
every recipient, one transport write per loop turn, and a bounded buffer for a peer that does not
read."""

from __future__ import annotations

import asyncio
import zlib

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
