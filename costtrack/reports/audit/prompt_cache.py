"""Provider prompt caching: long repeated prompt prefixes that the provider's cache does not read yet."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ...format import code, count, duration, pct
from ..operands import rate_move
from ..simulate import Group
from .context import AuditContext
from .document import Column, Finding, Table
from .models import min_cacheable_tokens
from .thresholds import LOW_CACHED_SHARE

__all__ = ["prompt_cache", "prompt_cache_candidates"]


def prompt_cache_candidates(ctx: AuditContext) -> list[tuple[Group, int]]:
    """Groups with a cacheable, mostly uncached prompt on a model with a cheaper cached rate: (group, prefix)."""
    out: list[tuple[Group, int]] = []
    for g in ctx.rep.groups:
        if g.served < 2 or g.min_input is None or g.cached_share >= LOW_CACHED_SHARE:
            continue
        if g.min_input < min_cacheable_tokens(g.model):
            continue
        rates = ctx.rates(g.provider, g.model)
        if rates is None or rates["cached_input"] >= rates["input"]:
            continue
        out.append((g, g.min_input))
    return out


def prompt_cache(ctx: AuditContext, candidates: list[tuple[Group, int]], rows: list[Any]) -> Finding:
    """The prompt-caching finding, from the candidates and the rows of the prompt-cache query."""
    finding = Finding("prompt-cache", "Long repeated prompt prefixes → provider prompt caching")
    lifetime = ctx.options.prompt_cache_lifetime
    if not candidates:
        finding.nothing = _prompt_cache_none(ctx)
        return finding
    found = {(r.endpoint, r.provider, r.model): r for r in rows}
    table_rows: list[list[Any]] = []
    per_endpoint: dict[str, float] = {}
    evidence: list[str] = []
    total = 0.0
    for g, prefix in candidates:
        r = found.get((g.endpoint, g.provider, g.model))
        rates = ctx.rates(g.provider, g.model)
        if r is None or rates is None:
            continue
        warm, tokens = int(r.warm), int(r.warm_tokens)
        cold = int(r.calls) - warm
        read_saving = float(Decimal(tokens) * (rates["input"] - rates["cached_input"]) / Decimal(1_000_000))
        write_premium = float(Decimal(cold * prefix) * max(rates["cache_write"] - rates["input"], Decimal(0))
                              / Decimal(1_000_000))  # fmt: skip
        saving = read_saving - write_premium
        if saving <= 0:
            continue
        total += saving
        per_endpoint[g.endpoint] = per_endpoint.get(g.endpoint, 0.0) + saving
        table_rows.append([g.endpoint, g.model, g.served, g.served_input / g.served, prefix, g.cached_share, warm,
                           saving, ctx.monthly(saving)])  # fmt: skip
        evidence.append(
            f"{g.endpoint} on {g.model}: {count(g.served)} calls of {count(g.served_input / g.served)} input "
            f"tokens on average, never fewer than {count(prefix)}; only {pct(g.cached_share)} of input was read "
            f"from the prompt cache; {count(warm)} calls came within {duration(lifetime)} of the previous one "
            f"(a warm cache)."
        )
    if not table_rows:
        finding.nothing = (f"endpoints with long prompts were found, but too few of their calls come within "
                           f"{duration(lifetime)} of each other for cache reads to outweigh cache writes")  # fmt: skip
        return finding
    table = Table([Column("Endpoint"), Column("Model"), Column("Calls", "count"), Column("Mean input", "count"),
                   Column("Shared prefix (est.)", "count"), Column("Cached share", "pct"),
                   Column("Warm calls", "count"), Column("Saved", "usd"), Column("Saved / month", "usd")],
                  table_rows)  # fmt: skip
    endpoints = sorted(per_endpoint, key=lambda e: -per_endpoint[e])
    finding.opportunities.append(ctx.opportunity(
        kind="prompt-cache",
        title=f"Provider prompt caching on {', '.join(endpoints)}",
        description=("Calls on these endpoints carry a long prompt that is sent again and again, but little of "
                     "it is read from the provider's prompt cache, where it would cost a fraction of the input rate."),
        evidence=evidence, evidence_table=table, savings=total, per_endpoint=per_endpoint,
        effort="Low", effort_note="reorder the prompt; one cache_control marker on Anthropic",
        notes=[
            ("Put the static part first (system prompt, instructions, examples, reference documents) and the "
             "per-request part last: providers cache the longest identical prefix."),
            ("OpenAI caches prefixes of 1,024 tokens or more automatically; on Anthropic mark the end of the "
             "static part with `\"cache_control\": {\"type\": \"ephemeral\"}` (5-minute cache; `\"ttl\": \"1h\"` "
             "for sparse traffic, at twice the input rate for writes)."),
            (f"Measure with {code('costtrack stats --by endpoint --json' + (' ' + ctx.options.database_args if ctx.options.database_args else ''))}"
             ": each endpoint's tokens_cached_input should rise (as this audit's Cached in column)."),
        ],
        assumption=("Only token counts are stored (not prompts, unless store_content=True), so the shared prefix "
                    "is estimated as the smallest prompt seen on the endpoint and model: a system prompt sent with "
                    "every call is at most that long. Check that the prompts do start with the same text. A call "
                    f"reads the cache when the previous call on the endpoint came within {duration(lifetime)}; "
                    "the other calls write it (Anthropic bills writes at 1.25x the input rate, OpenAI does not)."),
        metric=(f"cached share of input on {', '.join(endpoints)}: "
                f"{rate_move(_cached_share(ctx, endpoints), _target_cached_share(ctx, candidates, rows))}"),
        risks=[("A prompt that changes early (a timestamp or user name at the top) never hits the cache "
                "(mitigation: move variable parts to the end)."),
               ("Anthropic cache writes cost more than plain input: with sparse traffic a 1-hour cache or none "
                "is cheaper (mitigation: compare cached input before and after).")],
    ))  # fmt: skip
    return finding


def _prompt_cache_none(ctx: AuditContext) -> str:
    long_ones = [g for g in ctx.rep.groups if g.min_input and g.min_input >= min_cacheable_tokens(g.model)]
    if not long_ones:
        return ("no endpoint sends prompts long enough for a provider to cache (every endpoint has calls "
                "under 1,024 input tokens, the usual minimum)")  # fmt: skip
    cached = [g for g in long_ones if g.cached_share >= LOW_CACHED_SHARE]
    if cached and len(cached) == len(long_ones):
        names = ", ".join(sorted({g.endpoint for g in cached}))
        return f"the endpoints with long prompts ({names}) already read most of their input from the prompt cache"
    return ("the endpoints with long prompts cannot use it: their model has no cheaper cached-input rate, or too "
            "few of their calls repeat")  # fmt: skip


def _cached_share(ctx: AuditContext, endpoints: list[str]) -> float | None:
    groups = [g for g in ctx.rep.groups if g.endpoint in endpoints]
    tin = sum(g.tokens_input for g in groups)
    return sum(g.tokens_cached_input for g in groups) / tin if tin else None


def _target_cached_share(ctx: AuditContext, candidates: list[tuple[Group, int]], rows: list[Any]) -> float | None:
    found = {(r.endpoint, r.provider, r.model): r for r in rows}
    tin = extra = 0
    for g, _ in candidates:
        r = found.get((g.endpoint, g.provider, g.model))
        tin += g.tokens_input
        extra += int(r.warm_tokens) if r is not None else 0
    cached = sum(g.tokens_cached_input for g, _ in candidates)
    return (cached + extra) / tin if tin else None
