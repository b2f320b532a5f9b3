"""Presence across nodes: a market's watchers and the players online, each counted once per user
on every node, in the market answers and `presence:get`, pushed to the market's room when they
change (at most once an interval), and gone within the expiry when a node dies."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
import msgspec
import pytest
import redis.asyncio as redis
import socketio

from server.http import apidocs
from server.wire import replies
from tests.betting_fixtures import insert_market
from tests.conftest import ServerFactory
from tests.feed_fixtures import eventually
from tests.nodes import ServerNode
from tests.official_client import official_client
from tests.players import Player

INTERVAL_S: Final = 0.2


async def two_nodes(start_server: ServerFactory, **settings: Any) -> tuple[str, str]:
    first, _ = await start_server(presence_interval_s=INTERVAL_S, **settings)
    second, _ = await start_server(presence_interval_s=INTERVAL_S, **settings)
    return first, second


async def signed_up(base: str, http: aiohttp.ClientSession) -> Player:
    player = await Player(base, http).signup()
    await player.connect()
    return player


async def also_on(player: Player, base: str, http: aiohttp.ClientSession) -> Player:
    """The same player with a socket on another node."""
    there = Player(base, http)
    there.user, there.username = player.user, player.username
    there.access_token, there.refresh_token = player.access_token, player.refresh_token
    await there.connect()
    return there


async def watchers(player: Player, market: uuid.UUID) -> int:
    answer = await player.ok("market:get", {"marketId": str(market)})
    return int(answer["market"]["watchers"])


async def subscribe(player: Player, market: uuid.UUID) -> int:
    answer = await player.ok("market:subscribe", {"marketIds": [str(market)]})
    return int(answer["markets"][0]["watchers"])


async def settles_at(read: Any, expected: int, *, within_s: float = 5) -> None:
    """`read()` reaches `expected` within the time, and stays there for two more intervals."""

    async def reached() -> bool:
        return bool(await read() == expected)

    await eventually(reached, attempts=int(within_s / 0.05), pause_s=0.05)
    await asyncio.sleep(2 * INTERVAL_S)
    assert await read() == expected


async def test_a_player_on_two_nodes_counts_once_and_two_players_count_two(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    first, second = await two_nodes(start_server)
    market = await insert_market(db)
    alice = await signed_up(first, http)
    alice_there = await also_on(alice, second, http)
    bob = await signed_up(second, http)

    assert await subscribe(alice, market) == 1  # counted at once, before any write
    await settles_at(lambda: watchers(bob, market), 1)
    assert await subscribe(alice_there, market) == 1
    await settles_at(lambda: watchers(bob, market), 1)
    # Two sockets of one player on one node are one watcher too.
    alice_again = await alice.connect()
    await alice.call("market:subscribe", {"marketIds": [str(market)]}, socket=alice_again)
    await settles_at(lambda: watchers(bob, market), 1)

    assert await subscribe(bob, market) == 2
    await settles_at(lambda: watchers(alice, market), 2)

    async def online() -> int:
        return int((await alice.ok("presence:get"))["online"])

    await settles_at(online, 2)
    carol = await signed_up(first, http)
    await settles_at(online, 3)
    await carol.close()
    await settles_at(online, 2)
    for player in (alice, alice_there, bob):
        await player.close()


async def test_the_answers_and_the_push_have_their_documented_shapes(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    first, second = await two_nodes(start_server)
    market = await insert_market(db)
    alice = await signed_up(first, http)
    bob = await signed_up(second, http)
    answer = await alice.ok("market:subscribe", {"marketIds": [str(market)]})
    msgspec.convert(answer, apidocs.ACKS["market:subscribe"], strict=False)
    await bob.ok("market:subscribe", {"marketIds": [str(market)]})
    push = await alice.next("market:watchers")
    msgspec.convert(push, replies.WatchersPush, strict=False)
    assert push["marketId"] == str(market)
    answer = await alice.ok("market:get", {"marketId": str(market)})
    msgspec.convert(answer, apidocs.ACKS["market:get"], strict=False)
    msgspec.convert(await alice.ok("presence:get"), apidocs.ACKS["presence:get"], strict=False)
    # Other market views do not carry the count.
    page = await alice.ok("markets:list", {"status": "all"})
    assert "watchers" not in page["markets"][0]
    await alice.close()
    await bob.close()


async def test_a_change_is_pushed_to_the_room_and_not_more_than_once_an_interval(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    first, second = await two_nodes(start_server)
    market = await insert_market(db)
    alice = await signed_up(first, http)
    assert await subscribe(alice, market) == 1
    comers = [await signed_up(base, http) for base in (first, second, first, second)]
    arrivals: list[tuple[float, int]] = []

    async def listen() -> None:
        while True:
            push = await alice.next("market:watchers", wait_s=30)
            assert push["marketId"] == str(market)
            arrivals.append((time.monotonic(), push["watchers"]))

    listener = asyncio.ensure_future(listen())
    try:
        # The count moves every 40 ms for two seconds, on both nodes.
        watching: set[int] = set()
        for step in range(50):
            comer = step % len(comers)
            if (step // len(comers)) % 2 == 0:
                await comers[comer].ok("market:subscribe", {"marketIds": [str(market)]})
                watching.add(comer)
            else:
                await comers[comer].ok("market:unsubscribe", {"marketIds": [str(market)]})
                watching.discard(comer)
            await asyncio.sleep(0.04)
        expected = 1 + len(watching)
        await settles_at(lambda: watchers(alice, market), expected)
        await asyncio.sleep(3 * INTERVAL_S)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    assert len(arrivals) >= 3, arrivals
    gaps = [later[0] - earlier[0] for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    # Redis's clock spaces the pushes; delivery may shift one of them by a few milliseconds.
    assert min(gaps) >= INTERVAL_S - 0.05, gaps
    assert arrivals[-1][1] == expected
    for player in (alice, *comers):
        await player.close()


async def test_unsubscribing_and_disconnecting_lower_the_count(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    first, second = await two_nodes(start_server)
    market = await insert_market(db)
    alice = await signed_up(first, http)
    bob = await signed_up(second, http)
    await subscribe(alice, market)
    assert await subscribe(bob, market) in (1, 2)  # alice may not be written yet
    await settles_at(lambda: watchers(alice, market), 2)

    await bob.ok("market:unsubscribe", {"marketIds": [str(market)]})
    assert await watchers(bob, market) == 1  # bob as he is now
    await settles_at(lambda: watchers(alice, market), 1)
    assert (await alice.next("market:watchers"))["watchers"] in (1, 2)

    await subscribe(bob, market)
    await settles_at(lambda: watchers(alice, market), 2)
    await bob.close()
    await settles_at(lambda: watchers(alice, market), 1)

    # One of two subscribed sockets of a player goes: the player still watches.
    extra = await alice.connect()
    await alice.call("market:subscribe", {"marketIds": [str(market)]}, socket=extra)
    await extra.disconnect()
    await settles_at(lambda: watchers(alice, market), 1)
    await alice.close()


async def test_a_client_that_recovers_its_socket_on_the_other_node_still_counts(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    first, second = await two_nodes(start_server)
    market = await insert_market(db)
    alice = await Player(first, http).signup()
    bob = await signed_up(first, http)
    async with official_client() as client:
        await client.connect(first, {"token": alice.access_token, "recover": True})
        await client.call("market:subscribe", {"marketIds": [str(market)]})
        await settles_at(lambda: watchers(bob, market), 1)
        await client.send("drop")
        await client.next("disconnect")
        await settles_at(lambda: watchers(bob, market), 0)
        await client.send("reconnect", url=second)
        again = await client.next("connect")
        assert again["recovered"] is True
        # No new subscription: the recovered one counts, on the node it came back to.
        await settles_at(lambda: watchers(bob, market), 1)
        answer = await client.call("market:get", {"marketId": str(market)})
        assert answer["data"]["market"]["watchers"] == 1
    await bob.close()


@pytest.fixture
async def killable_nodes(
    service_urls: tuple[str, str],
    tmp_path: Path,
    db: asyncpg.Pool,
    redis_client: redis.Redis,
) -> AsyncIterator[list[ServerNode]]:
    nodes = [
        ServerNode(*service_urls, tmp_path, presence_interval_s=NODE_INTERVAL_S) for _ in range(2)
    ]
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        yield nodes
    finally:
        for node in nodes:
            node.stop()


NODE_INTERVAL_S: Final = 0.3


@pytest.mark.timeout(120)
async def test_a_killed_nodes_watchers_and_players_leave_the_counts_within_the_expiry(
    killable_nodes: list[ServerNode], http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    survivor, doomed = killable_nodes
    market = await insert_market(db)
    alice = await signed_up(survivor.url, http)
    bob = await signed_up(doomed.url, http)
    await subscribe(alice, market)
    await subscribe(bob, market)

    async def online() -> int:
        return int((await alice.ok("presence:get"))["online"])

    await settles_at(lambda: watchers(alice, market), 2)
    await settles_at(online, 2)
    while not alice.received["market:watchers"].empty():
        alice.received["market:watchers"].get_nowait()

    doomed.kill()
    killed = time.monotonic()
    await eventually(lambda: _equals(watchers(alice, market), 1), attempts=200, pause_s=0.05)
    gone_after = time.monotonic() - killed
    # The expiry is three intervals; the next count after it comes within one more.
    assert gone_after <= 5 * NODE_INTERVAL_S + 0.5, gone_after
    assert (await alice.next("market:watchers", wait_s=5))["watchers"] == 1
    await settles_at(online, 1)
    await alice.close()
    for client in bob.sockets:
        await _forget(client)


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def _forget(client: socketio.AsyncClient) -> None:
    """A client whose server was killed: stop it without waiting for an answer."""
    with contextlib.suppress(TimeoutError, OSError):
        await asyncio.wait_for(client.disconnect(), 2)
