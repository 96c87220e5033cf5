"""`costtrack demo`: a month of a capstone app's traffic through real wrapped SDK clients, offline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .. import demo as workload
from ..reports.stats import compute_stats
from ..tracker import Tracker
from . import _common
from .stats import render

if TYPE_CHECKING:
    from sqlalchemy import Engine


def demo(
    calls: Annotated[int, typer.Option(min=1, max=1_000_000, help="How many calls to simulate.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the simulated traffic.")] = 7,
    error_rate: Annotated[float, typer.Option(min=0.0, max=0.5, help="Share of calls the simulated providers fail.")] = 0.02,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Also write docs/optimization-audit.md.")] = True,
    database_url: _common.DatabaseOption = None,
) -> None:
    """Simulate a month of an LLM app (OpenAI and Anthropic, no key, no network), show what it cost, audit it."""
    console = _common.console(stderr=True)
    url = _common.resolve_database_url(database_url)
    if _in_memory(url):
        _common.fail(f"{url} is an in-memory database, gone when the demo ends: give a file, e.g. "
                     "--database-url sqlite:///costtrack-demo.db")
    # A database that cannot be used fails here, before any call; so does another app's (its tables, no records table).
    engine = _common.read_engine(url, create=True, refuse_foreign=True)
    try:
        replaced = _clear_earlier_demo(engine, url)
    finally:
        engine.dispose()
    if replaced:
        console.print(f"replaced the {replaced:,} records of an earlier demo in {_common.display_url(url)}")
    tracker = Tracker(url)
    with Progress(
        TextColumn("[bold]simulating calls"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("calls", total=calls)
        outcome = workload.run(tracker, calls, seed=seed, error_rate=error_rate, progress=lambda n: progress.advance(task, n))
    stored = tracker.flush()
    tracker.close()
    console.print(
        f"{calls:,} calls made ({outcome['ok']:,} answered, {outcome['failed']:,} failed as the app saw them); "
        f"records {'stored' if stored else 'kept in the outbox'} in {_common.display_url(url)}"
    )
    engine = _common.read_engine(url)
    render(compute_stats(engine, by="endpoint"), _common.console())
    if report:
        from .report import audit

        audit(output="docs/optimization-audit.md", since="31d", until=None, cache_ttl="1h", hardware="rtx4090",
              charts=True, template=None, prices_file=None, database_url=url)  # fmt: skip
    # A database given here is not the one the next commands read by default: they name it too (password masked).
    flag = f" {_common.database_flag(database_url)}" if database_url is not None else ""
    console.print(f"Next: `costtrack stats --by model{flag}`, `costtrack simulate --swap gpt-4o=gpt-4o-mini{flag}`, "
                  f"`costtrack export --format csv -o calls.csv{flag}`")


def _clear_earlier_demo(engine: Engine, url: str) -> int:
    """Delete an earlier demo's records; refuse (exit 2) a database that holds any other records."""
    from sqlalchemy import delete, func, or_, select

    from ..store.schema import records

    source = records.c.tags["source"].as_string()
    # "demo": what demos before this tag wrote (a database made by an earlier release's demo is the demo's too).
    is_demo = source.in_([workload.DEMO_TAGS["source"], "demo"])
    with engine.begin() as conn:
        others = conn.execute(select(func.count()).select_from(records).where(or_(source.is_(None), ~is_demo))).scalar_one()
        if others:
            # The demo's simulated month would be counted with the app's own calls (stats, reports, budgets).
            _common.fail(
                f"the database at {_common.display_url(url)} already holds {others:,} records that are not the demo's; "
                "run the demo on a database of its own: costtrack demo --database-url sqlite:///costtrack-demo.db"
            )
        return int(conn.execute(delete(records).where(is_demo)).rowcount or 0)


def _in_memory(url: str) -> bool:
    """Whether a database URL names an in-memory SQLite database (the demo's records could not be read back)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return (u.get_backend_name() == "sqlite" and (u.database or ":memory:") == ":memory:") or "mode=memory" in url
