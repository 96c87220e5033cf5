"""The decimals of the operands the audit shows in its formulas, so that each formula checks as printed."""

from __future__ import annotations

from typing import Any

from ...format import pct, usd
from ..calc import DAYS_PER_MONTH
from ..operands import places, usd_start
from .calculator import VOLUMES_PER_MONTH
from .document import Audit

__all__ = ["formula_places"]


def formula_places(audit: Audit) -> dict[str, Any]:
    """Decimals per shown operand: the monthly projection, the cost per request, the GPU's cost, the top 3's saving.

    Keys: ``spend`` and ``days`` (spend x 30 / days), ``current`` and ``optimized`` (cost per request) and
    ``requests_per_month`` (cost per request x requests per month, at the calculator's volumes and at the recorded
    one), ``gpu`` (each part of a GPU's monthly cost, which add up to it), ``monthly`` (today's and the optimized
    monthly cost, whose difference is the saving).
    """
    out: dict[str, Any] = {}
    spend, days = audit.baseline_usd, audit.days
    out["spend"], out["days"] = places([spend, days], [usd_start(spend), 1],
                                       lambda o: [o[0] * DAYS_PER_MONTH / o[1]], usd)  # fmt: skip
    be = audit.breakeven
    cur, opt, rpm = be["current_per_request"], be["optimized_per_request"], be["requests_per_month"]
    if cur is None or opt is None:  # unknown (nothing priced): no formula prints them
        cur = opt = 0.0

    def calculator(o: Any) -> list[float]:
        return [o[0] * 1000, *(o[0] * v for v in VOLUMES_PER_MONTH), *(o[1] * v for v in VOLUMES_PER_MONTH),
                o[0] * o[2], o[1] * o[2]]  # fmt: skip

    out["current"], out["optimized"], out["requests_per_month"] = places(
        [cur, opt, rpm], [usd_start(cur), usd_start(opt), 0], calculator, usd)  # fmt: skip
    parts = dict(be.get("gpu_breakdown") or {})
    if parts:
        names = list(parts)
        chosen = places([parts[n] for n in names], [usd_start(parts[n]) for n in names], lambda o: [sum(o)], usd)
        out["gpu"] = dict(zip(names, chosen))
    base, optimized = audit.baseline_monthly_usd, audit.optimized_monthly_usd
    if base:
        out["monthly"] = places([base, optimized], [usd_start(base), usd_start(optimized)],
                                lambda o: [o[0] - o[1], (o[0] - o[1]) / o[0] if o[0] else 0.0], [usd, pct])  # fmt: skip
    else:
        out["monthly"] = (usd_start(base), usd_start(optimized))
    return out
