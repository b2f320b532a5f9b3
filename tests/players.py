"""A test player: REST auth over aiohttp, and a real python-socketio client over a real websocket."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from typing import Any

import aiohttp
import socketio

_names = itertools.count()


def unique_name(prefix: str = "player") -> str:
    return f"{prefix}_{next(_names)}"


class Player:
    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.http = http
        self.username = ""
        self.password = "correct horse battery"
        self.user: dict[str, Any] = {}
        self.access_token = ""
        self.refresh_token = ""
        self.sockets: list[socketio.AsyncClient] = []
        self.received: dict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)

    @property
    def user_id(self) -> str:
        return str(self.user["id"])

    async def post(
        self, path: str, body: object, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.http.post(self.base_url + path, json=body, **kwargs) as response:
            data = await response.json() if response.content_type == "application/json" else None
            return response.status, data, response

    async def signup(self, username: str | None = None) -> Player:
        self.username = username or unique_name()
        status, data, _ = await self.post(
            "/auth/signup", {"username": self.username, "password": self.password}
        )
        assert status == 201, data
        self._take(data)
        return self

    def _take(self, data: dict[str, Any]) -> None:
        self.user = data.get("user", self.user)
        self.access_token = data["accessToken"]
        self.refresh_token = data["refreshToken"]

    async def connect(
        self, *, token: str | None = None, headers: dict[str, str] | None = None
    ) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False, http_session=self.http)

        @client.on("*")
        async def catch_all(event: str, data: Any = None) -> None:
            self.received[event].put_nowait(data)

        await client.connect(
            self.base_url,
            auth={"token": token or self.access_token},
            transports=["websocket"],
            headers=headers or {},
            wait_timeout=10,
        )
        self.sockets.append(client)
        return client

    async def call(
        self, event: str, payload: Any = None, *, socket: socketio.AsyncClient | None = None
    ) -> Any:
        client = socket or self.sockets[0]
        return await client.call(event, {} if payload is None else payload, timeout=15)

    async def ok(self, event: str, payload: Any = None) -> Any:
        answer = await self.call(event, payload)
        assert answer["ok"] is True, answer
        return answer["data"]

    async def error(self, event: str, payload: Any = None) -> dict[str, Any]:
        answer = await self.call(event, payload)
        assert answer["ok"] is False, answer
        return answer["error"]  # type: ignore[no-any-return]

    async def next(self, event: str, wait_s: float = 10) -> Any:
        return await asyncio.wait_for(self.received[event].get(), wait_s)

    async def close(self) -> None:
        for client in self.sockets:
            if client.connected:
                await client.disconnect()
        self.sockets.clear()
