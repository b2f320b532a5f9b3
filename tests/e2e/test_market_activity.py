"""Market activity over real sockets: `market:activity` pages a market's bets newest first with
nothing that identifies a bet or a player's money, subscribers on every node get new bets in a
few coalesced batches, a hidden name shows as "anonymous", and bad input changes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import msgspec
from aiohttp import web

from game.bets import BetRequest
from game.clock import parse_iso
from game.markets import Side
from server.application.services import SERVICES
from server.wire import replies
from server.wire.views import encode_cursor
from storage import bets
from storage.bets import PlacedBet
from tests.betting_fixtures import RULES, bet, insert_market
from tests.conftest import PlayerFactory, ServerFactory
from tests.players import Player

ITEM_FIELDS = {"username", "side", "amount", "odds", "at"}


def request(player: Player, market: uuid.UUID, amount: str, side: str = "this") -> BetRequest:
    return BetRequest(
        user_id=uuid.UUID(player.user_id),
        market_id=market,
        client_bet_id=uuid.uuid4().hex,
        side=Side(side),
        amount=Decimal(amount),
        expected_odds=None,
        max_slippage=Decimal(0),
    )


def credits(value: Any) -> Decimal:
    """A credit field as the client parsed it (a JSON number), back to the exact decimal."""
    return Decimal(str(value)).quantize(Decimal("0.01"))


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def place(player: Player, market: uuid.UUID, amount: Decimal, side: str = "this") -> None:
    await player.ok(
        "bet:place",
        {
            "marketId": str(market),
            "side": side,
            "amount": str(amount),
            "clientBetId": uuid.uuid4().hex,
        },
    )


async def activity_pushes(player: Player, count: int, wait_s: float = 10) -> list[Any]:
    """The `market:activity` pushes the player gets until they carried `count` bets."""
    pushes: list[Any] = []
    while sum(len(push["bets"]) for push in pushes) < count:
        pushes.append(await player.next("market:activity", wait_s))
    return pushes


async def test_market_activity_pages_newest_first_without_ids_or_balances(
    new_player: PlayerFactory, db: asyncpg.Pool
) -> None:
    viewer, alice, bob = await new_player(), await new_player(), await new_player()
    market = await insert_market(db)
    other_market = await insert_market(db)
    # One batch commits its bets with one time, as a busy market does; then two on their own.
    batch = [request(alice if n % 2 else bob, market, f"1{n}.50") for n in range(5)]
    placed = await bets.place_bets(db, batch, RULES)
    assert all(isinstance(answer, PlacedBet) and answer.created for answer in placed)
    await bet(db, uuid.UUID(alice.user_id), market, amount="20.00")
    await bet(db, uuid.UUID(bob.user_id), market, side="that", amount="21.00")
    await bet(db, uuid.UUID(alice.user_id), other_market, amount="30.00")
    rows = await db.fetch(
        "SELECT b.id, b.amount, b.side, u.username FROM bets b JOIN users u ON u.id = b.user_id"
        " WHERE b.market_id = $1 ORDER BY b.placed_at DESC, b.id DESC",
        market,
    )

    seen: list[dict[str, Any]] = []
    cursors: list[str] = []
    cursor = None
    for _ in range(10):
        payload = {"marketId": str(market), "limit": 2}
        page = await viewer.ok(
            "market:activity", {**payload, "cursor": cursor} if cursor else payload
        )
        msgspec.convert(page, replies.ActivityPage, strict=False)
        seen += page["bets"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
        cursors.append(cursor)
    assert len(cursors) == 3  # 7 bets, 2 a page
    assert [(b["username"], b["side"], credits(b["amount"])) for b in seen] == [
        (row["username"], row["side"], row["amount"]) for row in rows
    ]
    assert all(set(item) == ITEM_FIELDS for item in seen)
    assert all(item["odds"] == {"this": 0.4, "that": 0.6}[item["side"]] for item in seen)
    times = [parse_iso(item["at"]) for item in seen]
    assert times == sorted(times, reverse=True)

    whole = await viewer.ok("market:activity", {"marketId": str(market)})
    assert whole == {"bets": seen, "nextCursor": None}
    # Nothing in the answers or their cursors names a bet or a player, or tells a balance.
    secrets = [str(row["id"]) for row in rows] + [alice.user_id, bob.user_id]
    text = json.dumps(whole) + "".join(
        base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)).decode() for c in cursors
    )
    assert not [secret for secret in secrets if secret in text]
    assert "balance" not in text

    empty = await viewer.ok("market:activity", {"marketId": str(await insert_market(db))})
    assert empty == {"bets": [], "nextCursor": None}


async def test_a_burst_of_bets_reaches_a_subscriber_on_the_other_node_in_a_few_batches(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    interval_ms = 500
    options = {
        "rate_limit_enabled": False,
        "market_activity_push_interval_ms": interval_ms,
        "market_activity_push_max_bets": 1000,
    }
    betting_node, _ = await start_server(**options)
    watching_node, _ = await start_server(**options)
    market = await insert_market(db)
    watcher = await Player(watching_node, http).signup()
    await watcher.connect()
    await watcher.ok("market:subscribe", {"marketIds": [str(market)]})
    players = [await Player(betting_node, http).signup() for _ in range(5)]
    for player in players:
        await player.connect()
    amounts = [Decimal(1000 + n).scaleb(-2) for n in range(200)]  # 10.00, 10.01, ... each once

    async def bet_all(player: Player, mine: list[Decimal]) -> None:
        for amount in mine:
            await place(player, market, amount)
            await asyncio.sleep(0.03)  # bets keep coming for a few intervals

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(
        *(bet_all(player, amounts[n :: len(players)]) for n, player in enumerate(players))
    )
    took_ms = (loop.time() - started) * 1000
    pushes = await activity_pushes(watcher, len(amounts))

    for push in pushes:
        msgspec.convert(push, replies.ActivityPush, strict=False)
        assert push["marketId"] == str(market) and push["omitted"] == 0
        times = [parse_iso(item["at"]) for item in push["bets"]]
        assert times == sorted(times, reverse=True)
    seen = [item for push in pushes for item in push["bets"]]
    assert sorted(credits(item["amount"]) for item in seen) == amounts  # every bet, once
    assert {item["username"] for item in seen} == {player.username for player in players}
    # Live while the bets came, coalesced: one batch per interval, far fewer pushes than bets.
    assert 2 <= len(pushes) <= took_ms / interval_ms + 3, (len(pushes), took_ms)
    assert len(pushes) * 10 <= len(amounts), len(pushes)
    await asyncio.sleep(2 * interval_ms / 1000)
    assert watcher.received["market:activity"].empty()  # nothing twice
    for player in [*players, watcher]:
        await player.close()


async def test_a_hidden_name_shows_as_anonymous_in_pages_and_pushes(
    server: tuple[str, web.Application], new_player: PlayerFactory, db: asyncpg.Pool
) -> None:
    market = await insert_market(db)
    shy, shown, watcher = (
        await new_player(unique("shy")),
        await new_player(unique("shown")),
        await new_player(),
    )
    await watcher.ok("market:subscribe", {"marketIds": [str(market)]})
    answer = await shy.ok("account:update", {"anonymous": True})
    msgspec.convert(answer, replies.UserReply, strict=False)
    assert answer["user"]["username"] == shy.username and answer["user"]["anonymous"] is True
    assert (await shy.ok("sync"))["user"]["anonymous"] is True
    status, body, _ = await shy.post(
        "/auth/login", {"username": shy.username, "password": shy.password}
    )
    assert status == 200 and body["user"]["anonymous"] is True

    await place(shy, market, Decimal("11.00"))
    await place(shown, market, Decimal("12.00"), side="that")
    pushes = await activity_pushes(watcher, 2)
    names = {credits(b["amount"]): b["username"] for push in pushes for b in push["bets"]}
    assert names == {Decimal("11.00"): "anonymous", Decimal("12.00"): shown.username}
    page = await watcher.ok("market:activity", {"marketId": str(market)})
    assert {credits(b["amount"]): b["username"] for b in page["bets"]} == names
    assert shy.username not in json.dumps([pushes, page])

    # Shown again: for the bets placed while hidden too.
    again = await shy.ok("account:update", {"anonymous": False})
    assert again["user"]["anonymous"] is False
    page = await watcher.ok("market:activity", {"marketId": str(market)})
    assert {b["username"] for b in page["bets"]} == {shy.username, shown.username}


async def test_bad_activity_and_account_input_is_refused_and_changes_nothing(
    new_player: PlayerFactory, db: asyncpg.Pool
) -> None:
    player = await new_player()
    market = await insert_market(db)
    await bet(db, uuid.UUID(player.user_id), market, amount="15.00")
    before = await db.fetchrow("SELECT * FROM users WHERE id = $1", uuid.UUID(player.user_id))
    bets_before = await db.fetchval("SELECT count(*) FROM bets")

    unknown = await player.error("market:activity", {"marketId": "7" * 32})
    assert unknown["code"] == "MARKET_NOT_FOUND"
    now = datetime.now(UTC).isoformat()
    for cursor in [
        encode_cursor(now, -1),
        encode_cursor(now, 10**9),
        encode_cursor(now, "01"),
        encode_cursor("2026-01-01T01:00:00+01:00", 0),  # the same instant, not as UTC
        encode_cursor(now, uuid.uuid4()),  # a bets:list cursor
        encode_cursor(now),
        encode_cursor(now, 0) + "=",
        "not a cursor",
    ]:
        refused = await player.error("market:activity", {"marketId": str(market), "cursor": cursor})
        assert refused["code"] == "VALIDATION_ERROR", (cursor, refused)
        assert refused["details"]["field"] == "cursor", (cursor, refused)
    for payload, field in [
        ({"marketId": str(market), "limit": 0}, "limit"),
        ({"marketId": str(market), "limit": 101}, "limit"),
        ({"marketId": str(market), "limit": "5"}, "limit"),
        ({"marketId": "market-1"}, "marketId"),
        ({}, "marketId"),
        ({"marketId": str(market), "userId": player.user_id}, "userId"),
    ]:
        refused = await player.error("market:activity", payload)
        assert refused["code"] == "VALIDATION_ERROR", (payload, refused)
        assert refused["details"]["field"] == field, (payload, refused)
    for payload, field in [
        ({}, "anonymous"),
        ({"anonymous": "true"}, "anonymous"),
        ({"anonymous": 1}, "anonymous"),
        ({"anonymous": None}, "anonymous"),
        ({"anonymous": True, "username": "someone_else"}, "username"),
    ]:
        refused = await player.error("account:update", payload)
        assert refused["code"] == "VALIDATION_ERROR", (payload, refused)
        assert refused["details"]["field"] == field, (payload, refused)

    after = await db.fetchrow("SELECT * FROM users WHERE id = $1", uuid.UUID(player.user_id))
    assert dict(after) == dict(before) and after["anonymous"] is False
    assert await db.fetchval("SELECT count(*) FROM bets") == bets_before
    page = await player.ok("market:activity", {"marketId": str(market)})
    assert [b["username"] for b in page["bets"]] == [player.username]


async def test_with_pushes_off_bets_are_not_kept_and_pages_still_answer(
    start_server: ServerFactory, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    base, app = await start_server(market_activity_push_interval_ms=0)
    assert app[SERVICES].batcher.on_placed is None
    market = await insert_market(db)
    player = await Player(base, http).signup()
    await player.connect()
    await player.ok("market:subscribe", {"marketIds": [str(market)]})
    await place(player, market, Decimal("10.00"))
    await asyncio.sleep(1)
    assert player.received["market:activity"].empty()
    page = await player.ok("market:activity", {"marketId": str(market)})
    assert [b["username"] for b in page["bets"]] == [player.username]
    await player.close()
