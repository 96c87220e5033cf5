"""Batching: non-interactive endpoints moved to the providers' Batch APIs, at their Batch rates."""

from __future__ import annotations

from ...format import count, pct, usd
from ..simulate import Interactivity, Scenario, simulate
from .context import AuditContext
from .document import Column, Finding, Table

__all__ = ["batch"]


def batch(ctx: AuditContext, interactivity: list[Interactivity]) -> Finding:
    """The Batch API finding: the non-interactive endpoints' calls at their models' Batch rates (mostly half)."""
    finding = Finding("batch", "Non-interactive endpoints → Batch API (about 50% off)")
    if not interactivity:
        finding.nothing = ("no endpoint looks non-interactive: none is tagged interactive=false and none is named "
                           "like a job (/jobs/, batch, nightly, cron, scheduled, offline, backfill, worker)")  # fmt: skip
        return finding
    scope = frozenset(i.endpoint for i in interactivity)
    sim = simulate(ctx.rep, Scenario(batch_share=1.0, batch_endpoints=scope), ctx.book)
    rows = [e for e in sim.endpoints if e.endpoint in scope]
    saving = sim.total.batch_savings_usd
    groups = [g for g in ctx.rep.groups if g.endpoint in scope]
    calls, batched = sum(g.calls for g in groups), sum(g.batched_calls for g in groups)
    if saving <= 0:
        if calls and batched == calls:
            finding.nothing = f"{', '.join(sorted(scope))} look non-interactive, and all their calls already go through a Batch API"
        else:
            if any(e.actual_usd for e in rows) or not all(e.unknown for e in rows):
                cost = "cost nothing in the period"
            elif any(e.unpriced_calls for e in rows):
                cost = "have no known cost (unpriced models: see `costtrack stats`)"
            else:
                cost = "went to self-hosted models priced per hour, which no Batch API serves"
            one = len(scope) == 1
            finding.nothing = (f"{', '.join(sorted(scope))} {'looks' if one else 'look'} non-interactive, but "
                               f"{'its' if one else 'their'} calls {cost}")  # fmt: skip
        return finding
    why = {i.endpoint: i.reason for i in interactivity}
    table = Table([Column("Endpoint"), Column("Why"), Column("Calls", "count"), Column("Spend", "usd"),
                   Column("Saved", "usd"), Column("Saved / month", "usd")],
                  [[e.endpoint, why[e.endpoint], e.calls, e.shown(e.actual_usd), e.shown(e.batch_savings_usd),
                    e.shown(ctx.monthly(e.batch_savings_usd))] for e in rows])  # fmt: skip
    names = ", ".join(e.endpoint for e in rows if e.batch_savings_usd > 0)
    finding.opportunities.append(ctx.opportunity(
        kind="batch",
        title=f"Batch API for {names}",
        description=("Nobody waits on these calls, so they can go through the providers' Batch APIs (OpenAI "
                     "Batch, Anthropic Message Batches): the same models at their Batch rates, 50% off input and output, "
                     "answers within 24 hours."),
        evidence=[f"{e.endpoint} ({why[e.endpoint]}): {count(e.calls)} calls, {usd(e.actual_usd)} in the period."
                  for e in rows],
        evidence_table=table, savings=saving, per_endpoint={e.endpoint: e.batch_savings_usd for e in rows},
        effort="Medium", effort_note="a job that submits a batch file and collects the results later",
        notes=[
            ("Collect the job's requests into a JSONL file, submit it (`client.batches.create(...)` / "
             "`client.messages.batches.create(...)`), poll, then store the results."),
            ("Send them with `costtrack.batching.run_batch` (each result is recorded at the batch price, tagged "
             "`costtrack.batch`), or record results sent otherwise with `costtrack.Tracker.add(CallRecord(...))` at the "
             "batch price and `tags={\"costtrack.batch\": True}`, so costtrack's spend stays exact and this detector "
             "counts them as batched."),
            ("Mark endpoints with `costtrack.context(tags={\"interactive\": False})` so this detector and "
             "`costtrack simulate --batch-share` find them without relying on the name."),
        ],
        assumption=("Endpoints are non-interactive when their records are tagged interactive=false or their name "
                    "reads like a job (/jobs/, batch, nightly, cron, scheduled, offline, backfill, worker); all "
                    "of their calls not already batched (tagged costtrack.batch=true by costtrack.batching) are moved "
                    "to the Batch API at their models' Batch rates (50% of each rate, but OpenAI's Batch tables of some "
                    "models, gpt-4o among them, bill cached input at the standard cached rate)."),
        metric=(f"share of {names} calls through the Batch API: {pct(batched / calls if calls else 0.0)} → 100%; their monthly cost "
                f"{usd(ctx.monthly(sum(e.actual_usd for e in rows)))} → "
                f"{usd(ctx.monthly(sum(e.simulated_usd for e in rows)))}"),
        risks=["Results arrive up to 24 hours later (mitigation: keep an interactive fallback for urgent runs).",
               "A failed batch needs a retry path (mitigation: resubmit the failed items, alert on expiry)."],
        scenario=Scenario(batch_share=1.0, batch_endpoints=scope),
        command=ctx.command(f"--batch-share 1 --batch-endpoints {','.join(sorted(scope))}"),
    ))  # fmt: skip
    return finding
