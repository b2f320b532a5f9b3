"""The ceiling: a bare python-socketio server on the game's stack (aiohttp, uvloop, orjson) whose
handlers only ack. What the real server reaches is measured against what this one reaches.

`markets:list` and `market:subscribe` answer one made-up market so the same load client (which
looks for markets before it bets) runs unchanged; every other event acks `{"ok": true, "data": {}}`.
Run: python -m bench.echo_server --port 3200
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import socketio
import uvloop
from aiohttp import web

from loadtest.plan import OPERATIONS
from loadtest.system import raise_open_file_limit
from server.wire.codec import OrjsonModule

ECHO_MARKET: dict[str, Any] = {
    "id": "00000000-0000-4000-8000-000000000001",
    "question": "Echo?",
    "thisLabel": "Yes",
    "thatLabel": "No",
    "thisOdds": 0.5,
    "thatOdds": 0.5,
    "oddsUpdatedAt": None,
    "status": "open",
    "endsAt": None,
    "resolvedSide": None,
    "category": None,
    "imageUrl": None,
    "source": "polymarket",
    "sourceId": "echo",
}
EMPTY_ACK: dict[str, Any] = {"ok": True, "data": {}}


def create_echo_app() -> web.Application:
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        json=OrjsonModule,
        cors_allowed_origins=[],
        ping_interval=25,
        ping_timeout=20,
        logger=False,
        engineio_logger=False,
    )

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
        return None

    async def markets(sid: str, data: object = None) -> dict[str, Any]:
        return {
            "ok": True,
            "data": {
                "markets": [ECHO_MARKET],
                "nextCursor": None,
                "serverTime": datetime.now(UTC).isoformat(),
            },
        }

    async def ack(sid: str, data: object = None) -> dict[str, Any]:
        return EMPTY_ACK

    for event in OPERATIONS.values():
        sio.on(event, markets if event == "markets:list" else ack)
    sio.on("market:subscribe", markets)
    app = web.Application()
    sio.attach(app)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description="bare python-socketio ack server (the benchmark ceiling)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3200)
    args = parser.parse_args()
    raise_open_file_limit()
    uvloop.install()
    web.run_app(
        create_echo_app(), host=args.host, port=args.port, print=None, access_log=None, backlog=2048
    )


if __name__ == "__main__":
    main()
