"""`costtrack simulate`: what the recorded period would have cost with a response cache, cheaper models, the Batch API."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import ConfigError
from . import _common
from .report import delayed_progress, errors_to_exit, open_records, parse_period

if TYPE_CHECKING:
    from rich.console import Console

    from ..reports.simulate import Simulation

__all__ = ["render", "simulate"]


def simulate(
    cache_ttl: Annotated[Optional[str], typer.Option("--cache-ttl", help="Answer repeats of a request from a cache with this TTL (30m, 1h, 24h).")] = None,
    swap: Annotated[Optional[list[str]], typer.Option("--swap", help="Reprice a model's calls at another's rates: FROM=TO, e.g. gpt-4o=gpt-4o-mini (repeatable).")] = None,
    batch_share: Annotated[Optional[float], typer.Option("--batch-share", help="Share of the calls (0-1) of --batch-endpoints sent through the Batch API, at the models' Batch rates (else 50%).")] = None,
    batch_endpoints: Annotated[str, typer.Option("--batch-endpoints", help="Which endpoints --batch-share applies to: noninteractive (tagged interactive=false or named like /jobs/, batch, nightly, cron), all, or a comma-separated list.")] = "noninteractive",
    endpoint: Annotated[Optional[list[str]], typer.Option("--endpoint", help="Only these endpoints' calls (repeatable).")] = None,
    since: Annotated[str, typer.Option(help="Records newer than this: 30d, 7d, 24h, or an ISO date.")] = "30d",
    until: Annotated[Optional[str], typer.Option(help="Records older than this ISO date or datetime (default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    prices_file: Annotated[Optional[Path], typer.Option("--prices-file", help="TOML price overrides (default: $COSTTRACK_PRICES_FILE).", dir_okay=False)] = None,
    database_url: _common.DatabaseOption = None,
) -> None:
    """Replay the recorded calls with a response cache, model swaps and/or the Batch API: actual vs simulated cost."""
    from ..pricing import PriceBook
    from ..reports import simulate as engine_
    from ..store.schema import records

    with errors_to_exit():
        if batch_share is None and batch_endpoints != "noninteractive":
            raise ConfigError("--batch-endpoints goes with --batch-share: give both")
        if cache_ttl is None and not swap and batch_share is None:
            raise ConfigError("give at least one of --cache-ttl (e.g. 1h), --swap (e.g. gpt-4o=gpt-4o-mini) or "
                              "--batch-share (e.g. 0.3)")  # fmt: skip
        ttl = engine_.parse_duration(cache_ttl) if cache_ttl is not None else None
        swaps = [engine_.parse_swap(s) for s in swap or []]
        sources: dict[str, str] = {}
        for s in swaps:
            earlier = sources.setdefault(s.source.lower(), s.label())
            if earlier.lower() != s.label().lower():  # only the first applied, and the second's note said the model had no calls
                raise ConfigError(f"--swap {s.label()}: {s.source} is swapped already (--swap {earlier}); give one "
                                  "target per model")  # fmt: skip
        share = batch_share or 0.0
        if batch_share is not None and not 0.0 <= batch_share <= 1.0:
            raise ConfigError(f"--batch-share {batch_share:g} is a share: give a number from 0 to 1 (0.3 for 30%)")
        now = datetime.now(timezone.utc)
        start, end = parse_period(since, until, now)
        book = PriceBook(prices_file)
        for s in swaps:
            engine_.swap_rates(book, s.target, now)  # an unknown target fails before the database is read
        what = f"since {since}" + (f" until {until}" if until else "")
        engine = open_records(database_url, start, end, what)
        where = records.c.endpoint.in_(endpoint) if endpoint else None
        with delayed_progress(4, "simulating") as step:
            queries = engine_.replay_queries(engine.dialect.name, engine_.period_where(start, end, where), ttl)
            rep = engine_.replay_from(engine_.run_queries(engine, queries, on_done=step), since=start, until=end,
                                      cache_ttl=ttl)  # fmt: skip
            if endpoint and not rep.groups:
                raise ConfigError(f"no calls on {', '.join(endpoint)} {what}: check --endpoint")
            for unmatched in (sw for sw in swaps if not any(sw.matches(g) for g in rep.groups)):
                # A table with no saving, exit 0, where --endpoint of no call is an error (CLI review): a mistyped model.
                raise ConfigError(f"--swap {unmatched.label()}: no call {what} asked for or was answered by "
                                  f"{unmatched.source}: check the name with `costtrack stats`")  # fmt: skip
            if endpoint:
                rep = dataclasses.replace(rep, app_span=engine_.period_span(engine, start, end))
            result = engine_.play(engine, rep, book, cache_ttl=ttl, swaps=swaps, batch_share=share,
                                  batch_endpoints=batch_endpoints, where=where)  # fmt: skip
            step("simulated")
    if as_json:
        _common.print_json(result.as_dict())
    else:
        render(result, _common.console())


def render(result: Simulation, console: Console) -> None:
    """The simulation as a table for people: per endpoint, actual and simulated cost, and what each lever saved."""
    from rich.markup import escape
    from rich.table import Table

    from ..format import count, days, fmt, pct, usd, when

    s = result.scenario
    rep = result.replay
    console.print(f"[bold]What if:[/] {escape('; '.join(s.describe()) or 'nothing changed')}", highlight=False)
    console.print(f"Period: {when(rep.first)} to {when(rep.last)} ({days(rep.span_days)}), {count(rep.calls)} calls; "
                  f"monthly = period x 30 / {days(result.days)}", highlight=False)  # fmt: skip
    table = Table(title_justify="left", pad_edge=False)
    table.add_column("endpoint", no_wrap=True, overflow="ellipsis", max_width=32)
    columns = ["calls", "actual", "simulated", "savings", "share"]
    if s.cache_ttl:
        columns.insert(1, "would-be hits")
    levers = [("cache", "cache_savings_usd", bool(s.cache_ttl)), ("swap", "swap_savings_usd", bool(s.swaps)),
              ("batch", "batch_savings_usd", bool(s.batch_share))]  # fmt: skip
    active = [(name, attr) for name, attr, on in levers if on]
    if len(active) > 1:
        columns += [f"by {name}" for name, _ in active]
    for header in columns:
        table.add_column(header, justify="right", no_wrap=True)
    rows = [*result.endpoints, result.total]
    for e in rows:
        cells = [e.endpoint if e is not result.total else "TOTAL", count(e.calls)]
        if s.cache_ttl:
            cells.append(count(e.would_hit))
        # An endpoint of unpriced (or per-hour) calls only: "unpriced" ("per hour"), never $0.
        cells += [fmt(e.shown(v), "usd") for v in (e.actual_usd, e.simulated_usd, e.savings_usd)] + [pct(e.savings_share)]
        if len(active) > 1:
            cells += [fmt(e.shown(getattr(e, attr)), "usd") for _, attr in active]
        table.add_row(*(escape(c) for c in cells), end_section=e is result.endpoints[-1])
    console.print(table)
    t = result.total
    if t.unknown:
        why = "has a price" if t.unpriced_calls else "has a per-call price (self-hosted, priced per hour)"
        console.print(f"Per month: unknown (no call of the period {why}: see `costtrack stats`).", highlight=False)
    else:
        console.print(f"Per month: {usd(result.monthly(t.actual_usd))} actual, {usd(result.monthly(t.simulated_usd))} "
                      f"simulated, {usd(result.monthly(t.savings_usd))} saved ({pct(t.savings_share)}).", highlight=False)  # fmt: skip
    for name, rates in result.rates.items():
        console.print(f"{escape(name)} rates per 1M tokens: ${rates['input']:g} input, ${rates['cached_input']:g} cached "
                      f"input, ${rates['output']:g} output (price catalog)", highlight=False)  # fmt: skip
    for note in result.notes:
        console.print(f"[yellow]Note:[/] {escape(note)}", highlight=False)
