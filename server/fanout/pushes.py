"""Pushes to rooms on every node, batched: all pushes made while one Redis publish is in flight
(or, while pushes keep coming, within PUBLISH_INTERVAL_S of it) travel together in the next one,
and every node delivers them to its own sockets.

Python-socketio's Redis manager publishes once per emit and spawns a task per recipient. At
hundreds of bets a second (each with a `balance` push) and thousands of sockets per odds tick,
those two costs were most of the server's CPU; here a burst costs one publish, and local delivery
encodes a packet once and queues it straight onto each recipient's engine.io socket: a batch's
pushes are gathered per socket and written socket by socket, one write each, giving the loop back
every few milliseconds. A node that falls behind delivers the batches waiting for it together:
one write per socket for them all, and a room's newest odds once, so it catches up instead of
writing every socket once per batch. Pushes from one node to one room keep their order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import orjson
import redis.asyncio as redis
from aiohttp import web

from server.runtime import metrics
from server.runtime.jobs import spawn, stop_if_cancelled
from server.runtime.resources import REDIS
from server.settings import SETTINGS
from server.transport.socketio_server import SIO, SocketServer, encode_event
from server.transport.websocket import PreparedMessage, writer_of
from server.wire.codec import dumps_bytes
from storage import keys
from storage.recovery import KeptPush
from storage.recovery import RecoveryStore as RecoveryStore  # the session store recovery uses

logger = logging.getLogger("thisthat.pushes")

CHANNEL: Final = keys.PREFIX + "pushes"
NAMESPACE: Final = "/"
# Pushes a socket whose peer is behind on reading may skip. State pushes: a newer one of the same
# kind makes an older one useless (it gets the latest state when it catches up, or by `sync`). And
# a market's recent bets: a feed to glance at, which `market:activity` pages in full.
SUPERSEDED: Final = frozenset({"odds", "leaderboard:update", "balance", "market:activity"})
# Pushes whose newer one to the same room says all they said: a node behind on delivering skips
# one when a batch still queued carries the room's next.
REPLACED_BY_NEWER: Final = frozenset({"odds", "leaderboard:update"})
# The least time between two publishes of a node: a push waits at most this long, and only while
# pushes keep coming (an idle node publishes at once).
PUBLISH_INTERVAL_S: Final = 0.01
# A batch is delivered socket by socket, and the node turns to its other work (bets, answers,
# reads) at least this often: a beat of odds for 5,000 sockets takes some 100 ms, and a loop held
# that long makes the load shedding (server/runtime/overload.py) refuse bets.
DELIVERY_SLICE_S: Final = 0.005
# The most channel batches a node behind delivers together (one write per socket for them all).
MAX_BATCHES_TOGETHER: Final = 64
# A batch's messages by recipient (engine.io session id), in the batch's order.
Outgoing = dict[str, list[PreparedMessage]]


@dataclass(frozen=True, slots=True)
class Replay:
    """A resumed socket's missed pushes, delivered in turn with the channel's own batches."""

    sid: str
    eio_sid: str
    rooms: tuple[str, ...]
    after: int


class Pushes:
    def __init__(
        self, sio: SocketServer, client: redis.Redis, recovery: RecoveryStore | None = None
    ) -> None:
        self.sio = sio
        self.client = client
        self.recovery = recovery
        # (event, room, the data's JSON text, socket to skip)
        self._pending: list[tuple[str, str, str, str | None]] = []
        # Wall-clock time the oldest pending push was queued: nodes compare it with their own clock.
        self._pending_since = 0.0
        self._wake = asyncio.Event()
        self.published = 0
        # Sockets of this node whose client opted in to recovery: their pushes carry offsets.
        self.recoverable: set[str] = set()
        # Resumed sockets whose replay covered every offset up to the value: not sent twice.
        self._replayed: dict[str, int] = {}
        # The channel's batches and the replays, in the order they are to be delivered.
        self._inbox: deque[tuple[int | None, Any] | Replay] = deque()
        self._arrived = asyncio.Event()

    def emit(self, event: str, data: Any, room: str, *, skip_sid: str | None = None) -> None:
        """Queue a push to `room` on every node, except to the socket `skip_sid`; returns at once."""
        if not self._pending:
            self._pending_since = time.time()
        # Encoded here, once, and carried as JSON text: a node that reads the batch back must
        # not turn exact credits (1077.50) into floats (1077.5) on the way.
        self._pending.append((event, room, dumps_bytes(data).decode(), skip_sid))
        self._wake.set()

    def replay(self, sid: str, eio_sid: str, rooms: tuple[str, ...], after: int) -> None:
        """Join a resumed socket to its rooms and send what it missed, in turn with the batches."""
        self._inbox.append(Replay(sid, eio_sid, rooms, after))
        self._arrived.set()

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
                blob = dumps_bytes({"at": self._pending_since, "pushes": batch})
                if self.recovery is None:
                    await self.client.publish(CHANNEL, blob)
                else:
                    await self.recovery.publish(CHANNEL, blob, len(batch), _kept(batch))
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
        """Deliver every node's batches (ours included) and the replays, in one order."""
        reader = asyncio.ensure_future(self._read_channel())
        try:
            while True:
                if not self._inbox:
                    self._arrived.clear()
                    await self._arrived.wait()
                    continue
                item = self._inbox.popleft()
                try:
                    if isinstance(item, Replay):
                        await self._replay(item)
                    else:
                        # Batches that queued while this node was busy go out together: one
                        # write per socket for all of them, so a node behind catches up.
                        group = [item]
                        while self._inbox and len(group) < MAX_BATCHES_TOGETHER:
                            queued = self._inbox[0]
                            if isinstance(queued, Replay):
                                break  # a replay keeps its place between batches
                            group.append(queued)
                            self._inbox.popleft()
                        await self.deliver_batches(group, self._replaced_later())
                except (redis.RedisError, OSError):
                    stop_if_cancelled()
                    metrics.REDIS_ERRORS.labels("pushes").inc()
                    logger.warning("a replay failed: redis unreachable", exc_info=True)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read_channel(self) -> None:
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    self._inbox.append(_offset_and_batch(message["data"]))
                    self._arrived.set()
            except (redis.RedisError, OSError):
                stop_if_cancelled()
                metrics.REDIS_ERRORS.labels("pushes").inc()
                logger.warning("push channel lost; resubscribing", exc_info=True)
                await asyncio.sleep(1)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py

    def _replaced_later(self) -> frozenset[tuple[str, str]]:
        """The (event, room) of state pushes that batches still queued here carry again, newer:
        a node that fell behind delivers those once, the latest, instead of every one in turn."""
        replaced: set[tuple[str, str]] = set()
        for item in self._inbox:
            if not isinstance(item, Replay):
                for event, room, *_ in _pushes_of(item[1]):
                    if event in REPLACED_BY_NEWER:
                        replaced.add((event, room))
        return frozenset(replaced)

    async def deliver_batches(
        self,
        group: list[tuple[int | None, Any]],
        replaced: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        """Batches in channel order, each socket's pushes of all of them in one write. A state
        push that a later one of the group, or a batch still queued (`replaced`), carries again
        for the same room is skipped: the room gets the newest once."""
        batches = [(last_offset, _pushes_of(published)) for last_offset, published in group]
        newest: dict[tuple[str, str], tuple[int, int]] = {}
        if len(batches) > 1:
            for number, (_, batch) in enumerate(batches):
                for position, (event, room, *_) in enumerate(batch):
                    if event in REPLACED_BY_NEWER:
                        newest[(event, room)] = (number, position)
        outgoing: Outgoing = {}
        for number, (last_offset, batch) in enumerate(batches):
            offset = None if last_offset is None else last_offset - len(batch)
            if offset is not None and self._replayed:
                # A replay covers what the channel had published when it looked; past that, live.
                for sid, covered in list(self._replayed.items()):
                    if covered <= offset:
                        del self._replayed[sid]
            for position, (event, room, data, *skip) in enumerate(batch):
                if offset is not None:
                    offset += 1
                here = (number, position)
                if event in REPLACED_BY_NEWER and (
                    (event, room) in replaced or newest.get((event, room), here) != here
                ):
                    metrics.PUSHES_SUPERSEDED.inc()
                    continue
                self._address(
                    outgoing,
                    event,
                    # Nodes publish the JSON text of each push; tools may publish the object itself.
                    RawJson(data) if isinstance(data, str) else data,
                    room,
                    skip[0] if skip else None,
                    offset,
                )
        await self._send(outgoing)
        now = time.time()
        for _, published in group:
            if isinstance(published, dict):
                metrics.PUSH_FANOUT_SECONDS.observe(max(0.0, now - published["at"]))

    async def deliver_here(
        self,
        event: str,
        data: Any,
        room: str,
        *,
        skip_sid: str | None = None,
        offset: int | None = None,
    ) -> None:
        """Deliver to this node's sockets in `room`: encoded and framed once for all of them
        (twice where some of them opted in to recovery: theirs carries its offset)."""
        outgoing: Outgoing = {}
        self._address(outgoing, event, data, room, skip_sid, offset)
        await self._send(outgoing)

    def _address(
        self,
        outgoing: Outgoing,
        event: str,
        data: Any,
        room: str,
        skip_sid: str | None,
        offset: int | None,
    ) -> None:
        """Add one push to the messages of each of this node's sockets in `room`."""
        recoverable = self.recoverable if offset is not None else ()
        replayed = self._replayed
        droppable = event in SUPERSEDED
        plain: PreparedMessage | None = None
        numbered: PreparedMessage | None = None
        for sid, eio_sid in self.sio.manager.get_participants(NAMESPACE, room):
            if sid == skip_sid:
                continue
            if sid in recoverable:
                assert offset is not None
                if replayed and replayed.get(sid, -1) >= offset:
                    continue  # its replay already carried this push
                if numbered is None:
                    numbered = PreparedMessage(
                        _encoded(self.sio, event, data, offset), droppable=droppable
                    )
                message = numbered
            else:
                if plain is None:
                    plain = PreparedMessage(
                        _encoded(self.sio, event, data, None), droppable=droppable
                    )
                message = plain
            queued = outgoing.get(eio_sid)
            if queued is None:
                outgoing[eio_sid] = [message]
            else:
                queued.append(message)

    async def _send(self, outgoing: Outgoing) -> None:
        """Each socket's messages in one write, made at once, yielding to the loop every
        DELIVERY_SLICE_S of this work (writes included) so that bets and answers are not held
        behind a large fan-out."""
        sockets = self.sio.eio.sockets
        polling = []
        clock = time.perf_counter
        slice_ends = clock() + DELIVERY_SLICE_S
        for eio_sid, messages in outgoing.items():
            socket = sockets.get(eio_sid)
            if socket is None:
                continue
            writer = writer_of(socket)
            if writer is None:
                polling.append((eio_sid, messages))
                continue
            writer.write_all(messages)
            if clock() > slice_ends:
                await asyncio.sleep(0)
                slice_ends = clock() + DELIVERY_SLICE_S
        # Long-polling sockets keep engine.io's queue (the Socket.IO packet, no "4"); few.
        for eio_sid, messages in polling:
            for message in messages:
                await self.sio.eio.send(eio_sid, message.payload.decode()[1:])

    async def _replay(self, replay: Replay) -> None:
        """Join the rooms, then send what was missed (newer pushes follow live, none twice)."""
        assert self.recovery is not None
        if self.sio.manager.eio_sid_from_sid(replay.sid, NAMESPACE) != replay.eio_sid:
            return  # the socket is gone again
        for room in replay.rooms:
            await self.sio.enter_room(replay.sid, room)
        personal = [room for room in replay.rooms if not _shared(room)]
        shared = [room for room in replay.rooms if _shared(room)]
        missed = await self.recovery.missed(personal, shared, replay.after)
        self._replayed[replay.sid] = missed.sequence
        for offset, packet in missed.pushes:
            # `[event, data]` as it was published, with its offset appended as the last argument.
            text = b"42" + packet[:-1] + b',"%d"]' % offset
            event = orjson.loads(packet)[0]
            await self._send({replay.eio_sid: [PreparedMessage.text(text, droppable=False)]})
            metrics.RECOVERY_REPLAYED.labels(str(event)).inc()


class RawJson(str):
    """A push's data as the JSON text its publisher encoded: embedded as it is, not re-encoded."""

    __slots__ = ()


def _encoded(sio: SocketServer, event: str, data: Any, offset: int | None) -> str:
    """The Engine.IO message of a push to the default namespace (`42[event,data(,offset)]`)."""
    if isinstance(data, RawJson):
        # Event names are the server's own (plain ASCII, no quotes); data is JSON already.
        if offset is None:
            return f'42["{event}",{data}]'
        return f'42["{event}",{data},"{offset}"]'
    return encode_event(sio, event, data, offset)


def _pushes_of(published: Any) -> list[Any]:
    """A batch's pushes: a bare list is a batch without its queue time (tools publish those),
    and an entry of three has no socket to skip."""
    pushes: list[Any] = published["pushes"] if isinstance(published, dict) else published
    return pushes


def _shared(room: str) -> bool:
    """Rooms many players share keep only their latest push of each kind for a returning one."""
    return room.startswith(("market:", "leaderboard:"))


def _kept(batch: list[tuple[str, str, str, str | None]]) -> list[KeptPush]:
    """The pushes of a batch a returning client may need: to users (kept while a recoverable
    session of theirs exists) and to shared rooms (the latest of each kind)."""
    kept = []
    for index, (event, room, data, _) in enumerate(batch, start=1):
        if room.startswith("user:") or _shared(room):
            packet = f'["{event}",{data}]'.encode()
            kept.append(KeptPush(index, room, _shared(room), event, packet))
    return kept


def _offset_and_batch(raw: bytes | str) -> tuple[int | None, Any]:
    """A channel message: `<last offset> <batch>` from a node that numbers its pushes, or the
    bare batch (tools, and nodes without recovery)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if data[:1].isdigit():
        head, _, blob = data.partition(b" ")
        return int(head), orjson.loads(blob)
    return None, orjson.loads(data)


async def pushes_ctx(app: web.Application) -> AsyncIterator[None]:
    window = app[SETTINGS].recovery_window_s
    recovery = RecoveryStore(app[REDIS], window) if window > 0 else None
    pushes = Pushes(app[SIO], app[REDIS], recovery)
    app[PUSHES] = pushes
    jobs = [
        await spawn(app, pushes.deliver_forever(), name="pushes-deliver"),
        await spawn(app, pushes.publish_forever(), name="pushes-publish"),
    ]
    yield
    for job in reversed(jobs):
        await job.close()


PUSHES: Final = web.AppKey("pushes", Pushes)
