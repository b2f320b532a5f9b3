"""What one load run does: the players, the request mix, the arrival mode; split per client process."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Final, Literal

# Mix names -> Socket.IO events.
OPERATIONS: Final = {
    "bet": "bet:place",
    "wallet": "wallet:get",
    "reward": "reward:claim",
    "bets": "bets:list",
    "leaderboard": "leaderboard:get",
    "markets": "markets:list",
    "sync": "sync",
}
DEFAULT_MIX: Final = "bet=80,wallet=10,bets=4,leaderboard=4,reward=2"

Mode = Literal["open", "closed", "idle"]


class PlanError(ValueError):
    """A load-test option is malformed; the message says which."""


def parse_mix(text: str) -> dict[str, float]:
    """'bet=80,wallet=10' -> {'bet': 80.0, 'wallet': 10.0}; names from OPERATIONS."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in OPERATIONS:
            raise PlanError(f"unknown operation {name!r} in --mix; use {', '.join(OPERATIONS)}")
        try:
            mix[name] = float(weight) if weight else 1.0
        except ValueError as error:
            raise PlanError(f"bad weight {weight!r} for {name} in --mix") from error
        if mix[name] < 0:
            raise PlanError(f"negative weight for {name} in --mix")
    if not mix or sum(mix.values()) <= 0:
        raise PlanError("--mix needs at least one operation with a positive weight")
    return mix


def parse_range(text: str) -> tuple[int, int]:
    """'10-50' -> (10, 50); '25' -> (25, 25)."""
    low, _, high = text.partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError as error:
        raise PlanError(f"bad range {text!r}: use MIN-MAX") from error
    if bounds[0] > bounds[1] or bounds[0] <= 0:
        raise PlanError(f"bad range {text!r}")
    return bounds


@dataclass(frozen=True)
class LoadPlan:
    """Everything a client process needs; `split` gives each process its share."""

    base_url: str
    players: list[dict[str, Any]]
    mode: Mode = "open"
    rate: float = 100.0
    poisson: bool = False
    concurrency: int = 0  # closed loop: requests in flight (0: one per player)
    duration_s: float = 30.0
    warmup_s: float = 0.0
    mix: dict[str, float] = field(default_factory=lambda: parse_mix(DEFAULT_MIX))
    amount: tuple[int, int] = (10, 50)
    max_slippage: float = 0.05
    subscribe: int = 3  # markets each player subscribes to
    market_ids: tuple[str, ...] = ()  # subscribe exactly these (fan-out runs)
    timeout_s: float = 10.0
    # Offer permessage-deflate, as browsers and the official client do.
    deflate: bool = True
    connect_concurrency: int = 100
    process_index: int = 0
    run_tag: str = "run"

    def split(self, processes: int) -> list[LoadPlan]:
        """One plan per process: players dealt round-robin, rate and concurrency shared out."""
        processes = max(1, min(processes, len(self.players)))
        concurrency = self.concurrency or len(self.players)
        plans = []
        for index in range(processes):
            players = self.players[index::processes]
            share = len(players) / len(self.players)
            plans.append(
                dataclasses.replace(
                    self,
                    players=players,
                    rate=self.rate * share,
                    process_index=index,
                    concurrency=max(1, round(concurrency * share)),
                )
            )
        return plans
