"""The audit's own SQL: latency percentiles, the rare rows (errors, fallbacks, flags), prompt-cache and output windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.sql import ColumnElement

from ...store.schema import records
from ..simulate import GAP_TOLERANCE_S, Group, epoch_of, has_tag, tag_text
from ..simulate.queries import sum_where
from ..stats import PERCENTILES, Percentiles, unpriced_filter

__all__ = ["SideRow", "latency_percentiles", "output_query", "prompt_cache_query", "side_query", "split_side"]


def latency_percentiles(where: ColumnElement[bool]) -> Percentiles:
    """Latency percentiles per endpoint and over all, of the calls that reached a provider (cache hits excluded)."""
    return Percentiles(and_(where, records.c.cache_hit.is_(False)), records.c.endpoint, percentiles=PERCENTILES)


def side_query(dialect: str, where: ColumnElement[bool]) -> Any:
    """One scan for the rare rows: failed and cut calls by error type, fallback escalations, `interactive` tags."""
    c = records.c
    reason_tagged = has_tag(dialect, "fallback_reason")
    flag_tagged = has_tag(dialect, "interactive")
    reason = case((reason_tagged, tag_text(dialect, "fallback_reason"))).label("reason")
    flag = case((flag_tagged, tag_text(dialect, "interactive"))).label("flag")
    return (
        select(c.endpoint, c.status, c.error_type, reason, flag, func.count().label("calls"),
               func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"), sum_where(unpriced_filter(), 1).label("unpriced"))
        .where(where, or_(c.status != "ok", reason_tagged, flag_tagged))
        .group_by(c.endpoint, c.status, c.error_type, reason, flag)
    )  # fmt: skip


@dataclass(frozen=True)
class SideRow:
    endpoint: str
    status: str = ""
    error_type: str = ""
    reason: str = ""
    flag: str = ""
    calls: int = 0
    spend: float = 0.0
    unpriced: int = 0  # calls of unknown cost (stats.unpriced_filter), missing from `spend`


def split_side(rows: list[Any]) -> tuple[list[SideRow], list[SideRow], list[SideRow]]:
    """The side query's rows → (errors by endpoint/status/type, fallback escalations by reason, interactive flags)."""
    errors: dict[tuple[str, str, str], list[float]] = {}
    fallback: dict[tuple[str, str], list[float]] = {}
    flags: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        n, spend, unpriced = int(r.calls), float(r.spend), int(r.unpriced)
        for acc, key, wanted in ((errors, (r.endpoint, r.status, r.error_type or "(none)"), r.status != "ok"),
                                 (fallback, (r.endpoint, str(r.reason)), r.reason is not None),
                                 (flags, (r.endpoint, str(r.flag)), r.flag is not None)):  # fmt: skip
            if wanted:
                v = acc.setdefault(key, [0, 0.0, 0])  # type: ignore[attr-defined]
                v[0] += n
                v[1] += spend
                v[2] += unpriced
    return (
        [SideRow(e, status=s, error_type=t, calls=int(v[0]), spend=v[1], unpriced=int(v[2]))
         for (e, s, t), v in errors.items()],
        [SideRow(e, reason=x, calls=int(v[0]), spend=v[1], unpriced=int(v[2])) for (e, x), v in fallback.items()],
        [SideRow(e, flag=x, calls=int(v[0]), spend=v[1], unpriced=int(v[2])) for (e, x), v in flags.items()],
    )


def _pairs(groups: list[Group]) -> ColumnElement[bool]:
    c = records.c
    return or_(*(and_(c.endpoint == g.endpoint, c.provider == g.provider,
                      func.coalesce(c.model, c.model_requested, "(unknown)") == g.model) for g in groups))  # fmt: skip


def prompt_cache_query(dialect: str, where: ColumnElement[bool], candidates: list[tuple[Group, int]],
                        lifetime: float) -> Any:  # fmt: skip
    """Per candidate group: calls within `lifetime` of the previous one (a warm cache), and their uncached prefix tokens."""
    c = records.c
    ts = epoch_of(dialect, c.timestamp)
    model = func.coalesce(c.model, c.model_requested, "(unknown)")
    prefix = case(*((and_(c.endpoint == g.endpoint, c.provider == g.provider, model == g.model), p)
                    for g, p in candidates), else_=0)  # fmt: skip
    served = and_(where, c.status == "ok", c.cache_hit.is_(False), _pairs([g for g, _ in candidates]))
    inner = select(
        c.endpoint, c.provider, model.label("model"), prefix.label("prefix"), c.tokens_cached_input,
        (ts - func.lag(ts).over(partition_by=(c.endpoint, c.provider, model), order_by=(c.timestamp, c.id))).label("gap"),
    ).where(served).subquery()  # fmt: skip
    r = inner.c
    warm = and_(r.gap.is_not(None), r.gap <= float(lifetime) + GAP_TOLERANCE_S)
    missing = r.prefix - r.tokens_cached_input
    return (
        select(r.endpoint, r.provider, r.model, func.count().label("calls"),
               func.coalesce(func.sum(case((warm, 1), else_=0)), 0).label("warm"),
               func.coalesce(func.sum(case((and_(warm, missing > 0), missing), else_=0)), 0).label("warm_tokens"))
        .group_by(r.endpoint, r.provider, r.model)
    )  # fmt: skip


def output_query(where: ColumnElement[bool], candidates: list[Group]) -> Any:
    """Per candidate group: the median output (nearest rank) and the output tokens above it."""
    c = records.c
    model = func.coalesce(c.model, c.model_requested, "(unknown)")
    served = and_(where, c.status == "ok", c.cache_hit.is_(False), _pairs(candidates))
    part = (c.endpoint, c.provider, model)
    ranked = select(
        c.endpoint, c.provider, model.label("model"), c.tokens_output.label("out"),
        func.row_number().over(partition_by=part, order_by=c.tokens_output).label("rn"),
        func.count().over(partition_by=part).label("n"),
    ).where(served).subquery()  # fmt: skip
    r = ranked.c
    medians = (
        select(r.endpoint, r.provider, r.model, func.min(case((r.rn >= r.n * 0.5, r.out))).label("p50"),
               func.max(r.n).label("n"))
        .group_by(r.endpoint, r.provider, r.model)
        .subquery()
    )  # fmt: skip
    m = medians.c
    joined = ranked.join(medians, and_(r.endpoint == m.endpoint, r.provider == m.provider, r.model == m.model))
    excess = r.out - m.p50
    return (
        select(r.endpoint, r.provider, r.model, func.max(m.p50).label("p50"), func.count().label("calls"),
               func.coalesce(func.sum(case((excess > 0, excess), else_=0)), 0).label("excess"),
               func.max(r.out).label("max_out"))
        .select_from(joined)
        .group_by(r.endpoint, r.provider, r.model)
    )  # fmt: skip
