"""Prometheus metrics (prometheus-client): requests and events by name and outcome, latencies, gauges.

Names carry their unit (`_seconds`, `_credits`, `_total`); labels are bounded sets (event names,
error codes, feed jobs), never socket ids, users or rooms. deploy/grafana-dashboard.json and
deploy/alerts.yml are built on these names.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from decimal import Decimal
from itertools import accumulate

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import REGISTRY, CounterMetricFamily, HistogramMetricFamily, Metric

# The use cases' own counters, declared in services/metrics.py; listed here so /metrics is one page.
from services.metrics import (  # noqa: F401
    BET_BATCH_SIZE,
    BETS_PLACED,
    BETS_SETTLED,
    BETS_SHED,
    ODDS_TICKS,
    STREAM_BAD_INPUT,
    STREAM_FRAMES,
    STREAM_ODDS_AGE,
    STREAM_PUSH_DELAY,
    STREAM_STALE_UPDATES,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REST_REQUESTS = Counter(
    "thisthat_rest_requests_total",
    "REST requests by route and status",
    ["route", "method", "status"],
)
REST_LATENCY = Histogram(
    "thisthat_rest_request_seconds", "REST request latency", ["route"], buckets=LATENCY_BUCKETS
)


class SocketEventStats:
    """Socket.IO events by name and outcome, and their latency, as plain numbers read at scrape.

    Every answered event lands here, thousands a second; prometheus-client's own counter and
    histogram take a lock on each update, which the event loop (the only writer) never needs.
    Exposed as `thisthat_socket_events_total{event,outcome}` and
    `thisthat_socket_event_seconds{event}` (a histogram on LATENCY_BUCKETS).
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        # Per event: one count per bucket (the last is +Inf), then the sum of seconds.
        self.latencies: dict[str, list[float]] = {}

    def record(self, event: str, outcome: str, seconds: float) -> None:
        key = (event, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1
        latency = self.latencies.get(event)
        if latency is None:
            latency = self.latencies[event] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        latency[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "thisthat_socket_events",
            "Socket.IO events by name and outcome (ok or error code)",
            labels=["event", "outcome"],
        )
        for (event, outcome), count in self.counts.items():
            events.add_metric([event, outcome], count)
        yield events
        latency = HistogramMetricFamily(
            "thisthat_socket_event_seconds",
            "Socket.IO event handling latency until the ack",
            labels=["event"],
        )
        for event, counts in self.latencies.items():
            cumulative = list(accumulate(counts[:-1]))
            buckets = [
                (str(bound), n) for bound, n in zip(LATENCY_BUCKETS, cumulative, strict=False)
            ]
            latency.add_metric([event], [*buckets, ("+Inf", cumulative[-1])], counts[-1])
        yield latency


SOCKET_EVENT_STATS = SocketEventStats()
REGISTRY.register(SOCKET_EVENT_STATS)
ERRORS = Counter("thisthat_errors_total", "Errors answered, by code", ["code"])
CONNECTED_SOCKETS = Gauge("thisthat_connected_sockets", "Sockets connected to this node")
ACTIVE_USERS = Gauge("thisthat_active_users", "Distinct users with a socket on this node")
DB_POOL_IN_USE = Gauge("thisthat_db_pool_in_use", "Database connections checked out of the pool")
DB_POOL_SIZE = Gauge("thisthat_db_pool_size", "Database connections open in the pool")
DB_POOL_MAX = Gauge("thisthat_db_pool_max", "Most database connections the pool may open")
DB_QUERY_SECONDS = Histogram(
    "thisthat_db_query_seconds", "PostgreSQL query time seen by the pool", buckets=LATENCY_BUCKETS
)
FEED_POLLS = Counter(
    "thisthat_feed_polls_total", "Feed poll runs by job and outcome", ["job", "outcome"]
)
FEED_SKIPPED = Counter(
    "thisthat_feed_records_skipped_total", "Upstream records skipped as malformed"
)
FEED_UPSTREAM_ERRORS = Counter(
    "thisthat_feed_upstream_errors_total", "Upstream request failures", ["kind"]
)
FEED_POLL_SECONDS = Histogram(
    "thisthat_feed_poll_seconds",
    "Duration of one feed poll run, by job",
    ["job"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
# Read from Redis at scrape time, so every node reports the poller's state.
FEED_LAST_SUCCESS = Gauge(
    "thisthat_feed_last_success_timestamp_seconds",
    "Unix time of the last successful feed poll, by job (0: never)",
    ["job"],
)
FEED_CONSECUTIVE_FAILURES = Gauge(
    "thisthat_feed_consecutive_failures", "Feed poll failures in a row, by job", ["job"]
)
RECOVERY_SESSIONS = Counter(
    "thisthat_recovery_sessions_total",
    "Handshakes of clients that opted in to recovery, by outcome (fresh, recovered)",
    ["outcome"],
)
RECOVERY_REPLAYED = Counter(
    "thisthat_recovery_replayed_total", "Pushes replayed to recovered sockets, by event", ["event"]
)
STREAM_ENABLED = Gauge(
    "thisthat_stream_enabled", "1 on a node configured to stream the market channel (FEED_STREAM)"
)
STREAM_CONNECTIONS_UP = Gauge(
    "thisthat_stream_connections_up", "Market channel connections open and subscribed"
)
STREAM_CONNECTIONS = Gauge(
    "thisthat_stream_connections", "Market channel connections the feed node wants"
)
STREAM_TOKENS = Gauge("thisthat_stream_subscribed_tokens", "Tokens subscribed on live connections")
STREAM_RECONNECTS = Gauge(
    "thisthat_stream_reconnects", "Market channel connections replaced since the stream started"
)
STREAM_LIVE_MARKETS = Gauge(
    "thisthat_stream_live_markets", "Open markets whose odds the stream keeps current"
)
MARKETS_OPEN = Gauge("thisthat_markets_open", "Open markets in this node's cache")
MARKETS_STALE_ODDS = Gauge(
    "thisthat_markets_stale_odds", "Open markets whose odds are older than ODDS_MAX_AGE_S"
)
ODDS_AGE_MAX = Gauge(
    "thisthat_odds_age_max_seconds", "Age of the oldest odds among open markets (feed lag)"
)
CACHE_LOOKUPS = Counter("thisthat_cache_lookups_total", "Read cache lookups", ["cache", "result"])
PUSH_BATCH_SIZE = Histogram(
    "thisthat_push_batch_size",
    "Pushes carried by one cross-node publish",
    buckets=(1, 2, 5, 10, 50, 100, 500, 1000),
)
PUSH_FANOUT_SECONDS = Histogram(
    "thisthat_push_fanout_seconds",
    "From a push being queued on any node to its delivery to this node's sockets",
    buckets=LATENCY_BUCKETS,
)
REDIS_UP = Gauge("thisthat_redis_up", "1 when Redis answered this scrape's ping, else 0")
REDIS_ERRORS = Counter(
    "thisthat_redis_errors_total",
    "Redis commands that failed to reach Redis, by component",
    ["component"],
)
AUDIT_VIOLATIONS = Gauge(
    "thisthat_audit_violations", "Invariant violations found by the last `thisthat audit`"
)
AUDIT_LAST_RUN = Gauge(
    "thisthat_audit_last_run_timestamp_seconds", "Unix time of the last `thisthat audit` (0: never)"
)
EVENT_LOOP_LAG = Gauge(
    "thisthat_event_loop_lag_seconds", "Smoothed event loop lag (bets are shed above the limit)"
)

# Upper bounds (credits) of the balance distribution's buckets.
BALANCE_BUCKETS: tuple[Decimal, ...] = tuple(
    Decimal(bound) for bound in (0, 100, 500, 1000, 2000, 5000, 10_000, 50_000, 100_000, 1_000_000)
)


class BalanceDistribution:
    """`thisthat_user_balance_credits`: how many players hold how many credits, right now.

    A histogram of a snapshot (not of events): its buckets are replaced, not added to, each
    time the snapshot is refreshed, so read it with `max by (le)` rather than `rate()`.
    """

    def __init__(self) -> None:
        self.cumulative: Sequence[int] = [0] * len(BALANCE_BUCKETS)
        self.count = 0
        self.total = Decimal(0)

    def update(self, cumulative: Sequence[int], count: int, total: Decimal) -> None:
        self.cumulative, self.count, self.total = cumulative, count, total

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "thisthat_user_balance_credits", "Players by balance (credits), a current snapshot"
        )
        buckets = [
            (str(bound), float(n))
            for bound, n in zip(BALANCE_BUCKETS, self.cumulative, strict=True)
        ]
        family.add_metric([], [*buckets, ("+Inf", float(self.count))], float(self.total))
        yield family


BALANCES = BalanceDistribution()
REGISTRY.register(BALANCES)

PUSHES_SKIPPED = Counter(
    "thisthat_pushes_skipped_total",
    "Superseded pushes not sent to a socket whose send buffer was above the high-water mark",
)
PUSHES_SUPERSEDED = Counter(
    "thisthat_pushes_superseded_total",
    "State pushes (odds, leaderboards) a node behind on delivering skipped for a newer one queued",
)
SLOW_SOCKETS_DROPPED = Counter(
    "thisthat_slow_sockets_dropped_total",
    "Sockets disconnected because their peer stopped reading past the buffer limit",
)
PROTOCOL_ERRORS = Counter(
    "thisthat_protocol_errors_total", "Connections closed for undecodable or unexpected packets"
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
