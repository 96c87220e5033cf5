"""`costtrack stats`: spend, calls, tokens, latency percentiles, error and cache-hit rates."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..format import count, pct, usd, when
from ..periods import month_range, parse_since
from ..reports.stats import GroupStats, Stats, compute_stats
from . import _common


def stats(
    since: Annotated[Optional[str], typer.Option(help="Only records newer than this: 7d, 24h, or an ISO date.")] = None,
    month: Annotated[Optional[str], typer.Option(help="One calendar month (UTC), e.g. 2026-11.")] = None,
    by: Annotated[str, typer.Option(help="Group by model, endpoint or provider.")] = "model",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    database_url: _common.DatabaseOption = None,
) -> None:
    """Show spend, calls, tokens, latency p50/p95/p99, error and cache-hit rates, and unpriced models."""
    if since and month:
        _common.fail("give --since or --month, not both")
    if by not in ("model", "endpoint", "provider"):
        _common.fail(f"--by {by!r} is not a grouping: use model, endpoint or provider")
    now = datetime.now(timezone.utc)
    start, end = month_range(month) if month else (parse_since(since, now) if since else None, None)
    engine = _common.read_engine(database_url)
    result = compute_stats(engine, since=start, until=end, by=by)  # type: ignore[arg-type]
    if result.total.calls == 0:
        _common.no_records(engine, f"in {month}" if month else f"since {when(start)}",
                           "choose another --month" if month else "widen --since or check the dates")  # fmt: skip
    if as_json:
        _common.print_json(result.as_dict())
    else:
        render(result, _common.console())


def _spend(group: GroupStats) -> str:
    """The spend cell: unpriced calls are unknown, never $0 ("≥" when only some are priced); calls of a model
    priced per hour cost the hours it served, which no sum over calls gives ("+ per hour")."""
    if group.per_hour_calls and not group.spend_usd and not group.unpriced_calls:
        return "per hour"  # the rest cost nothing (failed calls): never "$0 + per hour"
    if not group.unpriced_calls:
        return usd(group.spend_usd) + (" + per hour" if group.per_hour_calls else "")
    return "unpriced" if group.spend_usd == 0 else f"≥{usd(group.spend_usd)}"


def render(result: Stats, console: Console) -> None:
    """Print the stats as a table for people."""
    table = Table(title=f"costtrack stats by {result.by}", title_justify="left", pad_edge=False)
    table.add_column(result.by, no_wrap=True, overflow="ellipsis", max_width=28)
    for header in ("calls", "spend", "share", "tok in", "tok out", "p50 ms", "p95 ms", "p99 ms", "errors", "cache hits",
                   "saved"):  # fmt: skip
        table.add_column(header, justify="right", no_wrap=True)
    total = result.total
    for group in [*result.groups, total]:
        # A share of what no call's price gives (unpriced, per hour, or no spend at all) is no share: "-", as the audit has it.
        unknown = not total.spend_usd or (not group.spend_usd and not group.spend_known)
        share = "-" if unknown else pct(group.spend_usd / total.spend_usd)
        table.add_row(
            "TOTAL" if group is total else escape(group.key), count(group.calls), _spend(group), share,
            count(group.tokens_input), count(group.tokens_output), count(group.latency_p50_ms),
            count(group.latency_p95_ms), count(group.latency_p99_ms), pct(group.error_rate),
            f"{count(group.cache_hits)} ({pct(group.cache_hit_rate)})", usd(group.saved_usd),
            end_section=group is result.groups[-1] if result.groups else False,
        )  # fmt: skip
    console.print(table)
    if total.cache_hits:
        console.print(f"Response cache: {total.cache_hits:,} hits saved {usd(total.saved_usd)}.")
    if total.per_hour_calls:
        console.print(f"{total.per_hour_calls:,} calls went to self-hosted models priced per hour: what they cost is the "
                      "hours served, not in spend (`costtrack calc` compares it with the API).")
    if result.unpriced_models:
        console.print(
            f"[yellow]Unpriced models[/] (cost unknown, not $0): {escape(', '.join(result.unpriced_models))}. "
            "Add them to a prices file (COSTTRACK_PRICES_FILE), then run `costtrack reprice`."
        )
    if result.unreadable_calls:
        console.print(f"[yellow]{result.unreadable_calls:,} calls[/] sent a usage with a count costtrack could not read "
                      "(tag costtrack.usage_unreadable): their cost is unknown, not $0, whatever the prices.")
