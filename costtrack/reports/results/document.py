"""The before/after document (docs/optimization-results.md): the comparison rows, savings, A/B test and notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, true

from ...pricing import PriceBook
from ..simulate import run_queries
from .ab_test import AbResult, ab_test
from .attribution import (
    Attribution,
    attribution,
    attribution_queries,
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
    """One metric of the comparison table."""

    name: str
    fmt: str
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        if self.before is None or self.after is None or self.before == 0:
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

    @property
    def monthly_volume(self) -> float:
        return self.before.requests_per_month


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
    before_models = endpoint_models(rows["before.endpoint_models"])
    at_before = m_before.last or now or datetime.now(timezone.utc)
    at_after = m_after.last or now or datetime.now(timezone.utc)
    results = Results(
        generated_at=now or datetime.now(timezone.utc), before=m_before, after=m_after, rows=_rows(m_before, m_after),
        enough=m_before.requests >= MIN_REQUESTS and m_after.requests >= MIN_REQUESTS,
        attribution_before=attribution(rows, "before", book, at_before, m_before.days),
        attribution_after=attribution(rows, "after", book, at_after, m_after.days, before_models),
    )  # fmt: skip
    if not results.enough:
        results.notes.append(
            f"Too little data to compare: {m_before.requests:,} requests before and {m_after.requests:,} after "
            f"(at least {MIN_REQUESTS} each are needed before percentage changes mean anything). The figures are "
            "shown without changes; record more traffic and run the report again."
        )
    for m in (m_before, m_after):
        if m.unpriced_calls:
            results.notes.append(f"{m.selection.label}: {m.unpriced_calls:,} unpriced calls are missing from the spend")
    if ab:
        results.ab = ab_test(engine, (ab_where or after).where(dialect), ab_name)
    if ab_where is not None:
        results.notes.append(
            "Before and after are the arms of the A/B test: they carry different shares of the traffic, so compare "
            "the per-request rows (cost per 1K requests, projected monthly cost, latency, quality), not requests or spend."
        )
    return results
