"""`costtrack reprice`: recompute stored costs after a price fix or a new entry in the prices file."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..periods import parse_since
from ..pricing import PriceBook
from ..records import CallRecord
from ..store.sql import iter_records, update_costs
from ..usage import Usage
from . import _common


def usage_of(record: CallRecord) -> Usage:
    """The Usage a stored record was priced from."""
    return Usage(
        input=record.tokens_input, output=record.tokens_output, cached_input=record.tokens_cached_input,
        cache_write=record.tokens_cache_write, cache_write_1h=record.tokens_cache_write_1h,
        reasoning=record.tokens_reasoning,
    )  # fmt: skip


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
    # Billed calls get a new cost_usd; cache hits (billed nothing) a new cost_saved_usd: what they spared.
    pending: dict[bool, list[tuple[str, float | None, str | None]]] = {False: [], True: []}
    for record in iter_records(engine, since=start):
        seen += 1
        if not (record.tokens_input or record.tokens_output):
            continue  # nothing billed to price
        cost, source = book.cost(record.provider, record.model or record.model_requested, usage_of(record),
                                 record.timestamp, batch=bool(record.tags.get("batch")))  # fmt: skip
        unpriced += cost is None and source is None
        hit = record.cache_hit
        if (cost, source) != (record.cost_saved_usd if hit else record.cost_usd, record.price_source):
            changed += 1
            batch = pending[hit]
            batch.append((record.id, cost, source))
            if len(batch) >= 5000 and not dry_run:
                update_costs(engine, batch, saved=hit)
                batch.clear()
    for hit, batch in pending.items():
        if batch and not dry_run:
            update_costs(engine, batch, saved=hit)
    if seen == 0:
        _common.fail("no records to reprice in that period")
    verb = "would change" if dry_run else "changed"
    typer.echo(f"{seen:,} records read, {changed:,} {verb}, {unpriced:,} still unpriced")
