"""Presence events: `presence:get`, how many players are online across every node."""

from __future__ import annotations

from typing import Any

from server.sockets.presence import PRESENCE
from server.sockets.router import EventContext, EventRouter
from server.wire.schemas import Empty


async def handle_presence_get(ctx: EventContext, payload: Empty) -> dict[str, Any]:
    return {"online": await ctx.app[PRESENCE].online(str(ctx.session.user_id))}


def register(router: EventRouter) -> None:
    router.add("presence:get", Empty, handle_presence_get)
