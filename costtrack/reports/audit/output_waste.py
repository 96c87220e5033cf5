"""Output length: endpoints whose answers run longer than their task needs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ...format import count
from ..simulate import Group
from .context import AuditContext
from .document import Column, Finding, Table
from .thresholds import (
    MIN_CALLS,
    SIMPLE_TASK_OUTPUT_TOKENS,
    SIMPLE_TASK_WORDS,
    VERBOSE_OUTPUT_TOKENS,
    VERBOSE_RATIO,
    endpoint_words,
)

__all__ = ["output_waste", "output_waste_candidates"]


def short_answer_words(g: Group) -> list[str]:
    """The words of the group's endpoint name that name a short-answer task (classify, extract, label, ...)."""
    return sorted(endpoint_words(g.endpoint) & SIMPLE_TASK_WORDS)


def long_for_its_task(g: Group) -> bool:
    """The rule: an endpoint named like a short-answer task whose answers average over SIMPLE_TASK_OUTPUT_TOKENS."""
    return bool(short_answer_words(g)) and g.served_output / g.served > SIMPLE_TASK_OUTPUT_TOKENS


def verbose(g: Group) -> bool:
    """The rule: answers of VERBOSE_OUTPUT_TOKENS+ tokens on average, at VERBOSE_RATIO x the input or more."""
    mean_out = g.served_output / g.served
    mean_in = g.served_input / g.served
    return mean_out >= VERBOSE_OUTPUT_TOKENS and bool(mean_in) and mean_out / mean_in >= VERBOSE_RATIO


def output_waste_candidates(ctx: AuditContext) -> list[Group]:
    """Groups whose answers look longer than their task: `long_for_its_task` or `verbose`."""
    out: list[Group] = []
    for g in ctx.rep.groups:
        if g.served < MIN_CALLS or not g.served_output or ctx.rates(g.provider, g.model) is None:
            continue
        if long_for_its_task(g) or verbose(g):
            out.append(g)
    return out


def output_waste(ctx: AuditContext, candidates: list[Group], rows: list[Any]) -> Finding:
    """The output-length finding: what the output tokens above each candidate's median cost."""
    finding = Finding("output-waste", "Output-token waste → shorter answers (max_tokens, structured output)")
    if not candidates:
        finding.nothing = (f"no endpoint named like a short-answer task (classify, extract, label, score, ...) averages more than "
                           f"{SIMPLE_TASK_OUTPUT_TOKENS} output tokens, and no endpoint averages "
                           f"{VERBOSE_OUTPUT_TOKENS}+ output tokens at {VERBOSE_RATIO:g}x its input or more")  # fmt: skip
        return finding
    found = {(r.endpoint, r.provider, r.model): r for r in rows}
    table_rows: list[list[Any]] = []
    per_endpoint: dict[str, float] = {}
    evidence: list[str] = []
    for g in candidates:
        r = found.get((g.endpoint, g.provider, g.model))
        rates = ctx.rates(g.provider, g.model)
        if r is None or rates is None:
            continue
        excess = int(r.excess)
        saving = float(Decimal(excess) * rates["output"] / Decimal(1_000_000))
        if saving <= 0:
            continue
        mean_out = g.served_output / g.served
        mean_in = g.served_input / g.served
        per_endpoint[g.endpoint] = per_endpoint.get(g.endpoint, 0.0) + saving
        if long_for_its_task(g):
            words = ", ".join(f"'{w}'" for w in short_answer_words(g))
            why = (f"named like a short-answer task ({words}) and averaging {count(mean_out)} output tokens, over "
                   f"the {SIMPLE_TASK_OUTPUT_TOKENS} this detector allows such an endpoint")  # fmt: skip
        else:
            why = f"{count(mean_out)} output tokens per call, {mean_out / mean_in:.1f}x the input"
        table_rows.append([g.endpoint, g.model, g.served, mean_in, mean_out, int(r.p50), int(r.max_out), excess,
                           saving, ctx.monthly(saving)])  # fmt: skip
        evidence.append(f"{g.endpoint} on {g.model}: {why}; median {count(int(r.p50))}, longest "
                        f"{count(int(r.max_out))}; {count(excess)} output tokens lie above the median.")  # fmt: skip
    if not table_rows:
        finding.nothing = "the endpoints with long answers have no spread above their median to trim"
        return finding
    total = sum(per_endpoint.values())
    endpoints = sorted(per_endpoint, key=lambda e: -per_endpoint[e])
    table = Table([Column("Endpoint"), Column("Model"), Column("Calls", "count"), Column("Mean in", "count"),
                   Column("Mean out", "count"), Column("Median out", "count"), Column("Longest", "count"),
                   Column("Tokens above median", "count"), Column("Saved", "usd"), Column("Saved / month", "usd")],
                  table_rows)  # fmt: skip
    finding.opportunities.append(ctx.opportunity(
        kind="output-waste",
        title=f"Shorter answers on {', '.join(endpoints)}",
        description=("These endpoints generate more output than their task needs: an endpoint named like a "
                     "short-answer task (a label, a score, a few extracted fields) gets answers of over "
                     f"{SIMPLE_TASK_OUTPUT_TOKENS} tokens on average, or answers of {VERBOSE_OUTPUT_TOKENS}+ tokens "
                     "run as long as the prompt or longer."),
        evidence=evidence, evidence_table=table, savings=total, per_endpoint=per_endpoint,
        effort="Low", effort_note="prompt wording, max_tokens, a response schema",
        notes=[
            "Ask for exactly the output needed: the label only, or a JSON schema (structured outputs) with enums.",
            ("Set max_tokens near the longest useful answer (costtrack records the lengths: "
             "`costtrack export` them and look at the distribution)."),
            "Record `stop_reason`/`finish_reason=length` cases as errors in your quality checks.",
        ],
        assumption=("Only output lengths are stored, not max_tokens or the answers; the saving is what the output "
                    "tokens above each endpoint's median length cost, i.e. every longer answer cut to the median "
                    "(an upper bound for what shorter answers can save)."),
        metric=("mean output tokens per call on " + ", ".join(
            f"{g.endpoint}: {count(g.served_output / g.served)} → "
            f"{count(int(found[(g.endpoint, g.provider, g.model)].p50))}"
            for g in candidates if (g.endpoint, g.provider, g.model) in found)),
        risks=["Truncated answers if max_tokens is set too low (mitigation: watch finish_reason=length)."],
    ))  # fmt: skip
    return finding
