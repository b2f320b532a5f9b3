"""The replay timeline for load tests, feeds/timelines/loadtest.jsonl, and how it is written.

The sample timeline ends its eight markets within two minutes; a load test needs markets that
stay open, with odds fresh enough to bet on, for its whole run. This one opens 20 markets at the
start, moves each one's odds every 10 s for half an hour, then closes and resolves them; looped
(FEED_REPLAY_LOOP=true), the next pass's markets open before the first of these closes.

    python -m loadtest.timeline            # rewrite feeds/timelines/loadtest.jsonl
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any, Final

import orjson

LOADTEST_TIMELINE: Final = (
    Path(__file__).resolve().parent.parent / "feeds" / "timelines" / "loadtest.jsonl"
)
MARKETS: Final = 20
LENGTH_S: Final = 1800.0
TICK_EVERY_S: Final = 10.0


def market_id(index: int) -> str:
    return f"loadtest-{index:02d}"


def timeline_records(
    markets: int = MARKETS, length_s: float = LENGTH_S, tick_every_s: float = TICK_EVERY_S
) -> list[dict[str, Any]]:
    """Markets open at the start, one odds move per market every `tick_every_s` (spread over the
    interval), then, from `length_s` on, each market closes and 2 s later resolves."""
    rng = random.Random(7)
    records: list[dict[str, Any]] = []
    odds = [round(rng.uniform(0.3, 0.7), 4) for _ in range(markets)]
    for index in range(markets):
        records.append(
            {
                "at": round(index * 0.05, 3),
                "type": "market",
                "gamma": {
                    "conditionId": market_id(index),
                    "question": f"Load test market {index}: this or that?",
                    "slug": f"load-test-market-{index}",
                    "outcomes": '["Yes", "No"]',
                    "outcomePrices": orjson.dumps(
                        [f"{odds[index]:.4f}", f"{1 - odds[index]:.4f}"]
                    ).decode(),
                    "clobTokenIds": orjson.dumps(
                        [f"{market_id(index)}-this", f"{market_id(index)}-that"]
                    ).decode(),
                    "endDate": "2099-12-31T00:00:00Z",
                    "volume": str(1_000_000 - index),
                    "active": True,
                    "closed": False,
                },
            }
        )
    at = tick_every_s
    while at < length_s:
        for index in range(markets):
            # Small moves: bets sent with a 5-point slippage allowance keep passing.
            odds[index] = min(0.9, max(0.1, round(odds[index] + rng.uniform(-0.005, 0.005), 4)))
            records.append(
                {
                    "at": round(at + index * tick_every_s / markets, 3),
                    "type": "odds",
                    "sourceId": market_id(index),
                    "thisOdds": f"{odds[index]:.4f}",
                    "thatOdds": f"{1 - odds[index]:.4f}",
                }
            )
        at += tick_every_s
    for index in range(markets):
        closes_at = length_s + index * 0.5
        records.append({"at": closes_at, "type": "close", "sourceId": market_id(index)})
        records.append(
            {
                "at": closes_at + 2,
                "type": "resolve",
                "sourceId": market_id(index),
                "resolution": "this" if index % 2 else "that",
            }
        )
    records.sort(key=lambda record: float(record["at"]))
    return records


def timeline_text() -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in timeline_records())


def main(argv: list[str] | None = None) -> int:
    path = Path(argv[0]) if argv else LOADTEST_TIMELINE
    path.write_bytes(timeline_text())
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
