"""The comparison table's metrics of one selection: the SQL aggregates, latency percentiles, and `measure`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, and_, case, func, select
from sqlalchemy.sql import ColumnElement

from ...store.schema import records
from ..calc import DAYS_PER_MONTH
from ..simulate import has_tag, run_queries, tag_number
from ..simulate.queries import sum_where
from ..stats import Percentiles, known_spend
from .selection import Selection

__all__ = ["Metrics", "Progress", "measure", "metric_queries"]


@dataclass
class Metrics:
    """The course's comparison metrics for one selection."""

    selection: Selection
    calls: int
    requests: int
    spend_usd: float | None  # None: unknown, every call with tokens unpriced (stats.known_spend)
    errors: int
    cache_hits: int
    tokens_input: int
    tokens_output: int
    quality_n: int
    quality: float | None
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    first: datetime | None
    last: datetime | None
    unpriced_calls: int
    #: When the app's records begin (its first call in the database) and the time of the report: an explicit period
    #: counts only the part of it the records could cover (a window opening before tracking began, or ending after
    #: now, divided its requests by days nothing was recorded in).
    tracked_from: datetime | None = None
    now: datetime | None = None

    @property
    def days(self) -> float:
        """The period's length (the part of it after the records begin and before now), or the days its records span
        (at least one)."""
        explicit = self.selection.period_days
        if explicit is not None:
            since, until = self.selection.since, self.selection.until
            assert since is not None and until is not None
            start = max(since, self.tracked_from) if self.tracked_from is not None else since
            end = min(until, self.now) if self.now is not None else until
            covered = (end - start).total_seconds() / 86400
            # At least a day (as a tag's span), unless the period itself is shorter: 10 calls in the last 45 minutes
            # before a week's window closed read as 7,200 requests a month.
            return min(max(covered, 1.0), explicit)
        if self.first is None or self.last is None:
            return 1.0
        return max((self.last - self.first).total_seconds() / 86400, 1.0)

    @property
    def cost_per_request(self) -> float | None:
        return self.spend_usd / self.requests if self.requests and self.spend_usd is not None else None

    @property
    def cost_per_1k(self) -> float | None:
        per = self.cost_per_request
        return None if per is None else per * 1000

    @property
    def requests_per_month(self) -> float:
        return self.requests * DAYS_PER_MONTH / self.days

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.calls if self.calls else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    @property
    def tokens_per_request(self) -> float | None:
        return (self.tokens_input + self.tokens_output) / self.requests if self.requests else None


def _metrics_query(where: ColumnElement[bool], dialect: str) -> Any:
    c = records.c
    quality = tag_number(dialect, "quality")
    has_quality = has_tag(dialect, "quality")
    q = case((has_quality, quality))
    return select(
        func.count().label("calls"),
        sum_where(c.attempt == 1, 1).label("requests"),
        func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"),
        sum_where(c.status == "error", 1).label("errors"),
        sum_where(c.cache_hit, 1).label("hits"),
        func.coalesce(func.sum(c.tokens_input), 0).label("tin"),
        func.coalesce(func.sum(c.tokens_output), 0).label("tout"),
        func.count(q).label("quality_n"),
        func.avg(q).label("quality"),
        func.avg(c.latency_ms).label("latency"),
        func.min(c.timestamp).label("first"),
        func.max(c.timestamp).label("last"),
        sum_where(and_(c.cost_usd.is_(None), c.price_source.is_(None), (c.tokens_input + c.tokens_output) > 0), 1)
        .label("unpriced"),
    ).where(where)  # fmt: skip


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _latency(where: ColumnElement[bool]) -> Percentiles:
    """The selection's latency percentiles (response-cache hits included: what users waited)."""
    return Percentiles(where)


Progress = Callable[[str], None]


def measure(engine: Engine, selection: Selection, *, rows: dict[str, list[Any]] | None = None,
            progress: Progress | None = None) -> Metrics:  # fmt: skip
    """The metrics of one selection (latency percentiles include response-cache hits: what users waited).

    `rows`: the results of `metric_queries(..., "m")` when the caller ran them (beside its other queries).
    """
    latency = _latency(selection.where(engine.dialect.name))
    if rows is None:
        rows = run_queries(engine, metric_queries(engine.dialect.name, selection, "m"), on_done=progress)
    refine = latency.refine_query(rows["m.latency"])
    refined = run_queries(engine, {"latency": refine}, on_done=progress)["latency"] if refine is not None else []
    p = latency.result(refined).overall
    m = rows["m.metrics"][0]
    return Metrics(
        selection=selection, calls=int(m.calls), requests=int(m.requests),
        spend_usd=known_spend(float(m.spend), int(m.unpriced)),
        errors=int(m.errors), cache_hits=int(m.hits), tokens_input=int(m.tin), tokens_output=int(m.tout),
        quality_n=int(m.quality_n), quality=float(m.quality) if m.quality is not None else None,
        latency_mean_ms=float(m.latency) if m.latency is not None else None,
        latency_p50_ms=p.get(50), latency_p95_ms=p.get(95), latency_p99_ms=p.get(99),
        first=_aware(m.first), last=_aware(m.last), unpriced_calls=int(m.unpriced),
    )  # fmt: skip


def metric_queries(dialect: str, selection: Selection, prefix: str) -> dict[str, Any]:
    """The selection's metrics and latency-histogram queries, keyed ``{prefix}.metrics`` and ``{prefix}.latency``."""
    where = selection.where(dialect)
    return {f"{prefix}.metrics": _metrics_query(where, dialect), f"{prefix}.latency": _latency(where).histogram_query()}
