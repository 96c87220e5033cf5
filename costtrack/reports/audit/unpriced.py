"""Unpriced models: their calls per model, and the finding that prices them."""

from __future__ import annotations

from typing import Any

from ...format import count
from .context import AuditContext
from .document import Column, Finding, Table

__all__ = ["unpriced", "unpriced_table"]


def unpriced_table(ctx: AuditContext) -> Table:
    """Calls to models without a price, per model, with their tokens and endpoints."""
    merged: dict[tuple[str, str], list[Any]] = {}
    for g in ctx.rep.groups:
        # Calls whose usage could not be read are unpriced whatever their model's price: not a model to price.
        calls = g.unpriced_calls - g.unreadable_calls
        if calls > 0:
            row = merged.setdefault((g.provider, g.model), [g.model, g.provider, 0, 0, set()])
            row[2] += calls
            row[3] += g.tokens_input + g.tokens_output
            row[4].add(g.endpoint)
    rows = [[m, p, n, t, ", ".join(sorted(e))] for m, p, n, t, e in merged.values()]
    rows.sort(key=lambda r: (-r[2], r[0]))
    return Table([Column("Model"), Column("Provider"), Column("Unpriced calls", "count"), Column("Tokens", "count"),
                  Column("Endpoints")], rows)  # fmt: skip


def unpriced(ctx: AuditContext) -> Finding:
    """The finding on unpriced models: a cost the audit cannot see."""
    finding = Finding("unpriced", "Unpriced models (a cost you cannot see)")
    table = unpriced_table(ctx)
    if not table.rows:
        finding.nothing = "every call with tokens has a price"
        return finding
    calls = sum(r[2] for r in table.rows)
    finding.opportunities.append(ctx.opportunity(
        kind="unpriced",
        title=f"Price {', '.join(r[0] for r in table.rows)}",
        description=("Calls to these models have no known price: their cost is recorded as unknown (NULL), not "
                     "$0, and is missing from every total in this audit."),
        evidence=[f"{r[0]} ({r[1]}): {count(r[2])} calls, {count(r[3])} tokens, on {r[4]}." for r in table.rows],
        evidence_table=table, savings=None,
        effort="Low", effort_note="a few lines in a prices file",
        notes=[
            ("Add the models to a prices file (`[models.\"NAME\"] input = ... output = ...`, USD per 1M tokens; "
             "`per_hour = ...` for a self-hosted model) and point COSTTRACK_PRICES_FILE at it."),
            "Run `costtrack reprice` to price the stored calls, then run this audit again.",
        ],
        assumption="The saving cannot be estimated before the cost is known.",
        metric=f"unpriced calls: {count(calls)} → 0",
        risks=["None: this only makes costs visible."],
    ))  # fmt: skip
    return finding
