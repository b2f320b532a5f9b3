"""Pushes to rooms on every node, batched: all pushes made while one Redis publish is in flight
(or, while pushes keep coming, within PUBLISH_INTERVAL_S of it) travel together in the next one,
and every node delivers them to its own sockets.

Python-socketio's Redis manager publishes once per emit and spawns a task per recipient. At
hundreds of bets a second (each with a `balance` push) and thousands of sockets per odds tick,
those two costs were most of the server's CPU; here a burst costs one publish, and local delivery
encodes a packet once and queues it straight onto each recipient's engine.io socket.
Pushes from one node to one room keep their order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson
import redis.asyncio as redis
from aiohttp import web

from server.runtime import metrics
from server.runtime.jobs import spawn, stop_if_cancelled
from server.runtime.resources import REDIS
from server.transport.socketio_server import SIO, SocketServer, encode_event
from server.transport.websocket import PreparedMessage, writer_of
from server.wire.codec import dumps_bytes
from storage import keys

logger = logging.getLogger("thisthat.pushes")

CHANNEL: Final = keys.PREFIX + "pushes"
NAMESPACE: Final = "/"
# State pushes: a newer one of the same kind makes an older one useless, so a socket whose peer
# is behind on reading may skip them (it gets the latest state when it catches up, or by `sync`).
SUPERSEDED: Final = frozenset({"odds", "leaderboard:update", "balance"})
# The least time between two publishes of a node: a push waits at most this long, and only while
# pushes keep coming (an idle node publishes at once).
PUBLISH_INTERVAL_S: Final = 0.01


class Pushes:
    def __init__(self, sio: SocketServer, client: redis.Redis) -> None:
        self.sio = sio
        self.client = client
        self._pending: list[tuple[str, str, Any, str | None]] = []
        # Wall-clock time the oldest pending push was queued: nodes compare it with their own clock.
        self._pending_since = 0.0
        self._wake = asyncio.Event()
        self.published = 0

    def emit(self, event: str, data: Any, room: str, *, skip_sid: str | None = None) -> None:
        """Queue a push to `room` on every node, except to the socket `skip_sid`; returns at once."""
        if not self._pending:
            self._pending_since = time.time()
        self._pending.append((event, room, data, skip_sid))
        self._wake.set()

    async def publish_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_publish = 0.0
        while True:
            await self._wake.wait()
            # Busy, at most one publish per interval: what queues meanwhile rides along. Each
            # publish is a write to Redis and a read on every node; at thousands of bets a second
            # (a balance push each) those were about 5% of the server's CPU.
            wait = next_publish - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                await self.client.publish(
                    CHANNEL, dumps_bytes({"at": self._pending_since, "pushes": batch})
                )
                self.published += 1
                next_publish = loop.time() + PUBLISH_INTERVAL_S
                metrics.PUSH_BATCH_SIZE.observe(len(batch))
            except (redis.RedisError, OSError):
                stop_if_cancelled()
                metrics.REDIS_ERRORS.labels("pushes").inc()
                # Pushes are state updates a client can rebuild with `sync`; the ledger is untouched.
                logger.warning(
                    "pushes lost: redis publish failed", exc_info=True, extra={"count": len(batch)}
                )

    async def deliver_forever(self) -> None:
        """Deliver every node's batches (ours included) to the sockets of this node."""
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    await self.deliver_batch(orjson.loads(message["data"]))
            except (redis.RedisError, OSError):
                stop_if_cancelled()
                metrics.REDIS_ERRORS.labels("pushes").inc()
                logger.warning("push channel lost; resubscribing", exc_info=True)
                await asyncio.sleep(1)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py

    async def deliver_batch(self, published: Any) -> None:
        # A bare list is a batch without its queue time (tools publish those), and an entry of
        # three has no socket to skip.
        batch = published["pushes"] if isinstance(published, dict) else published
        for event, room, data, *skip in batch:
            await self.deliver_here(event, data, room, skip_sid=skip[0] if skip else None)
        if isinstance(published, dict):
            metrics.PUSH_FANOUT_SECONDS.observe(max(0.0, time.time() - published["at"]))

    async def deliver_here(
        self, event: str, data: Any, room: str, *, skip_sid: str | None = None
    ) -> None:
        """Deliver to this node's sockets in `room`: encoded and framed once for all of them."""
        participants = [
            eio_sid
            for sid, eio_sid in self.sio.manager.get_participants(NAMESPACE, room)
            if sid != skip_sid
        ]
        if not participants:
            return
        encoded = encode_event(self.sio, event, data)
        message = PreparedMessage(encoded, droppable=event in SUPERSEDED)
        sockets = self.sio.eio.sockets
        polling = []
        for eio_sid in participants:
            socket = sockets.get(eio_sid)
            if socket is None:
                continue
            writer = writer_of(socket)
            if writer is not None:
                writer.send(message)
            else:
                polling.append(eio_sid)
        for eio_sid in polling:
            # Long-polling sockets keep engine.io's queue; they are few.
            await self.sio.eio.send(eio_sid, encoded[1:])


async def pushes_ctx(app: web.Application) -> AsyncIterator[None]:
    pushes = Pushes(app[SIO], app[REDIS])
    app[PUSHES] = pushes
    jobs = [
        await spawn(app, pushes.deliver_forever(), name="pushes-deliver"),
        await spawn(app, pushes.publish_forever(), name="pushes-publish"),
    ]
    yield
    for job in reversed(jobs):
        await job.close()


PUSHES: Final = web.AppKey("pushes", Pushes)
