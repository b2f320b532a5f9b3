"""Room names and the pushes that go to them (through the Redis manager, so every node delivers)."""

from __future__ import annotations

from decimal import Decimal

from server.fanout.pushes import Pushes


def user_room(user_id: object) -> str:
    return f"user:{user_id}"


def market_room(market_id: object) -> str:
    return f"market:{market_id}"


def leaderboard_room(period: str) -> str:
    return f"leaderboard:{period}"


def emit_balance(
    pushes: Pushes,
    user_id: object,
    balance: Decimal,
    version: int,
    reason: str,
    *,
    skip_sid: str | None = None,
) -> None:
    """Every balance change is pushed to all of the user's sockets, on every node; the socket
    whose ack already carries the new balance (`skip_sid`) is spared the duplicate. Pushes from
    different nodes can cross: `balanceVersion` tells the client which balance is newer."""
    pushes.emit(
        "balance",
        {"balance": balance, "reason": reason, "balanceVersion": version},
        user_room(user_id),
        skip_sid=skip_sid,
    )
