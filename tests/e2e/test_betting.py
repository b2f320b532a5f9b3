"""Real players over real websockets: placing bets, every refusal, settlement pushes, leaderboards."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as redis
from aiohttp import web

from game.markets import Resolution
from server.application.services import SERVICES
from storage import audit
from tests.betting_fixtures import insert_market
from tests.conftest import PlayerFactory
from tests.players import Player

BET_FIELDS = {
    "id",
    "clientBetId",
    "marketId",
    "side",
    "amount",
    "odds",
    "potentialPayout",
    "status",
    "payout",
    "placedAt",
    "settledAt",
}


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


async def place(
    player: Player, market: uuid.UUID, side: str, amount: Any, client_bet_id: str, **extra: Any
) -> Any:
    return await player.ok(
        "bet:place",
        {
            "marketId": str(market),
            "side": side,
            "amount": amount,
            "clientBetId": client_bet_id,
            **extra,
        },
    )


async def history_sum(player: Player) -> Decimal:
    total, cursor = Decimal(0), None
    for _ in range(20):
        page = await player.ok(
            "wallet:history", {"limit": 200, **({"cursor": cursor} if cursor else {})}
        )
        total += sum(dec(entry["amount"]) for entry in page["entries"])
        cursor = page["nextCursor"]
        if cursor is None:
            return total
    raise AssertionError("history never ended")


async def test_a_bet_is_acknowledged_pushed_and_listed(
    new_player: PlayerFactory, db: asyncpg.Pool, http: aiohttp.ClientSession
) -> None:
    player = await new_player()
    # The same user on a second device: it learns the new balance from the push.
    device = Player(player.base_url, http)
    device.access_token = player.access_token
    await device.connect()
    await device.next("session")
    market = await insert_market(db, this_odds="0.4000", that_odds="0.6000")
    placed = await place(player, market, "this", 100, "first-bet", expectedOdds=0.4)
    bet = placed["bet"]
    assert set(bet) == BET_FIELDS and placed["balance"] == 900
    assert (bet["clientBetId"], bet["marketId"], bet["side"], bet["status"]) == (
        "first-bet",
        str(market),
        "this",
        "open",
    )
    assert (bet["amount"], bet["odds"], bet["potentialPayout"]) == (100, 0.4, 250)
    assert bet["payout"] is None and bet["settledAt"] is None and bet["placedAt"].endswith("Z")
    assert await device.next("balance") == {
        "balance": 900,
        "reason": "bet",
        "balanceVersion": placed["balanceVersion"],
    }
    # The socket that placed the bet has the balance in its ack and is spared the push.
    await player.ok("wallet:get")
    assert player.received["balance"].empty()

    # A repeat (even with another payload) is the same bet, and moves nothing.
    again = await place(player, market, "that", 500, "first-bet")
    assert again == placed
    assert await player.ok("wallet:get") == {
        "balance": 900,
        "balanceVersion": placed["balanceVersion"],
        "openStake": 100,
        "openPotentialPayout": 250,
    }
    assert (await player.ok("sync"))["openBets"] == [bet]
    assert (await player.ok("bets:list", {"status": "open"}))["bets"] == [bet]
    assert (await player.ok("bets:list", {"status": "settled"}))["bets"] == []
    await place(player, market, "that", "12.50", "second-bet")
    first_page = await player.ok("bets:list", {"limit": 1})
    assert [b["clientBetId"] for b in first_page["bets"]] == ["second-bet"]
    second_page = await player.ok("bets:list", {"limit": 1, "cursor": first_page["nextCursor"]})
    assert [b["clientBetId"] for b in second_page["bets"]] == ["first-bet"] and second_page[
        "nextCursor"
    ] is None
    assert await history_sum(player) == Decimal("887.50")
    await device.close()


async def test_every_refusal_has_its_code_and_changes_nothing(
    new_player: PlayerFactory, db: asyncpg.Pool
) -> None:
    player = await new_player()
    open_market = await insert_market(db)
    closed = await insert_market(db, status="closed")
    ended = await insert_market(db, ends_in_s=-5)
    stale = await insert_market(db, odds_age_s=600)
    long_shot = await insert_market(db, this_odds="0.0005", that_odds="0.9995")
    base = {"marketId": str(open_market), "side": "this", "amount": 100, "clientBetId": "refused"}
    before = await player.ok("wallet:get")
    cases: list[tuple[dict[str, Any], str, dict[str, Any]]] = [
        ({"side": "both"}, "VALIDATION_ERROR", {"details": {"field": "side"}}),
        ({"clientBetId": "not ok!"}, "VALIDATION_ERROR", {"details": {"field": "clientBetId"}}),
        ({"clientBetId": "x" * 65}, "VALIDATION_ERROR", {"details": {"field": "clientBetId"}}),
        ({"stake": 5}, "VALIDATION_ERROR", {"details": {"field": "stake"}}),
        ({"marketId": "not-a-uuid"}, "VALIDATION_ERROR", {"details": {"field": "marketId"}}),
        ({"expectedOdds": 1.5}, "VALIDATION_ERROR", {"details": {"field": "expectedOdds"}}),
        ({"amount": 9.99}, "BET_AMOUNT_OUT_OF_RANGE", {}),
        ({"amount": "10.005"}, "BET_AMOUNT_OUT_OF_RANGE", {}),
        ({"amount": 10001}, "BET_AMOUNT_OUT_OF_RANGE", {}),
        ({"marketId": str(uuid.uuid4())}, "MARKET_NOT_FOUND", {}),
        ({"marketId": str(closed)}, "MARKET_CLOSED", {}),
        ({"marketId": str(ended)}, "MARKET_CLOSED", {}),
        ({"marketId": str(stale)}, "ODDS_STALE", {}),
        ({"expectedOdds": 0.35, "maxSlippage": 0.02}, "ODDS_CHANGED", {"currentOdds": 0.4}),
        ({"amount": 1000.01}, "INSUFFICIENT_CREDITS", {"balance": 1000}),
        ({"marketId": str(long_shot), "amount": 1000}, "BALANCE_CAP_EXCEEDED", {}),
    ]
    for change, code, extra in cases:
        error = await player.error("bet:place", {**base, **change})
        assert error["code"] == code, (change, error)
        for key, value in extra.items():
            assert error[key] == value, (change, error)
        assert error["message"] and "Traceback" not in error["message"]
    assert (
        await player.ok("wallet:get")
        == before
        == {
            "balance": 1000,
            "balanceVersion": before["balanceVersion"],
            "openStake": 0,
            "openPotentialPayout": 0,
        }
    )
    assert (await player.ok("bets:list"))["bets"] == []
    assert [e["kind"] for e in (await player.ok("wallet:history"))["entries"]] == ["signup_bonus"]
    # The refused clientBetId was never used: it still places a bet.
    assert (await place(player, open_market, "this", 100, "refused"))["balance"] == 900


async def test_settlement_pays_every_resolution_and_moves_the_leaderboard(
    server: tuple[str, web.Application],
    new_player: PlayerFactory,
    db: asyncpg.Pool,
    redis_client: redis.Redis,
) -> None:
    app = server[1]
    alice, bob, carol = [await new_player(name) for name in ("alice", "bob", "carol")]
    watcher = await new_player("watcher")
    markets = {
        name: await insert_market(db, question=name) for name in ("m1", "m2", "m3", "m4", "m5")
    }
    assert (
        await watcher.ok("market:subscribe", {"marketIds": [str(m) for m in markets.values()]})
    )["markets"]
    assert await watcher.ok("leaderboard:subscribe", {"period": "all"}) == {}

    # (player, market, side, amount, expected status, expected payout); odds are this 0.40, that 0.60.
    plan = [
        (alice, "m1", "this", 100, "won", 250),
        (bob, "m1", "that", 60, "lost", 0),
        (alice, "m2", "this", 50, "lost", 0),
        (carol, "m2", "that", 120, "won", 200),
        (bob, "m3", "this", 40, "won", 100),
        (alice, "m4", "that", 30, "split", 25),
        (carol, "m4", "this", 20, "split", 25),
        (bob, "m5", "this", 10, "refunded", 10),
        (carol, "m5", "that", 90, "refunded", 90),
    ]
    expected: dict[str, tuple[str, int]] = {}
    for i, (player, market, side, amount, status, payout) in enumerate(plan):
        placed = await place(player, markets[market], side, amount, f"plan-{i}")
        expected[placed["bet"]["id"]] = (status, payout)
    resolutions = {
        "m1": Resolution.THIS,
        "m2": Resolution.THAT,
        "m3": Resolution.THIS,
        "m4": Resolution.SPLIT,
        "m5": Resolution.CANCELLED,
    }
    for market, resolution in resolutions.items():
        result = await app[SERVICES].settlement.resolve(markets[market], resolution)
        assert result.market is not None and result.complete
        update = await watcher.next("market:update")
        assert update["market"]["id"] == str(markets[market])
        assert update["market"]["status"] == (
            "cancelled" if resolution is Resolution.CANCELLED else "resolved"
        )
    # Settling again announces nothing and pays nothing.
    assert (await app[SERVICES].settlement.resolve(markets["m1"], Resolution.THAT)).market is None

    finals = {"alice": 1095, "bob": 1000, "carol": 1085}
    for player in (alice, bob, carol):
        bets_placed = sum(1 for p, *_ in plan if p is player)
        for _ in range(bets_placed):
            settled = await player.next("bet:settled")
            status, payout = expected[settled["bet"]["id"]]
            assert (settled["bet"]["status"], settled["bet"]["payout"]) == (status, payout)
            assert settled["bet"]["settledAt"].endswith("Z")
        pushes = [
            await player.next("balance")
            for _ in range(sum(1 for p, *_, pay in plan if p is player and pay))
        ]
        assert pushes[-1]["balance"] == finals[player.username]
        assert {push["reason"] for push in pushes} <= {"payout", "refund"}
        wallet = await player.ok("wallet:get")
        assert wallet == {
            "balance": finals[player.username],
            "balanceVersion": pushes[-1]["balanceVersion"],
            "openStake": 0,
            "openPotentialPayout": 0,
        }
        assert await history_sum(player) == finals[player.username]

    board = await bob.ok("leaderboard:get", {"period": "all"})
    ledger_pnl = {
        str(row["user_id"]): row["pnl"]
        for row in await db.fetch(
            "SELECT b.user_id, sum(l.amount) AS pnl FROM bets b JOIN ledger l ON l.bet_id = b.id"
            " WHERE b.status <> 'open' GROUP BY b.user_id"
        )
    }
    assert {entry["userId"]: dec(entry["pnl"]) for entry in board["entries"]} == ledger_pnl
    assert [(e["rank"], e["username"], e["pnl"]) for e in board["entries"]] == [
        (1, "alice", 95),
        (2, "carol", 85),
        (3, "bob", 0),
    ]
    assert board["me"] == {"rank": 3, "pnl": 0} and board["period"] == "all"
    for period in ("week", "day"):
        assert (await alice.ok("leaderboard:get", {"period": period, "limit": 1}))[
            "entries"
        ] == board["entries"][:1]
    assert (await watcher.ok("leaderboard:get"))["me"] is None

    # Pushes are throttled to one a second, and the last state always follows.
    for _ in range(10):
        update = await watcher.next("leaderboard:update")
        assert update["period"] == "all"
        if update["entries"] == board["entries"]:
            break
    else:
        raise AssertionError("the final leaderboard was never pushed")
    async with db.acquire() as connection:
        assert (
            await audit.check_all(connection, redis_client, Decimal("1000000"), datetime.now(UTC))
            == []
        )


async def test_every_balance_names_the_ledger_entry_that_left_it_so_the_newest_wins(
    server: tuple[str, web.Application], new_player: PlayerFactory, db: asyncpg.Pool
) -> None:
    """Settlement pushes leave after their commit and can arrive after the answer to a bet placed
    later: each balance carries the seq of the ledger row that left it, and keeping the highest
    version ends on the balance the ledger holds."""
    app = server[1]
    player = await new_player()
    listener = Player(player.base_url, player.http)
    listener.access_token = player.access_token
    await listener.connect()
    await listener.next("session")
    settled_markets = [await insert_market(db) for _ in range(3)]
    open_market = await insert_market(db)
    seen: list[dict[str, Any]] = []
    for round_ in range(3):
        seen.append(await place(player, settled_markets[round_], "this", 100, f"settled-{round_}"))
        # The settlement and a later bet race: their balances cross on the way.
        resolve = asyncio.ensure_future(
            app[SERVICES].settlement.resolve(settled_markets[round_], Resolution.THIS)
        )
        seen.append(await place(player, open_market, "that", 10, f"after-{round_}"))
        await resolve
    for _ in range(3):
        seen.append(await listener.next("bet:settled"))
    for _ in range(6 + 3):  # the other socket's six bets, three payouts
        seen.append(await listener.next("balance"))
    ledger = {
        row["seq"]: row["balance_after"]
        for row in await db.fetch(
            "SELECT seq, balance_after FROM ledger WHERE user_id = $1", uuid.UUID(player.user_id)
        )
    }
    for message in seen:
        assert ledger[message["balanceVersion"]] == dec(message["balance"]), message
    newest = max(seen, key=lambda message: message["balanceVersion"])
    wallet = await player.ok("wallet:get")
    assert (
        (dec(newest["balance"]), newest["balanceVersion"])
        == (
            dec(wallet["balance"]),
            wallet["balanceVersion"],
        )
        == (ledger[max(ledger)], max(ledger))
    )
    await listener.close()


async def test_leaderboard_rooms_can_be_left(new_player: PlayerFactory) -> None:
    player = await new_player()
    assert await player.ok("leaderboard:subscribe", {"period": "day"}) == {}
    assert await player.ok("leaderboard:unsubscribe", {"period": "day"}) == {}
    assert (await player.error("leaderboard:subscribe", {"period": "year"}))[
        "code"
    ] == "VALIDATION_ERROR"
    empty = await player.ok("leaderboard:get", {"period": "week"})
    assert empty == {"period": "week", "entries": [], "me": None, "total": 0}


async def test_the_board_around_me_and_past_the_top_over_a_socket(
    server: tuple[str, web.Application], new_player: PlayerFactory, db: asyncpg.Pool
) -> None:
    """Seven players who won 15, 30, ... 105: each sees their own rank and PnL, the page around
    them, and any page by rank."""
    app = server[1]
    players = [await new_player(f"ranked{index}") for index in range(7)]
    market = await insert_market(db)
    for index, player in enumerate(players):
        await place(player, market, "this", 10 * (index + 1), f"rank-{index}")
    await app[SERVICES].settlement.resolve(market, Resolution.THIS)
    best_first = players[::-1]

    def row(rank: int) -> tuple[int, str, Any]:
        return rank, best_first[rank - 1].username, 15 * (8 - rank)

    for rank, player in enumerate(best_first, start=1):
        board = await player.ok("leaderboard:get", {"around": "me", "limit": 3})
        first = min(max(rank - 1, 1), 5)
        assert [(e["rank"], e["username"], e["pnl"]) for e in board["entries"]] == [
            row(r) for r in range(first, first + 3)
        ]
        assert board["me"] == {"rank": rank, "pnl": 15 * (8 - rank)} and board["total"] == 7
    paged = await players[0].ok("leaderboard:get", {"offset": 5, "limit": 100, "period": "day"})
    assert [(e["rank"], e["username"], e["pnl"]) for e in paged["entries"]] == [row(6), row(7)]
    assert paged["me"] == {"rank": 7, "pnl": 15} and paged["total"] == 7
    watcher = await new_player("unranked")
    alone = await watcher.ok("leaderboard:get", {"around": "me", "limit": 2})
    assert alone["me"] is None and [e["rank"] for e in alone["entries"]] == [1, 2]
    refused = await watcher.error("leaderboard:get", {"around": "me", "offset": 3})
    assert refused["code"] == "VALIDATION_ERROR" and refused["details"]["field"] == "offset"
    for bad in ({"around": "you"}, {"offset": -1}, {"offset": 10_000_001}, {"offset": "5"}):
        assert (await watcher.error("leaderboard:get", bad))["code"] == "VALIDATION_ERROR"
