"""The before/after document (docs/optimization-results.md): the comparison rows, savings, A/B test and notes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, true

from ...format import usd
from ...pricing import PriceBook
from ..calc import DAYS_PER_MONTH
from ..operands import least_places, places, rate_change, usd_start
from ..simulate import run_queries
from .ab_test import AbResult, ab_test
from .attribution import (
    Attribution,
    Credit,
    attribution,
    attribution_queries,
    credit,
    endpoint_models,
)
from .metrics import Metrics, Progress, measure, metric_queries
from .selection import NoRecords, Selection
from .thresholds import MIN_REQUESTS

__all__ = ["Results", "Row", "build_results", "steps"]


def steps(sides: int) -> int:
    """How many queries `build_results` (2 sides) or `build_summary` (1) runs: the progress bar's total."""
    return sides * (3 + len(attribution_queries("sqlite", true())))


@dataclass
class Row:
    """One metric of the comparison table.

    `change`: relative (+0.25 for +25%), except for rates (fmt "pct"), whose change is the difference
    in percentage points (after - before: -0.0047 for -0.47 pp), a relative change of a rate reading
    like a change of the rate itself. `places`: the decimals both values (and a rate's change) are
    shown with, when they must be more than usual for a formula of the document to check.
    """

    name: str
    fmt: str
    before: float | None
    after: float | None
    places: int | None = None

    @property
    def points(self) -> bool:
        """Whether the change is in percentage points (a rate) rather than relative."""
        return self.fmt == "pct"

    @property
    def change(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        if self.points:
            return self.after - self.before
        if self.before == 0:
            return None
        return (self.after - self.before) / abs(self.before)


@dataclass
class Results:
    generated_at: datetime
    before: Metrics
    after: Metrics
    rows: list[Row]
    enough: bool
    attribution_before: Attribution
    attribution_after: Attribution
    ab: AbResult | None = None
    notes: list[str] = field(default_factory=list)
    #: Each optimization on both sides and what the change between them saved (attribution.credit).
    credits: list[Credit] = field(default_factory=list)
    #: Decimals of the operands the document shows in its formulas: "volume" (the monthly traffic),
    #: "days" (the before side's), "credit" (the Saved column), so that each formula checks as printed.
    places: dict[str, int] = field(default_factory=dict)

    @property
    def monthly_volume(self) -> float:
        return self.before.requests_per_month

    @property
    def savings(self) -> list[Credit]:
        """The optimizations whose saving per request changed between the sides: credited."""
        return [c for c in self.credits if c.changed]

    @property
    def unchanged(self) -> list[Credit]:
        """The optimizations that saved as much per request on both sides: not credited."""
        return [c for c in self.credits if not c.changed]


def _rows(before: Metrics, after: Metrics) -> list[Row]:
    volume = before.requests_per_month

    def monthly(m: Metrics) -> float | None:
        per = m.cost_per_request
        return None if per is None else per * volume

    rows = [
        Row("Requests", "count", before.requests, after.requests),
        Row("Spend", "usd", before.spend_usd, after.spend_usd),
        Row("Cost per 1K requests", "usd", before.cost_per_1k, after.cost_per_1k),
        Row("Projected monthly cost", "usd", monthly(before), monthly(after)),
        Row("Latency p50", "ms", before.latency_p50_ms, after.latency_p50_ms),
        Row("Latency p95", "ms", before.latency_p95_ms, after.latency_p95_ms),
        Row("Latency p99", "ms", before.latency_p99_ms, after.latency_p99_ms),
        Row("Cache hit rate", "pct", before.cache_hit_rate, after.cache_hit_rate),
        Row("Error rate", "pct", before.error_rate, after.error_rate),
        Row("Tokens per request", "count", before.tokens_per_request, after.tokens_per_request),
    ]
    if before.quality_n or after.quality_n:
        rows.append(Row("Quality score", "score", before.quality, after.quality))
    return rows


def _places(results: Results) -> None:
    """The decimals that make the document's formulas check as printed (see reports/operands.py).

    Projected monthly cost = cost per 1K requests / 1,000 x the monthly traffic, for both sides; per month
    = saved / the after side's requests x the monthly traffic, for each credited optimization; the monthly
    traffic = the before side's requests / its days x 30; and a rate's change = after - before in points.
    """
    b, a = results.before, results.after
    per_1k = next(r for r in results.rows if r.name == "Cost per 1K requests")
    credited = [c for c in results.savings if c.monthly_usd is not None]
    volume = results.monthly_volume
    results.places.update(credit=4, volume=0)
    if per_1k.before is not None and per_1k.after is not None and a.requests:
        # The traffic first: digits go to it before the table's cells.
        operands = [volume, per_1k.before, per_1k.after, *(c.saved_usd for c in credited)]

        def formula(o: Sequence[float]) -> list[float]:
            return [o[1] / 1000 * o[0], o[2] / 1000 * o[0], *(x / a.requests * o[0] for x in o[3:])]

        start = [0, usd_start(per_1k.before), usd_start(per_1k.after), *(usd_start(c.saved_usd) for c in credited)]
        chosen = places(operands, start, formula, usd, tied=[[1, 2], list(range(3, len(operands)))])
        results.places["volume"] = chosen[0]
        per_1k.places = chosen[1]
        if credited:
            results.places["credit"] = chosen[3]
    shown_volume = results.places["volume"]
    # An explicit period under a day (12 h: 0.5 days) must not read as 0 days, nor be divided by as 0.
    results.places["days"] = places([b.days], [least_places(b.days)], lambda o: [b.requests / o[0] * DAYS_PER_MONTH],
                                    lambda v: f"{v:,.{shown_volume}f}")[0]  # fmt: skip
    for row in results.rows:
        if row.points:
            row.places, _ = rate_change(row.before, row.after)


def _tracked_from(engine: Engine) -> datetime | None:
    """When the app's records begin: its first call in the database (benchmark runs aside)."""
    from sqlalchemy import func, select

    from ...store.schema import records
    from ..stats import app_traffic

    with engine.connect() as conn:
        first = conn.execute(select(func.min(records.c.timestamp)).where(app_traffic())).scalar()
    if first is None:
        return None
    return first if first.tzinfo is not None else first.replace(tzinfo=timezone.utc)


def build_results(engine: Engine, book: PriceBook, before: Selection, after: Selection, *, ab: bool = False,
                  ab_name: str | None = None, ab_where: Selection | None = None,
                  now: datetime | None = None, progress: Progress | None = None) -> Results:  # fmt: skip
    """Measure both selections, attribute the savings, and compare the A/B arms (of `ab_where`, else `after`)."""
    dialect = engine.dialect.name
    queries: dict[str, Any] = {}
    queries.update(metric_queries(dialect, before, "before"))
    queries.update(metric_queries(dialect, after, "after"))
    for side, sel in (("before", before), ("after", after)):
        for key, query in attribution_queries(dialect, sel.where(dialect)).items():
            queries[f"{side}.{key}"] = query
    rows = run_queries(engine, queries, on_done=progress)
    m_before = measure(engine, before, rows={"m.metrics": rows["before.metrics"], "m.latency": rows["before.latency"]},
                       progress=progress)  # fmt: skip
    m_after = measure(engine, after, rows={"m.metrics": rows["after.metrics"], "m.latency": rows["after.latency"]},
                      progress=progress)  # fmt: skip
    empty = [(f, m.selection) for f, m in (("--before", m_before), ("--after", m_after)) if m.calls == 0]
    if empty:
        raise NoRecords([f for f, _ in empty], [s for _, s in empty])
    tracked_from = _tracked_from(engine)
    for m in (m_before, m_after):
        m.tracked_from, m.now = tracked_from, now or datetime.now(timezone.utc)
    before_models = endpoint_models(rows["before.endpoint_models"])
    at_before = m_before.last or now or datetime.now(timezone.utc)
    at_after = m_after.last or now or datetime.now(timezone.utc)
    results = Results(
        generated_at=now or datetime.now(timezone.utc), before=m_before, after=m_after, rows=_rows(m_before, m_after),
        enough=m_before.requests >= MIN_REQUESTS and m_after.requests >= MIN_REQUESTS,
        attribution_before=attribution(rows, "before", book, at_before, m_before.days, before_models),
        attribution_after=attribution(rows, "after", book, at_after, m_after.days, before_models),
    )  # fmt: skip
    results.credits = credit(results.attribution_before, results.attribution_after, results.monthly_volume)
    _places(results)
    if not results.enough:
        results.notes.append(
            f"Too little data to compare: {m_before.requests:,} requests before and {m_after.requests:,} after "
            f"(at least {MIN_REQUESTS} each are needed before percentage changes mean anything). The figures are "
            "shown without changes; record more traffic and run the report again."
        )
    for m in (m_before, m_after):
        if m.unpriced_calls and m.spend_usd is None:
            results.notes.append(f"{m.selection.label}: {m.unpriced_calls:,} unpriced calls and no priced cost: its "
                                 "spend and cost per request are unknown, not $0")  # fmt: skip
        elif m.unpriced_calls:
            results.notes.append(f"{m.selection.label}: {m.unpriced_calls:,} unpriced calls are missing from the spend")
    if ab:
        results.ab = ab_test(engine, (ab_where or after).where(dialect), ab_name)
    if ab_where is not None:
        results.notes.append(
            "Before and after are the arms of the A/B test: they carry different shares of the traffic, so compare "
            "the per-request rows (cost per 1K requests, projected monthly cost, latency, quality), not requests or spend."
        )
    return results
