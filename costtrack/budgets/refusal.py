"""The error a hard-limited budget raises for a call it refuses, and its message."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from ..format import budget as format_budget
from ..logs import log_once
from .budget import BudgetExceeded, exception_class, period_bounds

if TYPE_CHECKING:
    from ..calls import Call
    from .state import State


def refusal(call: Call, estimate: float, s: State, start: datetime, spend: float, reserved: float) -> BudgetExceeded:
    """The BudgetExceeded for a call that budget `s` refuses; its hard limit is logged once per budget and period."""
    b = s.budget
    end = s.end or period_bounds(b.period, start)[1]
    label = start.strftime("%Y-%m") if b.period == "month" else f"starting {start:%Y-%m-%d}"
    suggestion = max(math.ceil((spend + reserved + estimate) * 2), 1)
    message = (
        f"costtrack: call not sent: it would pass the budget {b.describe()} [{b.key!r}, hard_limit=True]. "
        f"Spent this {b.period} ({label}, UTC): ${spend:,.4f}; in flight or finished and not yet recorded (at their "
        f"estimates, settled at their real cost within a second): ${reserved:,.4f}; this call, estimated: "
        f"${estimate:,.4f}; budget: {format_budget(b.amount_usd)}. To raise it, pass a larger amount, e.g. "
        f"costtrack.Budget({b.amount_field}={suggestion}, ...) to costtrack.configure(); or set hard_limit=False to "
        f"be alerted without refusing calls. It resets at {end:%Y-%m-%d %H:%M} UTC."
    )
    log_once(f"budgets.blocked:{b.key}:{start.isoformat()}",
             "costtrack: budget %r reached its hard limit (%s): calls in its scope are refused until %s UTC",
             b.key, b.describe(), f"{end:%Y-%m-%d %H:%M}")  # fmt: skip
    return exception_class(call.api)(
        message, budget=b, spend_usd=spend, reserved_usd=reserved, estimate_usd=estimate,
        period_start=start, period_end=end,
    )  # fmt: skip
