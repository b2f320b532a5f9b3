"""Websocket connections to Polymarket's CLOB market channel, sharded by token, kept alive and
resubscribed; raw text frames go to a callback (parsing lives in `feeds.market_channel`)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson

logger = logging.getLogger("thisthat.feed.stream")

MARKET_CHANNEL_URL: Final = "wss://ws-subscriptions-clob.polymarket.com/ws/market"
# The channel's own heartbeat: plain text frames, not websocket protocol pings.
PING: Final = "PING"
PONG: Final = "PONG"
# The server's answer to a subscription it refuses (e.g. a second `type: market`).
INVALID_OPERATION: Final = "INVALID OPERATION"
# Initial dumps carry every book of a shard in one frame.
DEFAULT_MAX_MSG_SIZE: Final = 32 * 1024 * 1024
LOG_EVERY_S: Final = 60.0
# 2**62 times any sane base is already past every cap; larger exponents only risk overflow.
_MAX_EXPONENT: Final = 62

FrameHandler = Callable[[str, float], None]
ConnectedHook = Callable[[frozenset[str]], None]


class Backoff:
    """Capped exponential backoff with full jitter: attempt n waits uniform(0, min(max, base·2ⁿ))."""

    def __init__(self, base_s: float, max_s: float, rng: random.Random) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng

    def next_delay(self) -> float:
        cap = min(self.max_s, self.base_s * 2 ** min(self.attempt, _MAX_EXPONENT))
        self.attempt += 1
        return self._rng.uniform(0.0, cap)

    def reset(self) -> None:
        self.attempt = 0


class _LogLimiter:
    """At most one log line per kind and interval, so a bad frame repeated 100/s stays readable."""

    def __init__(self, clock: Callable[[], float], interval_s: float = LOG_EVERY_S) -> None:
        self._clock = clock
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, kind: str) -> int | None:
        """None to stay quiet; otherwise how many lines of this kind were held back since the last."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._suppressed.pop(kind, 0)


@dataclass(frozen=True)
class ShardStatus:
    """One shard as metrics and readiness see it; times are readings of the stream's clock."""

    index: int
    tokens: int
    up: bool
    connected_at: float | None
    last_frame_at: float | None
    last_data_at: float | None
    frames: int
    reconnects: int
    backoff_attempt: int
    last_error: str | None


@dataclass(eq=False)
class _Shard:
    index: int
    backoff: Backoff
    tokens: set[str] = field(default_factory=set)
    # What the live connection was told; None until its initial subscription is sent.
    subscribed: set[str] | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    task: asyncio.Task[None] | None = None
    # Sends on one connection are serialised so an unsubscribe never overtakes the initial message.
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connected_at: float | None = None
    last_frame_at: float | None = None
    last_data_at: float | None = None
    had_data: bool = False
    frames: int = 0
    reconnects: int = 0
    last_error: str | None = None

    @property
    def up(self) -> bool:
        return self.subscribed is not None and self.ws is not None and not self.ws.closed


class MarketStream:
    """Keeps one websocket per shard of at most `tokens_per_connection` tokens.

    Every (re)connection sends the full initial subscription, so the server answers with fresh
    book snapshots; `on_connected` hears which tokens to expect them for. A connection is
    replaced when it closes, errs, is refused (`INVALID OPERATION`), hears nothing for
    `silence_timeout_s` (PONG included) or no data for `data_timeout_s` (the server-side
    freeze where PONG keeps coming). Redials back off exponentially with full jitter; the
    backoff resets once a connection has carried data for `healthy_after_s`.
    `received_at` and every time in `status()` are readings of `clock`.
    """

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        on_frame: FrameHandler,
        *,
        tokens_per_connection: int = 200,
        ping_interval_s: float = 10.0,
        silence_timeout_s: float = 30.0,
        data_timeout_s: float = 120.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        healthy_after_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        close_timeout_s: float = 2.0,
        max_msg_size: int = DEFAULT_MAX_MSG_SIZE,
        custom_features: bool = True,
        on_connected: ConnectedHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if tokens_per_connection < 1:
            raise ValueError("tokens_per_connection must be at least 1")
        self._url = url
        self._session = session
        self._on_frame = on_frame
        self._on_connected = on_connected
        self._tokens_per_connection = tokens_per_connection
        self._ping_interval_s = ping_interval_s
        self._silence_timeout_s = silence_timeout_s
        self._data_timeout_s = data_timeout_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._healthy_after_s = healthy_after_s
        self._connect_timeout_s = connect_timeout_s
        self._ws_timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=close_timeout_s)
        self._max_msg_size = max_msg_size
        self._custom_features = custom_features
        self._clock = clock
        self._rng = rng or random.Random()
        self._log = _LogLimiter(clock)
        self._shards: dict[int, _Shard] = {}
        self._shard_of: dict[str, int] = {}
        self._next_index = 0
        self._tokens_lock = asyncio.Lock()
        self._started = False
        self._closed = False
        self.reconnects = 0
        self.frames_received = 0
        self.data_frames_received = 0
        self.pongs_received = 0
        self.callback_errors = 0
        self.last_frame_at: float | None = None

    # --- observable state -----------------------------------------------------------------

    @property
    def tokens(self) -> frozenset[str]:
        """Every token the stream should be subscribed to."""
        return frozenset(self._shard_of)

    @property
    def subscribed_tokens(self) -> frozenset[str]:
        """The tokens whose connection is up and subscribed."""
        return frozenset(
            token
            for shard in self._shards.values()
            if shard.up and shard.subscribed is not None
            for token in shard.subscribed
        )

    @property
    def connections_up(self) -> int:
        return sum(1 for shard in self._shards.values() if shard.up)

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    def shards(self) -> list[ShardStatus]:
        return [
            ShardStatus(
                index=shard.index,
                tokens=len(shard.tokens),
                up=shard.up,
                connected_at=shard.connected_at,
                last_frame_at=shard.last_frame_at,
                last_data_at=shard.last_data_at,
                frames=shard.frames,
                reconnects=shard.reconnects,
                backoff_attempt=shard.backoff.attempt,
                last_error=shard.last_error,
            )
            for shard in sorted(self._shards.values(), key=lambda s: s.index)
        ]

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for /readyz and metrics."""
        return {
            "tokens": len(self._shard_of),
            "subscribed_tokens": len(self.subscribed_tokens),
            "shards": len(self._shards),
            "connections_up": self.connections_up,
            "reconnects": self.reconnects,
            "frames_received": self.frames_received,
            "data_frames_received": self.data_frames_received,
            "callback_errors": self.callback_errors,
            "last_frame_at": self.last_frame_at,
            "per_shard": [dataclasses.asdict(shard) for shard in self.shards()],
        }

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect every shard; tokens set before or after this are both fine."""
        if self._closed:
            raise RuntimeError("the market stream is closed")
        self._started = True
        for shard in self._shards.values():
            self._spawn(shard)

    async def close(self) -> None:
        """Close every connection and wait for every task of the stream to end."""
        self._closed = True
        async with self._tokens_lock:
            shards = list(self._shards.values())
            self._shards.clear()
            self._shard_of.clear()
            await self._stop(shards)

    async def set_tokens(self, tokens: Collection[str]) -> None:
        """Subscribe to exactly `tokens`. A kept token stays on its shard; new ones fill shards
        with room first; a shard left without tokens is closed."""
        if self._closed:
            raise RuntimeError("the market stream is closed")
        if isinstance(tokens, str):
            # A lone token id is a Collection[str] too, of its digits.
            raise TypeError("set_tokens takes a collection of token ids, not one id")
        wanted = set(tokens)
        async with self._tokens_lock:
            touched: set[int] = set()
            for token in [t for t in self._shard_of if t not in wanted]:
                index = self._shard_of.pop(token)
                self._shards[index].tokens.discard(token)
                touched.add(index)
            added = sorted(t for t in wanted if t not in self._shard_of)
            for shard in sorted(self._shards.values(), key=lambda s: s.index):
                room = self._tokens_per_connection - len(shard.tokens)
                if room > 0 and added:
                    self._assign(shard, added[:room])
                    del added[:room]
                    touched.add(shard.index)
            fresh: list[_Shard] = []
            for start in range(0, len(added), self._tokens_per_connection):
                shard = self._new_shard()
                self._assign(shard, added[start : start + self._tokens_per_connection])
                fresh.append(shard)
            emptied = [shard for shard in self._shards.values() if not shard.tokens]
            for shard in emptied:
                del self._shards[shard.index]
            await self._stop(emptied)
            for index in sorted(touched):
                shard_or_none = self._shards.get(index)
                if shard_or_none is not None:
                    await self._sync_subscription(shard_or_none)
            if self._started:
                for shard in fresh:
                    self._spawn(shard)

    def _new_shard(self) -> _Shard:
        shard = _Shard(
            self._next_index, Backoff(self._backoff_base_s, self._backoff_max_s, self._rng)
        )
        self._next_index += 1
        self._shards[shard.index] = shard
        return shard

    def _assign(self, shard: _Shard, tokens: Collection[str]) -> None:
        shard.tokens.update(tokens)
        for token in tokens:
            self._shard_of[token] = shard.index

    def _spawn(self, shard: _Shard) -> None:
        if shard.task is None:
            shard.task = asyncio.create_task(
                self._run_shard(shard), name=f"market-stream-shard-{shard.index}"
            )

    async def _stop(self, shards: Collection[_Shard]) -> None:
        tasks = [shard.task for shard in shards if shard.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # wait() lets the tasks' own CancelledError stay theirs; ours still propagates.
            await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                logger.error("market stream task ended with an error", exc_info=task.exception())

    # --- subscriptions --------------------------------------------------------------------

    def _subscription(self, tokens: Collection[str]) -> str:
        message: dict[str, Any] = {
            "type": "market",
            "assets_ids": sorted(tokens),
            "initial_dump": True,
        }
        if self._custom_features:
            message["custom_feature_enabled"] = True
        return orjson.dumps(message).decode()

    def _operation(self, operation: str, tokens: Collection[str]) -> str:
        message: dict[str, Any] = {"operation": operation, "assets_ids": sorted(tokens)}
        if self._custom_features and operation == "subscribe":
            message["custom_feature_enabled"] = True
        return orjson.dumps(message).decode()

    async def _sync_subscription(self, shard: _Shard) -> None:
        """Tell a live connection what changed; one that is not up will send the full set."""
        async with shard.send_lock:
            ws, told = shard.ws, shard.subscribed
            if ws is None or told is None or ws.closed:
                return
            removed = told - shard.tokens
            added = shard.tokens - told
            try:
                if removed:
                    told.difference_update(removed)
                    await ws.send_str(self._operation("unsubscribe", removed))
                if added:
                    told.update(added)
                    await ws.send_str(self._operation("subscribe", added))
            except (aiohttp.ClientError, ConnectionError) as exc:
                # The connection is going down; its replacement subscribes to the full set.
                logger.debug("market stream shard %d: update not sent: %r", shard.index, exc)

    # --- one shard ------------------------------------------------------------------------

    async def _run_shard(self, shard: _Shard) -> None:
        while True:
            try:
                reason = await self._connect_once(shard)
            except Exception as exc:  # the shard must outlive any bug in one connection
                reason = f"internal error: {exc!r}"
                self._warn("internal", "market stream shard %d: %s", shard.index, reason, exc=exc)
            shard.last_error = reason
            started = shard.connected_at
            stayed_s = self._clock() - started if started is not None else 0.0
            # Only a connection that carried data for a while proves the server well again.
            if shard.had_data and stayed_s >= self._healthy_after_s:
                shard.backoff.reset()
            delay = shard.backoff.next_delay()
            shard.reconnects += 1
            self.reconnects += 1
            self._warn(
                f"replace:{reason.split(':', 1)[0]}",
                "market stream shard %d replaced (%s); redialling in %.2f s",
                shard.index,
                reason,
                delay,
            )
            await asyncio.sleep(delay)

    async def _connect_once(self, shard: _Shard) -> str:
        """One connection from dial to end; answers why it ended."""
        shard.connected_at = None
        shard.had_data = False
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                ws = await self._session.ws_connect(
                    self._url,
                    timeout=self._ws_timeout,
                    autoping=True,
                    heartbeat=None,
                    compress=0,
                    max_msg_size=self._max_msg_size,
                )
        except TimeoutError:
            return "connect failed: timed out"
        except (aiohttp.ClientError, OSError) as exc:
            return f"connect failed: {exc!r}"
        try:
            return await self._serve(shard, ws)
        except (aiohttp.ClientError, ConnectionError) as exc:
            return f"connection error: {exc!r}"
        finally:
            shard.ws = None
            shard.subscribed = None
            await ws.close()

    async def _serve(self, shard: _Shard, ws: aiohttp.ClientWebSocketResponse) -> str:
        shard.ws = ws
        shard.connected_at = connected_at = self._clock()
        async with shard.send_lock:
            tokens = set(shard.tokens)
            shard.subscribed = tokens
            await ws.send_str(self._subscription(tokens))
        if self._on_connected is not None:
            try:
                self._on_connected(frozenset(tokens))
            except Exception as exc:
                self._warn("on_connected", "market stream on_connected failed: %r", exc, exc=exc)
        # PING only after the subscription: a PING first gets the socket closed with 1008.
        pinger = asyncio.create_task(
            self._ping(shard, ws), name=f"market-stream-ping-{shard.index}"
        )
        try:
            return await self._receive(shard, ws, connected_at)
        finally:
            pinger.cancel()
            await asyncio.wait([pinger])

    async def _ping(self, shard: _Shard, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            while not ws.closed:
                await asyncio.sleep(self._ping_interval_s)
                async with shard.send_lock:
                    await ws.send_str(PING)
        except (aiohttp.ClientError, ConnectionError) as exc:
            # The receive loop sees the same connection end and replaces it.
            logger.debug("market stream shard %d: PING not sent: %r", shard.index, exc)
        except Exception as exc:
            self._warn(
                "ping", "market stream shard %d: pinger failed: %r", shard.index, exc, exc=exc
            )

    async def _receive(
        self, shard: _Shard, ws: aiohttp.ClientWebSocketResponse, connected_at: float
    ) -> str:
        last_any = last_data = connected_at
        while True:
            now = self._clock()
            silence_left = last_any + self._silence_timeout_s - now
            data_left = last_data + self._data_timeout_s - now
            if silence_left <= 0:
                return f"silent: nothing for {self._silence_timeout_s:g} s"
            if data_left <= 0:
                return f"no data: only PONG for {self._data_timeout_s:g} s"
            try:
                message = await ws.receive(timeout=min(silence_left, data_left))
            except TimeoutError:
                continue  # the deadlines above decide
            received_at = self._clock()
            if message.type is aiohttp.WSMsgType.TEXT:
                text: str = message.data
                last_any = received_at
                self._count_frame(shard, received_at)
                if text == PONG:
                    self.pongs_received += 1
                    continue
                last_data = received_at
                self._count_data(shard, received_at)
                self._deliver(text, received_at)
                if text == INVALID_OPERATION:
                    return "refused: INVALID OPERATION"
            elif message.type is aiohttp.WSMsgType.BINARY:
                last_any = last_data = received_at
                self._count_frame(shard, received_at)
                self._count_data(shard, received_at)
                self._warn(
                    "binary", "market stream: binary frame ignored (%d bytes)", len(message.data)
                )
            elif message.type is aiohttp.WSMsgType.ERROR:
                return f"connection error: {ws.exception()!r}"
            else:
                # CLOSE, CLOSING, CLOSED: the server ended it (1008 for a refused payload).
                return f"closed: code {ws.close_code} {message.extra or ''}".rstrip()

    def _count_frame(self, shard: _Shard, received_at: float) -> None:
        shard.frames += 1
        shard.last_frame_at = received_at
        self.frames_received += 1
        self.last_frame_at = received_at

    def _count_data(self, shard: _Shard, received_at: float) -> None:
        shard.last_data_at = received_at
        shard.had_data = True
        self.data_frames_received += 1

    def _deliver(self, text: str, received_at: float) -> None:
        try:
            self._on_frame(text, received_at)
        except Exception as exc:  # a consumer's bug must not cost the connection
            self.callback_errors += 1
            self._warn(
                f"on_frame:{type(exc).__name__}", "market stream on_frame failed: %r", exc, exc=exc
            )

    def _warn(
        self, kind: str, message: str, *args: object, exc: BaseException | None = None
    ) -> None:
        """Log a warning at most once a minute per kind, saying how many were held back."""
        held_back = self._log.allow(kind)
        if held_back is None:
            return
        if held_back:
            message += f" ({held_back} more like this since the last report)"
        logger.warning(message, *args, exc_info=exc)
