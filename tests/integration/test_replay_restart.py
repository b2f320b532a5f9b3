"""A replay started again on a database where its markets were already played: they stay as they
ended, and one log line says so and how to start over."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import asyncpg
import pytest

from feeds.replay import SAMPLE_TIMELINE, MarketEvent, load_timeline
from game.markets import Resolution
from services.markets import Markets
from storage.rows import Market


class Quiet:
    """A notifier that hears nothing of interest here."""

    async def markets_changed(self, rows: Sequence[Market]) -> None:
        return None


async def no_resolution(market_id: uuid.UUID, resolution: Resolution) -> None:
    return None


async def test_a_replay_of_markets_already_played_says_how_to_start_over(
    db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    events = load_timeline(SAMPLE_TIMELINE)
    markets = Markets(db, Quiet(), no_resolution)  # type: ignore[arg-type]  # only markets_changed is used
    listed = [event for event in events if isinstance(event, MarketEvent)]
    for event in listed:
        await markets.apply_replay_event(event)
    with caplog.at_level(logging.WARNING, logger="thisthat.feed"):
        assert await markets.replay_first_pass(events, start_over=False) == 0
    assert not [r for r in caplog.records if "--reset-replay" in r.getMessage()]  # all open

    await db.execute(
        "UPDATE markets SET status = 'closed' WHERE source_id = ANY($1::text[])",
        [event.source_id for event in listed[:3]],
    )
    with caplog.at_level(logging.WARNING, logger="thisthat.feed"):
        assert await markets.replay_first_pass(events, start_over=False) == 0
    lines = [r.getMessage() for r in caplog.records if "--reset-replay" in r.getMessage()]
    assert lines == [
        f"replay: 3 of the timeline's {len(listed)} markets were already played in this "
        "database and stay as they ended; to play the timeline again as new markets, restart "
        "with `thisthat serve --reset-replay`"
    ]
    # Starting over picks the first pass this database never saw.
    assert await markets.replay_first_pass(events, start_over=True) == 1
