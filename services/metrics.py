"""The counters the use cases keep (exposed on /metrics with the server's own)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

BETS_PLACED = Counter("thisthat_bets_placed_total", "Bets committed")
BETS_SETTLED = Counter("thisthat_bets_settled_total", "Bets settled, by status", ["status"])
ODDS_TICKS = Counter("thisthat_odds_ticks_total", "Odds changes emitted")
BET_BATCH_SIZE = Histogram(
    "thisthat_bet_batch_size",
    "Bets committed together in one transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200),
)
BETS_SHED = Counter("thisthat_bets_shed_total", "Bets refused because the server was behind")
