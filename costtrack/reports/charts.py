"""PNG charts beside a report: spend by day and by model, latency distribution (matplotlib, when installed).

matplotlib is optional (the `reports` extra). Without it `write_charts` writes
nothing and returns a note the document prints in place of the charts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..format import usd

if TYPE_CHECKING:
    from .audit import Audit
    from .simulate import Replay

__all__ = ["MISSING_NOTE", "Chart", "available", "write_charts"]

MISSING_NOTE = "Charts skipped: matplotlib is not installed (`pip install 'costtrack[reports]'` adds it)."
#: Models drawn separately in the spend-by-day chart; the others are summed as "other".
TOP_MODELS = 6


@dataclass(frozen=True)
class Chart:
    """A chart written beside the document: its title, and its file name relative to the document."""

    title: str
    file: str


def available() -> bool:
    """Whether matplotlib is installed."""
    from importlib.util import find_spec

    return find_spec("matplotlib") is not None


def write_charts(audit: Audit, directory: Path, stem: str) -> tuple[list[Chart], str | None]:
    """Write the audit's charts as `directory/stem-*.png`; ([], note) when matplotlib is missing or there is nothing to draw."""
    if not available():
        return [], MISSING_NOTE
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    charts: list[Chart] = []
    for title, suffix, draw in (
        ("Spend by day", "spend-by-day", lambda ax: _spend_by_day(ax, audit.replay)),
        ("Spend by model", "spend-by-model", lambda ax: _spend_by_model(ax, audit.replay)),
        ("Latency by endpoint (p50, p95, p99)", "latency", lambda ax: _latency(ax, audit.latency.rows)),
        ("Latency distribution by endpoint", "latency-distribution",
         lambda ax: _latency_distribution(ax, audit.latency_histogram)),
    ):
        fig, ax = plt.subplots(figsize=(9, 4.2), dpi=100)
        try:
            if not draw(ax):
                continue
            ax.set_title(title, loc="left", fontsize=12)
            fig.tight_layout()
            path = directory / f"{stem}-{suffix}.png"
            fig.savefig(path)
            charts.append(Chart(title=title, file=path.name))
        finally:
            plt.close(fig)
    return charts, None if charts else "No chart: the period has no priced or timed calls to draw."


def _spend_by_day(ax: Any, rep: Replay) -> bool:
    if not rep.daily or not any(d.spend_usd for d in rep.daily):
        return False
    totals: dict[str, float] = {}
    for d in rep.daily:
        totals[d.model] = totals.get(d.model, 0.0) + d.spend_usd
    top = [m for m, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:TOP_MODELS] if totals[m] > 0]
    first = date.fromisoformat(rep.daily[0].day)
    last = date.fromisoformat(rep.daily[-1].day)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    index = {d.isoformat(): i for i, d in enumerate(days)}
    series: dict[str, list[float]] = {m: [0.0] * len(days) for m in [*top, "other"]}
    for d in rep.daily:
        series[d.model if d.model in top else "other"][index[d.day]] += d.spend_usd
    bottom = [0.0] * len(days)
    for model, values in series.items():
        if not any(values):
            continue
        ax.bar(days, values, bottom=bottom, label=model, width=0.8)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("USD per day")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.figure.autofmt_xdate()
    return True


def _spend_by_model(ax: Any, rep: Replay) -> bool:
    totals: dict[str, float] = {}
    for g in rep.groups:
        totals[g.model] = totals.get(g.model, 0.0) + g.spend_usd
    items = [(m, v) for m, v in sorted(totals.items(), key=lambda kv: kv[1]) if v > 0]
    if not items:
        return False
    names = [m for m, _ in items]
    values = [v for _, v in items]
    bars = ax.barh(names, values)
    for bar, value in zip(bars, values):
        ax.annotate(usd(value), (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)  # fmt: skip
    ax.set_xlabel("USD over the period")
    ax.margins(x=0.15)
    ax.grid(axis="x", alpha=0.3)
    return True


def _latency(ax: Any, rows: list[list[Any]]) -> bool:
    """Per endpoint, the p50, p95 and p99 latency (rows of the audit's latency table: endpoint, n, mean, p50, p95, p99)."""
    data = [(row[0].strip("*"), row[3:6]) for row in rows if row[3] is not None]
    if not data:
        return False
    data.reverse()  # the first endpoint at the top
    height = 0.27
    for i, (label, color) in enumerate((("p50", "#4C72B0"), ("p95", "#DD8452"), ("p99", "#C44E52"))):
        ys = [j + (1 - i) * height for j in range(len(data))]
        ax.barh(ys, [values[i] or 0 for _, values in data], height=height, label=label, color=color)
    ax.set_yticks(range(len(data)), [name for name, _ in data], fontsize=8)
    ax.set_xlabel("latency, ms (nearest-rank percentiles; response-cache hits excluded)")
    ax.xaxis.set_major_formatter(lambda value, _pos: f"{value:,.0f}")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return True


#: Fine histogram buckets (32 a decade) merged per bar of the distribution chart: 8 bars a decade.
MERGED_BUCKETS = 4


def distribution(counts: dict[int, int]) -> tuple[list[float], list[float]]:
    """One endpoint's histogram → (edges, share of its calls per bar), bars of MERGED_BUCKETS fine buckets,
    contiguous from the lowest to the highest non-empty one (the open-ended first and last buckets drawn one bar wide).
    """
    from .stats import bucket_range

    total = sum(counts.values())
    merged: dict[int, int] = {}
    for b, n in counts.items():
        merged[b // MERGED_BUCKETS] = merged.get(b // MERGED_BUCKETS, 0) + n
    bars = range(min(merged), max(merged) + 1)
    edges = [bucket_range(bar * MERGED_BUCKETS)[0] for bar in bars] + [bucket_range(bars[-1] * MERGED_BUCKETS + MERGED_BUCKETS - 1)[1]]
    width = 10 ** (MERGED_BUCKETS / 32)
    if edges[0] == float("-inf"):
        edges[0] = edges[1] / width
    if edges[-1] == float("inf"):
        edges[-1] = edges[-2] * width
    return edges, [merged.get(bar, 0) / total for bar in bars]


def _latency_distribution(ax: Any, hist: dict[str, dict[int, int]]) -> bool:
    """Per endpoint (the busiest TOP_MODELS), the share of its timed calls by latency, on a log scale."""
    busiest = sorted((kv for kv in hist.items() if kv[1]), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:TOP_MODELS]
    if not busiest:
        return False
    for endpoint, counts in busiest:
        edges, shares = distribution(counts)
        ax.stairs([100 * v for v in shares], edges, label=f"{endpoint} ({sum(counts.values()):,})", linewidth=1.4)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(lambda value, _pos: f"{value:,.0f}" if value >= 1 else f"{value:g}")
    ax.set_xlabel("latency, ms, log scale (timed calls; response-cache hits excluded)")
    ax.set_ylabel("% of the endpoint's calls")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.grid(alpha=0.3)
    return True
