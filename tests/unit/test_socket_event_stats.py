"""Socket.IO event counts and latencies as /metrics exposes them: labels, inclusive bucket
bounds, cumulative buckets and the sum."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from server.runtime.metrics import SocketEventStats


def exposition(stats: SocketEventStats) -> str:
    registry = CollectorRegistry()
    registry.register(stats)
    return generate_latest(registry).decode()


def test_counts_by_event_and_outcome_and_latency_in_cumulative_buckets() -> None:
    stats = SocketEventStats()
    stats.record("bet:place", "ok", 0.001)  # on a bound: counted in that bucket (le is <=)
    stats.record("bet:place", "ok", 0.003)
    stats.record("bet:place", "RATE_LIMITED", 7.0)  # past every bound: only +Inf
    text = exposition(stats)
    assert 'thisthat_socket_events_total{event="bet:place",outcome="ok"} 2.0' in text
    assert 'thisthat_socket_events_total{event="bet:place",outcome="RATE_LIMITED"} 1.0' in text
    assert 'thisthat_socket_event_seconds_bucket{event="bet:place",le="0.001"} 1.0' in text
    assert 'thisthat_socket_event_seconds_bucket{event="bet:place",le="0.0025"} 1.0' in text
    assert 'thisthat_socket_event_seconds_bucket{event="bet:place",le="0.005"} 2.0' in text
    assert 'thisthat_socket_event_seconds_bucket{event="bet:place",le="5.0"} 2.0' in text
    assert 'thisthat_socket_event_seconds_bucket{event="bet:place",le="+Inf"} 3.0' in text
    assert 'thisthat_socket_event_seconds_count{event="bet:place"} 3.0' in text
    assert 'thisthat_socket_event_seconds_sum{event="bet:place"} 7.004' in text


def test_nothing_recorded_exposes_no_samples() -> None:
    assert "{" not in exposition(SocketEventStats())
