"""The bench's chart: latency and throughput per target and concurrency level."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    pass

from .runner import BenchReport


def save_chart(report: BenchReport, path: str | os.PathLike[str]) -> Path:
    """A PNG of latency p50/p95/p99 (and TTFT p50) and requests/s per target and concurrency (needs matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("--chart needs matplotlib: pip install matplotlib") from None
    rows = sorted(report.results, key=lambda r: (r.concurrency, [x.target for x in report.results].index(r.target)))
    labels = [f"{r.target}\nc={r.concurrency}" for r in rows]
    fig = Figure(figsize=(max(6.0, 1.3 * len(rows) + 3), 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    width = 0.2
    xs = list(range(len(rows)))
    for i, (key, name) in enumerate((("p50", "latency p50"), ("p95", "latency p95"), ("p99", "latency p99"))):
        values = [r.latency_ms.get(key) or 0.0 for r in rows]
        top.bar([x + (i - 1.5) * width for x in xs], values, width, label=name)
    top.bar([x + 1.5 * width for x in xs], [r.ttft_ms.get("p50") or 0.0 for r in rows], width, label="TTFT p50")
    top.set_ylabel("ms")
    top.set_title(f"costtrack bench {report.run_id}: latency")
    top.legend(loc="upper left", fontsize="small")
    top.grid(axis="y", alpha=0.3)
    bottom.bar(xs, [r.requests_per_s or 0.0 for r in rows], 0.5, color="tab:green")
    bottom.set_ylabel("requests/s")
    bottom.set_xticks(xs, labels, fontsize="small")
    bottom.grid(axis="y", alpha=0.3)
    out = Path(path)
    fig.savefig(out, format="png", dpi=110)
    return out
