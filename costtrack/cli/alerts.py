"""`costtrack alerts check`: month-to-date spend against a budget, for cron and CI (exit 1 past a threshold)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import ConfigError
from ..format import budget as format_budget
from . import _common

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["app", "check"]

app = typer.Typer(
    help="Budget alerts: check spend against a monthly budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _thresholds(text: str) -> tuple[float, ...]:
    values: list[float] = []
    for part in text.split(","):
        part = part.strip()
        percent = part.endswith("%")
        try:
            value = float(part.rstrip("%"))
        except ValueError:
            _common.fail(f"--thresholds {text!r} is not a list of fractions: use e.g. 0.5,0.8,1.0 (or 50%,80%,100%)")
        # "5%" is 0.05 (it was 5.0: 500%); a bare number above 10 is taken for a percentage too (80 -> 0.8).
        value = value / 100 if percent or value > 10 else value
        if not value > 0 or value == float("inf"):  # said here as the option, not as the Budget class's field
            _common.fail(f"--thresholds {text!r}: {part} is not a share of the budget above 0: use e.g. 0.5,0.8,1.0 "
                         "(or 50%,80%,100%)")  # fmt: skip
        values.append(value)
    return tuple(values)


def _check_scope(engine: Engine, **scope: str | None) -> None:
    """A one-line error when no record ever had the scope's endpoint, model or user: a mistyped one passed at $0."""
    from sqlalchemy import func, or_, select

    from ..store.schema import records

    c = records.c
    for name, value in scope.items():
        if value is None:
            continue
        column = {"endpoint": c.endpoint, "model": func.coalesce(c.model_requested, c.model), "user": c.user}[name]
        matches = or_(c.model == value, c.model_requested == value) if name == "model" else column == value
        with engine.connect() as conn:
            if conn.execute(select(c.id).where(matches).limit(1)).first() is not None:
                continue
            known = list(conn.execute(select(column).where(column.is_not(None)).distinct().order_by(column).limit(6)).scalars())
        listed = ", ".join(map(repr, known[:5])) + (", ..." if len(known) > 5 else "")
        _common.fail(f"no record has {name} {value!r}: check the name (the database's: {listed or 'none'})")


@app.command("check")
def check(
    monthly_budget: Annotated[Optional[str], typer.Option(
        "--monthly-budget", metavar="USD", help="The budget in USD; default $COSTTRACK_MONTHLY_BUDGET_USD.")] = None,
    thresholds: Annotated[Optional[str], typer.Option(
        help="Comma-separated fractions of the budget (default 0.5,0.8,1.0).")] = None,
    endpoint: Annotated[Optional[str], typer.Option(help="Only this endpoint's spend.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Only this model's spend (asked for or answered).")] = None,
    user: Annotated[Optional[str], typer.Option(help="Only this user's spend.")] = None,
    at: Annotated[Optional[str], typer.Option(help="Check as of this UTC date or time (ISO); default now.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    database_url: _common.DatabaseOption = None,
) -> None:
    """Print the budget, month-to-date spend, projected month-end spend and thresholds crossed.

    Exit code 0 while under every threshold, 1 when one is crossed, 2 on bad input.
    """
    from ..budgets import (
        DEFAULT_THRESHOLDS,
        ENV_MONTHLY_BUDGET,
        Budget,
        check_budget,
        parse_usd,
    )
    from ..budgets.budget import period_bounds
    from ..periods import parse_instant

    try:
        if monthly_budget is not None:
            amount = parse_usd(monthly_budget, "--monthly-budget")
        else:
            raw = (os.environ.get(ENV_MONTHLY_BUDGET) or "").strip()
            if not raw:
                _common.fail(f"no budget: pass --monthly-budget USD or set {ENV_MONTHLY_BUDGET}")
            amount = parse_usd(raw, f"${ENV_MONTHLY_BUDGET}")
        budget = Budget(
            monthly_usd=amount,
            thresholds=_thresholds(thresholds) if thresholds else DEFAULT_THRESHOLDS,
            endpoint=endpoint, model=model, user=user,
        )  # fmt: skip
        now = parse_instant(at, "--at") if at else datetime.now(timezone.utc)
        period_bounds(budget.period, now)  # a date whose period ends past year 9999 cannot be checked
    except (OverflowError, ValueError) as exc:
        if not isinstance(exc, ConfigError):
            _common.fail(f"--at {at}: no budget period can be computed for that date ({exc}); give a date before 9999-12")
        _common.fail(str(exc))
    engine = _common.read_engine(database_url)
    try:
        if _common.record_span(engine) is None:
            # An empty database (a mistyped URL, an app not recording yet) passed every check at $0, forever.
            _common.no_records(engine)
        _check_scope(engine, endpoint=endpoint, model=model, user=user)
        result = check_budget(engine, budget, now)
    finally:
        engine.dispose()
    crossed = result["thresholds_crossed"]
    if as_json:
        _common.print_json(result)
    else:
        scope = ", ".join(f"{k}={v}" for k, v in budget.scope.items())
        month = result["period_start"][:7]
        typer.echo(f"budget: {format_budget(amount)}/month{f' ({scope})' if scope else ''}, {month} UTC")
        typer.echo(f"month_to_date_usd: ${result['month_to_date_usd']:,.4f}")
        typer.echo(f"projected_month_end_usd: ${result['projected_month_end_usd']:,.4f}"
                   + ("  (over budget)" if result["projected_overspend"] else ""))  # fmt: skip
        typer.echo(f"percent_used: {result['percent_used']:.1f}%")
        typer.echo("thresholds crossed: " + (", ".join(f"{t * 100:g}%" for t in crossed) if crossed else "none"))
    if crossed:
        raise typer.Exit(1)
