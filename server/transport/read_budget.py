"""What a client may send a node, paid for before it costs anything: a budget of frames and bytes
per second for each websocket, and inflation of compressed messages bounded by it.

The websocket loop (server/transport/websocket.py) charges every frame a client sends (data,
ping or pong, signed in or not) as it reads it, before Engine.IO or Socket.IO decode a byte;
past the budget the connection is closed. A budget is a token bucket kept as the time the
connection's allowance is spent up to (GCRA): a frame adds 1/rate seconds, a byte 1/byte-rate,
and a frame that puts the connection more than its burst ahead of the clock is refused. That is a
few float operations per frame and nothing allocated.

A permessage-deflate message is inflated here, not by aiohttp's reader: the decompressor is
given a maximum output size, the smaller of the message size limit and what the byte budget has
left, so a 100-byte frame never becomes more bytes than its connection may still spend, and
memory for inflated data is never taken before it is paid for.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import WSCloseCode, web
from aiohttp._websocket.models import WebSocketError
from aiohttp._websocket.reader import WebSocketReader

OPCODE_CONTINUATION: Final = 0x0
OPCODE_BINARY: Final = 0x2
DEFLATE_TAIL: Final = b"\x00\x00\xff\xff"


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """How much one websocket may send a node; from settings."""

    frames_per_s: float = 200.0
    frames_burst: int = 400
    # Bytes of messages as the server reads them: after inflation for compressed ones.
    bytes_per_s: int = 256 * 1024
    max_message_bytes: int = 64 * 1024


class ReadBudget:
    """One connection's allowance of frames and bytes, refilled continuously."""

    __slots__ = (
        "_byte_cost",
        "_byte_slack",
        "_bytes_until",
        "_frame_cost",
        "_frame_slack",
        "_frames_until",
        "bytes_per_s",
    )

    def __init__(self, limits: ReadLimits, now: float) -> None:
        self._frame_cost = 1.0 / limits.frames_per_s
        self._frame_slack = limits.frames_burst * self._frame_cost
        self.bytes_per_s = limits.bytes_per_s
        self._byte_cost = 1.0 / limits.bytes_per_s
        # At least one message of the largest size fits in a burst.
        self._byte_slack = max(limits.bytes_per_s, limits.max_message_bytes) * self._byte_cost
        self._frames_until = now
        self._bytes_until = now

    def charge(self, now: float, size: int) -> bool:
        """Pay for one frame of `size` bytes read at `now`; False once past the budget."""
        frames = self._frames_until
        if frames < now:
            frames = now
        frames += self._frame_cost
        spent = self._bytes_until
        if spent < now:
            spent = now
        spent += size * self._byte_cost
        self._frames_until = frames
        self._bytes_until = spent
        return frames - now <= self._frame_slack and spent - now <= self._byte_slack

    def bytes_left(self, now: float) -> int:
        """Bytes the connection may still read at `now` without going past its budget."""
        ahead = self._bytes_until - now
        if ahead < 0:
            ahead = 0.0
        return max(0, int((self._byte_slack - ahead) * self.bytes_per_s))


class ReadBudgetSpent(WebSocketError):
    """A compressed message would inflate past what its connection may still read."""

    def __init__(self) -> None:
        super().__init__(WSCloseCode.POLICY_VIOLATION, "past the connection's read budget")


class InflatingReader(WebSocketReader):
    """aiohttp's websocket frame parser, except that compressed messages are inflated here,
    each to at most what the connection's budget has left (and the message size limit)."""

    def __init__(
        self, queue: Any, max_msg_size: int, decode_text: bool, budget: ReadBudget
    ) -> None:
        super().__init__(queue, max_msg_size, compress=True, decode_text=decode_text)
        self.budget = budget
        self.max_message_bytes = max_msg_size
        self._clock = asyncio.get_running_loop().time
        self._inflater = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
        # The fragments of a compressed message not finished yet, and its opcode.
        self._fragments: list[bytes] = []
        self._fragment_bytes = 0
        self._fragmented_opcode = OPCODE_CONTINUATION

    def _handle_frame(self, fin: bool, opcode: int, payload: Any, compressed: int) -> None:
        # Control frames carry the flag of the last data frame: only data frames are inflated.
        if not compressed or opcode > OPCODE_BINARY:
            super()._handle_frame(fin, opcode, payload, compressed)
            return
        if opcode == OPCODE_CONTINUATION:
            if self._fragmented_opcode == OPCODE_CONTINUATION:
                raise WebSocketError(WSCloseCode.PROTOCOL_ERROR, "continuation of no message")
            opcode = self._fragmented_opcode
        elif self._fragments or self._fragmented_opcode != OPCODE_CONTINUATION:
            raise WebSocketError(WSCloseCode.PROTOCOL_ERROR, "a new message inside a message")
        self._fragment_bytes += len(payload)
        if self._fragment_bytes > self.max_message_bytes:
            raise WebSocketError(WSCloseCode.MESSAGE_TOO_BIG, "message over the size limit")
        if not fin:
            self._fragments.append(bytes(payload))
            self._fragmented_opcode = opcode
            return
        if self._fragments:
            self._fragments.append(bytes(payload))
            payload = b"".join(self._fragments)
            self._fragments.clear()
        self._fragment_bytes = 0
        self._fragmented_opcode = OPCODE_CONTINUATION
        left = self.budget.bytes_left(self._clock())
        limit = min(self.max_message_bytes, left)
        inflated = self._inflater.decompress(payload + DEFLATE_TAIL, limit + 1)
        if len(inflated) > limit:
            if limit < self.max_message_bytes:
                raise ReadBudgetSpent
            raise WebSocketError(WSCloseCode.MESSAGE_TOO_BIG, "message over the size limit")
        super()._handle_frame(True, opcode, inflated, 0)


class BudgetedWebSocketResponse(web.WebSocketResponse):
    """A server websocket whose compressed messages are inflated by `InflatingReader`."""

    def __init__(self, budget: ReadBudget, **options: Any) -> None:
        super().__init__(**options)
        self.read_budget = budget

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        handler = request.protocol
        # Bytes that came with the upgrade request go to the parser that will read the rest.
        tail, handler._message_tail = handler._message_tail, b""
        super()._post_start(request, protocol, writer)
        if self._compress:
            reader = InflatingReader(
                self._reader, self._max_msg_size, self._decode_text, self.read_budget
            )
            self._parser = reader
            handler._payload_parser = reader
        if tail:
            handler._payload_parser.feed_data(tail)
