"""Budgets: spend limits per calendar month (or day, week), threshold alerts, and an optional hard limit.

    costtrack.configure(budget=costtrack.Budget(monthly_usd=50, thresholds=(0.5, 0.8, 1.0), on_alert=notify))
    costtrack.configure(budgets=[costtrack.Budget(monthly_usd=10, endpoint="/api/chat"),
                                 costtrack.Budget(monthly_usd=5, user="u42", hard_limit=True)])

The pieces: budget.py (Budget, BudgetExceeded), estimate.py (a request's cost before it is sent),
spend.py (database reads), state.py (each budget's running totals and reservations), refusal.py (the
BudgetExceeded a hard limit raises), config.py (budgets from the environment), monitor.py (BudgetMonitor:
refreshes, alerts, the hard limit).
"""

from .budget import (
    DEFAULT_THRESHOLDS,
    ENV_MONTHLY_BUDGET,
    Budget,
    BudgetExceeded,
    parse_usd,
    period_bounds,
)
from .estimate import (
    CHARS_PER_TOKEN,
    DEFAULT_MAX_OUTPUT_TOKENS,
    Estimate,
    estimate_cost,
    estimate_tokens,
)
from .monitor import BudgetMonitor, BudgetStatus, budgets_from_env, make_monitor
from .spend import Totals, check_budget, project, query_top, query_totals

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "DEFAULT_THRESHOLDS",
    "ENV_MONTHLY_BUDGET",
    "Budget",
    "BudgetExceeded",
    "BudgetMonitor",
    "BudgetStatus",
    "Estimate",
    "Totals",
    "budgets_from_env",
    "check_budget",
    "estimate_cost",
    "estimate_tokens",
    "make_monitor",
    "parse_usd",
    "period_bounds",
    "project",
    "query_top",
    "query_totals",
]
