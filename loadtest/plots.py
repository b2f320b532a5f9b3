"""PNG charts of a load run (requests and failures per second, latency over time, latency
percentiles), with the `plots` extra only. The title carries the run's verdict, so a chart of a
run that lost players or was refused cannot pass for a clean one."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from loadtest.stats import EXPECTED_REFUSALS


def write_plots(report: dict[str, Any], path: Path) -> Path | None:
    """Write the chart next to the JSON result; None (and nothing written) without matplotlib."""
    try:
        # matplotlib is the optional `plots` extra; without it there is no chart. Imported by name,
        # so type checking is the same with and without it installed.
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return None
    timeline = report["timeline"]
    failed_run = bool(report.get("problems"))
    figure, ((rates, failures), (over_time, histogram)) = plt.subplots(2, 2, figsize=(13, 8.5))
    seconds = [point["t"] for point in timeline]

    for key, label in (("sent", "offered"), ("answered", "achieved"), ("ok", "ok")):
        rates.plot(seconds, [point.get(key, 0) for point in timeline], label=label)
    rates.set(xlabel="seconds", ylabel="requests / s", title="Offered, achieved and ok per second")
    rates.legend()
    connections = report["connections"]
    refused = sum(connections["failed"].values())
    rates.text(
        0.01,
        0.02,
        f"players connected: {connections['connected']} of {report['players']}"
        + (f" ({refused} refused: {connections['failed']})" if refused else ""),
        transform=rates.transAxes,
        fontsize=8,
        color="red" if refused else "black",
    )

    codes = sorted({code for point in timeline for code in point.get("errors", {})})
    for code in codes:
        expected = code in EXPECTED_REFUSALS
        failures.plot(
            seconds,
            [point.get("errors", {}).get(code, 0) for point in timeline],
            label=f"{code} (expected)" if expected else code,
            linestyle="--" if expected else "-",
        )
    if not codes:
        failures.text(0.5, 0.5, "no refusals", ha="center", transform=failures.transAxes)
    else:
        failures.legend(fontsize=8)
    failures.set(
        xlabel="seconds", ylabel="answers / s", title="Refused or lost per second, by code"
    )

    measured = [point for point in timeline if point.get("count")]
    for key, label in (("p50Ms", "p50"), ("p99Ms", "p99"), ("maxMs", "max")):
        over_time.plot(
            [point["t"] for point in measured], [point[key] for point in measured], label=label
        )
    over_time.set(
        xlabel="seconds", ylabel="ack latency (ms)", yscale="log", title="Latency over time"
    )
    over_time.legend()
    latency = report["latency"]
    names = [key for key in ("p50Ms", "p95Ms", "p99Ms", "p999Ms", "maxMs") if key in latency]
    histogram.bar([name.removesuffix("Ms") for name in names], [latency[name] for name in names])
    histogram.set(ylabel="ms", title=f"Ack latency ({latency.get('count', 0)} acks)")

    figure.suptitle(
        f"{report['mode']} loop, offered {report['offeredRate']}/s, achieved "
        f"{report['achievedRate']}/s, ok {report['okRate']}/s\n{report.get('verdict', '')}",
        color="red" if failed_run else "black",
    )
    figure.tight_layout()
    output = path.with_suffix(".png")
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output
