"""The audit's appendix: the prices used, tokens and cost per request, the method, and warnings."""

from __future__ import annotations

from ...format import count, duration
from ..stats import known_spend
from .calculator import total_tokens
from .context import AuditContext
from .document import Column, Opportunity, Table

__all__ = ["method", "per_request_tokens", "prices_table", "warnings"]


def prices_table(ctx: AuditContext, opportunities: list[Opportunity]) -> Table:
    """The rates of the models in use and of the models the opportunities propose."""
    seen: dict[tuple[str, str], str] = {}
    for g in ctx.rep.groups:
        if total_tokens(g.live):
            seen.setdefault((g.provider, g.model), "in use")
    for opp in opportunities:
        if opp.scenario is not None:
            for swap in opp.scenario.swaps:
                seen.setdefault(("", swap.target), "proposed (the name to request)")
    rows = []
    for (provider, model), role in seen.items():
        r = ctx.rates(provider or None, model)
        if r is None:
            continue
        rows.append([model, role, float(r["input"]), float(r["cached_input"]), float(r["cache_write"]),
                     float(r["output"])])  # fmt: skip
    rows.sort(key=lambda row: (row[1] != "in use", row[0]))
    # Models in use as the API answered with them (the records' `model`), as in every table of the audit.
    return Table([Column("Model"), Column("Role"), Column("Input", "rate"), Column("Cached input", "rate"),
                  Column("Cache write", "rate"), Column("Output", "rate")], rows)  # fmt: skip


def per_request_tokens(ctx: AuditContext) -> Table:
    """Requests, tokens and cost per request, and requests per month, by endpoint: every column per request.

    Tokens and cost are those of all the endpoint's calls (SDK retries, failed and cut calls, and
    response-cache hits at $0), as in the inventory, so cost per request is the calculator's.
    """
    acc: dict[str, list[float]] = {}
    unpriced: dict[str, int] = {}
    for g in ctx.rep.groups:
        a = acc.setdefault(g.endpoint, [0, 0, 0, 0.0])
        a[0] += g.requests
        a[1] += g.tokens_input
        a[2] += g.tokens_output
        a[3] += g.spend_usd
        unpriced[g.endpoint] = unpriced.get(g.endpoint, 0) + g.unpriced_calls
    rows = []
    for e, a in sorted(acc.items()):
        spend = known_spend(a[3], unpriced[e])  # unpriced calls alone: unknown, not $0
        per = [x / a[0] if a[0] and x is not None else None for x in (a[1], a[2], spend)]
        rows.append([e, a[0], *per, ctx.monthly(a[0])])
    return Table([Column("Endpoint"), Column("Requests", "count"), Column("Input tokens / request", "count"),
                  Column("Output tokens / request", "count"), Column("Cost / request", "usd"),
                  Column("Requests / month", "count")], rows)  # fmt: skip


def method(ctx: AuditContext) -> list[str]:
    """How the figures were computed: the lines of the method section."""
    rep = ctx.rep
    return [
        f"Period: {rep.first:%Y-%m-%d %H:%M} to {rep.last:%Y-%m-%d %H:%M} UTC" if rep.first and rep.last else "",
        ("Monthly projection: the period's spend x 30 / the days between its first and last call "
         "(at least one day)."),
        "Requests are first attempts (attempt = 1); calls include SDK retries and fallback escalations.",
        "Latency percentiles are nearest-rank over calls that reached the provider (response-cache hits excluded).",
        ("Savings of several optimizations on the same calls are combined in sequence (cache, then model, then "
         "batch, exactly on the simulate engine; the others as a share of what is left), never added up."),
        f"Prices: the price catalog at {ctx.at:%Y-%m-%d} (costtrack prices show MODEL).",
    ]


def warnings(ctx: AuditContext) -> list[str]:
    """Caveats on the records: a short span, few calls, unpriced calls."""
    out = []
    rep = ctx.rep
    if rep.span_days < 1:
        out.append(f"The records span {duration(rep.span_days * 86400)}: the monthly projection multiplies one "
                   "day's worth by 30 and is rough.")  # fmt: skip
    if rep.calls < 30:
        out.append(f"Only {count(rep.calls)} calls: the figures below show what was recorded, not a trend.")
    unpriced = sum(g.unpriced_calls for g in rep.groups)
    if unpriced:
        out.append(f"{count(unpriced)} calls are unpriced: their cost is unknown and missing from every total.")
    unreadable = sum(g.unreadable_calls for g in rep.groups)
    if unreadable:
        out.append(f"{count(unreadable)} of them sent a usage with a count costtrack could not read (tag "
                   "costtrack.usage_unreadable): their cost stays unknown whatever the prices.")
    per_hour = sum(g.per_hour_calls for g in rep.groups)
    if per_hour:
        models = sorted({g.model for g in rep.groups if g.per_hour_calls})
        out.append(f"{count(per_hour)} calls went to self-hosted models priced per hour ({', '.join(models)}): what they "
                   "cost is the hours served, which no total here counts; `costtrack calc` compares them with the API.")  # fmt: skip
    return out
