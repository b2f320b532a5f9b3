"""The load client's bookkeeping: open-loop schedules, latency from the scheduled send time,
percentiles merged across client processes, and error counting. No sockets, no timing."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from loadtest.plan import LoadPlan, PlanError, parse_mix, parse_range
from loadtest.player_socket import PendingCall, PlayerSocket
from loadtest.plots import write_plots
from loadtest.runner import build_report, format_report, per_second_counts
from loadtest.stats import (
    LatencyBook,
    arrival_offsets,
    decode,
    encode,
    merge,
    merge_books,
    new_histogram,
    record_seconds,
    summarize,
)
from loadtest.verdict import headline, problems
from loadtest.worker import LoadWorker, rate_limit_kind


def test_fixed_schedule_is_evenly_spaced_at_the_rate() -> None:
    offsets = list(arrival_offsets(100, 2.0))
    assert len(offsets) == 200
    assert offsets[0] == 0.0
    assert offsets[1] == pytest.approx(0.01)
    assert offsets[-1] == pytest.approx(1.99)


def test_poisson_schedule_has_the_rate_on_average_and_irregular_gaps() -> None:
    offsets = list(arrival_offsets(1000, 10.0, poisson=True, rng=random.Random(5)))
    assert 9500 < len(offsets) < 10500
    gaps = {round(later - earlier, 6) for earlier, later in zip(offsets, offsets[1:], strict=False)}
    assert len(gaps) > 1000
    assert all(0 <= offset < 10.0 for offset in offsets)


def test_no_rate_means_no_arrivals() -> None:
    assert list(arrival_offsets(0, 10)) == []


def test_a_stall_shows_in_latency_measured_from_the_scheduled_time() -> None:
    # 1,000/s scheduled; the server stalls 200 ms, so the first 200 requests are all answered at t=0.2
    # (a closed-loop client would have sent them late and seen ~0 ms each: coordinated omission).
    book = LatencyBook()
    for offset in arrival_offsets(1000, 0.2):
        book.sent_one()
        book.answered_one("bet", scheduled=offset, answered_at=0.2, error_code=None)
    summary = summarize(book.histogram)
    assert summary["count"] == 200
    assert summary["maxMs"] == pytest.approx(200, rel=0.01)
    assert summary["p50Ms"] == pytest.approx(100, rel=0.02)
    assert summary["p99Ms"] == pytest.approx(198, rel=0.02)


def test_percentiles_merged_across_processes_equal_one_book_with_every_value() -> None:
    rng = random.Random(1)
    values = [rng.uniform(0.001, 0.5) for _ in range(3000)]
    one, first, second = LatencyBook(), LatencyBook(), LatencyBook()
    for index, seconds in enumerate(values):
        one.answered_one("bet", 0.0, seconds, None)
        (first if index % 3 else second).answered_one("bet", 0.0, seconds, None)
    merged = merge_books([first.snapshot(), second.snapshot()])
    assert merged["latency"] == summarize(one.histogram)
    assert merged["answered"] == 3000
    assert merged["byOperation"]["bet"]["count"] == 3000


def test_histograms_survive_encoding_and_empty_ones_merge_to_nothing() -> None:
    histogram = new_histogram()
    record_seconds(histogram, 0.012)
    assert decode(encode(histogram)).get_total_count() == 1
    assert encode(new_histogram()) == ""
    assert merge(["", ""]).get_total_count() == 0
    assert summarize(new_histogram()) == {"count": 0}


def test_errors_are_counted_by_code_and_expected_refusals_are_not_failures() -> None:
    book = LatencyBook()
    for code in ["ODDS_CHANGED", "TIMEOUT", "ODDS_CHANGED", "REWARD_ALREADY_CLAIMED", None]:
        book.answered_one("bet", 0.0, 0.01, code)
    merged = merge_books([book.snapshot(), LatencyBook().snapshot()])
    assert merged["errors"] == {"ODDS_CHANGED": 2, "TIMEOUT": 1, "REWARD_ALREADY_CLAIMED": 1}
    assert merged["unexpectedErrors"] == 3
    assert merged["succeeded"] == 1


def _worker(**options: Any) -> LoadWorker:
    plan = LoadPlan(base_url="http://127.0.0.1:1", players=[{"accessToken": "x"}], **options)
    return LoadWorker(plan, None, None)  # type: ignore[arg-type]  # queues unused without run()


def test_warmup_answers_are_not_measured_and_error_acks_count_by_code() -> None:
    worker = _worker()
    worker.measure_from, worker.measure_until = 100.0, float("inf")
    worker.on_answer(PendingCall("bet", 99.0, worker.on_answer), {"ok": True, "data": {}})
    worker.on_answer(PendingCall("bet", 101.0, worker.on_answer), {"ok": True, "data": {}})
    worker.on_answer(
        PendingCall("bet", 102.0, worker.on_answer),
        {"ok": False, "error": {"code": "INSUFFICIENT_CREDITS"}},
    )
    worker.on_answer(PendingCall("wallet", 103.0, worker.on_answer), "not an ack")
    assert worker.book.answered == 3
    assert dict(worker.book.errors) == {"INSUFFICIENT_CREDITS": 1, "BAD_ACK": 1}


def test_an_odds_push_updates_the_snapshot_and_its_delivery_delay() -> None:
    worker = _worker()
    tick = {"marketId": "m1", "thisOdds": 0.41, "thatOdds": 0.59, "at": "2020-01-01T00:00:00Z"}
    worker.on_push("odds", tick)
    worker.on_push("odds", tick)
    assert worker.odds["m1"] == (0.41, 0.59)
    assert worker.tick_delays.get_total_count() == 2
    assert worker.fanout["m1@2020-01-01T00:00:00Z"][0] == 2


def test_bets_carry_expected_odds_and_unique_client_bet_ids() -> None:
    worker = _worker(max_slippage=0.02, amount=(10, 20))
    worker.open_markets = {"m1"}
    worker.odds["m1"] = (0.3, 0.7)
    first, second = worker.payload("bet", 0), worker.payload("bet", 0)
    assert first is not None and second is not None
    assert first["clientBetId"] != second["clientBetId"]
    assert first["expectedOdds"] == (0.3 if first["side"] == "this" else 0.7)
    assert first["maxSlippage"] == 0.02
    assert 10 <= first["amount"] <= 20
    worker.open_markets = set()
    assert worker.payload("bet", 0) is None


def test_socket_frames_reach_the_ack_handler_and_the_push_handler() -> None:
    pushes: list[tuple[str, Any]] = []
    answers: list[Any] = []
    socket = PlayerSocket(lambda event, data: pushes.append((event, data)))
    socket.pending[12] = PendingCall("bet", 0.0, lambda call, answer: answers.append(answer))
    socket._handle('4312[{"ok":true,"data":{"balance":5}}]')
    socket._handle('42["odds",{"marketId":"m"}]')
    socket._handle("4399[{}]")  # an ack nobody waits for is ignored
    assert answers == [{"ok": True, "data": {"balance": 5}}]
    assert pushes == [("odds", {"marketId": "m"})]
    assert socket.pending == {}


def test_a_plan_is_shared_out_over_processes() -> None:
    players = [{"id": str(index)} for index in range(10)]
    plans = LoadPlan(base_url="u", players=players, rate=1000, concurrency=20).split(4)
    assert sum(len(share.players) for share in plans) == 10
    assert sum(share.rate for share in plans) == pytest.approx(1000)
    assert sum(share.concurrency for share in plans) == 20
    assert [share.process_index for share in plans] == [0, 1, 2, 3]


def test_mix_and_range_options_are_checked() -> None:
    assert parse_mix("bet=80,wallet=20") == {"bet": 80.0, "wallet": 20.0}
    assert parse_range("10-50") == (10, 50)
    with pytest.raises(PlanError):
        parse_mix("jump=1")
    with pytest.raises(PlanError):
        parse_mix("bet=0")
    with pytest.raises(PlanError):
        parse_range("50-10")


def _report(**changes: Any) -> dict[str, Any]:
    plan = LoadPlan(base_url="u", players=[{"id": str(index)} for index in range(1000)], rate=200)
    book = LatencyBook()
    book.sent_one()
    book.answered_one("bet", 0.0, 0.01, None)
    report = build_report(
        plan,
        2,
        [
            {
                "book": book.snapshot(),
                "windowAnswers": 1,
                "windowOk": 1,
                "connected": 1000,
                "connectErrors": {},
                "connectTimes": "",
                "tickDelays": "",
                "fanout": {},
                "pushes": {},
                "dropped": 0,
            }
        ],
        {},
    )
    report.update({"offeredRate": 200.0, **changes})
    report["problems"] = problems(report)
    report["verdict"] = headline(report, report["problems"])
    return report


def test_a_clean_run_passes() -> None:
    report = _report()
    assert report["problems"] == []
    assert report["verdict"].startswith("verdict: ok")
    assert format_report(report).endswith(report["verdict"])


def test_refused_handshakes_fail_the_run_and_name_the_setting_to_change() -> None:
    report = _report(connections={"connected": 100, "failed": {"handshake:429": 900}, "time": {}})
    assert len(report["problems"]) == 1
    assert "900 of 1,000 players were refused at the handshake" in report["problems"][0]
    assert (
        "RATE_LIMIT_CONNECTIONS_PER_IP=2000/1 or RATE_LIMIT_ENABLED=false"
        in (report["problems"][0])
    )
    assert report["verdict"] == "verdict: FAILED: 900 of 1,000 players not connected"
    summary = format_report(report)
    assert "100 of 1000 players connected" in summary.splitlines()[1]
    assert summary.endswith(report["verdict"])


def test_players_out_of_credits_and_every_unexpected_code_fail_the_run() -> None:
    report = _report(
        errors={"INSUFFICIENT_CREDITS": 516, "ODDS_CHANGED": 3, "REWARD_ALREADY_CLAIMED": 2}
    )
    assert any("--credits 100000" in line for line in report["problems"])
    assert any("ODDS_CHANGED" in line for line in report["problems"])
    assert not any("REWARD_ALREADY_CLAIMED" in line for line in report["problems"])
    assert report["verdict"] == "verdict: FAILED: INSUFFICIENT_CREDITS=516, ODDS_CHANGED=3"


def test_rate_limited_answers_name_the_limit_they_met() -> None:
    assert rate_limit_kind({"message": "too many bets; retry in 12 ms"}) == "bets"
    assert rate_limit_kind({"message": "too many events; retry in 3 ms"}) == "events"
    assert rate_limit_kind({"message": "the server is busy; retry shortly"}) == "busy"
    report = _report(errors={"RATE_LIMITED": 5}, rateLimited={"bets": 3, "busy": 2})
    assert any("RATE_LIMIT_BETS_PER_USER=1000/1" in line for line in report["problems"])
    assert any("server was busy" in line for line in report["problems"])


def test_a_process_without_players_shows_as_offered_below_the_target() -> None:
    report = _report(offeredRate=100.0, sent=500)
    assert report["verdict"] == "verdict: FAILED: offered 100.0/s of 200/s"


def test_the_timeline_counts_offered_achieved_ok_and_refusals_by_code_per_second() -> None:
    progress = {
        1: {
            0: {"sent": 10, "answered": 9, "succeeded": 9, "errorsByCode": {}},
            1: {"sent": 10, "answered": 10, "succeeded": 8, "errorsByCode": {"TIMEOUT": 2}},
        },
        2: {
            0: {"sent": 20, "answered": 19, "succeeded": 14, "errorsByCode": {"X": 5}},
            1: {"sent": 20, "answered": 20, "succeeded": 13, "errorsByCode": {"TIMEOUT": 7}},
        },
        3: {0: {"sent": 30, "answered": 30, "succeeded": 24, "errorsByCode": {"X": 6}}},
    }
    counts = per_second_counts(progress)
    assert counts[1] == {"sent": 20, "answered": 19, "ok": 17, "errors": {"TIMEOUT": 2}}
    assert counts[2] == {"sent": 20, "answered": 20, "ok": 10, "errors": {"X": 5, "TIMEOUT": 5}}
    # Process 1 missed second 3: its totals carry over.
    assert counts[3] == {"sent": 10, "answered": 11, "ok": 10, "errors": {"X": 1}}


def test_the_chart_carries_the_verdict(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    report = _report(
        connections={"connected": 100, "failed": {"handshake:429": 900}, "time": {}},
        timeline=[{"t": 1, "sent": 200, "answered": 200, "ok": 80, "errors": {"X": 120}}],
    )
    titles: list[str] = []
    saved = plt.Figure.savefig

    def capture(figure: Any, *args: Any, **kwargs: Any) -> None:
        titles.append(figure._suptitle.get_text())
        titles.extend(axis.get_title() for axis in figure.axes)
        saved(figure, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt.Figure, "savefig", capture)
        chart = write_plots(report, tmp_path / "run.json")
    assert chart is not None and chart.exists()
    assert "verdict: FAILED: 900 of 1,000 players not connected" in titles[0]
    assert "Refused or lost per second, by code" in titles
