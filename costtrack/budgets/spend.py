"""What the database says about a budget: spend in a period, top endpoints and models, the month-end projection."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from sqlalchemy import Engine


from .budget import UTC, Budget, period_bounds

#: Projection of the period's end from the recent rate: (window the rate is measured over,
#: smallest time span it is divided by, so a first burst is not extrapolated from minutes).
_PROJECTION = {
    "month": (timedelta(days=7), timedelta(days=1)),
    "week": (timedelta(days=2), timedelta(hours=6)),
    "day": (timedelta(hours=6), timedelta(hours=1)),
}
EPS = 1e-9


class Totals(NamedTuple):
    """A scope's spend in a period, and in the recent window the projection's rate comes from."""

    spend: float
    window_spend: float
    window_first: datetime | None  # the first record in the window


def query_totals(engine: Engine, budget: Budget, start: datetime, end: datetime, now: datetime) -> Totals:
    """Spend of `budget`'s scope in [start, end) and in the projection window before `now` (one query)."""
    from sqlalchemy import and_, case, func, select

    from ..store.schema import records as t

    window, _ = _PROJECTION[budget.period]
    wstart = now - window
    ts, cost = t.c.timestamp, t.c.cost_usd
    stmt = select(
        func.sum(case((and_(ts >= start, ts < end), cost), else_=0.0)),
        func.sum(case((ts >= wstart, cost), else_=0.0)),
        func.min(case((ts >= wstart, ts), else_=None)),
    ).where(ts >= min(start, wstart), ts < max(end, now), cost.is_not(None), *budget.sql_conditions(engine.dialect.name))
    with engine.connect() as conn:
        spend, window_spend, first = conn.execute(stmt).one()
    if isinstance(first, str):  # SQLite hands an aggregate of a datetime column back as text
        first = datetime.fromisoformat(first)
    if first is not None and first.tzinfo is None:
        first = first.replace(tzinfo=UTC)
    return Totals(float(spend or 0.0), float(window_spend or 0.0), first)


def query_top(engine: Engine, budget: Budget, start: datetime, end: datetime, by: str, limit: int = 5) -> list[tuple[str, float]]:
    """The `limit` endpoints or models (`by`) of the scope that spent most in [start, end)."""
    from sqlalchemy import func, select

    from ..store.schema import records as t

    column = t.c.endpoint if by == "endpoint" else func.coalesce(t.c.model, t.c.model_requested, "(unknown)")
    total = func.sum(t.c.cost_usd)
    stmt = (
        select(column, total)
        .where(t.c.timestamp >= start, t.c.timestamp < end, t.c.cost_usd.is_not(None),
               *budget.sql_conditions(engine.dialect.name))
        .group_by(column)
        .order_by(total.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(str(name), float(usd or 0.0)) for name, usd in conn.execute(stmt).all() if usd]


def project(spend: float, window_spend: float, window_first: datetime | None, now: datetime, period: str, end: datetime) -> float:
    """Spend at the period's end if the recent rate goes on.

    The rate is the spend of the last week (month budgets; 2 days for weekly, 6 hours
    for daily ones) divided by the time since its first record, at least a day (6 hours,
    1 hour), so an app's first minutes are not extrapolated to a month.
    """
    if now >= end:
        return spend
    window, floor = _PROJECTION[period]
    first = max(window_first or now, now - window)
    elapsed = max((now - first).total_seconds(), floor.total_seconds())
    return spend + window_spend / elapsed * (end - now).total_seconds()


def check_budget(engine: Engine, budget: Budget, at: datetime) -> dict[str, Any]:
    """The budget's state from the database alone (for `costtrack alerts check`)."""
    start, end = period_bounds(budget.period, at)
    totals = query_totals(engine, budget, start, min(end, at), at)  # as of `at`: nothing recorded after it counts
    projected = project(totals.spend, totals.window_spend, totals.window_first, at, budget.period, end)
    crossed = [t for t in budget.thresholds if totals.spend + EPS >= t * budget.amount_usd]
    return {
        "budget": budget.amount_usd,
        "period": budget.period,
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "scope": budget.scope,
        "month_to_date_usd": round(totals.spend, 10),
        "projected_month_end_usd": round(projected, 10),
        "percent_used": round(totals.spend / budget.amount_usd * 100.0, 4),
        "thresholds": list(budget.thresholds),
        "thresholds_crossed": crossed,
        "projected_overspend": projected > budget.amount_usd + EPS,
    }


