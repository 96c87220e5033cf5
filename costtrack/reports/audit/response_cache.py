"""Response caching: exact-duplicate requests, replayed with a TTL on the simulate engine."""

from __future__ import annotations

from ...format import code, count, duration, pct, usd
from ..operands import rate_move
from ..simulate import Scenario, Simulation, simulate
from .context import AuditContext
from .document import Column, Finding, Table

__all__ = ["actual_hit_rate", "response_cache", "simulated_hit_rate"]


def response_cache(ctx: AuditContext) -> Finding:
    """The response-cache finding: requests sent again within the TTL, and what answering them saves."""
    ttl = ctx.options.cache_ttl
    name = "Exact-duplicate requests → response caching"
    finding = Finding("response-cache", name)
    sim = simulate(ctx.rep, Scenario(cache_ttl=ttl), ctx.book)
    rows = [e for e in sim.endpoints if e.would_hit]
    if not rows:
        finding.nothing = (f"no successful request was sent again within {duration(ttl)} of the same request "
                           "(same request_hash)")  # fmt: skip
        return finding
    savings = sim.total.cache_savings_usd
    if savings <= 0:
        if not all(e.unknown for e in rows):
            why = "they cost nothing, so caching them saves no money"
        elif any(e.unpriced_calls for e in rows):
            why = "their cost is unknown (unpriced models: see `costtrack stats`), so what caching them saves cannot be told"
        else:
            why = ("they went to self-hosted models priced per hour, whose cost is the hours served: caching them saves "
                   "GPU time, not a per-call price")  # fmt: skip
        finding.nothing = f"{count(sim.total.would_hit)} calls repeated a request within {duration(ttl)}, but {why}"
        return finding
    table = Table([Column("Endpoint"), Column("Calls", "count"), Column("Would-be hits", "count"),
                   Column("Hit rate", "pct"), Column("Saved", "usd"), Column("Saved / month", "usd")],
                  [[e.endpoint, e.calls, e.would_hit, e.would_hit / e.calls if e.calls else None, e.shown(e.cache_savings_usd),
                    e.shown(ctx.monthly(e.cache_savings_usd))] for e in rows])  # fmt: skip
    top = sorted(rows, key=lambda e: -e.cache_savings_usd)
    # The figure is the whole replay's (what `costtrack simulate --cache-ttl` gives): every endpoint whose
    # would-be hits save money is named, in the title, the notes and the success metric alike.
    main = [e.endpoint for e in top if e.cache_savings_usd > 0]
    hit_rate = sim.total.would_hit / ctx.rep.calls
    finding.opportunities.append(ctx.opportunity(
        kind="response-cache",
        title=f"Response cache (TTL {duration(ttl)}) on {', '.join(main)}",
        description=("The same request (same request_hash: provider, operation and body) is sent again while "
                     "its answer would still be fresh; a response cache answers it without calling the provider."),
        evidence=[
            (f"Replaying the log with a {duration(ttl)} TTL: {count(sim.total.would_hit)} of {count(ctx.rep.calls)} "
             f"calls ({pct(hit_rate)}) repeat a request answered at most {duration(ttl)} earlier."),
            *(f"{e.endpoint}: {count(e.would_hit)} of {count(e.calls)} calls would be hits, "
              f"{usd(e.cache_savings_usd)} of {usd(e.actual_usd)}."
              for e in top[:4] if e.cache_savings_usd >= 0.01 * savings),
        ],
        evidence_table=table, savings=savings, per_endpoint={e.endpoint: e.cache_savings_usd for e in rows},
        effort="Low", effort_note="one argument to wrap(); Redis when several processes serve the app",
        notes=[
            (f"`client = costtrack.wrap(OpenAI(), cache=costtrack.MemoryCache(ttl={int(ttl)}))` on the clients of "
             f"{', '.join(main)}; `costtrack.RedisCache(url=..., ttl={int(ttl)})` to share it between processes."),
            ("Cache only where the same request must get the same answer (temperature 0, classification, "
             "extraction, embeddings, summaries of unchanged documents); leave free-form chat out."),
            "Invalidation: the TTL bounds staleness; bump the cache namespace when prompts or source data change.",
            (f"A longer TTL saves more and serves staler answers: compare with {code(ctx.command('--cache-ttl 30m'))} and "
             "`--cache-ttl 24h` before choosing."),
        ],
        assumption=("A call is a would-be hit when a successful call with the same request_hash started at most "
                    f"{duration(ttl)} before it, whatever the call's own status (a cache holding the answer would "
                    "also have answered a request that failed, and the SDK's retries of it). Every successful call, "
                    "a repeat too, counts as storing the entry afresh: an upper bound for caches whose entries "
                    "expire a fixed time after they were stored. The saving is what the would-be hits on "
                    f"{', '.join(main)} cost."),
        metric=(f"response-cache hit rate on {', '.join(main)}: "
                f"{rate_move(actual_hit_rate(ctx, main), simulated_hit_rate(ctx, sim, main))}; "
                f"monthly cost {usd(ctx.monthly(ctx.baseline))} → "
                f"{usd(ctx.monthly(ctx.baseline - savings))}"),
        risks=[("Stale answers after the prompt or the underlying data change (mitigation: TTL, namespace bump "
                "on deploy)."),
               ("Caching a non-deterministic task changes behaviour (mitigation: enable per "
                "endpoint, only where answers may repeat).")],
        scenario=Scenario(cache_ttl=ttl), command=ctx.command(f"--cache-ttl {duration(ttl)}"),
    ))  # fmt: skip
    return finding


def actual_hit_rate(ctx: AuditContext, endpoints: list[str]) -> float | None:
    """The recorded response-cache hit rate of these endpoints."""
    groups = [g for g in ctx.rep.groups if g.endpoint in endpoints]
    calls = sum(g.calls for g in groups)
    return sum(g.cache_hits for g in groups) / calls if calls else None


def simulated_hit_rate(ctx: AuditContext, sim: Simulation, endpoints: list[str]) -> float | None:
    """The hit rate of these endpoints with the simulated cache's hits added to the recorded ones."""
    rows = [e for e in sim.endpoints if e.endpoint in endpoints]
    calls = sum(e.calls for e in rows)
    actual = sum(g.cache_hits for g in ctx.rep.groups if g.endpoint in endpoints)
    return (sum(e.would_hit for e in rows) + actual) / calls if calls else None
