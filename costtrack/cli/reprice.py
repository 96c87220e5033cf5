"""`costtrack reprice`: recompute stored costs after a price fix or a new entry in the prices file."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..fallback import saved_against
from ..periods import parse_since
from ..pricing import PriceBook
from ..records import CallRecord
from ..store.sql import iter_records, update_answer_costs, update_costs
from ..usage import Usage
from . import _common


def usage_of(record: CallRecord) -> Usage:
    """The Usage a stored record was priced from."""
    return Usage(
        input=record.tokens_input, output=record.tokens_output, cached_input=record.tokens_cached_input,
        cache_write=record.tokens_cache_write, cache_write_1h=record.tokens_cache_write_1h,
        reasoning=record.tokens_reasoning,
    )  # fmt: skip


def _update_saved(engine: Any, updates: list[tuple[str, float | None, str | None]]) -> int:
    return update_costs(engine, updates, saved=True)


def reprice(
    since: Annotated[Optional[str], typer.Option(help="Only records newer than this: 7d, 24h, or an ISO date.")] = None,
    prices_file: Annotated[Optional[Path], typer.Option(help="Price overrides (TOML); default $COSTTRACK_PRICES_FILE.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Report what would change without writing.")] = False,
    database_url: _common.DatabaseOption = None,
) -> None:
    """Price every stored call again with the current catalog and overrides (at each call's own date)."""
    book = PriceBook(prices_file)
    start = parse_since(since, datetime.now(timezone.utc)) if since else None
    engine = _common.read_engine(database_url)
    seen = changed = unpriced = 0
    # Billed calls get a new cost_usd; cache hits (billed nothing) a new cost_saved_usd: what they spared;
    # fallback answers both: their cost, and what they saved against the model the app asked for.
    costs: list[tuple[str, float | None, str | None]] = []
    spared: list[tuple[str, float | None, str | None]] = []
    answers: list[tuple[str, float | None, float | None, str | None]] = []

    def write(final: bool = False) -> None:
        for pending, store in ((costs, update_costs), (spared, _update_saved), (answers, update_answer_costs)):
            if pending and (final or len(pending) >= 5000):
                if not dry_run:
                    store(engine, pending)
                pending.clear()

    for record in iter_records(engine, since=start):
        seen += 1
        if not (record.tokens_input or record.tokens_output):
            continue  # nothing billed to price
        usage, batch = usage_of(record), bool(record.tags.get("batch"))
        cost, source = book.cost(record.provider, record.model or record.model_requested, usage, record.timestamp, batch=batch)
        unpriced += cost is None and source is None
        against = None if record.cache_hit else saved_against(record.tags, record.provider, record.cost_saved_usd)
        before = len(costs) + len(spared) + len(answers)
        if record.cache_hit:
            if (cost, source) != (record.cost_saved_usd, record.price_source):
                spared.append((record.id, cost, source))
        elif against is not None:
            reference, _ = book.cost(*against, usage, record.timestamp, batch=batch)
            saved = None if reference is None or cost is None else reference - cost
            if (cost, saved, source) != (record.cost_usd, record.cost_saved_usd, record.price_source):
                answers.append((record.id, cost, saved, source))
        elif (cost, source) != (record.cost_usd, record.price_source):
            costs.append((record.id, cost, source))
        if len(costs) + len(spared) + len(answers) > before:
            changed += 1
            write()
    write(final=True)
    if seen == 0:
        _common.fail("no records to reprice in that period")
    verb = "would change" if dry_run else "changed"
    typer.echo(f"{seen:,} records read, {changed:,} {verb}, {unpriced:,} still unpriced")
