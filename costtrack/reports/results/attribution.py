"""What each optimization measurably saved: response cache, provider prompt caching, cheap-first fallback, routing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.sql import ColumnElement

from ...format import count, usd
from ...pricing import PriceBook
from ...store.schema import records
from ..calc import DAYS_PER_MONTH
from ..simulate import has_tag, tag_text
from ..simulate.queries import buckets, sum_where
from ..simulate.replay import row_buckets

__all__ = ["Attribution", "Saving", "attribution"]


@dataclass
class Saving:
    """What one optimization measurably saved in a selection."""

    name: str
    evidence: str
    saved_usd: float
    monthly_usd: float


@dataclass
class Attribution:
    savings: list[Saving] = field(default_factory=list)
    routes: list[list[Any]] = field(default_factory=list)  # label, calls, spend, cost per call, models
    notes: list[str] = field(default_factory=list)

    @property
    def total_usd(self) -> float:
        return sum(s.saved_usd for s in self.savings)


def attribution_queries(dialect: str, where: ColumnElement[bool]) -> dict[str, Any]:
    c = records.c
    chain = has_tag(dialect, "fallback_chain")
    reason = has_tag(dialect, "fallback_reason")
    route_tagged = has_tag(dialect, "route")
    route = case((route_tagged, tag_text(dialect, "route"))).label("route")
    live = and_(c.cost_usd.is_not(None), c.cache_hit.is_(False))
    model = func.coalesce(c.model, c.model_requested, "(unknown)").label("model")
    return {
        "hits": select(sum_where(c.cache_hit, 1).label("hits"),
                       sum_where(c.cache_hit, func.coalesce(c.cost_saved_usd, 0.0)).label("saved")).where(where),
        "cached": select(c.provider, model, func.coalesce(func.sum(c.tokens_cached_input), 0).label("cached"))
        .where(where, c.cache_hit.is_(False), c.tokens_cached_input > 0)
        .group_by(c.provider, c.model, c.model_requested),
        "fallback": select(
            sum_where(and_(chain, c.cache_hit.is_(False), c.cost_saved_usd.is_not(None)), 1).label("accepted"),
            sum_where(and_(chain, c.cache_hit.is_(False)), func.coalesce(c.cost_saved_usd, 0.0)).label("saved"),
            sum_where(reason, 1).label("escalated"),
            sum_where(reason, func.coalesce(c.cost_usd, 0.0)).label("escalated_cost"),
        ).where(where, chain),
        "routes": select(route, c.endpoint, c.provider, model, func.count().label("calls"),
                         func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"), sum_where(live, c.cost_usd).label("live_spend"),
                         *buckets(live, c, "l_"))
        .where(where, route_tagged)
        .group_by(route, c.endpoint, c.provider, c.model, c.model_requested),
        "endpoint_models": select(c.endpoint, c.provider, model, func.count().label("calls"))
        .where(where, c.status == "ok", c.cache_hit.is_(False))
        .group_by(c.endpoint, c.provider, c.model, c.model_requested),
    }  # fmt: skip


def attribution(rows: dict[str, list[Any]], prefix: str, book: PriceBook, at: datetime, days: float,
                before_models: dict[str, tuple[str, str]] | None = None) -> Attribution:  # fmt: skip
    """What each optimization saved, from the rows of `attribution_queries` (keys prefixed)."""
    out = Attribution()

    def month(x: float) -> float:
        return x * DAYS_PER_MONTH / days

    h = rows[f"{prefix}.hits"][0]
    if int(h.hits):
        out.savings.append(Saving("Response cache", f"{count(int(h.hits))} calls answered from the cache (cost_saved_usd)",
                                  float(h.saved), month(float(h.saved))))  # fmt: skip
    cached_saving = 0.0
    cached_tokens = 0
    unpriced: set[str] = set()
    for r in rows[f"{prefix}.cached"]:
        rates = book.rates(r.provider, r.model, at)
        if rates is None or rates.per_hour is not None:
            unpriced.add(r.model)
            continue
        eff = rates.effective()
        cached_tokens += int(r.cached)
        cached_saving += float(Decimal(int(r.cached)) * (eff["input"] - eff["cached_input"]) / Decimal(1_000_000))
    if cached_tokens:
        out.savings.append(Saving("Provider prompt caching",
                                  f"{count(cached_tokens)} input tokens read from the cache at the cached rate",
                                  cached_saving, month(cached_saving)))  # fmt: skip
    if unpriced:
        out.notes.append(f"prompt-cache savings of {', '.join(sorted(unpriced))} are left out: no price")
    f = rows[f"{prefix}.fallback"][0] if rows[f"{prefix}.fallback"] else None
    if f is not None and (int(f.accepted) or int(f.escalated)):
        net = float(f.saved) - float(f.escalated_cost)
        out.savings.append(Saving(
            "Cheap-first fallback",
            f"{count(int(f.accepted))} answers cheaper than the requested model saved {usd(float(f.saved))}; "
            f"{count(int(f.escalated))} escalated attempts cost {usd(float(f.escalated_cost))}",
            net, month(net),
        ))  # fmt: skip
    route_rows = rows[f"{prefix}.routes"]
    if route_rows:
        by_label: dict[str, list[Any]] = {}
        saved = 0.0
        compared = 0
        for r in route_rows:
            acc = by_label.setdefault(str(r.route), [str(r.route), 0, 0.0, None, set()])
            acc[1] += int(r.calls)
            acc[2] += float(r.spend)
            acc[4].add(r.model)
            ref = (before_models or {}).get(r.endpoint)
            if ref is None or ref[1] == r.model:
                continue
            rates = book.rates(ref[0], ref[1], at)
            if rates is None or rates.per_hour is not None:
                continue
            saved += row_buckets(r, "l_").price(rates.effective()) - float(r.live_spend)
            compared += int(r.calls)
        for acc in by_label.values():
            acc[3] = acc[2] / acc[1] if acc[1] else None
            acc[4] = ", ".join(sorted(acc[4]))
        out.routes = sorted(by_label.values(), key=lambda a: -a[1])
        if compared:
            out.savings.append(Saving(
                "Routing", f"{count(compared)} routed calls against the same tokens on the model each endpoint used before",
                saved, month(saved),
            ))  # fmt: skip
        elif before_models is not None:
            out.notes.append("routed calls used the same models as before on their endpoints: no routing saving to attribute")
    return out


def endpoint_models(rows: list[Any]) -> dict[str, tuple[str, str]]:
    """The most-called (provider, model) of each endpoint."""
    best: dict[str, tuple[int, str, str]] = {}
    for r in rows:
        n = int(r.calls)
        if r.endpoint not in best or n > best[r.endpoint][0]:
            best[r.endpoint] = (n, r.provider, r.model)
    return {e: (p, m) for e, (_, p, m) in best.items()}
