"""The stream bench's listening socket (bench/watch_socket.py) against a real server: it signs
in, calls, inflates compressed frames, gets the pushes of its room, answers Engine.IO pings so the
server keeps it, says why when it is refused, and times reads by the kernel when asked."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
import pytest

from bench.watch_socket import WatchRefused, WatchSocket, arrival_time, open_watchers
from tests.betting_fixtures import insert_market
from tests.conftest import ServerFactory
from tests.feed_fixtures import eventually
from tests.players import Player


async def test_a_watch_socket_calls_hears_its_room_and_stays_through_pings(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    markets = [await insert_market(db) for _ in range(12)]
    base, _ = await start_server(
        presence_interval_s=0.1, socket_ping_interval_s=0.2, socket_ping_timeout_s=0.3
    )
    watcher = await Player(base, http).signup()
    pushes: list[tuple[str, Any]] = []
    socket = WatchSocket(lambda event, data: pushes.append((event, data)))
    await socket.open(base, watcher.access_token, 10)
    try:
        # A page of markets is larger than the server's compression threshold: it arrives
        # deflated, and reads as the same answer the official client gets.
        listed = await socket.call("markets:list", {"status": "open", "limit": 12}, 10)
        assert listed["ok"] and len(listed["data"]["markets"]) == 12
        assert socket.compressed_frames >= 1

        subscribed = await socket.call("market:subscribe", {"marketIds": [str(markets[0])]}, 10)
        assert subscribed["ok"] and subscribed["data"]["markets"][0]["watchers"] == 1

        other = await Player(base, http).signup()
        await other.connect()
        await other.ok("market:subscribe", {"marketIds": [str(markets[0])]})

        async def heard_two_watchers() -> bool:
            return ("market:watchers", {"marketId": str(markets[0]), "watchers": 2}) in pushes

        await eventually(heard_two_watchers, attempts=100, pause_s=0.05)
        # Ten ping intervals: a socket that did not answer would be closed after one interval
        # and one timeout.
        await asyncio.sleep(2.0)
        assert not socket.dropped
        again = await socket.call("market:get", {"marketId": str(markets[0])}, 10)
        assert again["ok"] and again["data"]["market"]["watchers"] == 2
    finally:
        await socket.close()
    assert not socket.dropped


async def test_a_watch_socket_with_a_bad_token_is_refused_with_the_reason(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    market = await insert_market(db)
    base, _ = await start_server()
    socket = WatchSocket(lambda event, data: None)
    with pytest.raises(WatchRefused, match="CONNECT refused.*TOKEN_INVALID"):
        await socket.open(base, "not-a-token", 10)
    # Opened in bulk, a refused one is counted by kind and the others are subscribed.
    player = await Player(base, http).signup()
    failures: Counter[str] = Counter()
    plan = [("not-a-token", [str(market)]), (player.access_token, [str(market)])]
    opened = await open_watchers(base, plan, lambda event, data: None, failures, timeout_s=10)
    try:
        assert failures == {"WatchRefused": 1} and len(opened) == 1
        answer = await opened[0].call("market:get", {"marketId": str(market)}, 10)
        assert answer["data"]["market"]["watchers"] == 1
    finally:
        await asyncio.gather(*(watcher.close() for watcher in opened))


async def test_a_stamped_watch_socket_times_pushes_by_the_kernel_and_reads_the_server_close(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    market = await insert_market(db)
    base, _ = await start_server(presence_interval_s=0.1)
    watcher = await Player(base, http).signup()
    heard: list[tuple[str, float, float]] = []  # (event, arrival, when the handler ran)
    socket = WatchSocket(lambda event, data: heard.append((event, arrival_time(), time.time())))
    await socket.open(base, watcher.access_token, 10)
    try:
        subscribed = await socket.call("market:subscribe", {"marketIds": [str(market)]}, 10)
        assert subscribed["ok"]
        socket.stamp_arrivals()
        # Answers and pushes keep coming through the stamped handle.
        again = await socket.call("market:get", {"marketId": str(market)}, 10)
        assert again["ok"]
        before = time.time()
        other = await Player(base, http).signup()
        await other.connect()
        await other.ok("market:subscribe", {"marketIds": [str(market)]})

        async def heard_the_watchers() -> bool:
            return any(event == "market:watchers" for event, _, _ in heard)

        await eventually(heard_the_watchers, attempts=100, pause_s=0.05)
        # The kernel stamped the read when its bytes arrived: after the push was caused, and
        # before the handler ran (the stamp is not the handler's clock).
        stamps = [(arrived, handled) for event, arrived, handled in heard if arrived >= before]
        assert stamps and all(arrived <= handled for arrived, handled in stamps)
        assert socket.stamped_reads >= 2  # the answer and the push came with the kernel's time
        await other.close()

        # A packet the server cannot decode makes it close the connection: its close frame comes
        # through the stamped handle (the transport no longer reads).
        socket._send(b"not a packet")

        async def dropped() -> bool:
            return socket.dropped

        await eventually(dropped, attempts=100, pause_s=0.05)
    finally:
        await socket.close()
