"""A replay timeline made for benchmarks: many open markets far from their end, odds that keep moving.

The sample timeline closes and resolves its markets within two minutes; a benchmark needs markets
that stay open (and odds that stay fresh) for its whole run.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from feeds.replay import SAMPLE_TIMELINE


def write_bench_timeline(
    path: Path,
    markets: int = 20,
    duration_s: float = 3600,
    tick_every_s: float = 5.0,
    seed: int = 7,
) -> Path:
    """`markets` open markets at t=0, then one odds move per market every `tick_every_s`."""
    template = orjson.loads(SAMPLE_TIMELINE.read_bytes().splitlines()[0])["gamma"]
    rng = random.Random(seed)
    lines = []
    odds = []
    for index in range(markets):
        this_odds = round(rng.uniform(0.25, 0.75), 4)
        odds.append(this_odds)
        condition_id = "0x" + f"{0xBE000 + index:x}".rjust(64, "b")
        gamma = {
            **template,
            "id": str(800000 + index),
            "conditionId": condition_id,
            "question": f"Benchmark market {index}: this or that?",
            "slug": f"bench-market-{index}",
            "clobTokenIds": orjson.dumps([f"{condition_id}1", f"{condition_id}2"]).decode(),
            "outcomePrices": orjson.dumps([f"{this_odds:.4f}", f"{1 - this_odds:.4f}"]).decode(),
            "endDate": "2099-12-31T00:00:00Z",
            "volume": str(10_000_000 - index),
            "volumeNum": 10_000_000 - index,
        }
        lines.append({"at": index * 0.01, "type": "market", "gamma": gamma})
    at = tick_every_s
    while at < duration_s:
        for index in range(markets):
            # Small moves: bets sent with a 5-point slippage allowance keep passing.
            odds[index] = min(0.9, max(0.1, round(odds[index] + rng.uniform(-0.005, 0.005), 4)))
            lines.append(
                {
                    "at": round(at + index * tick_every_s / markets, 3),
                    "type": "odds",
                    "sourceId": "0x" + f"{0xBE000 + index:x}".rjust(64, "b"),
                    "thisOdds": f"{odds[index]:.4f}",
                    "thatOdds": f"{1 - odds[index]:.4f}",
                }
            )
        at += tick_every_s
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    return path
