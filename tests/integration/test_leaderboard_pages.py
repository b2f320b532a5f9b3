"""Pages of a board with many players, on real PostgreSQL and Redis: by rank past the top 100,
and around a player at the top, in the middle and at the end, with the player's own standing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis

from game.markets import Resolution
from storage import leaderboard_pages, leaderboards, settlement
from tests.betting_fixtures import bet, insert_market, make_user

PLAYERS = 150


@pytest.fixture
async def crowd(db: asyncpg.Pool, redis_client: redis.Redis) -> list[tuple[str, Decimal]]:
    """PLAYERS players with distinct PnL, best first: (user id, pnl). Player i staked 10 + i at
    0.40 on a market that went their way (+1.5 x stake), the odd ones then lost 20 elsewhere."""
    won, lost = await insert_market(db), await insert_market(db)
    pnl: dict[str, Decimal] = {}
    for index in range(PLAYERS):
        user = await make_user(db, f"ranked_{index}")
        stake = Decimal(10 + index)
        await bet(db, user, won, "this", str(stake))
        pnl[str(user)] = stake * Decimal("1.5")
        if index % 2:
            await bet(db, user, lost, "this", "20")
            pnl[str(user)] -= 20
    now = datetime.now(UTC)
    await settlement.settle_market(db, won, Resolution.THIS, now)
    await settlement.settle_market(db, lost, Resolution.THAT, now)
    await leaderboards.sync_pending(db, redis_client)
    ranked = sorted(pnl.items(), key=lambda item: item[1], reverse=True)
    assert len({value for _, value in ranked}) == PLAYERS  # no ties: one right order
    return ranked


def ranks(board: leaderboard_pages.BoardPage) -> list[tuple[int, str, Decimal]]:
    return [(s.rank, s.user_id, s.pnl) for s in board.standings]


def expected(ranked: list[tuple[str, Decimal]], first: int, last: int) -> list[Any]:
    return [(rank, *ranked[rank - 1]) for rank in range(first, last + 1)]


async def test_pages_by_rank_reach_past_the_top_100(
    db: asyncpg.Pool, redis_client: redis.Redis, crowd: list[tuple[str, Decimal]]
) -> None:
    top = await leaderboard_pages.page(db, redis_client, "all", 100)
    assert ranks(top) == expected(crowd, 1, 100) and top.total == PLAYERS and top.mine is None
    rest = await leaderboard_pages.page(db, redis_client, "all", 100, offset=100)
    assert ranks(rest) == expected(crowd, 101, PLAYERS)
    assert all(s.username.startswith("ranked_") for s in rest.standings)
    middle = await leaderboard_pages.page(db, redis_client, "all", 7, offset=60)
    assert ranks(middle) == expected(crowd, 61, 67)
    beyond = await leaderboard_pages.page(db, redis_client, "all", 20, offset=PLAYERS)
    assert beyond.standings == [] and beyond.total == PLAYERS
    # Pages laid end to end give every player once, in order.
    seen = []
    for offset in range(0, PLAYERS, 40):
        seen += ranks(await leaderboard_pages.page(db, redis_client, "all", 40, offset=offset))
    assert seen == expected(crowd, 1, PLAYERS)


@pytest.mark.parametrize(
    ("rank", "limit", "first", "last"),
    [
        (1, 5, 1, 5),  # at the top the page slides down to stay full
        (2, 5, 1, 5),
        (75, 5, 73, 77),  # two above, two below
        (75, 4, 74, 77),  # an even page: one above, two below
        (75, 1, 75, 75),
        (120, 100, 51, 150),  # the page slides up at the end
        (149, 5, 146, 150),
        (150, 5, 146, 150),  # the last player
        (3, 100, 1, 100),
    ],
)
async def test_a_page_around_me_holds_my_rank_and_its_neighbours(
    db: asyncpg.Pool,
    redis_client: redis.Redis,
    crowd: list[tuple[str, Decimal]],
    rank: int,
    limit: int,
    first: int,
    last: int,
) -> None:
    me, my_pnl = crowd[rank - 1]
    board = await leaderboard_pages.page(
        db, redis_client, "all", limit, me=uuid.UUID(me), around_me=True
    )
    assert ranks(board) == expected(crowd, first, last)
    assert board.mine == (rank, my_pnl)
    assert (rank, me, my_pnl) in ranks(board)
    assert board.total == PLAYERS
    # The same standing whatever page is asked for.
    elsewhere = await leaderboard_pages.page(
        db, redis_client, "all", 3, offset=10, me=uuid.UUID(me)
    )
    assert elsewhere.mine == (rank, my_pnl) and ranks(elsewhere) == expected(crowd, 11, 13)


async def test_a_player_with_no_standing_gets_the_top_and_no_rank(
    db: asyncpg.Pool, redis_client: redis.Redis, crowd: list[tuple[str, Decimal]]
) -> None:
    stranger = await make_user(db, "unranked")
    board = await leaderboard_pages.page(db, redis_client, "all", 3, me=stranger, around_me=True)
    assert board.mine is None and ranks(board) == expected(crowd, 1, 3)
    empty = await leaderboard_pages.page(
        db, redis_client, "2000-01-01", 3, me=stranger, around_me=True
    )
    assert (empty.standings, empty.mine, empty.total) == ([], None, 0)
