"""The parent of a load run: starts the client processes, prints the live line, merges the results."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any, Final

from loadtest.plan import LoadPlan
from loadtest.stats import encode, merge, merge_books, new_histogram, summarize
from loadtest.verdict import connection_problems, headline, problems
from loadtest.worker import run_worker

Printer = Callable[[str], None]
Worker = Callable[[LoadPlan, "Queue[dict[str, Any]]", Connection], None]

# The processes start together this long after the start signal is sent.
START_DELAY_S: Final = 0.3
# Past the load's end, a client process drains its answers (at most --timeout) and ships its
# result; one that has not done so this much later is stopped, and what it last reported counts.
FINISH_GRACE_S: Final = 15.0
# After their results are in, the processes get this long (in all) to close their sockets and exit.
EXIT_GRACE_S: Final = 15.0


def print_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def run_load(
    plan: LoadPlan,
    processes: int,
    *,
    started: asyncio.Event | None = None,
    printer: Printer = print_stderr,
    connect_timeout_s: float = 300,
    worker_main: Worker = run_worker,
) -> dict[str, Any]:
    """Run the plan over `processes` client processes; `started` is set once the load begins.

    The run has a deadline, finish_deadline_s(plan) after the start: a process that has not sent
    its result by then is stopped, reported with what it last said, and its unanswered requests
    count as LOST, so a stuck process costs the verdict, never the report.
    """
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    plans = plan.split(processes)
    workers, controls = [], []
    for share in plans:
        parent_end, child_end = context.Pipe()
        worker = context.Process(
            target=worker_main,
            args=(share, results, child_end),
            daemon=True,
            name=f"loadtest-{share.process_index}",
        )
        worker.start()
        workers.append(worker)
        controls.append(parent_end)
    loop = asyncio.get_running_loop()

    async def next_message(timeout_s: float) -> dict[str, Any] | None:
        with contextlib.suppress(queue.Empty):
            message: dict[str, Any] = await loop.run_in_executor(None, results.get, True, timeout_s)
            return message
        return None

    def crashed() -> list[int]:
        return [index for index, worker in enumerate(workers) if worker.exitcode not in (None, 0)]

    ready: dict[int, dict[str, Any]] = {}
    finals: dict[int, dict[str, Any]] = {}
    try:
        connect_started = time.monotonic()
        while len(ready) < len(workers):
            message = await next_message(0.5)
            if message is not None and message["type"] == "ready":
                ready[message["process"]] = message
            if crashed():
                raise RuntimeError(f"load client process(es) {crashed()} died while connecting")
            if time.monotonic() - connect_started > connect_timeout_s:
                raise RuntimeError("load client processes did not finish connecting in time")
        connected = sum(message["connected"] for message in ready.values())
        printer(
            f"connected {connected}/{len(plan.players)} sockets in "
            f"{time.monotonic() - connect_started:.1f}s over {len(workers)} process(es)"
        )
        failed: dict[str, int] = defaultdict(int)
        for message in ready.values():
            for kind, count in message.get("connectErrors", {}).items():
                failed[kind] += count
        for line in connection_problems(dict(failed), len(plan.players)):
            printer(f"FAILING: {line}")
        start_wall = time.time() + START_DELAY_S
        for control in controls:
            control.send(start_wall)
        deadline = time.monotonic() + START_DELAY_S + finish_deadline_s(plan)
        if started is not None:
            started.set()
        # Second -> process -> that process's progress at that second; a line once all reported.
        seconds: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
        intervals: dict[int, list[str]] = defaultdict(list)
        printed = 0
        previous = {"sent": 0, "answered": 0}
        total_s = plan.warmup_s + plan.duration_s
        while len(finals) < len(workers):
            message = await next_message(0.25)
            if message is not None:
                if message["type"] == "final":
                    finals[message["process"]] = message
                elif message["type"] == "progress":
                    seconds[message["t"]][message["process"]] = message
                    intervals[message["t"]].append(message["interval"])
            elif crashed():
                for index in crashed():
                    reason = f"died (exit code {workers[index].exitcode})"
                    finals.setdefault(index, unfinished_final(index, reason, ready, seconds))
            if time.monotonic() > deadline:
                reason = (
                    f"did not finish within {finish_deadline_s(plan):g}s of the start (warm-up, "
                    f"duration, --timeout and {FINISH_GRACE_S:g}s) and was stopped"
                )
                for index in range(len(workers)):
                    if index not in finals:
                        finals[index] = unfinished_final(index, reason, ready, seconds)
                        printer(f"FAILING: load client process {index} {reason}")
            complete = [
                t for t, reports in seconds.items() if t > printed and len(reports) == len(workers)
            ]
            for t in sorted(complete):
                previous = _live_line(printer, t, seconds[t], intervals, previous, total_s)
                printed = t
    finally:
        finished = {index for index, final in finals.items() if not final.get("unfinished")}
        await stop_workers(workers, finished)
    return build_report(plan, len(workers), list(finals.values()), intervals, seconds)


def finish_deadline_s(plan: LoadPlan) -> float:
    """Seconds from the start by which every client process must have sent its result: the load,
    then its drain (at most --timeout), then FINISH_GRACE_S."""
    return plan.warmup_s + plan.duration_s + plan.timeout_s + FINISH_GRACE_S


async def stop_workers(workers: Sequence[BaseProcess], finished: set[int]) -> None:
    """Stop at once the processes that did not send their result; give the others EXIT_GRACE_S
    in all to close their sockets and exit, then kill what is left."""
    loop = asyncio.get_running_loop()
    for index, worker in enumerate(workers):
        if index not in finished and worker.is_alive():
            worker.terminate()
    give_up = time.monotonic() + EXIT_GRACE_S
    for worker in workers:
        await loop.run_in_executor(None, worker.join, max(0.0, give_up - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            await loop.run_in_executor(None, worker.join, 5.0)


def unfinished_final(
    index: int,
    reason: str,
    ready: dict[int, dict[str, Any]],
    progress: dict[int, dict[int, dict[str, Any]]],
) -> dict[str, Any]:
    """The result of a process that never sent one, from what it reported while running: its
    last running totals, its latencies second by second, and its connections. Requests it had
    sent without an answer count as LOST."""
    reports = [progress[t][index] for t in sorted(progress) if index in progress[t]]
    last: dict[str, Any] = reports[-1] if reports else {}
    sent, answered, ok = (last.get(key, 0) for key in ("sent", "answered", "succeeded"))
    lost = max(0, sent - answered)
    errors = dict(last.get("errorsByCode", {}))
    book_errors = {**errors, "LOST": lost} if lost else errors
    connected = ready.get(index, {})
    return {
        "type": "final",
        "process": index,
        "unfinished": {
            "process": index,
            "reason": reason,
            "lastReportS": last.get("t"),
            "sockets": last.get("sockets", 0),
            "sent": sent,
            "answered": answered,
            "ok": ok,
            "errors": errors,
            "dropped": last.get("dropped", 0),
            "lost": lost,
        },
        "book": {
            "histogram": encode(merge(report["interval"] for report in reports)),
            "byOperation": {},
            "errors": book_errors,
            "sent": sent,
            "answered": answered + lost,
            "succeeded": ok,
        },
        "windowAnswers": last.get("windowAnswers", answered),
        "windowOk": last.get("windowOk", ok),
        "connected": connected.get("connected", 0),
        "connectErrors": connected.get("connectErrors", {}),
        "connectTimes": "",
        "tickDelays": "",
        "fanout": {},
        "pushes": {},
        "dropped": last.get("dropped", 0),
        "rateLimited": last.get("rateLimited", {}),
        "betsAsked": last.get("betsAsked", 0),
        "betsWithoutMarket": last.get("betsWithoutMarket", 0),
    }


def _live_line(
    printer: Printer,
    t: int,
    progress: dict[int, dict[str, Any]],
    intervals: dict[int, list[str]],
    previous: dict[str, int],
    total_s: float,
) -> dict[str, int]:
    sent = sum(message["sent"] for message in progress.values())
    answered = sum(message["answered"] for message in progress.values())
    latency = summarize(merge(intervals.get(t, [])))
    printer(
        f"[{t:4d}/{total_s:.0f}s] sockets {sum(m['sockets'] for m in progress.values())}"
        f" | sent {sent - previous['sent']}/s answered {answered - previous['answered']}/s"
        f" | p50 {latency.get('p50Ms', 0):.1f} p99 {latency.get('p99Ms', 0):.1f}"
        f" max {latency.get('maxMs', 0):.1f} ms"
        f" | errors {sum(m['errors'] for m in progress.values())}"
        f" | dropped {sum(m['dropped'] for m in progress.values())}"
    )
    return {"sent": sent, "answered": answered}


def build_report(
    plan: LoadPlan,
    processes: int,
    finals: list[dict[str, Any]],
    intervals: dict[int, list[str]],
    progress: dict[int, dict[int, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    unfinished = [final["unfinished"] for final in finals if final.get("unfinished")]
    books = merge_books(final["book"] for final in finals)
    duration = plan.duration_s
    fanout: dict[str, list[float]] = {}
    for final in finals:
        for key, (count, delay) in final["fanout"].items():
            tick = fanout.setdefault(key, [0, 0.0])
            tick[0] += count
            tick[1] = max(tick[1], delay)
    ticks = merge(final["tickDelays"] for final in finals)
    pushes: dict[str, int] = defaultdict(int)
    connect_errors: dict[str, int] = defaultdict(int)
    rate_limited: dict[str, int] = defaultdict(int)
    for final in finals:
        for kind, count in final.get("rateLimited", {}).items():
            rate_limited[kind] += count
        for name, count in final["pushes"].items():
            pushes[name] += count
        for code, count in final["connectErrors"].items():
            connect_errors[code] += count
    counts = per_second_counts(progress or {})
    timeline = []
    for t in sorted(set(intervals) | set(counts)):
        summary = summarize(merge(intervals.get(t, [])))
        timeline.append(
            {
                "t": t,
                **{key: summary.get(key) for key in ("count", "p50Ms", "p99Ms", "maxMs")},
                **counts.get(t, {"sent": 0, "answered": 0, "ok": 0, "errors": {}}),
            }
        )
    report = {
        "mode": plan.mode,
        "arrivals": "poisson" if plan.poisson else "fixed",
        "url": plan.base_url,
        "players": len(plan.players),
        "processes": processes,
        "unfinishedProcesses": unfinished,
        "crashedProcesses": sum(entry["reason"].startswith("died") for entry in unfinished),
        "durationS": duration,
        "warmupS": plan.warmup_s,
        "mix": plan.mix,
        "targetRate": plan.rate if plan.mode == "open" else None,
        "concurrency": (plan.concurrency or len(plan.players)) if plan.mode == "closed" else None,
        "offeredRate": round(books["sent"] / duration, 1),
        "achievedRate": round(sum(final["windowAnswers"] for final in finals) / duration, 1),
        "okRate": round(sum(final["windowOk"] for final in finals) / duration, 1),
        **books,
        "connections": {
            "connected": sum(final["connected"] for final in finals),
            "failed": dict(connect_errors),
            "time": summarize(
                merge(final["connectTimes"] for final in finals) if finals else new_histogram()
            ),
        },
        "oddsTicks": {
            "deliveries": ticks.get_total_count(),
            "delay": summarize(ticks),
            "ticks": [
                {"tick": key, "recipients": int(count), "lastDeliveryMs": round(delay * 1000, 3)}
                for key, (count, delay) in sorted(fanout.items())
            ][-200:],
        },
        "pushes": dict(pushes),
        "socketsDropped": sum(final["dropped"] for final in finals),
        "rateLimited": dict(rate_limited),
        "betsAsked": sum(final.get("betsAsked", 0) for final in finals),
        "betsWithoutMarket": sum(final.get("betsWithoutMarket", 0) for final in finals),
        "timeline": timeline,
    }
    report["problems"] = problems(report)
    report["verdict"] = headline(report, report["problems"])
    return report


def per_second_counts(
    progress: dict[int, dict[int, dict[str, Any]]],
) -> dict[int, dict[str, Any]]:
    """Requests sent, answered, answered ok, and refused by code in each second of the run, from
    the processes' running totals (a process that missed a second keeps its last totals)."""
    latest: dict[int, dict[str, Any]] = {}
    sent = answered = ok = 0
    errors: dict[str, int] = {}
    counts: dict[int, dict[str, Any]] = {}
    for t in sorted(progress):
        latest.update(progress[t])
        now_errors: dict[str, int] = defaultdict(int)
        for message in latest.values():
            for code, count in message.get("errorsByCode", {}).items():
                now_errors[code] += count
        now_sent = sum(message["sent"] for message in latest.values())
        now_answered = sum(message["answered"] for message in latest.values())
        now_ok = sum(message.get("succeeded", 0) for message in latest.values())
        counts[t] = {
            "sent": now_sent - sent,
            "answered": now_answered - answered,
            "ok": now_ok - ok,
            "errors": {
                code: count - errors.get(code, 0)
                for code, count in now_errors.items()
                if count > errors.get(code, 0)
            },
        }
        sent, answered, ok, errors = now_sent, now_answered, now_ok, dict(now_errors)
    return counts


def format_report(report: dict[str, Any]) -> str:
    """The end-of-run summary a person reads."""
    latency = report["latency"]
    lines = [
        f"mode {report['mode']} ({report['arrivals']}), {report['players']} players over "
        f"{report['processes']} process(es), {report['durationS']:g}s measured",
        f"rate: offered {report['offeredRate']}/s, achieved {report['achievedRate']}/s "
        f"(ok {report['okRate']}/s, refused or lost "
        f"{round(report['achievedRate'] - report['okRate'], 1)}/s)"
        + (f", target {report['targetRate']:g}/s" if report["targetRate"] else "")
        + (
            f", {report['connections']['connected']} of {report['players']} players connected"
            if report["connections"]["failed"]
            else ""
        ),
        "ack latency ms: " + _percentiles(latency),
    ]
    for name, summary in report["byOperation"].items():
        lines.append(f"  {name:<12} n={summary['count']:<8} " + _percentiles(summary))
    errors = ", ".join(f"{code}={count}" for code, count in report["errors"].items()) or "none"
    lines.append(f"errors: {errors} (unexpected: {report['unexpectedErrors']})")
    connections = report["connections"]
    lines.append(
        f"connections: {connections['connected']} ok, failed {connections['failed'] or 'none'}, "
        "connect ms " + _percentiles(connections["time"])
    )
    ticks = report["oddsTicks"]
    lines.append(
        f"odds ticks: {ticks['deliveries']} deliveries, delay ms " + _percentiles(ticks["delay"])
    )
    lines.append(f"sockets dropped: {report['socketsDropped']}")
    lines += [f"  - {line}" for line in report["problems"]]
    lines.append(report["verdict"])
    return "\n".join(lines)


def _percentiles(summary: dict[str, Any]) -> str:
    if not summary.get("count"):
        return "(none)"
    return " ".join(
        f"{key.removesuffix('Ms')} {summary[key]:.2f}"
        for key in ("p50Ms", "p95Ms", "p99Ms", "maxMs")
    )
