"""Prometheus metrics (prometheus-client): requests and events by name and outcome, latencies, gauges."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REST_REQUESTS = Counter(
    "thisthat_rest_requests_total",
    "REST requests by route and status",
    ["route", "method", "status"],
)
REST_LATENCY = Histogram(
    "thisthat_rest_request_seconds", "REST request latency", ["route"], buckets=LATENCY_BUCKETS
)
SOCKET_EVENTS = Counter(
    "thisthat_socket_events_total",
    "Socket.IO events by name and outcome (ok or error code)",
    ["event", "outcome"],
)
SOCKET_LATENCY = Histogram(
    "thisthat_socket_event_seconds",
    "Socket.IO event handling latency until the ack",
    ["event"],
    buckets=LATENCY_BUCKETS,
)
ERRORS = Counter("thisthat_errors_total", "Errors answered, by code", ["code"])
CONNECTED_SOCKETS = Gauge("thisthat_connected_sockets", "Sockets connected to this node")
ACTIVE_USERS = Gauge("thisthat_active_users", "Distinct users with a socket on this node")
DB_POOL_IN_USE = Gauge("thisthat_db_pool_in_use", "Database connections checked out of the pool")
DB_POOL_SIZE = Gauge("thisthat_db_pool_size", "Database connections open in the pool")
BETS_PLACED = Counter("thisthat_bets_placed_total", "Bets committed")
BETS_SETTLED = Counter("thisthat_bets_settled_total", "Bets settled, by status", ["status"])
FEED_POLLS = Counter(
    "thisthat_feed_polls_total", "Feed poll runs by job and outcome", ["job", "outcome"]
)
FEED_SKIPPED = Counter(
    "thisthat_feed_records_skipped_total", "Upstream records skipped as malformed"
)
FEED_UPSTREAM_ERRORS = Counter(
    "thisthat_feed_upstream_errors_total", "Upstream request failures", ["kind"]
)
CACHE_LOOKUPS = Counter("thisthat_cache_lookups_total", "Read cache lookups", ["cache", "result"])
ODDS_TICKS = Counter("thisthat_odds_ticks_total", "Odds changes emitted")
BET_BATCH_SIZE = Histogram(
    "thisthat_bet_batch_size",
    "Bets committed together in one transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200),
)
BETS_SHED = Counter("thisthat_bets_shed_total", "Bets refused because the server was behind")
PUSH_BATCH_SIZE = Histogram(
    "thisthat_push_batch_size",
    "Pushes carried by one cross-node publish",
    buckets=(1, 2, 5, 10, 50, 100, 500, 1000),
)
EVENT_LOOP_LAG = Gauge(
    "thisthat_event_loop_lag_seconds", "Smoothed event loop lag (bets are shed above the limit)"
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
