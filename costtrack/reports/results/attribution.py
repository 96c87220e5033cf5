"""What each optimization measurably saved: response cache, provider prompt caching, cheap-first fallback, routing.

`attribution` reads one side's records: what each optimization saved there, in total and per
endpoint. `credit` compares the two sides of `report results`: an optimization is credited with
the change of what it saves per request on each endpoint, so one that saved as much before as after
(caching that was already on) gets nothing, and traffic moving between endpoints is not mistaken
for a saving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.sql import ColumnElement

from ...format import count, usd
from ...pricing import PriceBook
from ...store.schema import records
from ..calc import DAYS_PER_MONTH
from ..simulate import has_tag, tag_text
from ..simulate.queries import buckets, extra_columns, sum_where
from ..simulate.replay import row_buckets

__all__ = ["Attribution", "Credit", "Saving", "attribution", "credit"]


@dataclass
class Saving:
    """What one optimization measurably saved in a selection."""

    name: str
    evidence: str
    saved_usd: float
    monthly_usd: float  # saved_usd x 30 / the selection's days
    by_endpoint: dict[str, float] = field(default_factory=dict)  # saved_usd, per endpoint


@dataclass
class Attribution:
    savings: list[Saving] = field(default_factory=list)
    routes: list[list[Any]] = field(default_factory=list)  # label, calls, spend, cost per call, models answering
    notes: list[str] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)  # first attempts per endpoint
    #: Input tokens read from or written to a provider's prompt cache by models without a price: caching is in use,
    #: though what it saved is unknown.
    unpriced_cache_tokens: int = 0

    @property
    def total_usd(self) -> float:
        return sum(s.saved_usd for s in self.savings)

    def saving(self, name: str) -> Saving | None:
        return next((s for s in self.savings if s.name == name), None)


@dataclass
class Credit:
    """What one optimization saved on each side, and what the change between them saved."""

    name: str
    evidence: str  # what the after side's records show (the before side's when it left no trace after)
    before_usd: float  # saved on the before side
    after_usd: float  # saved on the after side
    saved_usd: float  # the change: per endpoint, (after - before) per request x the after side's requests
    monthly_usd: float | None  # saved_usd per after-side request x the monthly traffic of the comparison
    endpoints: list[str] = field(default_factory=list)  # where what it saves per request changed

    @property
    def changed(self) -> bool:
        """Whether the optimization saves a different amount per request than before (else it is not credited)."""
        scale = max(abs(self.before_usd), abs(self.after_usd))
        return abs(self.saved_usd) > 1e-9 * scale + 1e-15


def credit(before: Attribution, after: Attribution, monthly_requests: float) -> list[Credit]:
    """Each optimization's saving on both sides, and the part the change between them is credited with.

    Per endpoint e, with s the saving and r the requests (first attempts) of a side:
    credited = sum over e of (s_after(e) / r_after(e) - s_before(e) / r_before(e)) x r_after(e)
    (an endpoint the before side did not call counts as saving nothing before it), and per month =
    credited / the after side's requests x `monthly_requests` (the metrics table's basis).
    """
    after_requests = sum(after.requests.values())
    names = [s.name for s in after.savings] + [s.name for s in before.savings if after.saving(s.name) is None]
    out: list[Credit] = []
    for name in names:
        b, a = before.saving(name), after.saving(name)
        b_by = b.by_endpoint if b else {}
        a_by = a.by_endpoint if a else {}
        saved = 0.0
        moved: list[tuple[float, str]] = []
        for endpoint in sorted(set(a_by) | set(b_by)):
            r_b, r_a = before.requests.get(endpoint, 0), after.requests.get(endpoint, 0)
            per_before = b_by.get(endpoint, 0.0) / r_b if r_b else 0.0
            part = a_by.get(endpoint, 0.0) - per_before * r_a
            saved += part
            moved.append((part, endpoint))
        evidence = (a or b).evidence  # type: ignore[union-attr]
        if a is None:
            evidence = f"none on the after side (before: {evidence})"
        scale = max(abs(b.saved_usd) if b else 0.0, abs(a.saved_usd) if a else 0.0)
        changed = [e for part, e in sorted(moved, key=lambda m: -abs(m[0])) if abs(part) > 1e-9 * scale + 1e-15]
        out.append(Credit(
            name=name, evidence=evidence, before_usd=b.saved_usd if b else 0.0, after_usd=a.saved_usd if a else 0.0,
            saved_usd=saved, monthly_usd=saved / after_requests * monthly_requests if after_requests else None,
            endpoints=changed,
        ))  # fmt: skip
    return out


def _cache_writes(c: Any) -> list[Any]:
    """The prompt-cache writes of a group: 5-minute ones (`tokens_cache_write` holds both kinds) and 1-hour ones."""
    write_5m = c.tokens_cache_write - c.tokens_cache_write_1h
    return [func.coalesce(func.sum(case((write_5m > 0, write_5m), else_=0)), 0).label("write_5m"),
            func.coalesce(func.sum(c.tokens_cache_write_1h), 0).label("write_1h")]  # fmt: skip


def attribution_queries(dialect: str, where: ColumnElement[bool]) -> dict[str, Any]:
    c = records.c
    chain = has_tag(dialect, "fallback_chain")
    reason = has_tag(dialect, "fallback_reason")
    route_tagged = has_tag(dialect, "route")
    route = case((route_tagged, tag_text(dialect, "route"))).label("route")
    live = and_(c.cost_usd.is_not(None), c.cache_hit.is_(False))
    model = func.coalesce(c.model, c.model_requested, "(unknown)").label("model")
    return {
        "hits": select(c.endpoint, sum_where(c.cache_hit, 1).label("hits"),
                       sum_where(c.cache_hit, func.coalesce(c.cost_saved_usd, 0.0)).label("saved"))
        .where(where, c.cache_hit.is_(True))
        .group_by(c.endpoint),
        "cached": select(c.endpoint, c.provider, model, func.coalesce(func.sum(c.tokens_cached_input), 0).label("cached"),
                         *_cache_writes(c))
        .where(where, c.cache_hit.is_(False),
               or_(c.tokens_cached_input > 0, c.tokens_cache_write > 0, c.tokens_cache_write_1h > 0))
        .group_by(c.endpoint, c.provider, c.model, c.model_requested),
        "fallback": select(
            c.endpoint,
            sum_where(and_(chain, c.cache_hit.is_(False), c.cost_saved_usd.is_not(None)), 1).label("accepted"),
            # An answer saved money only when its model is cheaper than the requested one for its tokens:
            # the requested model itself (after an escalation) saves 0, a dearer one less than 0.
            sum_where(and_(chain, c.cache_hit.is_(False), c.cost_saved_usd > 0), 1).label("cheaper"),
            sum_where(and_(chain, c.cache_hit.is_(False), c.cost_saved_usd < 0), 1).label("dearer"),
            sum_where(and_(chain, c.cache_hit.is_(False)), func.coalesce(c.cost_saved_usd, 0.0)).label("saved"),
            sum_where(reason, 1).label("escalated"),
            sum_where(reason, func.coalesce(c.cost_usd, 0.0)).label("escalated_cost"),
        ).where(where, chain).group_by(c.endpoint),
        "routes": select(route, c.endpoint, c.provider, model, func.count().label("calls"),
                         sum_where(c.status != "error", 1).label("answered"),
                         func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"), sum_where(live, c.cost_usd).label("live_spend"),
                         *buckets(live, c, "l_", extra_columns(dialect)))
        .where(where, route_tagged)
        .group_by(route, c.endpoint, c.provider, c.model, c.model_requested),
        "endpoint_models": select(c.endpoint, c.provider, model, func.count().label("calls"))
        .where(where, c.status == "ok", c.cache_hit.is_(False))
        .group_by(c.endpoint, c.provider, c.model, c.model_requested),
        "requests": select(c.endpoint, sum_where(c.attempt == 1, 1).label("requests"))
        .where(where)
        .group_by(c.endpoint),
    }  # fmt: skip


def attribution(rows: dict[str, list[Any]], prefix: str, book: PriceBook, at: datetime, days: float,
                before_models: dict[str, tuple[str, str]] | None = None) -> Attribution:  # fmt: skip
    """What each optimization saved, from the rows of `attribution_queries` (keys prefixed)."""
    out = Attribution()

    def month(x: float) -> float:
        return x * DAYS_PER_MONTH / days

    out.requests = {r.endpoint: int(r.requests) for r in rows[f"{prefix}.requests"]}
    hit_rows = [r for r in rows[f"{prefix}.hits"] if int(r.hits)]
    if hit_rows:
        hits, saved = sum(int(r.hits) for r in hit_rows), sum(float(r.saved) for r in hit_rows)
        out.savings.append(Saving("Response cache", f"{count(hits)} calls answered from the cache (cost_saved_usd)",
                                  saved, month(saved), {r.endpoint: float(r.saved) for r in hit_rows}))  # fmt: skip
    caching = _prompt_caching(rows[f"{prefix}.cached"], book, at, month)
    if caching is not None:
        out.savings.append(caching)
    no_price = [r for r in rows[f"{prefix}.cached"] if _rates(book, r, at) is None]
    out.unpriced_cache_tokens = sum(int(r.cached) + int(r.write_5m) + int(r.write_1h) for r in no_price)
    unpriced = sorted({r.model for r in no_price})
    if unpriced:
        out.notes.append(f"prompt-cache savings of {', '.join(unpriced)} are left out: no price")
    fallback = _fallback(rows[f"{prefix}.fallback"], month)
    if fallback is not None:
        out.savings.append(fallback)
    route_rows = rows[f"{prefix}.routes"]
    if route_rows:
        by_label: dict[str, list[Any]] = {}
        saved = 0.0
        routed_by: dict[str, float] = {}
        compared = 0
        for r in route_rows:
            acc = by_label.setdefault(str(r.route), [str(r.route), 0, 0.0, None, set()])
            acc[1] += int(r.calls)
            acc[2] += float(r.spend)
            if int(r.answered):  # a failed call got no answer: its `model` is only the name it asked for
                acc[4].add(r.model)
            ref = (before_models or {}).get(r.endpoint)
            if ref is None or ref[1] == r.model:
                continue
            rates = book.rates(ref[0], ref[1], at)
            if rates is None or rates.per_hour is not None:
                continue
            part = row_buckets(r, "l_").price(rates.effective()) - float(r.live_spend)
            saved += part
            routed_by[r.endpoint] = routed_by.get(r.endpoint, 0.0) + part
            compared += int(r.calls)
        for acc in by_label.values():
            acc[3] = acc[2] / acc[1] if acc[1] else None
            acc[4] = ", ".join(sorted(acc[4]))
        out.routes = sorted(by_label.values(), key=lambda a: -a[1])
        if compared:
            out.savings.append(Saving(
                "Routing", f"{count(compared)} routed calls against the same tokens on the model each endpoint used before",
                saved, month(saved), routed_by,
            ))  # fmt: skip
        elif before_models is not None:
            out.notes.append("routed calls used the same models as before on their endpoints: no routing saving to attribute")
    return out


def _rates(book: PriceBook, row: Any, at: datetime) -> dict[str, Decimal] | None:
    """The row's model's effective rates, None when it has no per-token price."""
    rates = book.rates(row.provider, row.model, at)
    return None if rates is None or rates.per_hour is not None else rates.effective()


def _prompt_caching(rows: list[Any], book: PriceBook, at: datetime, month: Callable[[float], float]) -> Saving | None:
    """Provider prompt caching, net: reads at input - cached rate, less writes at their rate - input rate.

    A write is billed above the input rate (Anthropic: 1.25x for 5 minutes, 2x for 1 hour), so a saving
    that counted reads only would overstate what caching saved.
    """
    saved, read, written = 0.0, 0, 0
    by_endpoint: dict[str, float] = {}
    for r in rows:
        eff = _rates(book, r, at)
        if eff is None:
            continue
        cached, w5, w1h = int(r.cached), int(r.write_5m), int(r.write_1h)
        part = float((cached * (eff["input"] - eff["cached_input"]) - w5 * (eff["cache_write"] - eff["input"])
                      - w1h * (eff["cache_write_1h"] - eff["input"])) / Decimal(1_000_000))  # fmt: skip
        saved += part
        read += cached
        written += w5 + w1h
        by_endpoint[r.endpoint] = by_endpoint.get(r.endpoint, 0.0) + part
    if not read and not written:
        return None
    evidence = f"{count(read)} input tokens read from the cache at the cached rate"
    if written:
        evidence += f", net of {count(written)} written to it at the cache-write rate"
    return Saving("Provider prompt caching", evidence, saved, month(saved), by_endpoint)


def _fallback(rows: list[Any], month: Callable[[float], float]) -> Saving | None:
    """Cheap-first fallback: what its answers saved against the requested model, less the escalated attempts."""
    f_rows = [r for r in rows if int(r.accepted) or int(r.escalated)]
    if not f_rows:
        return None
    accepted, escalated = sum(int(r.accepted) for r in f_rows), sum(int(r.escalated) for r in f_rows)
    cheaper, dearer = sum(int(r.cheaper) for r in f_rows), sum(int(r.dearer) for r in f_rows)
    f_saved, f_cost = sum(float(r.saved) for r in f_rows), sum(float(r.escalated_cost) for r in f_rows)
    net = f_saved - f_cost
    # The dollar figure is over every answer (a dearer one's saving is negative), so the count beside it is too;
    # how many came from a cheaper model is said apart.
    models = f"{count(cheaper)} from a model cheaper than the requested one"
    if dearer:
        models += f", {count(dearer)} from a dearer one"
    evidence = (f"{count(accepted)} chain answers ({models}) saved {usd(f_saved)} against the requested model; "
                f"{count(escalated)} escalated attempts cost {usd(f_cost)}")  # fmt: skip
    return Saving("Cheap-first fallback", evidence, net, month(net),
                  {r.endpoint: float(r.saved) - float(r.escalated_cost) for r in f_rows})  # fmt: skip


def endpoint_models(rows: list[Any]) -> dict[str, tuple[str, str]]:
    """The most-called (provider, model) of each endpoint."""
    best: dict[str, tuple[int, str, str]] = {}
    for r in rows:
        n = int(r.calls)
        if r.endpoint not in best or n > best[r.endpoint][0]:
            best[r.endpoint] = (n, r.provider, r.model)
    return {e: (p, m) for e, (_, p, m) in best.items()}
