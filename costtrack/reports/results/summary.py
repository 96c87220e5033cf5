"""The README's Performance section: one selection's metrics and what each optimization saved."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Engine

from ...format import days, duration
from ...pricing import PriceBook
from ..simulate import run_queries
from .attribution import Attribution, attribution, attribution_queries
from .metrics import Metrics, Progress, measure, metric_queries
from .selection import NoRecords, Selection

__all__ = ["Summary", "build_summary"]


@dataclass
class Summary:
    """The README's Performance section: cost per 1K requests, latency, cache hit rate, strategies and their savings."""

    generated_at: datetime
    metrics: Metrics
    attribution: Attribution
    period: str


def build_summary(engine: Engine, book: PriceBook, selection: Selection, now: datetime | None = None,
                  progress: Progress | None = None) -> Summary:  # fmt: skip
    """The Performance section's figures for `selection`, computed from its stored records."""
    dialect = engine.dialect.name
    queries = metric_queries(dialect, selection, "m")
    for key, query in attribution_queries(dialect, selection.where(dialect)).items():
        queries[f"m.{key}"] = query
    rows = run_queries(engine, queries, on_done=progress)
    metrics = measure(engine, selection, rows=rows, progress=progress)
    if metrics.calls == 0:
        raise NoRecords(["the period"], [selection])
    at = metrics.last or now or datetime.now(timezone.utc)
    attr = attribution(rows, "m", book, at, metrics.days)
    span = duration(metrics.days * 86400) if metrics.days < 1 else days(metrics.days)
    return Summary(generated_at=now or datetime.now(timezone.utc), metrics=metrics, attribution=attr, period=span)
