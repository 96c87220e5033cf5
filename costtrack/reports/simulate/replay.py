"""The replay: the rows of the period's queries merged into groups, days and a Replay."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.sql import ColumnElement

from ...store.schema import records
from .aggregates import Buckets, DayRow, Failed, Group, Replay
from .execution import run_queries
from .queries import period_where, replay_queries
from .sql import as_day


def row_buckets(row: Any, prefix: str) -> Buckets:
    """The Buckets a query's `buckets(...)` columns sum (the extras are 0 where a query does not read them)."""
    tokens = (int(getattr(row, f"{prefix}{name}")) for name in ("uncached", "cached", "w5", "w1h", "out"))
    extras = (int(getattr(row, f"{prefix}{name}", 0) or 0) for name in ("aud_in", "aud_out", "searches"))
    return Buckets(*tokens, *extras)


def merge_totals(rows: Iterable[Any]) -> dict[tuple[str, str, str, str], Group]:
    """Rows of `totals_query` → one Group per key (rows whose keys coalesce alike are added up)."""
    groups: dict[tuple[str, str, str, str], Group] = {}
    for row in rows:
        key = (row.endpoint, row.provider, row.model_key, row.model_answered)
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(*key)
        g.calls += int(row.calls)
        g.requests += int(row.requests)
        g.errors += int(row.errors)
        g.failed = g.failed + Failed(float(row.err_spend), int(row.err_tin), int(row.err_tout), int(row.err_tcached),
                                     int(row.err_unpriced))  # fmt: skip
        g.cache_hits += int(row.hits)
        g.saved_usd += float(row.saved)
        g.spend_usd += float(row.spend)
        g.batched_calls += int(row.batched)
        g.batched_spend_usd += float(row.batched_spend)
        g.unpriced_calls += int(row.unpriced)
        g.per_hour_calls += int(row.per_hour)
        g.unreadable_calls += int(row.unreadable)
        g.tokens_input += int(row.tin)
        g.tokens_output += int(row.tout)
        g.tokens_cached_input += int(row.tcached)
        g.long_context_calls += int(row.long)
        g.live_spend_usd += float(row.live_spend)
        g.live = g.live + row_buckets(row, "l_")
        g.sent_input += int(row.sent_in)
        g.sent_output += int(row.sent_out)
        g.served += int(row.served)
        g.served_input += int(row.served_in)
        g.served_output += int(row.served_out)
        if row.min_input is not None:
            g.min_input = int(row.min_input) if g.min_input is None else min(g.min_input, int(row.min_input))
        g.latency_n += int(row.lat_n)
        g.latency_sum_ms += float(row.lat_sum)
        first, last = _aware(row.first), _aware(row.last)
        g.first = first if g.first is None else min(g.first, first)
        g.last = last if g.last is None else max(g.last, last)
    return groups


def merge_daily(rows: Iterable[Any]) -> list[DayRow]:
    """Rows of `daily_query` (or of `totals_query` by day) → DayRows, by day then requested and answered model."""
    acc: dict[tuple[str, str, str], list[float]] = {}
    for row in rows:
        v = acc.setdefault((as_day(row.day), row.model_key, row.model_answered), [0, 0.0])
        v[0] += int(row.calls)
        v[1] += float(row.spend)
    return [DayRow(day, key, int(v[0]), v[1], model) for (day, key, model), v in sorted(acc.items())]


def merge_hits(groups: dict[tuple[str, str, str, str], Group], rows: Iterable[Any]) -> None:
    """Add the would-be cache hits of `hits_query` to their groups."""
    for row in rows:
        g = groups.get((row.endpoint, row.provider, row.model_key, row.model_answered))
        if g is None:  # cannot happen: every hit is one of the period's calls
            continue
        g.would_hit += int(row.would_hit)
        g.hit_spend_usd += float(row.hit_spend)
        g.hit = g.hit + row_buckets(row, "h_")


def replay_from(results: dict[str, list[Any]], *, since: datetime | None, until: datetime | None,
                cache_ttl: float | None) -> Replay:  # fmt: skip
    """A Replay from the rows of `replay_queries`."""
    groups = merge_totals(results["totals"])
    if cache_ttl:
        merge_hits(groups, results["hits"])
    ordered = sorted(groups.values(), key=lambda g: g.key)
    daily = merge_daily(results["daily"] if "daily" in results else results["totals"])
    return Replay(since=since, until=until, cache_ttl=cache_ttl, groups=ordered, daily=daily)


def replay(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
           cache_ttl: float | None = None, where: ColumnElement[bool] | None = None) -> Replay:  # fmt: skip
    """Read [since, until) (and `where`): per group, spend and tokens, and what a cache with `cache_ttl` would answer."""
    queries = replay_queries(engine.dialect.name, period_where(since, until, where), cache_ttl)
    return replay_from(run_queries(engine, queries), since=since, until=until, cache_ttl=cache_ttl)


def period_span(engine: Engine, since: datetime | None, until: datetime | None) -> tuple[datetime, datetime] | None:
    """The first and last call of [since, until) over every endpoint (None when there is none)."""
    ts = records.c.timestamp
    with engine.connect() as conn:
        first, last = conn.execute(select(func.min(ts), func.max(ts)).where(period_where(since, until))).one()
    return None if first is None or last is None else (_aware(first), _aware(last))


def _aware(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite aggregates lose the column type
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
