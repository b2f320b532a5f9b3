"""Connection state recovery with the official socket.io-client (npm): a client that opted in and
drops comes back with its socket id, its rooms and every push it missed, in order, none twice;
and the reference implementation's known failures do not happen here."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from server.application.services import SERVICES
from server.fanout.pushes import PUSHES
from server.fanout.rooms import market_room, user_room
from tests.betting_fixtures import insert_market
from tests.conftest import ServerFactory
from tests.e2e.test_proxy_cluster import (  # noqa: F401 - fixtures: nginx before two nodes
    cluster,
    connected_sockets,
    needs_nginx,
    nginx_dir,
    proxy,
    wait_until_ready,
)
from tests.nodes import ServerNode
from tests.official_client import OfficialClient, official_client
from tests.players import Player


def ws_url(base: str) -> str:
    return base


async def signed_up(base: str, http: aiohttp.ClientSession) -> Player:
    return await Player(base, http).signup()


async def pushes_flushed(app: web.Application) -> None:
    """Give the batched publisher and the channel a moment (they run every 10 ms)."""
    for _ in range(50):
        await asyncio.sleep(0.02)
        if not app[PUSHES]._pending and not app[PUSHES]._inbox:
            return


def offsets(client: OfficialClient, event: str) -> list[str]:
    return [args[-1] for args in client.events(event)]


async def test_a_dropped_client_gets_its_socket_rooms_and_missed_pushes_back_in_order(
    server: tuple[str, web.Application], http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    base, app = server
    player = await signed_up(base, http)
    market = await insert_market(db)
    async with official_client() as client:
        first = await client.connect(base, {"token": player.access_token, "recover": True})
        assert first["recovered"] is False
        await client.call("market:subscribe", {"marketIds": [str(market)]})
        pushes = app[PUSHES]
        # One push before the drop, so the client has an offset.
        pushes.emit("balance", {"balance": 1, "reason": "bet"}, user_room(player.user_id))
        await client.next("event", event="balance")
        await client.send("drop")
        await client.next("disconnect")
        await asyncio.sleep(0.2)  # the server sees the transport close
        for n in range(2, 6):
            pushes.emit("balance", {"balance": n, "reason": "bet"}, user_room(player.user_id))
        for n in range(5):
            pushes.emit(
                "odds",
                {"marketId": str(market), "thisOdds": 0.1 * (n + 1), "thatOdds": 0.5, "at": n},
                market_room(market),
            )
        await pushes_flushed(app)
        await client.send("reconnect")
        again = await client.next("connect")
        assert again["recovered"] is True and again["id"] == first["id"]
        # Live again: a newer push comes after every missed one.
        pushes.emit("balance", {"balance": 6, "reason": "bet"}, user_room(player.user_id))
        for _ in range(5):
            await client.next("event", event="balance")
        balances = [args[0]["balance"] for args in client.events("balance")]
        assert balances == [1, 2, 3, 4, 5, 6]
        # The market room: only its latest state, not every tick, and the room is joined again.
        odds = client.events("odds")
        assert [args[0]["thisOdds"] for args in odds] == [0.5]
        seen = [int(offset) for offset in offsets(client, "balance") + offsets(client, "odds")]
        assert len(seen) == len(set(seen))
        pushes.emit(
            "odds",
            {"marketId": str(market), "thisOdds": 0.9, "thatOdds": 0.1, "at": 9},
            market_room(market),
        )
        tick = await client.next("event", event="odds")
        assert tick["args"][0]["thisOdds"] == 0.9
        order = [
            int(item["args"][-1])
            for item in client.seen
            if item["type"] == "event" and item["event"] in ("balance", "odds")
        ]
        assert order == sorted(order)


async def test_a_client_that_had_received_nothing_before_the_drop_is_recovered(
    server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> None:
    base, app = server
    player = await signed_up(base, http)
    async with official_client() as client:
        first = await client.connect(base, {"token": player.access_token, "recover": True})
        await client.send("drop")
        await client.next("disconnect")
        await asyncio.sleep(0.2)
        app[PUSHES].emit("balance", {"balance": 7, "reason": "payout"}, user_room(player.user_id))
        await pushes_flushed(app)
        await client.send("reconnect")
        again = await client.next("connect")
        assert (again["recovered"], again["id"]) == (True, first["id"])
        missed = await client.next("event", event="balance")
        assert missed["args"][0]["balance"] == 7


async def test_three_recoveries_in_a_row(
    server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> None:
    base, app = server
    player = await signed_up(base, http)
    async with official_client() as client:
        first = await client.connect(base, {"token": player.access_token, "recover": True})
        for n in range(3):
            await client.send("drop")
            await client.next("disconnect")
            await asyncio.sleep(0.1)
            app[PUSHES].emit("balance", {"balance": n, "reason": "bet"}, user_room(player.user_id))
            await pushes_flushed(app)
            await client.send("reconnect")
            again = await client.next("connect")
            assert (again["recovered"], again["id"]) == (True, first["id"])
            await client.next("event", event="balance")
        assert [args[0]["balance"] for args in client.events("balance")] == [0, 1, 2]


async def test_without_opting_in_nothing_changes_on_the_wire(
    server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> None:
    base, app = server
    player = await signed_up(base, http)
    async with official_client() as client:
        first = await client.connect(base, {"token": player.access_token})
        app[PUSHES].emit("balance", {"balance": 3, "reason": "bet"}, user_room(player.user_id))
        event = await client.next("event", event="balance")
        assert event["args"] == [{"balance": 3, "reason": "bet"}]  # no trailing offset
        await client.send("drop")
        await client.next("disconnect")
        await client.send("reconnect")
        again = await client.next("connect")
        assert again["recovered"] is False and again["id"] != first["id"]


async def test_another_users_pid_yields_a_fresh_session_and_none_of_their_pushes(
    server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> None:
    base, app = server
    victim, thief = await signed_up(base, http), await signed_up(base, http)
    async with official_client() as victim_client, official_client() as thief_client:
        await victim_client.connect(base, {"token": victim.access_token, "recover": True})
        # The victim's pid, as the server answered it: read from a fresh client's point of view
        # by asking the stored session through the app.
        pid = next(s.pid for s in app_sessions(app) if str(s.user_id) == victim.user_id)
        await victim_client.send("drop")
        await victim_client.next("disconnect")
        app[PUSHES].emit("balance", {"balance": 99, "reason": "payout"}, user_room(victim.user_id))
        await pushes_flushed(app)
        stolen = await thief_client.connect(
            base, {"token": thief.access_token, "recover": True, "pid": pid, "offset": "0"}
        )
        assert stolen.get("recovered") is False, stolen
        await asyncio.sleep(0.3)
        assert thief_client.events("balance") == []
        # The victim still gets their session back.
        await victim_client.send("reconnect")
        back = await victim_client.next("connect")
        assert back["recovered"] is True
        assert (await victim_client.next("event", event="balance"))["args"][0]["balance"] == 99


def app_sessions(app: web.Application) -> list[Any]:
    from server.sockets.sessions import SESSIONS

    return app[SESSIONS].all()


async def test_a_reconnect_after_the_window_is_fresh_and_sync_still_works(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, app = await start_server(recovery_window_s=1)
    player = await signed_up(base, http)
    async with official_client() as client:
        first = await client.connect(base, {"token": player.access_token, "recover": True})
        await client.send("drop")
        await client.next("disconnect")
        await asyncio.sleep(2.5)
        await client.send("reconnect")
        again = await client.next("connect")
        assert again["recovered"] is False and again["id"] != first["id"]
        state = await client.call("sync")
        assert state["ok"] is True and state["data"]["user"]["id"] == player.user_id
    assert app[SERVICES] is not None


async def test_a_client_recovers_on_the_other_node(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    first_url, first_app = await start_server()
    second_url, _ = await start_server()
    player = await signed_up(first_url, http)
    async with official_client() as client:
        first = await client.connect(first_url, {"token": player.access_token, "recover": True})
        first_app[PUSHES].emit(
            "balance", {"balance": 1, "reason": "bet"}, user_room(player.user_id)
        )
        await client.next("event", event="balance")
        await client.send("drop")
        await client.next("disconnect")
        await asyncio.sleep(0.2)
        first_app[PUSHES].emit(
            "balance", {"balance": 2, "reason": "bet"}, user_room(player.user_id)
        )
        await pushes_flushed(first_app)
        await client.send("reconnect", url=second_url)
        again = await client.next("connect")
        assert (again["recovered"], again["id"]) == (True, first["id"])
        assert (await client.next("event", event="balance"))["args"][0]["balance"] == 2


async def test_recovery_after_a_long_connection_and_after_the_server_timed_the_transport_out(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    # Pings every 0.1 s: two seconds of connection are twenty ping rounds, as ten minutes would
    # be at a 30 s interval; then a gap longer than the ping interval and timeout together.
    base, app = await start_server(socket_ping_interval_s=0.1, socket_ping_timeout_s=0.2)
    player = await signed_up(base, http)
    async with official_client() as client:
        first = await client.connect(base, {"token": player.access_token, "recover": True})
        await asyncio.sleep(2.0)
        await client.send("drop")
        await client.next("disconnect")
        app[PUSHES].emit("balance", {"balance": 5, "reason": "reward"}, user_room(player.user_id))
        await asyncio.sleep(1.0)
        await client.send("reconnect")
        again = await client.next("connect")
        assert (again["recovered"], again["id"]) == (True, first["id"])
        assert (await client.next("event", event="balance"))["args"][0]["balance"] == 5


@needs_nginx
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_through_nginx_a_client_recovers_on_the_other_node_after_sigterm_then_kill_9(
    cluster: list[ServerNode],  # noqa: F811 - the fixture imported above
    proxy: Any,  # noqa: F811
    db: asyncpg.Pool,
    http: aiohttp.ClientSession,
) -> None:
    market = str(await insert_market(db))
    url = proxy([node.port for node in cluster])
    await wait_until_ready(http, url)
    player = await signed_up(url, http)
    balances: list[float] = []

    async def bet_elsewhere(node: ServerNode, n: int) -> None:
        """The same player bets from another socket, straight to `node`: a balance push each,
        to every socket of the player but the betting one."""
        other = Player(node.url, http)
        other.user, other.access_token = player.user, player.access_token
        await other.connect()
        for k in range(n):
            placed = await other.ok(
                "bet:place",
                {
                    "marketId": market,
                    "side": "this",
                    "amount": 10,
                    "clientBetId": f"{node.port}-{k}-{len(balances)}",
                },
            )
            balances.append(placed["balance"])
        await other.close()

    async with official_client() as client:
        first = await client.connect(url, {"token": player.access_token, "recover": True})
        counts = [await connected_sockets(http, node) for node in cluster]
        holder = cluster[counts.index(1)]
        spare = cluster[1 - counts.index(1)]
        await bet_elsewhere(spare, 1)
        await client.next("event", event="balance")

        # A rolling restart: the node holding the socket drains (SIGTERM).
        await client.send("drop")  # the client goes quiet first, then its node goes away
        await client.next("disconnect")
        holder.stop()
        await bet_elsewhere(spare, 2)
        await client.send("reconnect")
        again = await client.next("connect")
        assert (again["recovered"], again["id"]) == (True, first["id"])
        for _ in range(2):
            await client.next("event", event="balance")

        # Now the node holding it dies without a word (kill -9); the other one is back.
        await holder.start()
        await client.send("drop")
        await client.next("disconnect")
        spare.kill()
        await bet_elsewhere(holder, 2)
        await client.send("reconnect")
        third = await client.next("connect")
        assert (third["recovered"], third["id"]) == (True, first["id"])
        for _ in range(2):
            await client.next("event", event="balance")
        got = [args[0]["balance"] for args in client.events("balance")]
        assert got == balances, (got, balances)


async def test_more_missed_personal_pushes_than_kept_yields_a_fresh_session(
    server: tuple[str, web.Application],
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from storage import recovery

    monkeypatch.setattr(recovery, "PERSONAL_KEEP", 3)
    base, app = server
    player = await signed_up(base, http)
    async with official_client() as client:
        first = await client.connect(base, {"token": player.access_token, "recover": True})
        await client.send("drop")
        await client.next("disconnect")
        await asyncio.sleep(0.2)
        for n in range(5):  # two more than kept: the oldest two are gone
            app[PUSHES].emit("balance", {"balance": n, "reason": "bet"}, user_room(player.user_id))
            await pushes_flushed(app)
        await client.send("reconnect")
        again = await client.next("connect")
        assert again["recovered"] is False and again["id"] != first["id"]
        await asyncio.sleep(0.3)
        assert client.events("balance") == []  # nothing half-replayed; `sync` gives the state


async def test_a_recovery_with_an_expired_token_is_refused_like_any_handshake(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, app = await start_server(jwt_access_expires_in=2)
    player = await signed_up(base, http)
    async with official_client() as client:
        await client.connect(base, {"token": player.access_token, "recover": True})
        await client.send("drop")
        await client.next("disconnect")
        app[PUSHES].emit("balance", {"balance": 9, "reason": "bet"}, user_room(player.user_id))
        await asyncio.sleep(2.5)  # the token the client holds has expired meanwhile
        await client.send("reconnect")
        refused = await client.next("connect_error")
        assert refused["data"]["code"] == "TOKEN_EXPIRED"
        assert client.events("balance") == []


@needs_nginx
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_through_nginx_every_reference_failure_case_recovers(
    service_urls: tuple[str, str],
    tmp_path: Path,
    proxy: Any,  # noqa: F811
    db: asyncpg.Pool,
    http: aiohttp.ClientSession,
) -> None:
    """Two real nodes behind nginx, with a short window and fast heartbeats: a drop before any
    event, three recoveries in a row, a connection that lived twenty ping rounds and came back
    after its transport timed out, then a reconnect after the window (fresh, and sync works)."""
    env = {
        "recovery_window_s": 3,
        "socket_ping_interval_s": 0.1,
        "socket_ping_timeout_s": 0.2,
    }
    nodes = [ServerNode(*service_urls, tmp_path, **env) for _ in range(2)]
    try:
        for node in nodes:
            await node.start()
        market = str(await insert_market(db))
        url = proxy([node.port for node in nodes])
        await wait_until_ready(http, url)
        player = await signed_up(url, http)
        placed = 0

        async def balance_push_while_away() -> float:
            """The player bets from another socket, straight to a node: a balance push."""
            nonlocal placed
            placed += 1
            other = Player(nodes[placed % 2].url, http)
            other.user, other.access_token = player.user, player.access_token
            await other.connect()
            answer = await other.ok(
                "bet:place",
                {"marketId": market, "side": "this", "amount": 10, "clientBetId": f"w{placed}"},
            )
            await other.close()
            return float(answer["balance"])

        async with official_client() as client:
            first = await client.connect(url, {"token": player.access_token, "recover": True})
            # No event received before the first drop; then twice more, in a row.
            for _ in range(3):
                await client.send("drop")
                await client.next("disconnect")
                expected = await balance_push_while_away()
                await client.send("reconnect")
                again = await client.next("connect")
                assert (again["recovered"], again["id"]) == (True, first["id"])
                got = await client.next("event", event="balance")
                assert got["args"][0]["balance"] == expected
            # Twenty ping rounds, then a gap longer than the ping interval and timeout together.
            await asyncio.sleep(2.0)
            await client.send("drop")
            await client.next("disconnect")
            expected = await balance_push_while_away()
            await asyncio.sleep(0.5)
            await client.send("reconnect")
            again = await client.next("connect")
            assert (again["recovered"], again["id"]) == (True, first["id"])
            assert (await client.next("event", event="balance"))["args"][0]["balance"] == expected
            # Past the window: a fresh session, and sync answers the state.
            await client.send("drop")
            await client.next("disconnect")
            await asyncio.sleep(4.0)
            await client.send("reconnect")
            late = await client.next("connect")
            assert late["recovered"] is False and late["id"] != first["id"]
            state = await client.call("sync")
            assert state["ok"] is True and state["data"]["user"]["id"] == player.user_id
    finally:
        for node in nodes:
            node.stop()
