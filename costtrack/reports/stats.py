"""Spend, calls, tokens, latency percentiles, error and cache-hit rates: aggregated in SQL."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, and_, case, func, literal_column, select, true
from sqlalchemy.sql import ColumnElement

from ..store.schema import records

__all__ = ["GroupStats", "Stats", "compute_stats", "period_filter", "percentile_columns"]

GroupBy = Literal["model", "endpoint", "provider", "none"]
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class GroupStats:
    """Figures for one group of records (a model, an endpoint, or all of them)."""

    key: str
    calls: int
    spend_usd: float
    tokens_input: int
    tokens_output: int
    tokens_cached_input: int
    errors: int
    cache_hits: int
    saved_usd: float
    unpriced_calls: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None

    @property
    def error_rate(self) -> float:
        """Share of calls that failed."""
        return self.errors / self.calls if self.calls else 0.0

    @property
    def cache_hit_rate(self) -> float:
        """Share of calls answered from the response cache."""
        return self.cache_hits / self.calls if self.calls else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Figures as a JSON-ready dict, rates included (dollars rounded to 1e-10, below any price step)."""
        data = asdict(self)
        for key in ("spend_usd", "saved_usd"):
            data[key] = round(data[key], 10)
        return {**data, "error_rate": self.error_rate, "cache_hit_rate": self.cache_hit_rate}


@dataclass(frozen=True)
class Stats:
    """Totals, the groups, and the models no price was found for."""

    since: datetime | None
    until: datetime | None
    by: str
    total: GroupStats
    groups: list[GroupStats] = field(default_factory=list)
    unpriced_models: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Everything as a JSON-ready dict."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "by": self.by,
            "total": self.total.as_dict(),
            "groups": [group.as_dict() for group in self.groups],
            "unpriced_models": self.unpriced_models,
        }


def period_filter(since: datetime | None, until: datetime | None) -> ColumnElement[bool]:
    """WHERE clause for [since, until)."""
    clauses: list[ColumnElement[bool]] = []
    if since is not None:
        clauses.append(records.c.timestamp >= since)
    if until is not None:
        clauses.append(records.c.timestamp < until)
    return and_(true(), *clauses)


def _unpriced() -> ColumnElement[bool]:
    # Unpriced: tokens were used but no price was found (a per-hour model has a price_source).
    return and_(
        records.c.cost_usd.is_(None),
        records.c.price_source.is_(None),
        (records.c.tokens_input + records.c.tokens_output) > 0,
    )


def percentile_columns(group: ColumnElement[Any] | None, where: ColumnElement[bool], value: Any = None) -> Any:
    """A subquery of nearest-rank latency percentiles per group, computed in SQL on any backend.

    The p-th percentile is the smallest value whose rank is at least p% of the
    group's count (nearest-rank definition), so it is always an observed value.
    """
    value = records.c.latency_ms if value is None else value
    key = literal_column("'all'") if group is None else group
    ranked = (
        select(
            key.label("key"),
            value.label("v"),
            func.row_number().over(partition_by=group, order_by=value).label("rn"),
            func.count().over(partition_by=group).label("n"),
        )
        .where(where, value.is_not(None))
        .subquery()
    )
    return (
        select(
            ranked.c.key,
            *(func.min(case((ranked.c.rn >= ranked.c.n * (p / 100.0), ranked.c.v))).label(f"p{p}") for p in PERCENTILES),
        )
        .group_by(ranked.c.key)
        .subquery()
    )


def _group_rows(engine: Engine, group: ColumnElement[Any] | None, where: ColumnElement[bool]) -> list[GroupStats]:
    c = records.c
    key = literal_column("'all'") if group is None else group
    totals = (
        select(
            key.label("key"),
            func.count().label("calls"),
            func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"),
            func.coalesce(func.sum(c.tokens_input), 0).label("tin"),
            func.coalesce(func.sum(c.tokens_output), 0).label("tout"),
            func.coalesce(func.sum(c.tokens_cached_input), 0).label("tcached"),
            func.coalesce(func.sum(case((c.status == "error", 1), else_=0)), 0).label("errors"),
            func.coalesce(func.sum(case((c.cache_hit, 1), else_=0)), 0).label("hits"),
            func.coalesce(func.sum(case((c.cache_hit, c.cost_saved_usd), else_=0.0)), 0.0).label("saved"),
            func.coalesce(func.sum(case((_unpriced(), 1), else_=0)), 0).label("unpriced"),
        )
        .where(where)
        .group_by(*([] if group is None else [group]))
        .subquery()
    )
    pct = percentile_columns(group, and_(where, c.cache_hit.is_(False)))
    query = (
        select(totals, pct.c.p50, pct.c.p95, pct.c.p99)
        .select_from(totals.outerjoin(pct, totals.c.key == pct.c.key))
        .order_by(totals.c.spend.desc(), totals.c.calls.desc())
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        GroupStats(
            key=str(row.key), calls=int(row.calls), spend_usd=float(row.spend), tokens_input=int(row.tin),
            tokens_output=int(row.tout), tokens_cached_input=int(row.tcached), errors=int(row.errors),
            cache_hits=int(row.hits), saved_usd=float(row.saved or 0.0), unpriced_calls=int(row.unpriced),
            latency_p50_ms=row.p50, latency_p95_ms=row.p95, latency_p99_ms=row.p99,
        )  # fmt: skip
        for row in rows
    ]


def compute_stats(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
                  by: GroupBy = "model") -> Stats:  # fmt: skip
    """Aggregate the records of [since, until), in total and per group."""
    where = period_filter(since, until)
    [total] = _group_rows(engine, None, where)
    group_column = {"model": func.coalesce(records.c.model_requested, records.c.model, "(unknown)"),
                    "endpoint": records.c.endpoint,
                    "provider": records.c.provider}.get(by)  # fmt: skip
    groups = _group_rows(engine, group_column, where) if group_column is not None else []
    with engine.connect() as conn:
        unpriced = conn.execute(
            select(records.c.model).where(where, _unpriced()).group_by(records.c.model).order_by(records.c.model)
        ).scalars().all()
    return Stats(since=since, until=until, by=by, total=total, groups=groups, unpriced_models=[str(m) for m in unpriced])
