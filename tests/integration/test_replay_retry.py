"""The replay waits out a storage outage, saying so, instead of dying silently."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
import redis.asyncio as redis

from feeds.replay import OddsEvent, ReplayEvent
from server.mirror.runner import patient
from storage.feed_status import FeedStatus


async def test_an_event_is_retried_while_storage_is_away_and_the_outage_is_logged(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[ReplayEvent] = []

    async def flaky(event: ReplayEvent) -> None:
        attempts.append(event)
        if len(attempts) <= 2:
            raise ConnectionRefusedError("database went away")

    status = FeedStatus(redis_client)
    event = OddsEvent(3.0, "0xabc", Decimal("0.4"), Decimal("0.6"))
    with caplog.at_level(logging.INFO, logger="thisthat.feed"):
        await patient(flaky, status)(event)

    assert attempts == [event, event, event]
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("replay: storage unreachable, retrying the event") == 2
    assert "replay: storage is back, replay continues" in messages
    assert (await status.read())["replay"]["consecutiveFailures"] == 2


async def test_an_error_no_retry_fixes_ends_the_replay(redis_client: redis.Redis) -> None:
    async def broken(event: ReplayEvent) -> None:
        raise ValueError("not a storage outage")

    event = OddsEvent(3.0, "0xabc", Decimal("0.4"), Decimal("0.6"))
    with pytest.raises(ValueError, match="not a storage outage"):
        await patient(broken, FeedStatus(redis_client))(event)
