"""Model downgrade: expensive models giving short answers, repriced at a cheaper model of their family."""

from __future__ import annotations

from dataclasses import dataclass

from ...format import code, count, rate, usd
from ..simulate import Scenario, Swap, simulate
from .context import AuditContext
from .document import Finding
from .models import CHEAPER_MODELS, cheaper_model, provider_of
from .thresholds import (
    MIN_CALLS,
    SHORT_OUTPUT_TOKENS,
    SIMPLE_TASK_WORDS,
    endpoint_words,
)

__all__ = ["model_swap", "uses"]


@dataclass
class _Use:
    """One requested model on one endpoint (its groups merged)."""

    endpoint: str
    model_key: str
    provider: str
    model: str  # the answered model that served the most calls
    best: int = 0
    served: int = 0
    served_input: int = 0
    served_output: int = 0
    live_spend_usd: float = 0.0
    requests: int = 0


def uses(ctx: AuditContext) -> list[_Use]:
    """The groups merged per (endpoint, requested model): a model's snapshots and failed calls together."""
    merged: dict[tuple[str, str], _Use] = {}
    for g in ctx.rep.groups:
        u = merged.get((g.endpoint, g.model_key))
        if u is None:
            u = merged[(g.endpoint, g.model_key)] = _Use(g.endpoint, g.model_key, g.provider, g.model)
        if g.served > u.best:
            u.provider, u.model, u.best = g.provider, g.model, g.served
        u.served += g.served
        u.served_input += g.served_input
        u.served_output += g.served_output
        u.live_spend_usd += g.live_spend_usd
        u.requests += g.requests
    return list(merged.values())


def model_swap(ctx: AuditContext) -> Finding:
    """The model-downgrade finding: each expensive model with short answers, repriced at its cheaper counterpart."""
    finding = Finding("model-swap", "Expensive model on short, simple outputs → a cheaper model")
    reasons: list[str] = []
    for g in uses(ctx):
        target = cheaper_model(g.model_key)
        if target is None or g.served < MIN_CALLS:
            continue
        mean_out = g.served_output / g.served
        if mean_out > SHORT_OUTPUT_TOKENS or mean_out <= 0:
            reasons.append(f"{g.endpoint} on {g.model_key}: answers average {count(mean_out)} output tokens")
            continue
        if ctx.rates(None, target) is None:
            reasons.append(f"{g.endpoint}: no price for the cheaper {target}")
            continue
        swap = Swap(g.model_key, target, frozenset({g.endpoint}))
        ctx.read_tiered()
        sim = simulate(ctx.rep, Scenario(swaps=(swap,)), ctx.book)
        tiered = sum(t.tiered_calls for t in ctx.rep.groups if swap.matches(t))
        saving = sim.total.swap_savings_usd
        if saving <= 0:
            continue
        current, cheap = ctx.rates(g.provider, g.model), ctx.rates(None, target)
        assert cheap is not None
        after = g.live_spend_usd - saving
        evidence = [
            (f"{g.endpoint}: {count(g.served)} calls requesting {g.model_key}"
             + (f" (answered by {g.model})" if g.model != g.model_key else "")
             + f", {count(mean_out)} output tokens and {count(g.served_input / g.served)} input tokens per call "
             "on average."),
            f"The same tokens at {target}'s rates ({rate(float(cheap['input']))} input / "
            f"{rate(float(cheap['output']))} output per 1M tokens"
            + (f", against {rate(float(current['input']))} / {rate(float(current['output']))}" if current else "")
            + f") cost {usd(after)} instead of {usd(g.live_spend_usd)}.",
        ]  # fmt: skip
        words = sorted(endpoint_words(g.endpoint) & SIMPLE_TASK_WORDS)
        if words:
            evidence.append(f"{g.endpoint} is named like a short-answer task ({', '.join(repr(w) for w in words)}): "
                            "a label, a score, a route or a few extracted fields.")  # fmt: skip
        cross = provider_of(target) not in (None, g.provider)
        finding.opportunities.append(ctx.opportunity(
            kind="model-swap",
            title=f"{g.model_key} → {target} on {g.endpoint}",
            description=(f"{g.endpoint} asks {g.model_key} for short answers; a smaller model of the same "
                         f"family ({target}) usually handles such tasks at a fraction of the price."),
            evidence=evidence, savings=saving, per_endpoint={g.endpoint: saving},
            effort="Medium", effort_note="a one-line model change, plus an A/B test to check quality",
            notes=[
                (f"Run an A/B test first: `costtrack.wrap(client, router=costtrack.route(costtrack.ABTest("
                 f"control=\"{g.model_key}\", variant=\"{target}\", share=0.2)))`, then "
                 f"{code('costtrack report results --ab' + (' ' + ctx.options.reading_args if ctx.options.reading_args else ''))} "
                 "compares cost, latency and quality with confidence intervals."),
                (f"Or fall back: `costtrack.CheapFirst([\"{target}\", \"{g.model_key}\"], accept=is_valid_label)` "
                 "escalates only the answers your check rejects."),
                ("Record a quality score per call (`costtrack.context(tags={\"quality\": score})`) so the "
                 "comparison covers quality, not only cost."),
            ],
            assumption=(f"Priced with {target}'s real rates (price catalog, at {ctx.at:%Y-%m-%d}) for the same "
                        "token counts; long-context tiers are not applied"
                        + ("; the providers' tokenizers differ, so token counts will change" if cross else "")
                        + (f"; {count(tiered)} of the calls were served at a service tier (flex, priority, fast), and "
                           f"{target} is priced at its standard rates, so the saving includes the tier's difference"
                           if tiered else "")
                        + ". Quality is not measured by this estimate."),
            metric=(f"cost per request on {g.endpoint}: {usd(g.live_spend_usd / g.requests if g.requests else None)}"
                    f" → {usd(after / g.requests if g.requests else None)}, with the quality score no lower "
                    "than the control's (95% CI)"),
            risks=[(f"Lower answer quality on hard cases (mitigation: A/B test with a quality score, or CheapFirst "
                    f"escalating to {g.model_key}).")],
            scenario=Scenario(swaps=(swap,)),
            command=ctx.command(f"--swap {g.model_key}={target} --endpoint {g.endpoint}"),
        ))  # fmt: skip
    if not finding.opportunities:
        expensive = [g for g in ctx.rep.groups if cheaper_model(g.model_key)]
        if not expensive:
            finding.nothing = ("no call used a model with a cheaper counterpart of the same family "
                               f"({', '.join(sorted(CHEAPER_MODELS)[:6])}, ...)")  # fmt: skip
        else:
            finding.nothing = ("the expensive models are used for long answers (over "
                               f"{SHORT_OUTPUT_TOKENS} output tokens on average) or on fewer than {MIN_CALLS} calls"
                               + (f": {'; '.join(reasons[:3])}" if reasons else ""))  # fmt: skip
    return finding
