"""A raw Engine.IO/Socket.IO client over a real websocket, for sending what no library would."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson


class RawSocket:
    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.url = base_url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def open(self) -> RawSocket:
        """The Engine.IO handshake only: no Socket.IO CONNECT yet."""
        self.ws = await self.http.ws_connect(self.url, max_msg_size=0)
        opened = await self.receive_text()
        assert opened.startswith("0"), opened
        return self

    async def authenticate(self, token: str) -> None:
        await self.send("40" + orjson.dumps({"token": token}).decode())
        while True:
            text = await self.receive_text()
            if text.startswith("40"):
                return
            assert not text.startswith("44"), text

    async def send(self, data: str | bytes) -> None:
        assert self.ws is not None
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def receive_text(self, timeout_s: float = 10) -> str:
        """The next text frame, answering pings; raises ConnectionError when the server closed."""
        assert self.ws is not None
        while True:
            message = await self.ws.receive(timeout_s)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"closed: {message.type}")
            if message.data == "2":
                await self.ws.send_str("3")
                continue
            return str(message.data)

    async def ack(self, ack_id: int, timeout_s: float = 10) -> Any:
        """The payload of the ack with this id (pushes on the way are skipped)."""
        prefix = f"43{ack_id}["
        async with asyncio.timeout(timeout_s):
            while True:
                text = await self.receive_text(timeout_s)
                if text.startswith(prefix):
                    return orjson.loads(text[len(prefix) - 1 :])[0]

    async def closed_by_server(self, timeout_s: float = 10) -> bool:
        """True once the server ends the connection (frames on the way are read and dropped)."""
        assert self.ws is not None
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.ws.receive()
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return True
                if message.type == aiohttp.WSMsgType.TEXT and message.data == "1":
                    return True

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
