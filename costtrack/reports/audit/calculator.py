"""The audit's cost calculator: current and optimized cost at several monthly volumes, against self-hosting."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .. import calc
from ..simulate import monthly
from .context import AuditContext
from .document import Column, Table

__all__ = ["VOLUMES_PER_MONTH", "calculator", "total_tokens"]

VOLUMES_PER_MONTH = (100, 1_000, 10_000, 100_000)


def calculator(ctx: AuditContext, optimized: float) -> tuple[Table, dict[str, Any]]:
    """Cost at each of VOLUMES_PER_MONTH, current and optimized, against self-hosting; and the figures behind it."""
    rep = ctx.rep
    requests = rep.requests or rep.calls
    # Unpriced calls alone cost an unknown amount, not $0: so does each volume of today's mix and of the optimized one.
    known = ctx.spend_known
    current_per = (ctx.baseline / requests if requests else 0.0) if known else None
    optimized_per = (optimized / requests if requests else 0.0) if known else None
    tokens_out = sum(g.live.output for g in rep.groups)
    tokens = sum(total_tokens(g.live) for g in rep.groups)
    info: dict[str, Any] = {"requests": requests, "requests_per_month": monthly(requests, rep.days),
                            "current_per_request": current_per, "optimized_per_request": optimized_per,
                            "hardware": ctx.options.hardware, "hours_per_day": ctx.options.hours_per_day}  # fmt: skip
    local: dict[float, tuple[float, int]] = {}
    hw = calc.load_hardware().get(ctx.options.hardware)
    if hw is None or not tokens or not requests or not ctx.baseline:
        info["error"] = ("no priced tokens in the period" if hw is not None else
                         f"unknown hardware profile {ctx.options.hardware!r}")  # fmt: skip
        if hw is not None and requests:  # a GPU's cost does not depend on API prices: only the breakeven does
            local = _self_hosted(ctx, hw, requests)
            info.update(hardware_label=hw.label or hw.name, gpu_monthly=float(hw.monthly(ctx.options.hours_per_day)))
    else:
        days = rep.days
        # One blended rate for every token (the recorded mix), so the API side is the recorded cost per request.
        workload = calc.Workload.per_request(requests / days, (tokens - tokens_out) / requests, tokens_out / requests)
        results = {}
        for label, spend in (("current", ctx.baseline), ("optimized", optimized)):
            blended = Decimal(repr(spend)) / Decimal(tokens) * Decimal(1_000_000)
            price = calc.ApiPrice(model=f"{label} mix", input=blended, output=blended, cached_input=blended,
                                  source="the recorded calls")  # fmt: skip
            scenario = calc.Scenario(workload=workload, api=price, hardware=hw,
                                     hours_per_day=ctx.options.hours_per_day)  # fmt: skip
            results[label] = calc.calculate(scenario, tuple(v / calc.DAYS_PER_MONTH for v in VOLUMES_PER_MONTH))
        cur = results["current"]
        for row in cur.volumes:
            local[round(row.requests_per_month or 0.0)] = (row.local_monthly_usd, row.gpus)
        info.update(
            blended_per_mtok=float(Decimal(repr(ctx.baseline)) / Decimal(tokens) * Decimal(1_000_000)),
            tokens_per_request=tokens / requests, hardware_label=hw.label or hw.name,
            gpu_monthly=cur.local.monthly_per_gpu_usd, gpu_breakdown=cur.local.breakdown_per_gpu_usd,
            breakeven_current=_per_month(cur.breakeven_requests_per_day),
            breakeven_optimized=_per_month(results["optimized"].breakeven_requests_per_day),
            recommendation=cur.recommendation, reasons=cur.reasons,
        )  # fmt: skip
    rows: list[list[Any]] = []
    for volume in VOLUMES_PER_MONTH:
        loc = local.get(volume)
        if current_per is None or optimized_per is None:
            api: list[float | None] = [None, None, None]
        else:
            cur_cost, opt_cost = current_per * volume, optimized_per * volume
            api = [cur_cost, opt_cost, cur_cost - opt_cost]
        rows.append([volume, *api, loc[0] if loc else None, loc[1] if loc else None])
    table = Table([Column("Requests / month", "count"), Column("Current mix", "usd"),
                   Column("Optimized mix", "usd"), Column("Saved", "usd"),
                   Column(f"Self-hosted ({ctx.options.hardware})", "usd"), Column("GPUs", "count")], rows)  # fmt: skip
    return table, info


def _self_hosted(ctx: AuditContext, hw: calc.Hardware, requests: int) -> dict[float, tuple[float, int]]:
    """Self-hosting's monthly cost and GPUs at each volume, from the recorded traffic alone (no API price needed).

    The workload is the tokens of every call that reached a provider, priced or not, per request.
    """
    rep = ctx.rep
    tin, tout = sum(g.sent_input for g in rep.groups), sum(g.sent_output for g in rep.groups)
    workload = calc.Workload.per_request(requests / rep.days, tin / requests, tout / requests)
    out: dict[float, tuple[float, int]] = {}
    for volume in VOLUMES_PER_MONTH:
        scaled = workload.scaled(volume / calc.DAYS_PER_MONTH / workload.requests_per_day)  # type: ignore[operator]
        cost = calc.local_cost(scaled, hw, ctx.options.hours_per_day, calc.DEFAULT_PEAK_FACTOR, calc.Throughput())
        out[volume] = (cost.monthly_usd, cost.gpus)
    return out


def total_tokens(b: Any) -> int:
    """Every token of a set of token buckets: uncached and cached input, cache writes, output."""
    return b.uncached + b.cached + b.write_5m + b.write_1h + b.output


def _per_month(per_day: float | None) -> float | None:
    return None if per_day is None else per_day * calc.DAYS_PER_MONTH
