"""PNG charts of a load run (latency over time, latency histogram), with the `plots` extra only."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_plots(report: dict[str, Any], path: Path) -> Path | None:
    """Write the chart next to the JSON result; None (and nothing written) without matplotlib."""
    try:
        # matplotlib is the optional `plots` extra; without it (and its stubs) there is no chart.
        import matplotlib  # type: ignore[import-not-found]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        return None
    timeline = [point for point in report["timeline"] if point.get("count")]
    figure, (over_time, histogram) = plt.subplots(1, 2, figsize=(13, 4.5))
    seconds = [point["t"] for point in timeline]
    for key, label in (("p50Ms", "p50"), ("p99Ms", "p99"), ("maxMs", "max")):
        over_time.plot(seconds, [point[key] for point in timeline], label=label)
    over_time.set(
        xlabel="seconds", ylabel="ack latency (ms)", yscale="log", title="Latency over time"
    )
    over_time.legend()
    latency = report["latency"]
    names = [key for key in ("p50Ms", "p95Ms", "p99Ms", "p999Ms", "maxMs") if key in latency]
    histogram.bar([name.removesuffix("Ms") for name in names], [latency[name] for name in names])
    histogram.set(ylabel="ms", title=f"Ack latency ({latency.get('count', 0)} acks)")
    figure.suptitle(
        f"{report['mode']} loop, offered {report['offeredRate']}/s, achieved {report['achievedRate']}/s"
    )
    figure.tight_layout()
    output = path.with_suffix(".png")
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output
