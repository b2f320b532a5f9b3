"""The official socket.io-client (npm, tools/socket_client.mjs) as a test drives it: commands in,
what the client saw out, one JSON line each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tests.node_tools import node_tools


class OfficialClient:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[dict[str, Any]] = []
        self._unread: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())
        self._acks = 0

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            item = orjson.loads(line)
            self.seen.append(item)
            self._unread.put_nowait(item)

    async def send(self, cmd: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps({"cmd": cmd, **fields}) + b"\n")
        await self.process.stdin.drain()

    async def next(
        self, kind: str, *, event: str | None = None, wait_s: float = 10
    ) -> dict[str, Any]:
        """The next thing of this kind (and event) the client saw, skipping others."""
        async with asyncio.timeout(wait_s):
            while True:
                item = await self._unread.get()
                if item["type"] == kind and (event is None or item.get("event") == event):
                    return item

    async def connect(self, url: str, auth: dict[str, Any]) -> dict[str, Any]:
        await self.send("connect", url=url, auth=auth)
        return await self.next("connect")

    async def call(self, event: str, data: Any = None) -> Any:
        self._acks += 1
        await self.send("emit", event=event, data=data, id=self._acks)
        async with asyncio.timeout(10):
            while True:
                item = await self._unread.get()
                if item["type"] == "ack" and item["id"] == self._acks:
                    assert item["error"] is None, item
                    return item["answer"]

    def events(self, event: str) -> list[list[Any]]:
        """The arguments of every `event` the client's listeners got, in order."""
        return [
            item["args"] for item in self.seen if item["type"] == "event" and item["event"] == event
        ]


@contextlib.asynccontextmanager
async def official_client() -> AsyncIterator[OfficialClient]:
    tools = node_tools()
    process = await asyncio.create_subprocess_exec(
        "node",
        str(tools / "socket_client.mjs"),
        cwd=tools,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    client = OfficialClient(process)
    try:
        yield client
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        client._reader.cancel()
        await asyncio.gather(client._reader, return_exceptions=True)
