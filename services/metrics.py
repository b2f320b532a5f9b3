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

# The market channel (services/live_odds.py; the connections' own gauges are the server's).
STREAM_FRAMES = Counter(
    "thisthat_stream_events_total", "Market channel events received, by type", ["type"]
)
STREAM_BAD_INPUT = Counter(
    "thisthat_stream_bad_input_total", "Market channel input skipped, by kind", ["kind"]
)
STREAM_STALE_UPDATES = Counter(
    "thisthat_stream_stale_updates_total", "Book updates older than the book, ignored"
)
STREAM_PUSH_DELAY = Histogram(
    "thisthat_stream_push_delay_seconds",
    "From the market channel frame that moved a market's odds to their push",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
STREAM_ODDS_AGE = Histogram(
    "thisthat_stream_odds_age_seconds",
    "Age of streamed odds at push time, from the upstream frame's own timestamp (clocks differ)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
