"""The period's spend after the top opportunities, combined in sequence rather than added up."""

from __future__ import annotations

from ..simulate import Scenario, simulate
from .context import AuditContext
from .document import Opportunity

__all__ = ["optimized_spend"]


def optimized_spend(ctx: AuditContext, top: list[Opportunity]) -> float:
    """The period's spend after the top opportunities: their simulate scenarios combined exactly, the rest by share."""
    merged = Scenario()
    for opp in top:
        s = opp.scenario
        if s is None:
            continue
        merged = Scenario(
            cache_ttl=s.cache_ttl or merged.cache_ttl, swaps=merged.swaps + s.swaps,
            batch_share=max(merged.batch_share, s.batch_share),
            batch_endpoints=_union(merged.batch_endpoints, s.batch_endpoints, bool(merged.batch_share),
                                   bool(s.batch_share)),
        )  # fmt: skip
    sim = simulate(ctx.rep, merged, ctx.book)
    remaining = {e.endpoint: e.simulated_usd for e in sim.endpoints}
    actual = {e.endpoint: e.actual_usd for e in sim.endpoints}
    for opp in top:
        if opp.scenario is not None:
            continue
        for endpoint, saving in opp.per_endpoint.items():
            if actual.get(endpoint):
                remaining[endpoint] *= max(1.0 - saving / actual[endpoint], 0.0)
    return sum(remaining.values())


def _union(a: frozenset[str] | None, b: frozenset[str] | None, a_on: bool, b_on: bool) -> frozenset[str] | None:
    if not a_on:
        return b
    if not b_on:
        return a
    if a is None or b is None:
        return None
    return a | b
