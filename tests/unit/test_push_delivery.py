"""A batch of pushes reaches each socket as one write holding its pushes in the batch's order, and
a large fan-out gives the loop back between sockets instead of holding it until the last one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from server.fanout import pushes as pushes_module
from server.fanout.pushes import Pushes
from server.transport.websocket import FrameWriter, PreparedMessage, WireLimits


class RecordingTransport:
    def __init__(self, name: str, timeline: list[str], writes: dict[str, list[bytes]]) -> None:
        self.name = name
        self.timeline = timeline
        self.writes = writes

    def write(self, data: bytes) -> None:
        self.timeline.append(f"write {self.name}")
        self.writes.setdefault(self.name, []).append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


@dataclass
class Socket:
    frame_writer: FrameWriter


@dataclass
class Rooms:
    members: dict[str, list[str]] = field(default_factory=dict)

    def get_participants(self, namespace: str, room: str) -> Iterator[tuple[str, str]]:
        for sid in self.members.get(room, []):
            yield sid, f"eio-{sid}"


@dataclass
class Engine:
    sockets: dict[str, Socket] = field(default_factory=dict)


@dataclass
class Server:
    manager: Rooms
    eio: Engine


def node(rooms: dict[str, list[str]]) -> tuple[Pushes, list[str], dict[str, list[bytes]]]:
    timeline: list[str] = []
    writes: dict[str, list[bytes]] = {}
    sids = sorted({sid for members in rooms.values() for sid in members})
    engine = Engine(
        {
            f"eio-{sid}": Socket(
                FrameWriter(
                    RecordingTransport(sid, timeline, writes),  # type: ignore[arg-type]
                    0,
                    WireLimits(),
                    lambda: None,
                )
            )
            for sid in sids
        }
    )
    server: Any = Server(Rooms(rooms), engine)
    return Pushes(server, None), timeline, writes  # type: ignore[arg-type]  # delivery only


def events(written: bytes) -> list[Any]:
    """The Socket.IO events of one write: frames of `42[...]` (short, unmasked text frames)."""
    found, at = [], 0
    while at < len(written):
        length = written[at + 1] & 0x7F
        found.append(orjson.loads(written[at + 2 + 2 : at + 2 + length]))
        at += 2 + length
    return found


BATCH = [
    ["odds", "market:a", '{"m":"a"}', None],
    ["odds", "market:b", '{"m":"b"}', None],
    ["balance", "user:s1", '{"b":1}', None],
    ["odds", "market:c", '{"m":"c"}', "s2"],
]
ROOMS = {
    "market:a": ["s1", "s2", "s3"],
    "market:b": ["s2", "s3"],
    "market:c": ["s1", "s2", "s3"],
    "user:s1": ["s1"],
}


async def test_each_socket_gets_its_pushes_of_a_batch_in_one_write_in_order() -> None:
    pushes, _, writes = node(ROOMS)
    await pushes.deliver_batches([(None, {"at": 0, "pushes": BATCH})])
    await asyncio.sleep(0)
    assert {sid: len(chunks) for sid, chunks in writes.items()} == {"s1": 1, "s2": 1, "s3": 1}
    assert events(writes["s1"][0]) == [
        ["odds", {"m": "a"}],
        ["balance", {"b": 1}],
        ["odds", {"m": "c"}],
    ]
    # s2 was the socket to skip for market c.
    assert events(writes["s2"][0]) == [["odds", {"m": "a"}], ["odds", {"m": "b"}]]
    assert events(writes["s3"][0]) == [
        ["odds", {"m": "a"}],
        ["odds", {"m": "b"}],
        ["odds", {"m": "c"}],
    ]


async def test_a_large_fan_out_lets_other_work_run_between_sockets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every socket past the slice: the loop is given back after each one.
    monkeypatch.setattr(pushes_module, "DELIVERY_SLICE_S", 0.0)
    members = [f"s{n}" for n in range(20)]
    pushes, timeline, writes = node({"market:a": members, "market:b": members})
    delivered = False

    async def other_work() -> None:
        while not delivered:
            timeline.append("other")
            await asyncio.sleep(0)

    worker = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    ticks = [["odds", "market:a", "{}", None], ["odds", "market:b", "{}", None]]
    await pushes.deliver_batches([(None, {"at": 0, "pushes": ticks})])
    await asyncio.sleep(0)
    delivered = True
    await worker
    written = [index for index, entry in enumerate(timeline) if entry.startswith("write")]
    assert len(written) == 20 and all(len(chunks) == 1 for chunks in writes.values())
    between = timeline[written[0] : written[-1]]
    assert between.count("other") >= 10, timeline


class BackedUpTransport(RecordingTransport):
    def __init__(self, waiting: int) -> None:
        super().__init__("slow", [], {})
        self.waiting = waiting

    def get_write_buffer_size(self) -> int:
        return self.waiting


async def test_a_socket_behind_on_reading_skips_the_batchs_superseded_pushes_only() -> None:
    limits = WireLimits(high_water_bytes=1000, limit_bytes=10_000)
    odds = PreparedMessage('42["odds",{}]', droppable=True)
    update = PreparedMessage('42["market:update",{}]')
    keeping_up = BackedUpTransport(0)
    prompt = FrameWriter(keeping_up, 0, limits, lambda: None)  # type: ignore[arg-type]
    prompt.write_all([odds, update])
    assert prompt.skipped == 0
    assert keeping_up.writes["slow"] == [odds.frame(0, 1024) + update.frame(0, 1024)]
    behind = FrameWriter(BackedUpTransport(2000), 0, limits, lambda: None)  # type: ignore[arg-type]
    behind.write_all([odds, update])
    assert behind.skipped == 1 and behind.buffered() == 2000 + len(update.frame(0, 1024))


class SilentChannel:
    """A Redis client whose push channel never speaks: the batches are put in the inbox here."""

    def pubsub(self, **_: Any) -> SilentChannel:
        return self

    async def subscribe(self, *_: Any) -> None:
        return None

    async def listen(self) -> Any:
        await asyncio.Event().wait()
        yield {}

    async def aclose(self) -> None:
        return None


async def deliver_waiting(pushes: Pushes) -> None:
    """Let the node's delivery loop work off the batches waiting in its inbox."""
    pushes._arrived.set()
    delivering = asyncio.create_task(pushes.deliver_forever())
    try:
        for _ in range(20):
            await asyncio.sleep(0)
    finally:
        delivering.cancel()
        await asyncio.gather(delivering, return_exceptions=True)


async def test_a_node_behind_delivers_a_rooms_odds_once_the_newest_and_everything_else() -> None:
    pushes, _, writes = node({"market:a": ["s1"], "market:b": ["s1"], "user:s1": ["s1"]})
    pushes.client = SilentChannel()  # type: ignore[assignment]
    older = [
        ["odds", "market:a", '{"v":1}', None],
        ["balance", "user:s1", '{"b":1}', None],
        ["odds", "market:b", '{"v":1}', None],
    ]
    newer = [["odds", "market:a", '{"v":2}', None], ["balance", "user:s1", '{"b":2}', None]]
    # Both batches arrived while the node was busy: they wait in its inbox together.
    pushes._inbox.extend([(None, {"at": 0, "pushes": older}), (None, {"at": 0, "pushes": newer})])
    await deliver_waiting(pushes)
    heard = [event for written in writes["s1"] for event in events(written)]
    assert heard == [
        ["balance", {"b": 1}],
        ["odds", {"v": 1}],  # market b: no newer one was queued
        ["odds", {"v": 2}],
        ["balance", {"b": 2}],  # balances are never skipped for everyone
    ]


async def test_a_node_behind_writes_each_socket_once_for_all_the_batches_waiting() -> None:
    pushes, _, writes = node({"market:a": ["s1", "s2"], "user:s1": ["s1"]})
    pushes.client = SilentChannel()  # type: ignore[assignment]
    batches = [
        [["odds", "market:a", f'{{"v":{n}}}', None], ["balance", "user:s1", f'{{"b":{n}}}', None]]
        for n in range(5)
    ]
    pushes._inbox.extend((None, {"at": 0, "pushes": batch}) for batch in batches)
    await deliver_waiting(pushes)
    # One write each, not five: s1 gets every balance in order and the newest odds once, in
    # its place (the last batch's).
    assert [len(writes["s1"]), len(writes["s2"])] == [1, 1]
    assert events(writes["s1"][0]) == [
        *(["balance", {"b": n}] for n in range(4)),
        ["odds", {"v": 4}],
        ["balance", {"b": 4}],
    ]
    assert events(writes["s2"][0]) == [["odds", {"v": 4}]]
