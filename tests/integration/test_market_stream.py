"""The market-channel stream against the local fake: subscription, heartbeat, watchdogs,
reconnects with backoff, sharding, subscription changes and shutdown."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from feeds.market_stream import Backoff, MarketStream
from tests.fake_market_channel import (
    INVALID_PAYLOAD,
    POLICY_VIOLATION,
    FakeConnection,
    FakeMarketChannel,
    last_trade_price,
    market_resolved,
    new_market,
    price_change,
)

# Short intervals so every watchdog fires within a second; the waits below allow far more.
FAST: dict[str, Any] = {
    "ping_interval_s": 0.05,
    "silence_timeout_s": 3.0,
    "data_timeout_s": 30.0,
    "backoff_base_s": 0.01,
    "backoff_max_s": 0.05,
    "close_timeout_s": 0.5,
    "connect_timeout_s": 2.0,
}


def token(n: int) -> str:
    return str(10**76 + n)


class Frames:
    """An on_frame that keeps what it got."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, text: str, received_at: float) -> None:
        self.texts.append(text)

    def snapshots(self) -> list[list[Any]]:
        """The frames that are arrays (initial dumps and books of a dynamic subscribe)."""
        return [value for value in map(_json, self.texts) if isinstance(value, list)]


class RecordingRandom(random.Random):
    """Remembers the cap of every jittered delay."""

    def __init__(self) -> None:
        super().__init__(5)
        self.caps: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.caps.append(b)
        return super().uniform(a, b)


def _json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


async def until(check: Callable[[], bool], *, timeout_s: float = 5.0) -> None:
    """Wait until `check` holds; fail after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.01)


def stream_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("market-stream")]


@pytest.fixture
async def channel() -> AsyncIterator[FakeMarketChannel]:
    fake = FakeMarketChannel()
    async with fake.serve():
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


StreamFactory = Callable[..., MarketStream]


@pytest.fixture
async def make_stream(
    channel: FakeMarketChannel, session: aiohttp.ClientSession
) -> AsyncIterator[StreamFactory]:
    streams: list[MarketStream] = []

    def make(on_frame: Callable[[str, float], None], **overrides: Any) -> MarketStream:
        stream = MarketStream(channel.url, session, on_frame, **{**FAST, **overrides})
        streams.append(stream)
        return stream

    yield make
    for stream in streams:
        await stream.close()
    assert not stream_tasks()


def subscription(tokens: list[str]) -> dict[str, Any]:
    return {
        "type": "market",
        "assets_ids": sorted(tokens),
        "initial_dump": True,
        "custom_feature_enabled": True,
    }


async def connections_subscribed(
    channel: FakeMarketChannel, count: int, *, stream: MarketStream | None = None
) -> None:
    """Wait for the `count`th connection to subscribe (and, given `stream`, to get its dump)."""

    def reached() -> bool:
        latest = channel.connections[-1] if len(channel.connections) == count else None
        delivered = stream is None or stream.data_frames_received == count
        return latest is not None and latest.subscribed and delivered

    await until(reached)


def connection_with(channel: FakeMarketChannel, tok: str) -> FakeConnection:
    (conn,) = [c for c in channel.open_connections if tok in c.assets]
    return conn


# --- backoff --------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_full_jitter_and_resets() -> None:
    rng = RecordingRandom()
    backoff = Backoff(0.5, 4.0, rng)

    delays = [backoff.next_delay() for _ in range(7)]

    assert rng.caps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert all(0 <= delay <= cap for delay, cap in zip(delays, rng.caps, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not the caps themselves
    backoff.reset()
    backoff.next_delay()
    assert rng.caps[-1] == 0.5


def test_backoff_survives_a_very_long_outage() -> None:
    backoff = Backoff(0.5, 30.0, random.Random(1))
    backoff.attempt = 10_000
    assert 0 <= backoff.next_delay() <= 30.0


# --- subscribing and heartbeat ----------------------------------------------------------------


async def test_subscription_gets_the_books_as_one_snapshot_frame(
    channel: FakeMarketChannel, make_stream: StreamFactory
) -> None:
    market = channel.add_newsom()
    frames = Frames()
    connected: list[frozenset[str]] = []
    stream = make_stream(frames, on_connected=connected.append)
    await stream.set_tokens(market.tokens)
    await stream.start()

    await until(lambda: len(frames.snapshots()) == 1)

    (books,) = frames.snapshots()
    assert [b["asset_id"] for b in books] == sorted(market.tokens)
    assert {b["event_type"] for b in books} == {"book"}
    assert connected == [frozenset(market.tokens)]
    (conn,) = channel.connections
    assert conn.messages == [subscription(list(market.tokens))]
    assert stream.connections_up == 1
    assert stream.subscribed_tokens == frozenset(market.tokens)

    change = price_change(
        market, price="0.231", size="2710", side="BUY", best_bid="0.232", best_ask="0.233"
    )
    assert await channel.publish(change) == 1
    await until(lambda: _json(frames.texts[-1]) == change)
    assert stream.status()["data_frames_received"] == 2


async def test_ping_follows_the_subscription_and_pong_is_kept_from_on_frame(
    channel: FakeMarketChannel, make_stream: StreamFactory
) -> None:
    frames = Frames()
    stream = make_stream(frames)
    await stream.set_tokens([token(1)])
    await stream.start()

    await until(lambda: stream.pongs_received >= 3)

    (conn,) = channel.connections
    assert _json(conn.received[0]) == subscription([token(1)])
    assert conn.pings >= 3 and set(conn.received[1:]) == {"PING"}
    assert frames.texts == ["[]"]  # unknown token: an empty dump, and no PONG passed on
    assert not conn.closed and stream.reconnects == 0


# --- watchdogs and replacement ------------------------------------------------------------------


async def test_silent_connection_is_replaced_resubscribed_and_gets_fresh_books(
    channel: FakeMarketChannel, make_stream: StreamFactory
) -> None:
    market = channel.add_newsom()
    frames = Frames()
    connected: list[frozenset[str]] = []
    stream = make_stream(frames, silence_timeout_s=0.5, on_connected=connected.append)
    await stream.set_tokens(market.tokens)
    await stream.start()
    await until(lambda: len(frames.snapshots()) == 1)

    channel.go_silent(fully=True)

    await until(lambda: len(frames.snapshots()) == 2)
    first, second = channel.connections[:2]
    assert first.closed
    assert second.messages[0] == first.messages[0] == subscription(list(market.tokens))
    assert connected[:2] == [frozenset(market.tokens)] * 2
    assert stream.reconnects >= 1
    assert (stream.shards()[0].last_error or "").startswith("silent")


async def test_connection_with_pongs_but_no_data_is_replaced_after_the_data_timeout(
    channel: FakeMarketChannel, make_stream: StreamFactory
) -> None:
    market = channel.add_newsom()
    frames = Frames()
    stream = make_stream(frames, silence_timeout_s=3.0, data_timeout_s=0.4)
    await stream.set_tokens(market.tokens)
    await stream.start()
    await until(lambda: len(frames.snapshots()) == 1)

    channel.go_silent()  # the freeze: PONG keeps coming, data does not

    await until(lambda: len(channel.connections) == 2 and len(frames.snapshots()) == 2)
    first = channel.connections[0]
    assert first.pings >= 2  # PONGs kept the connection alive until the data watchdog
    assert stream.pongs_received >= 2
    assert "no data" in (stream.shards()[0].last_error or "")


async def test_dropped_connections_reconnect_with_growing_capped_backoff(
    channel: FakeMarketChannel, make_stream: StreamFactory
) -> None:
    rng = RecordingRandom()
    stream = make_stream(Frames(), backoff_base_s=0.02, backoff_max_s=0.08, rng=rng)
    await stream.set_tokens([token(1), token(2)])
    await stream.start()
    drops: list[dict[str, Any]] = [
        {"code": aiohttp.WSCloseCode.GOING_AWAY},
        {"code": POLICY_VIOLATION, "message": INVALID_PAYLOAD},
        {"abrupt": True},
        {"code": aiohttp.WSCloseCode.INTERNAL_ERROR},
    ]

    for count, drop in enumerate(drops, start=1):
        await connections_subscribed(channel, count)
        assert await channel.drop_all(**drop) == 1

    await until(lambda: stream.connections_up == 1 and len(channel.connections) == 5)
    assert rng.caps == [0.02, 0.04, 0.08, 0.08]
    assert stream.reconnects == 4
    for conn in channel.connections:
        assert conn.messages[0] == subscription([token(1), token(2)])


async def test_backoff_resets_after_a_connection_stayed_healthy(
    channel: FakeMarketChannel, make_stream: StreamFactory
) -> None:
    rng = RecordingRandom()
    stream = make_stream(Frames(), backoff_base_s=0.02, healthy_after_s=0.0, rng=rng)
    await stream.set_tokens([token(1)])
    await stream.start()

    for count in (1, 2, 3):
        await connections_subscribed(channel, count, stream=stream)
        await channel.drop_all()

    await until(lambda: len(channel.connections) == 4)
    assert rng.caps == [0.02, 0.02, 0.02]


async def test_invalid_operation_replaces_the_connection(
    channel: FakeMarketChannel, make_stream: StreamFactory
) -> None:
    market = channel.add_newsom()
    channel.refuse_subscriptions(1)
    frames = Frames()
    stream = make_stream(frames)
    await stream.set_tokens(market.tokens)
    await stream.start()

    await until(lambda: len(frames.snapshots()) == 1)

    assert frames.texts[0] == "INVALID OPERATION"
    first, second = channel.connections
    assert second.messages == [subscription(list(market.tokens))]
    await until(lambda: first.closed)
    assert stream.reconnects == 1
    assert (stream.shards()[0].last_error or "").startswith("refused")


async def test_ignored_subscription_is_replaced_by_the_data_watchdog(
    channel: FakeMarketChannel, make_stream: StreamFactory
) -> None:
    market = channel.add_newsom()
    channel.ignore_subscriptions(1)
    frames = Frames()
    stream = make_stream(frames, data_timeout_s=0.3)
    await stream.set_tokens(market.tokens)
    await stream.start()

    await until(lambda: len(frames.snapshots()) == 1)

    assert (
        channel.connections[0].initial_subscriptions == channel.connections[1].initial_subscriptions
    )
    assert stream.shards()[0].reconnects >= 1


# --- sharding and subscription changes ---------------------------------------------------------


async def test_tokens_are_split_into_shards_at_the_limit(
    channel: FakeMarketChannel, make_stream: StreamFactory
) -> None:
    tokens = [token(n) for n in range(7)]
    stream = make_stream(Frames(), tokens_per_connection=3)
    await stream.set_tokens(tokens)
    await stream.start()

    await until(lambda: stream.connections_up == 3)

    subscribed = [conn.initial_subscriptions for conn in channel.connections]
    assert all(len(subs) == 1 for subs in subscribed)
    assets = [subs[0]["assets_ids"] for subs in subscribed]
    assert all(len(ids) <= 3 for ids in assets)
    assert sorted(t for ids in assets for t in ids) == sorted(tokens)  # every token exactly once
    assert stream.subscribed_tokens == frozenset(tokens)
    assert stream.status()["shards"] == 3


async def test_set_tokens_fills_shards_with_room_and_closes_emptied_ones(
    channel: FakeMarketChannel, make_stream: StreamFactory
) -> None:
    t = [token(n) for n in range(8)]
    market = channel.add_market("0x" + "ab" * 32, t[4], t[5])
    frames = Frames()
    stream = make_stream(frames, tokens_per_connection=3)
    await stream.set_tokens(t[:4])
    await stream.start()
    await until(lambda: stream.connections_up == 2)
    full, roomy = connection_with(channel, t[0]), connection_with(channel, t[3])
    assert full.assets == set(t[:3]) and roomy.assets == {t[3]}

    # A new token joins the shard with room, on its live connection.
    await stream.set_tokens(t[:5])
    await until(lambda: roomy.assets == {t[3], t[4]})
    assert roomy.operations == [
        {"operation": "subscribe", "assets_ids": [t[4]], "custom_feature_enabled": True}
    ]
    await until(lambda: any(b["asset_id"] == market.yes_token for b in frames.snapshots()[-1]))

    # Removed tokens are unsubscribed; the shard stays while it has one.
    await stream.set_tokens([t[2], t[3], t[4]])
    await until(lambda: full.assets == {t[2]})
    assert full.operations[-1] == {"operation": "unsubscribe", "assets_ids": sorted(t[:2])}

    # Its last token gone, the shard's connection is closed.
    await stream.set_tokens([t[3], t[4]])
    await until(lambda: full.closed)
    assert stream.connections_up == 1 and stream.shard_count == 1

    # Kept tokens stay put; the room left is filled first, the rest get a new shard.
    await stream.set_tokens([t[3], t[4], t[5], t[6], t[7]])
    await until(lambda: stream.connections_up == 2 and roomy.assets == {t[3], t[4], t[5]})
    newest = channel.connections[-1]
    assert newest.initial_subscriptions == [subscription([t[6], t[7]])]
    assert len(channel.connections) == 3 and stream.reconnects == 0
    assert stream.subscribed_tokens == frozenset(t[3:])


# --- robustness and shutdown -------------------------------------------------------------------


async def test_an_error_in_on_frame_does_not_end_the_stream(
    channel: FakeMarketChannel, make_stream: StreamFactory, caplog: pytest.LogCaptureFixture
) -> None:
    market = channel.add_newsom()

    def broken(text: str, received_at: float) -> None:
        raise ValueError("consumer bug")

    stream = make_stream(broken)
    await stream.set_tokens(market.tokens)
    with caplog.at_level(logging.WARNING, logger="thisthat.feed.stream"):
        await stream.start()
        await until(lambda: stream.callback_errors == 1)
        for _ in range(5):
            await channel.publish(["not", "a", "known", "frame"])
            await channel.publish("garbage that is not JSON")
        await until(lambda: stream.callback_errors == 11)

    assert stream.connections_up == 1 and stream.reconnects == 0
    reports = [r for r in caplog.records if "on_frame" in r.getMessage()]
    assert len(reports) == 1  # rate-limited: one line a minute per kind


async def test_close_leaves_no_task_and_no_connection(
    channel: FakeMarketChannel, make_stream: StreamFactory
) -> None:
    stream = make_stream(Frames(), tokens_per_connection=2)
    await stream.set_tokens([token(n) for n in range(5)])
    await stream.start()
    await until(lambda: stream.connections_up == 3)

    await stream.close()

    assert not stream_tasks()
    assert stream.connections_up == 0 and stream.shard_count == 0
    await until(lambda: not channel.open_connections)
    with pytest.raises(RuntimeError):
        await stream.set_tokens([token(1)])


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield probe.getsockname()[1]


async def test_close_while_redialling_leaves_no_task(
    session: aiohttp.ClientSession, closed_port: int
) -> None:
    stream = MarketStream(f"ws://127.0.0.1:{closed_port}/ws/market", session, Frames(), **FAST)
    await stream.set_tokens([token(1)])
    await stream.start()
    await until(lambda: stream.reconnects >= 2)

    await stream.close()

    assert not stream_tasks()
    assert stream.status()["shards"] == 0 and stream.connections_up == 0


# --- the fake itself -----------------------------------------------------------------------------


async def test_fake_closes_1008_on_ping_before_a_subscription(
    channel: FakeMarketChannel, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(channel.url) as ws:
        await ws.send_str("PING")
        message = await ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.CLOSE
    assert (message.data, message.extra) == (POLICY_VIOLATION, INVALID_PAYLOAD.decode())


async def test_fake_answers_a_second_subscription_and_repeated_assets_with_texts(
    channel: FakeMarketChannel, session: aiohttp.ClientSession
) -> None:
    market = channel.add_newsom()
    async with session.ws_connect(channel.url) as ws:
        await ws.send_json({"type": "market", "assets_ids": [market.yes_token]})
        dump = await ws.receive_json(timeout=5)
        await ws.send_json({"type": "market", "assets_ids": [market.no_token]})
        second = await ws.receive_str(timeout=5)
        await ws.send_json({"operation": "subscribe", "assets_ids": [market.yes_token]})
        repeated = await ws.receive_str(timeout=5)
        await ws.send_str("PING")
        pong = await ws.receive_str(timeout=5)
    assert [b["asset_id"] for b in dump] == [market.yes_token]
    assert dump[0]["bids"][-1]["price"] == "0.232" and dump[0]["asks"][-1]["price"] == "0.233"
    assert (second, repeated, pong) == ("INVALID OPERATION", "NO NEW ASSETS", "PONG")


async def test_fake_routes_events_by_token_and_custom_features(
    channel: FakeMarketChannel, session: aiohttp.ClientSession
) -> None:
    market = channel.add_newsom()
    other = channel.add_market("0x" + "cd" * 32, token(1), token(2))
    async with (
        session.ws_connect(channel.url) as custom,
        session.ws_connect(channel.url) as plain,
    ):
        await custom.send_json(subscription([market.yes_token]))
        await plain.send_json({"type": "market", "assets_ids": [other.yes_token]})
        assert len(await custom.receive_json(timeout=5)) == 1
        assert len(await plain.receive_json(timeout=5)) == 1

        events = [
            price_change(
                market, price="0.233", size="0", side="SELL", best_bid="0.232", best_ask="0.234"
            ),
            last_trade_price(market, market.yes_token, price="0.233", size="5"),
            market_resolved(market, market.no_token),
            new_market(other),  # custom-feature subscribers only
        ]
        assert [await channel.publish(event) for event in events] == [1, 1, 1, 1]
        assert await channel.broadcast("NO NEW ASSETS") == 2

        got = [await custom.receive_json(timeout=5) for _ in range(4)]
        assert await plain.receive_str(timeout=5) == "NO NEW ASSETS"

    yes, no = got[0]["price_changes"]
    assert (yes["asset_id"], no["asset_id"]) == market.tokens
    mirrored = (no["price"], no["side"], no["best_bid"], no["best_ask"])
    assert mirrored == ("0.767", "BUY", "0.766", "0.768")
    assert got[1]["event_type"] == "last_trade_price" and got[1]["asset_id"] == market.yes_token
    assert got[2]["winning_asset_id"] == market.no_token and got[2]["winning_outcome"] == "No"
    assert got[3]["event_type"] == "new_market" and got[3]["clob_token_ids"] == list(other.tokens)
    assert all(frame["timestamp"].isdigit() for frame in got)
