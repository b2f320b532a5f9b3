"""The seeded fault schedule: which fault, when, and on what, drawn from one random generator so
the same seed gives the same schedule (the timing of the system under it still varies)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

NODE_KILL: Final = "kill -9 a node, restart it"
NODE_TERM: Final = "SIGTERM a node, restart it"
REDIS_CRASH: Final = "kill -9 Redis, restart it"
POSTGRES_CRASH: Final = "crash PostgreSQL, restart it"
UPSTREAM: Final = "upstream errors"
RESOLVE: Final = "market resolved"

# Every run has each of these at least once; a resolution of every kind counts as one each.
INFRASTRUCTURE: Final = (NODE_KILL, NODE_TERM, REDIS_CRASH, POSTGRES_CRASH)
RESOLUTIONS: Final = ("this", "that", "split", "cancelled")
UPSTREAM_KINDS: Final = ("500", "503", "429", "hang", "truncated")


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float
    kind: str
    node: int = 0  # which node, for node faults
    detail: str = ""  # resolution kind, or upstream error kind
    outage_s: float = 1.0  # how long the service stays down before its restart

    @property
    def label(self) -> str:
        return f"{self.kind} ({self.detail})" if self.detail else self.kind

    @property
    def is_infrastructure(self) -> bool:
        return self.kind in INFRASTRUCTURE


def schedule(seed: int, duration_s: float, nodes: int = 2, warmup_s: float = 3.0) -> list[Fault]:
    """Every fault kind once, then one more fault for about every 5 s beyond 45 s of run."""
    rng = random.Random(seed)
    base: list[tuple[str, str]] = [(kind, "") for kind in INFRASTRUCTURE]
    base += [(UPSTREAM, rng.choice(UPSTREAM_KINDS))]
    base += [(RESOLVE, kind) for kind in RESOLUTIONS]
    extra = max(0, int((duration_s - 45) / 5))
    choices = [*INFRASTRUCTURE, UPSTREAM, RESOLVE, RESOLVE]
    for _ in range(extra):
        kind = rng.choice(choices)
        detail = ""
        if kind == UPSTREAM:
            detail = rng.choice(UPSTREAM_KINDS)
        elif kind == RESOLVE:
            detail = rng.choice(RESOLUTIONS)
        base.append((kind, detail))
    rng.shuffle(base)
    end_s = max(warmup_s + 1, duration_s * 0.75)
    times = sorted(rng.uniform(warmup_s, end_s) for _ in base)
    return [
        Fault(
            at_s=round(at, 2),
            kind=kind,
            node=rng.randrange(nodes),
            detail=detail,
            outage_s=round(rng.uniform(0.5, 2.5), 2),
        )
        for at, (kind, detail) in zip(times, base, strict=True)
    ]
