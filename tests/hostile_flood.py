"""A hostile client in its own process: websockets that send one kind of frame as fast as the
connection takes them, reconnecting whenever the server closes them, for a fixed time.

    python -m tests.hostile_flood URL KIND SECONDS [TOKEN ...]

KIND names the frame (FRAMES below). `compressed` needs tokens: one signed-in socket per token,
each sending permessage-deflate messages that inflate about 600-fold. The other kinds use one
socket that never authenticates. Prints one JSON line: frames sent, connections opened, and
connections the server refused or closed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Final
from urllib.parse import urlsplit

import orjson

# The Engine.IO message of each kind; `{n}` is an ack id.
FRAMES: Final = {
    "unknown-event": '42{n}["no:such:event",{{}}]',
    "reserved-event": '42{n}["disconnect",{{}}]',
    "broken-json": '42{n}["wallet:get",NaN]',
    "numeric-event": "42{n}[1,{{}}]",
    "upgrade": "5",
}
# A wallet:get whose payload inflates to about 65 KB from about a hundred compressed bytes.
INFLATED_PAD: Final = 65_000
FRAMES_PER_WRITE: Final = 64
ZERO_MASK: Final = b"\x00\x00\x00\x00"


@dataclass
class Tally:
    frames: int = 0
    bytes: int = 0
    connections: int = 0
    refused: int = 0
    closed_by_server: int = 0


def client_frame(payload: bytes, *, compressed: bool = False) -> bytes:
    """A masked client frame (RFC 6455 5.2); a zero mask leaves the payload as it is."""
    first = 0x81 | (0x40 if compressed else 0)
    length = len(payload)
    if length < 126:
        head = bytes((first, 0x80 | length))
    elif length < 65536:
        head = bytes((first, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + length.to_bytes(8, "big")
    return head + ZERO_MASK + payload


def deflated(text: str) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return body.removesuffix(b"\x00\x00\xff\xff")


@functools.cache
def batch(kind: str, start: int) -> bytes:
    """FRAMES_PER_WRITE frames of `kind`, ack ids from `start`."""
    if kind == "compressed":
        frames = [
            client_frame(
                deflated(f'42{start + i}["wallet:get",{{"pad":"{"x" * INFLATED_PAD}"}}]'),
                compressed=True,
            )
            for i in range(FRAMES_PER_WRITE)
        ]
    else:
        frames = [
            client_frame(FRAMES[kind].format(n=start + i).encode()) for i in range(FRAMES_PER_WRITE)
        ]
    return b"".join(frames)


async def open_socket(
    url: str, *, deflate: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return None
    key = base64.b64encode(os.urandom(16)).decode()
    extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    writer.write(
        (
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extension}\r\n"
        ).encode()
    )
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        writer.close()
        return None
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        return None
    return reader, writer


async def read_text_frame(reader: asyncio.StreamReader) -> str:
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    payload = await reader.readexactly(length)
    if head[0] & 0x40:
        payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
    return payload.decode(errors="replace")


async def drain_replies(reader: asyncio.StreamReader) -> None:
    """Read and drop what the server sends, so it never holds us as a slow reader."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while await reader.read(65536):
            pass


async def flood(url: str, kind: str, token: str | None, until: float, tally: Tally) -> None:
    compressed = kind == "compressed"
    while time.monotonic() < until:
        opened = await open_socket(url, deflate=compressed)
        if opened is None:
            tally.refused += 1
            await asyncio.sleep(0.01)
            continue
        tally.connections += 1
        reader, writer = opened
        try:
            await asyncio.wait_for(read_text_frame(reader), 5)  # Engine.IO open
            if token is not None:
                writer.write(
                    client_frame(("40" + orjson.dumps({"token": token}).decode()).encode())
                )
                while not (await asyncio.wait_for(read_text_frame(reader), 5)).startswith("40"):
                    pass
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            tally.refused += 1
            writer.close()
            continue
        replies = asyncio.ensure_future(drain_replies(reader))
        data = batch(kind, 1)
        try:
            while time.monotonic() < until and not replies.done():
                writer.write(data)
                await writer.drain()
                tally.frames += FRAMES_PER_WRITE
                tally.bytes += len(data)
            if replies.done():
                tally.closed_by_server += 1
        except (OSError, asyncio.IncompleteReadError):
            tally.closed_by_server += 1
        finally:
            replies.cancel()
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await replies


async def main(url: str, kind: str, seconds: float, tokens: list[str]) -> Tally:
    tally = Tally()
    until = time.monotonic() + seconds
    if kind == "compressed":
        await asyncio.gather(*(flood(url, kind, token, until, tally) for token in tokens))
    else:
        await flood(url, kind, None, until, tally)
    return tally


if __name__ == "__main__":
    url, kind, seconds, *tokens = sys.argv[1:]
    result = asyncio.run(main(url, kind, float(seconds), tokens))
    print(orjson.dumps(asdict(result)).decode())  # noqa: T201 - the tool's one output line
