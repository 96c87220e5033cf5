"""Errors and retries: money spent on failed, cut and rejected calls."""

from __future__ import annotations

from typing import Any

from ...format import count, pct, usd
from .context import AuditContext, error_rate
from .document import Column, Finding, Table

__all__ = ["failures"]


def failures(ctx: AuditContext, error_rows: list[Any], fallback_rows: list[Any]) -> Finding:
    """The finding on what failed calls, cut streams and rejected fallback answers cost."""
    finding = Finding("failures", "Money spent on failed, cut and rejected calls")
    error_spend = sum(float(r.spend) for r in error_rows if r.status == "error")
    cut_spend = sum(float(r.spend) for r in error_rows if r.status == "incomplete")
    rejected = [r for r in fallback_rows if str(r.reason) == "rejected"]
    rejected_spend = sum(float(r.spend) for r in rejected)
    escalations = sum(int(r.calls) for r in fallback_rows)
    errors = sum(int(r.calls) for r in error_rows if r.status == "error")
    cut = sum(int(r.calls) for r in error_rows if r.status == "incomplete")
    retries = ctx.rep.calls - ctx.rep.requests
    total = error_spend + cut_spend + rejected_spend
    if total <= 0:
        parts = []
        if errors:
            parts.append(f"{count(errors)} failed calls ({pct(errors / ctx.rep.calls)}) were not billed")
        if retries:
            parts.append(f"{count(retries)} calls were retries or fallback escalations")
        finding.nothing = ("no money was spent on failed, cut or rejected calls"
                           + (f" ({'; '.join(parts)}: they cost latency, not money)" if parts else ""))  # fmt: skip
        return finding
    per_endpoint: dict[str, float] = {}
    for r in error_rows:
        per_endpoint[r.endpoint] = per_endpoint.get(r.endpoint, 0.0) + float(r.spend)
    for r in rejected:
        per_endpoint[r.endpoint] = per_endpoint.get(r.endpoint, 0.0) + float(r.spend)
    table_rows = [[r.endpoint, r.status, r.error_type, int(r.calls), float(r.spend)] for r in error_rows
                  if float(r.spend) > 0]  # fmt: skip
    table_rows += [[r.endpoint, "rejected by fallback", "(answer rejected)", int(r.calls), float(r.spend)]
                   for r in rejected if float(r.spend) > 0]  # fmt: skip
    table_rows.sort(key=lambda row: -row[4])
    evidence = []
    if error_spend:
        evidence.append(f"{count(errors)} failed calls were billed {usd(error_spend)} (tokens processed before "
                        "the failure).")  # fmt: skip
    if cut_spend:
        evidence.append(f"{count(cut)} streams were cut or abandoned after {usd(cut_spend)} of tokens.")
    if rejected_spend:
        evidence.append(f"{count(sum(int(r.calls) for r in rejected))} answers of cheap-first fallback chains "
                        f"were rejected and escalated, after costing {usd(rejected_spend)}.")  # fmt: skip
    if retries:
        evidence.append(f"{count(retries)} calls were SDK retries or fallback escalations "
                        f"({count(escalations)} escalations).")  # fmt: skip
    finding.opportunities.append(ctx.opportunity(
        kind="failures",
        title="Stop paying for failed, cut and rejected calls",
        description="Money went to calls whose answers were never used.",
        evidence=evidence,
        evidence_table=Table([Column("Endpoint"), Column("Status"), Column("Error type"), Column("Calls", "count"),
                              Column("Cost", "usd")], table_rows),
        savings=total, per_endpoint=per_endpoint,
        effort="Medium", effort_note="depends on the cause: timeouts, rate limits, acceptance checks",
        notes=[
            "Timeouts on long generations: stream, and raise the client timeout rather than retrying from scratch.",
            "Rate limits: back off with jitter, spread batch jobs, or raise the tier.",
            ("Rejected fallback answers: tune the accept() check, or start the chain at a model that passes it "
             "more often (`costtrack report results` attributes fallback savings net of rejections)."),
        ],
        assumption="Everything these calls cost is counted as saved: an upper bound, reached if no call failed.",
        metric=(f"monthly cost of failed, cut and rejected calls: {usd(ctx.monthly(total))} → $0; error rate "
                f"{pct(error_rate(ctx.rep))} → under 1%"),
        risks=["Retrying less can lose answers (mitigation: keep retries for errors that are not billed)."],
    ))  # fmt: skip
    return finding
