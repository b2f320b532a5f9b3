"""The market activity buffer: a flush announces one batch per market, newest first, at most the
cap of them with the rest counted, names hidden players as None, and then holds nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

import asyncpg

from game.bets import BetRequest
from game.markets import Side
from services.activity import MarketActivity
from storage import accounts, bets
from storage.activity import ActivityBet
from storage.bets import PlacedBet
from tests.betting_fixtures import RULES, insert_market, make_user


class Announcements:
    """A notifier that keeps the activity it is told."""

    def __init__(self) -> None:
        self.batches: list[tuple[uuid.UUID, list[ActivityBet], int]] = []

    def market_activity(
        self, market_id: uuid.UUID, bets: Sequence[ActivityBet], *, omitted: int
    ) -> None:
        self.batches.append((market_id, list(bets), omitted))


async def placed(db: asyncpg.Pool, user: uuid.UUID, market: uuid.UUID, amount: int) -> PlacedBet:
    request = BetRequest(
        user, market, uuid.uuid4().hex, Side.THIS, Decimal(amount), None, Decimal(0)
    )
    (answer,) = await bets.place_bets(db, [request], RULES)
    assert isinstance(answer, PlacedBet)
    return answer


async def test_a_flush_announces_one_batch_per_market_newest_first_within_the_cap(
    db: asyncpg.Pool,
) -> None:
    heard = Announcements()
    activity = MarketActivity(db, heard, max_announced=3)  # type: ignore[arg-type]  # only market_activity is used
    busy, quiet = await insert_market(db), await insert_market(db)
    alice, hidden = await make_user(db, "alice"), await make_user(db, "hidden")
    await accounts.set_anonymous(db, hidden, True)
    for amount in (10, 20, 30, 40, 50):
        user = hidden if amount == 40 else alice
        activity.record((await placed(db, user, busy, amount)).bet)
    activity.record((await placed(db, alice, quiet, 70)).bet)

    assert await activity.flush() == 4
    assert [(market, omitted) for market, _, omitted in heard.batches] == [(busy, 2), (quiet, 0)]
    newest = heard.batches[0][1]
    assert [bet.amount for bet in newest] == [50, 40, 30]
    assert [bet.username for bet in newest] == ["alice", None, "alice"]
    assert [bet.username for bet in heard.batches[1][1]] == ["alice"]

    assert await activity.flush() == 0  # nothing new, nothing announced
    assert len(heard.batches) == 2
