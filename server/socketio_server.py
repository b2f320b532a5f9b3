"""Python-socketio's server with the game's send path: packets for a socket on the websocket
transport go straight to its frame writer (server/websocket.py).

The stock path builds an engine.io packet object, awaits the socket's ping check and queues the
packet for a writer task, for every ack; here an ack is one string handed to the writer. The
game never sends binary payloads, so outgoing packets skip the library's recursive search for
bytes in every payload.
"""

from __future__ import annotations

from typing import Any

import socketio

from server.websocket import PreparedMessage, writer_of


class TextPacket(socketio.packet.Packet):  # type: ignore[misc]  # untyped library base
    """Socket.IO packets whose outgoing payloads are JSON only (no binary attachments)."""

    uses_binary_events = False


class GameSocketServer(socketio.AsyncServer):  # type: ignore[misc]  # untyped library base
    def __init__(self, **options: Any) -> None:
        super().__init__(serializer=TextPacket, **options)

    async def _send_packet(self, eio_sid: str, pkt: socketio.packet.Packet) -> None:
        socket = self.eio.sockets.get(eio_sid)
        writer = writer_of(socket) if socket is not None else None
        if writer is None or socket.closed:
            # Long-polling (or closing) sockets keep engine.io's own queue.
            await super()._send_packet(eio_sid, pkt)
            return
        writer.send(PreparedMessage("4" + pkt.encode()))
