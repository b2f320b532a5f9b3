"""Socket.IO connection state recovery on the wire, as socket.io-client 4.6+ speaks it.

A client that opts in (`recover: true` beside its token in the handshake auth) gets a private
session id `pid` in the CONNECT answer beside its `sid`, and an offset as the last argument of
every event pushed to it. After a drop it reconnects with `{pid, offset}` in its auth; when the
session can be resumed (server/sockets/recovery.py decides), the CONNECT answer carries the same
`sid` and `pid` (the client then sets `socket.recovered`) and the pushes it missed follow, in
order, before any newer one (server/fanout/pushes.py). Anything else is a fresh session.

python-socketio has no recovery of its own: `_handle_connect` is taken over here (a seam, listed
in server/transport/seams.py), and the engine's id generator hands out a resumed `sid` once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Protocol

import socketio
from socketio import exceptions, packet

NAMESPACE = "/"


@dataclass(frozen=True, slots=True)
class Resumption:
    """A session a reconnecting client may take back: its socket id, rooms and what it saw."""

    pid: str
    sid: str
    rooms: tuple[str, ...]
    after: int  # the client has every push up to this offset
    generation: int


@dataclass(frozen=True, slots=True)
class Opening:
    """How a socket of an opted-in client starts: fresh (`resumed` None) or resumed."""

    pid: str
    resumed: Resumption | None


class Resumer(Protocol):
    async def resume(self, auth: dict[str, Any]) -> Resumption | None:
        """The session this handshake may take back, claimed for it, or None (a fresh one)."""

    async def connected(self, sid: str, eio_sid: str, opening: Opening) -> None:
        """The CONNECT answer is sent: a resumed session's missed pushes may follow."""


def wants_recovery(auth: object) -> bool:
    return isinstance(auth, dict) and auth.get("recover") is True


class RecoveringServer(socketio.AsyncServer):  # type: ignore[misc]  # untyped library base
    """The Socket.IO server's half of recovery: choosing the sid and answering CONNECT."""

    resumer: Resumer | None = None

    def _init_recovery(self) -> None:
        # How each opted-in socket of this node started, by sid, until its connect handler
        # has read it (server/sockets/handshake.py `opening`).
        self.openings: dict[str, Opening] = {}

    def opening(self, sid: str) -> Opening | None:
        """How an opted-in socket starts, while its connect handler runs; None for the others."""
        return self.openings.get(sid)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        if not wants_recovery(data) or (namespace or NAMESPACE) != NAMESPACE:
            await super()._handle_connect(eio_sid, namespace, data)
            return
        resumed = await self.resumer.resume(data) if self.resumer is not None else None
        if resumed is not None and self.manager.is_connected(resumed.sid, NAMESPACE):
            # The old connection is still here (its transport not yet timed out): it is over.
            await self.disconnect(resumed.sid)
        if resumed is not None:
            self.eio.next_id = resumed.sid
        sid = await self.manager.pre_connect(eio_sid, NAMESPACE)
        self.eio.next_id = None
        if sid is None:
            await self._send_packet(
                eio_sid,
                self.packet_class(packet.CONNECT_ERROR, data="Unable to connect", namespace="/"),
            )
            return
        if resumed is not None and resumed.sid != sid:
            resumed = None
        opening = Opening(
            resumed.pid if resumed is not None else secrets.token_urlsafe(18), resumed
        )
        self.openings[sid] = opening
        fail_reason = exceptions.ConnectionRefusedError().error_args
        try:
            success = await self._trigger_event(
                "connect", NAMESPACE, sid, self.environ[eio_sid], data
            )
        except exceptions.ConnectionRefusedError as exc:
            fail_reason = exc.error_args
            success = False
        finally:
            self.openings.pop(sid, None)
        if success is False:
            await self._send_packet(
                eio_sid,
                self.packet_class(packet.CONNECT_ERROR, data=fail_reason, namespace="/"),
            )
            await self.manager.disconnect(sid, NAMESPACE, ignore_queue=True)
            return
        await self._send_packet(
            eio_sid,
            self.packet_class(packet.CONNECT, {"sid": sid, "pid": opening.pid}, namespace="/"),
        )
        await self.manager.connect(sid, NAMESPACE)
        if self.resumer is not None:
            await self.resumer.connected(sid, eio_sid, opening)
