"""Budgets from configuration: the environment's budget, and the monitor a Tracker's budgets get."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..logs import log
from .budget import ENV_MONTHLY_BUDGET, Budget, parse_usd

if TYPE_CHECKING:
    from ..tracker import Tracker
    from .monitor import BudgetMonitor


def budgets_from_env() -> list[Budget]:
    """The budget set by $COSTTRACK_MONTHLY_BUDGET_USD (alerts only), if any; a bad value is logged and ignored."""
    raw = (os.environ.get(ENV_MONTHLY_BUDGET) or "").strip()
    if not raw:
        return []
    try:
        return [Budget(monthly_usd=parse_usd(raw, f"${ENV_MONTHLY_BUDGET}"))]
    except ConfigError as exc:
        log.error("costtrack: no budget from the environment: %s", exc)
        return []


def make_monitor(
    tracker: Tracker,
    budget: Budget | None = None,
    budgets: Iterable[Budget] | None = None,
    options: Mapping[str, Any] | None = None,
) -> BudgetMonitor | None:
    """The monitor for a Tracker's budgets; with neither `budget` nor `budgets`, the environment's. None: no budget."""
    items: list[Budget] = []
    if budget is not None:
        items.append(budget)
    if budgets is not None:
        if isinstance(budgets, Budget):
            items.append(budgets)
        else:
            items.extend(budgets)
    if budget is None and budgets is None:
        items = budgets_from_env()
    for item in items:
        if not isinstance(item, Budget):
            raise ConfigError(f"budgets must be costtrack.Budget objects, not {type(item).__name__}")
    if not items:
        return None
    # Imported here, not at the top: monitor.py imports (and re-exports) this module.
    import inspect

    from .monitor import BudgetMonitor

    given = dict(options or {})
    known = set(inspect.signature(BudgetMonitor).parameters) - {"tracker", "budgets"}
    unknown = sorted(set(given) - known)
    if unknown:
        # A typo (refresh_intreval=...) was a bare TypeError from deep inside the Tracker.
        raise ConfigError(f"budget_options: unknown option(s) {', '.join(map(repr, unknown))}: "
                          f"use {', '.join(sorted(known))}")  # fmt: skip
    return BudgetMonitor(tracker, items, **given)
