"""The replay's SQL: per-group totals, daily spend and would-be cache hits of a period."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal_column, select
from sqlalchemy.sql import ColumnElement

from ...store.schema import records
from ...usage import EXTRA_TAGS
from ..stats import app_traffic, per_hour_filter, period_filter, unpriced_filter, unreadable_usage
from .sql import batched as sql_batched
from .sql import day_of, epoch_of, has_any_tag, tag_count, tiered

#: Time differences are computed in floating point (seconds since 1970, to a microsecond on both databases): a
#: gap within a millisecond of the TTL counts as equal to it.
GAP_TOLERANCE_S = 0.001


def sum_where(condition: Any, value: Any) -> Any:
    return func.coalesce(func.sum(case((condition, value), else_=0)), 0)


def buckets(where: Any, cols: Any, prefix: str, extras: list[Any] | None = None) -> list[Any]:
    """Sums of the token buckets (and, given `extra_columns`, of the extras) of the rows `where` holds."""
    uncached = cols.tokens_input - cols.tokens_cached_input - cols.tokens_cache_write
    write_5m = cols.tokens_cache_write - cols.tokens_cache_write_1h
    sums = [
        sum_where(where, case((uncached > 0, uncached), else_=0)).label(f"{prefix}uncached"),
        sum_where(where, cols.tokens_cached_input).label(f"{prefix}cached"),
        sum_where(where, case((write_5m > 0, write_5m), else_=0)).label(f"{prefix}w5"),
        sum_where(where, cols.tokens_cache_write_1h).label(f"{prefix}w1h"),
        sum_where(where, cols.tokens_output).label(f"{prefix}out"),
    ]
    for name, value in zip(("aud_in", "aud_out", "searches"), extras or ()):
        sums.append(sum_where(where, value).label(f"{prefix}{name}"))
    return sums


def extra_columns(dialect: str) -> list[Any]:
    """Per row: its audio input and output tokens and web searches, kept in tags (usage.EXTRA_TAGS), else 0; audio
    tokens at most the uncached input and the output they are part of, as pricing.cost bills them.

    Read only from rows whose tags name one (a text search), so most rows cost no JSON parsing.
    """
    c = records.c
    marked = has_any_tag(dialect, list(EXTRA_TAGS.values()))
    audio_in, audio_out, searches = (func.coalesce(tag_count(dialect, EXTRA_TAGS[field]), 0)
                                     for field in ("audio_input", "audio_output", "web_searches"))  # fmt: skip
    uncached = c.tokens_input - c.tokens_cached_input - c.tokens_cache_write
    return [
        case((marked, case((audio_in < uncached, audio_in), (uncached > 0, uncached), else_=0)), else_=0),
        case((marked, case((audio_out < c.tokens_output, audio_out), else_=c.tokens_output)), else_=0),
        case((marked, searches), else_=0),
    ]


def _keys(cols: Any) -> tuple[list[Any], list[Any]]:
    """The group's columns (requested model, else answered; answered, else requested) and what to GROUP BY.

    Grouping by the raw columns rather than the COALESCE expressions lets the planner
    estimate the number of groups (Postgres then aggregates in a hash table).
    """
    select_keys = [
        cols.endpoint, cols.provider,
        func.coalesce(cols.model_requested, cols.model, "(unknown)").label("model_key"),
        func.coalesce(cols.model, cols.model_requested, "(unknown)").label("model_answered"),
    ]  # fmt: skip
    return select_keys, [cols.endpoint, cols.provider, cols.model_requested, cols.model]


def totals_query(dialect: str, where: ColumnElement[bool], day: ColumnElement[str] | None = None) -> Any:
    """Per (endpoint, provider, requested model, answered model), and UTC `day` when given: counts, spend, tokens."""
    c = records.c
    batched = sql_batched(dialect)  # sent through a Batch API (costtrack.batching tags them)
    live = and_(c.cost_usd.is_not(None), c.cache_hit.is_(False))
    served = and_(c.status == "ok", c.cache_hit.is_(False))
    timed = and_(c.cache_hit.is_(False), c.latency_ms.is_not(None))
    keys, group_by = _keys(c)
    if day is not None:
        keys, group_by = [*keys, day.label("day")], [*group_by, day]
    return (
        select(
            *keys,
            func.count().label("calls"),
            sum_where(c.attempt == 1, 1).label("requests"),
            sum_where(c.status == "error", 1).label("errors"),
            # What the failed calls hold, so that a table by answered model can count them apart: they got no answer.
            sum_where(c.status == "error", func.coalesce(c.cost_usd, 0.0)).label("err_spend"),
            sum_where(c.status == "error", c.tokens_input).label("err_tin"),
            sum_where(c.status == "error", c.tokens_output).label("err_tout"),
            sum_where(c.status == "error", c.tokens_cached_input).label("err_tcached"),
            sum_where(and_(c.status == "error", unpriced_filter()), 1).label("err_unpriced"),
            sum_where(c.cache_hit, 1).label("hits"),
            sum_where(c.cache_hit, func.coalesce(c.cost_saved_usd, 0.0)).label("saved"),
            func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"),
            sum_where(batched, 1).label("batched"),
            sum_where(batched, func.coalesce(c.cost_usd, 0.0)).label("batched_spend"),
            sum_where(unpriced_filter(), 1).label("unpriced"),
            sum_where(per_hour_filter(), 1).label("per_hour"),
            sum_where(and_(unpriced_filter(), unreadable_usage()), 1).label("unreadable"),
            func.coalesce(func.sum(c.tokens_input), 0).label("tin"),
            func.coalesce(func.sum(c.tokens_output), 0).label("tout"),
            func.coalesce(func.sum(c.tokens_cached_input), 0).label("tcached"),
            sum_where(c.tokens_input > 128_000, 1).label("long"),
            sum_where(live, c.cost_usd).label("live_spend"),
            *buckets(live, c, "l_", extra_columns(dialect)),
            sum_where(c.cache_hit.is_(False), c.tokens_input).label("sent_in"),
            sum_where(c.cache_hit.is_(False), c.tokens_output).label("sent_out"),
            sum_where(served, 1).label("served"),
            sum_where(served, c.tokens_input).label("served_in"),
            sum_where(served, c.tokens_output).label("served_out"),
            func.min(case((and_(served, c.tokens_input > 0), c.tokens_input))).label("min_input"),
            sum_where(timed, 1).label("lat_n"),
            sum_where(timed, c.latency_ms).label("lat_sum"),
            func.min(c.timestamp).label("first"),
            func.max(c.timestamp).label("last"),
        )
        .where(where)
        .group_by(*group_by)
    )  # fmt: skip


def daily_query(dialect: str, where: ColumnElement[bool]) -> Any:
    """Calls and spend per UTC day, requested model and answered model."""
    c = records.c
    day = day_of(dialect, c.timestamp).label("day")
    model = func.coalesce(c.model_requested, c.model, "(unknown)").label("model_key")
    answered = func.coalesce(c.model, c.model_requested, "(unknown)").label("model_answered")
    return (
        select(day, model, answered, func.count().label("calls"),
               func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"))
        .where(where)
        .group_by(day, c.model_requested, c.model)
    )  # fmt: skip


def hits_query(dialect: str, where: ColumnElement[bool], cache_ttl: float) -> Any:
    """Per group: the calls a response cache with `cache_ttl` would have answered, and their tokens and cost.

    A call is a would-be hit when a successful call with the same request_hash started at most
    `cache_ttl` s before it, whatever the call's own status: a cache holding that answer would
    also have answered a request that failed, and the SDK's retries of it. Only successful calls
    store (or, when they repeat one, refresh) the entry; calls that already were cache hits keep it
    warm but are not counted again.

    A running MAX over (request_hash ORDER BY timestamp) of the successful calls' times, up to the
    call before, gives the last successful call. On SQLite the window sorts only the row id, the
    hash, the time and the status, and the hits are joined back by rowid (the sort is the cost); on
    Postgres carrying the columns through the sort is cheaper than joining back.
    """
    within = float(cache_ttl) + GAP_TOLERANCE_S
    c = records.c
    ts = epoch_of(dialect, c.timestamp)
    hashed = and_(where, c.request_hash.is_not(None))
    ok_ts = case((c.status == "ok", ts))
    if dialect == "sqlite":
        partition: Any = c.request_hash
        carried: list[Any] = [literal_column("records.rowid").label("rid"), c.cache_hit.label("was_hit")]
    else:
        partition = c.request_hash.collate("C")
        carried = [c.endpoint, c.provider, c.model, c.model_requested, c.cache_hit.label("was_hit"), c.cost_usd,
                   c.tokens_input, c.tokens_output, c.tokens_cached_input, c.tokens_cache_write,
                   c.tokens_cache_write_1h,
                   *(value.label(f"x{i}") for i, value in enumerate(extra_columns(dialect)))]  # fmt: skip
    last_ok = func.max(ok_ts).over(partition_by=partition, order_by=(c.timestamp, c.id), rows=(None, -1))
    window = select(*carried, (ts - last_ok).label("since_ok")).where(hashed).subquery()
    w = window.c
    hit = and_(w.was_hit.is_(False), w.since_ok <= within)
    if dialect == "sqlite":
        r = records.c
        source: Any = window.join(records, literal_column("records.rowid") == w.rid)
        extras = extra_columns(dialect)
    else:
        r = w
        source = window
        extras = [w.x0, w.x1, w.x2]
    priced = r.cost_usd.is_not(None)
    keys, group_by = _keys(r)
    return (
        select(*keys, func.count().label("would_hit"), sum_where(priced, r.cost_usd).label("hit_spend"),
               *buckets(priced, r, "h_", extras))
        .select_from(source)
        .where(hit)
        .group_by(*group_by)
    )  # fmt: skip


def tiered_query(dialect: str, where: ColumnElement[bool]) -> Any:
    """Per group: the calls served at a service tier (tag costtrack.service_tier), for a swap's note. Apart from the
    totals: only `simulate --swap` needs it, and its text search costs every row."""
    keys, group_by = _keys(records.c)
    return select(*keys, func.count().label("tiered")).where(where, tiered(dialect)).group_by(*group_by)


def replay_queries(dialect: str, where: ColumnElement[bool], cache_ttl: float | None) -> dict[str, Any]:
    """The queries `replay` runs: totals, daily spend, and the would-be cache hits when there is a TTL.

    On SQLite the daily spend comes with the totals (one more GROUP BY key costs less than
    another scan); Postgres estimates a day expression's groups badly, so it gets its own query.
    """
    if dialect == "sqlite":
        queries = {"totals": totals_query(dialect, where, day_of(dialect, records.c.timestamp))}
    else:
        queries = {"totals": totals_query(dialect, where), "daily": daily_query(dialect, where)}
    if cache_ttl:
        queries["hits"] = hits_query(dialect, where, cache_ttl)
    return queries


def period_where(since: datetime | None, until: datetime | None,
                 where: ColumnElement[bool] | None = None) -> ColumnElement[bool]:  # fmt: skip
    """The app's calls (not `costtrack bench`'s) in [since, until), and `where` when given."""
    cond = and_(period_filter(since, until), app_traffic())
    return cond if where is None else and_(cond, where)
