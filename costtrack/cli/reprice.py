"""`costtrack reprice`: recompute stored costs after a price fix or a new entry in the prices file."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..fallback import saved_against
from ..periods import parse_since
from ..pricing import PriceBook, catalog_available
from ..records import CallRecord
from ..store.sql import iter_records, update_answer_costs, update_costs
from ..usage import UNREADABLE_TAG, Usage, batched, extras_from_tags, served_tier
from . import _common

#: How a price_source from the catalog begins (see pricing.PriceBook): unlike a prices file's, it is always at hand.
_CATALOG = "genai-prices "


def usage_of(record: CallRecord) -> Usage:
    """The Usage a stored record was priced from."""
    return Usage(
        input=record.tokens_input, output=record.tokens_output, cached_input=record.tokens_cached_input,
        cache_write=record.tokens_cache_write, cache_write_1h=record.tokens_cache_write_1h,
        reasoning=record.tokens_reasoning, **extras_from_tags(record.tags),
    )  # fmt: skip


def _update_saved(engine: Any, updates: list[tuple[Any, ...]]) -> int:
    return update_costs(engine, updates, saved=True)


# What re-pricing writes, by kind of record: billed calls a new cost_usd; cache hits (billed nothing) a new
# cost_saved_usd, what they spared; fallback answers both, their cost and what they saved against the model asked for.
_WRITERS = {"cost": update_costs, "saved": _update_saved, "answer": update_answer_costs}


def _change(book: PriceBook, record: CallRecord, usage: Usage, batch: bool, cost: float | None,
            source: str | None, tier: str | None = None) -> tuple[str, tuple[Any, ...]] | None:  # fmt: skip
    """What re-pricing at (cost, source) changes in `record`: (kind, update row), or None when nothing does."""
    if record.cache_hit:
        row: tuple[Any, ...] = (record.id, cost, source)
        return ("saved", row) if (cost, source) != (record.cost_saved_usd, record.price_source) else None
    against = saved_against(record.tags, record.provider, record.cost_saved_usd)
    if against is not None:
        reference, _ = book.cost(*against, usage, record.timestamp, batch=batch, tier=tier)
        saved = None if reference is None or cost is None else reference - cost
        row = (record.id, cost, saved, source)
        return ("answer", row) if (cost, saved, source) != (record.cost_usd, record.cost_saved_usd, record.price_source) else None
    return ("cost", (record.id, cost, source)) if (cost, source) != (record.cost_usd, record.price_source) else None


def reprice(
    since: Annotated[Optional[str], typer.Option(help="Only records newer than this: 7d, 24h, or an ISO date.")] = None,
    prices_file: Annotated[Optional[Path], typer.Option(help="Price overrides (TOML); default $COSTTRACK_PRICES_FILE.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Report what would change without writing.")] = False,
    database_url: _common.DatabaseOption = None,
) -> None:
    """Price every stored call again with the current catalog and overrides (at each call's own date).

    A call priced from a prices file that finds no price now (that file not given, say) keeps the cost it has.
    """
    book = PriceBook(prices_file, warn_unpriced=False)  # what it cannot price it keeps, and counts
    start = parse_since(since, datetime.now(timezone.utc)) if since else None
    engine = _common.read_engine(database_url)
    seen = changed = unpriced = kept = 0
    pending: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in _WRITERS}
    for record in iter_records(engine, since=start):
        seen += 1
        if record.tags.get(UNREADABLE_TAG) is True:
            # A count of its usage could not be read: its cost stays unknown, whatever the prices; a model priced per
            # hour still gets that source (its cost is the hours served, never a call's).
            cost, source = book.cost(record.provider, record.model or record.model_requested, usage_of(record),
                                     record.timestamp)  # fmt: skip
            per_hour = source if cost is None else None  # Price(None, source): a model priced per hour
            if per_hour is not None and per_hour != record.price_source:
                pending["cost"].append((record.id, None, per_hour))
                changed += 1
            else:
                unpriced += 1
            continue
        if not (record.tokens_input or record.tokens_output):
            continue  # nothing billed to price
        usage, batch = usage_of(record), batched(record.tags, record.price_source)
        tier = served_tier(record.tags, record.price_source)
        cost, source = book.cost(record.provider, record.model or record.model_requested, usage, record.timestamp,
                                 batch=batch, tier=tier)  # fmt: skip
        if cost is None and source is None:
            source_then = record.price_source
            if source_then is not None and not (source_then.startswith(_CATALOG) and catalog_available()):
                # Priced once from a prices file this run was not given (or from a catalog this Python cannot load):
                # a price found then is not thrown away because none is found now. A catalog price the loaded
                # catalog no longer gives (an API's price for an open-weight model on the app's own machines) is.
                kept += 1
                continue
            unpriced += 1
        change = _change(book, record, usage, batch, cost, source, tier)
        if change is None:
            continue
        changed += 1
        kind, row = change
        rows = pending[kind]
        rows.append(row)
        if len(rows) >= 5000:
            if not dry_run:
                _WRITERS[kind](engine, rows)
            rows.clear()
    for kind, rows in pending.items():
        if rows and not dry_run:
            _WRITERS[kind](engine, rows)
    if seen == 0:
        _common.no_records(engine, f"since {start:%Y-%m-%d %H:%M} UTC" if start else "to reprice", "widen --since or check the dates")
    verb = "would change" if dry_run else "changed"
    typer.echo(f"{seen:,} records read, {changed:,} {verb}, {unpriced:,} still unpriced")
    if kept:
        typer.echo(f"{kept:,} records kept as they were: no price found for their model now "
                   "(their price_source names where their price came from; pass that prices file to reprice them)")
