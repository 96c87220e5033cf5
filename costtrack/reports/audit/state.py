"""The current state of the audit: spend inventory, latency, errors, and what caching already saves."""

from __future__ import annotations

from typing import Any

from ...format import count, pct, usd
from ..stats import PERCENTILES, PercentileResult, known_spend
from .context import AuditContext, error_rate
from .document import Column, Table

__all__ = ["NO_ANSWER", "cache_status", "errors_table", "inventory_table", "latency_table"]


#: The Model cell of failed calls: they got no answer, so no model answered them.
NO_ANSWER = "(failed: no answer)"


def inventory_table(ctx: AuditContext) -> Table:
    """Spend, calls and tokens per endpoint, answered model and requested model, with a total row.

    Model names follow the records' fields: the Model column is `model`, the model the API answered
    with (as in every other table of the audit and in the price table); Requested as is
    `model_requested`, the name the app asked for. A failed call got no answer (its stored `model` is
    the name it asked for), so the failed calls of a requested model are a row of their own, under
    NO_ANSWER: each row's calls, tokens and spend are those of the model its label names.
    """
    merged: dict[tuple[str, str, str], list[Any]] = {}

    unpriced: dict[tuple[str, str, str], int] = {}
    per_hour: dict[tuple[str, str, str], int] = {}

    def add(endpoint: str, model: str, requested: str, calls: int, tin: int, tout: int, cached: int,
            spend: float, unpriced_calls: int, per_hour_calls: int) -> None:  # fmt: skip
        if not calls:
            return
        key = (endpoint, model, requested)
        row = merged.setdefault(key, [endpoint, model, requested, 0, 0, 0, 0, 0.0, 0.0])
        for i, value in enumerate((calls, tin, tout, cached, spend), start=3):
            row[i] += value
        unpriced[key] = unpriced.get(key, 0) + unpriced_calls
        per_hour[key] = per_hour.get(key, 0) + per_hour_calls

    for g in ctx.rep.groups:
        f = g.failed
        add(g.endpoint, g.model, g.model_key, g.calls - g.errors, g.tokens_input - f.tokens_input,
            g.tokens_output - f.tokens_output, g.tokens_cached_input - f.tokens_cached_input, g.spend_usd - f.spend_usd,
            g.unpriced_calls - f.unpriced_calls, g.per_hour_calls)  # fmt: skip
        add(g.endpoint, NO_ANSWER, g.model_key, g.errors, f.tokens_input, f.tokens_output, f.tokens_cached_input,
            f.spend_usd, f.unpriced_calls, 0)  # fmt: skip
    # The rows of one endpoint and requested model stay together (its failed calls after its answers), by spend.
    spend: dict[tuple[str, str], float] = {}
    for row in merged.values():
        spend[(row[0], row[2])] = spend.get((row[0], row[2]), 0.0) + row[7]
    rows = sorted(merged.values(), key=lambda r: (-spend[(r[0], r[2])], r[0], r[2], r[1] == NO_ANSWER, -r[7], -r[3], r[1]))
    for row in rows:
        key = (row[0], row[1], row[2])
        row[8] = ctx.share(row[7])
        row[7] = known_spend(row[7], unpriced[key])  # unpriced calls alone: unknown, not $0
        if per_hour[key] and not row[7] and not unpriced[key]:
            row[7] = "per hour"  # a self-hosted model's cost is the hours it served, which no call has: never $0
        if row[7] is None or isinstance(row[7], str):
            row[8] = None  # no share of a cost nobody knows
    total_spend: Any = ctx.baseline if ctx.spend_known else None
    if not ctx.baseline and any(per_hour.values()) and not any(unpriced.values()):
        total_spend = "per hour"  # every call's cost is the hours served
    total = ["**Total**", "", "", ctx.rep.calls, sum(g.tokens_input for g in ctx.rep.groups),
             sum(g.tokens_output for g in ctx.rep.groups), sum(g.tokens_cached_input for g in ctx.rep.groups),
             total_spend, 1.0 if ctx.baseline else None]  # fmt: skip
    columns = [Column("Endpoint"), Column("Model"), Column("Requested as"), Column("Calls", "count"),
               Column("Tokens in", "count"), Column("Tokens out", "count"), Column("Cached in", "count"),
               Column("Spend", "usd"), Column("Share of spend", "pct")]  # fmt: skip
    return Table(columns, [*rows, total])


def latency_table(ctx: AuditContext, percentiles: PercentileResult) -> Table:
    """Timed calls, mean and percentile latencies, and the error rate, per endpoint and over all."""
    stats: dict[str, list[Any]] = {}
    for g in ctx.rep.groups:
        acc = stats.setdefault(g.endpoint, [0, 0.0, 0, 0])
        acc[0] += g.latency_n
        acc[1] += g.latency_sum_ms
        acc[2] += g.calls
        acc[3] += g.errors
    out: list[list[Any]] = []
    for endpoint in sorted(stats):
        n, total, calls, errors = stats[endpoint]
        p = percentiles.groups.get(endpoint, {})
        out.append([endpoint, n, total / n if n else None, *(p.get(x) for x in PERCENTILES),
                    errors / calls if calls else None])  # fmt: skip
    n = sum(v[0] for v in stats.values())
    p = percentiles.overall
    out.append(["**All endpoints**", n, sum(v[1] for v in stats.values()) / n if n else None,
                *(p.get(x) for x in PERCENTILES), error_rate(ctx.rep)])  # fmt: skip
    columns = [Column("Endpoint"), Column("Timed calls", "count"), Column("Mean", "ms"), Column("p50", "ms"),
               Column("p95", "ms"), Column("p99", "ms"), Column("Error rate", "pct")]  # fmt: skip
    return Table(columns, out)


def errors_table(ctx: AuditContext, rows: list[Any]) -> Table:
    """Failed and cut calls by endpoint, status and error type, with what they cost."""
    out = [[r.endpoint, r.status, r.error_type, int(r.calls), known_spend(float(r.spend), r.unpriced)] for r in rows]
    out.sort(key=lambda r: (-r[3], r[0], r[2]))
    return Table([Column("Endpoint"), Column("Status"), Column("Error type"), Column("Calls", "count"),
                  Column("Cost", "usd")], out)  # fmt: skip


def cache_status(ctx: AuditContext) -> tuple[str, list[str]]:
    """What the response cache and the providers' prompt caches already do: a level and a line on each."""
    rep = ctx.rep
    hits = sum(g.cache_hits for g in rep.groups)
    saved = sum(g.saved_usd for g in rep.groups)
    tin = sum(g.tokens_input for g in rep.groups)
    cached = sum(g.tokens_cached_input for g in rep.groups)
    lines: list[str] = []
    if hits:
        lines.append(f"Response cache: {count(hits)} of {count(rep.calls)} calls answered from the cache "
                     f"({pct(hits / rep.calls)}), saving {usd(saved)}.")  # fmt: skip
    else:
        lines.append("Response cache: none (no call was answered from costtrack's response cache).")
    if cached:
        using = sorted({g.endpoint for g in rep.groups if g.cached_share >= 0.05})
        lines.append(f"Provider prompt caching: {pct(cached / tin)} of input tokens were cache reads"
                     + (f" (on {', '.join(using)})" if using else "") + ".")  # fmt: skip
    else:
        lines.append("Provider prompt caching: none (no input token was read from a provider's prompt cache).")
    status = "sophisticated" if hits and cached else "basic" if hits or cached else "none"
    return status, lines
