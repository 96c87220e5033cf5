"""What-if on the recorded log: a response cache with a TTL, model swaps and the Batch API, priced exactly.

`replay` reads the period once with two or three SQL aggregates (run at the same time)
and returns, per (endpoint, provider, requested model, answered model), the calls, the
spend, and the token buckets of the calls a cache would have answered and of the rest.
Every scenario is then arithmetic on those aggregates (`simulate`): costs are linear in
tokens, so a swap reprices the buckets at the cheaper model's real rates and the Batch
API halves what is left, with no second read of the records. `costtrack simulate` and
the optimization audit both run on this engine.

The model, stated once:

- Response cache, TTL `t`: a successful call is a hit when a successful call with
  the same `request_hash` started at most `t` seconds before it (window function
  over ``(request_hash ORDER BY timestamp)``). Each hit counts as refreshing the entry,
  so this is an upper bound for caches whose entries expire `t` after they were
  stored (`costtrack.MemoryCache`, Redis ``SETEX``): they miss the repeats of a
  request that keeps coming for longer than `t`. Calls without a hash, failed calls,
  and calls that already were cache hits are left as they are.
- Swap ``a=b``: calls whose requested or answered model is `a` are repriced at `b`'s
  rates (PriceBook, at the period's last call) for the same token counts: uncached
  input, cached input, cache writes (5-minute and 1-hour) and output, each at its own
  rate. Long-context tiers of `b` are not applied. Tokenizers differ between
  providers, so a cross-provider swap is an estimate.
- Batch share `s`: that share of the calls of the endpoints in scope goes through
  the Batch API at 50% of the price; by default the scope is the non-interactive
  endpoints (see `noninteractive_endpoints`).
- Levers apply in that order (cache, swap, batch), each to what the previous one left,
  so their savings add up to the total and never exceed the actual spend.
- Unpriced calls (cost unknown) stay unknown: they are in neither the actual nor the
  simulated cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Engine,
    Float,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.sql import ColumnElement

from ..errors import ConfigError
from ..pricing import PriceBook
from ..store.schema import records
from .calc import BATCH_DISCOUNT, DAYS_PER_MONTH
from .stats import _unpriced, period_filter

__all__ = [
    "GAP_TOLERANCE_S",
    "NONINTERACTIVE_WORDS",
    "Buckets",
    "DayRow",
    "EndpointResult",
    "Group",
    "Interactivity",
    "Replay",
    "Scenario",
    "Simulation",
    "Swap",
    "classify_interactivity",
    "daily_query",
    "as_day",
    "day_of",
    "epoch_of",
    "execute",
    "has_tag",
    "hits_query",
    "interactive_query",
    "monthly",
    "noninteractive_endpoints",
    "parse_duration",
    "parse_swap",
    "period_where",
    "replay",
    "replay_from",
    "replay_queries",
    "resolve_batch_scope",
    "run",
    "run_queries",
    "simulate",
    "swap_rates",
    "tag_filter",
    "tag_number",
    "tag_text",
    "totals_query",
]

_MTOK = Decimal(1_000_000)
_HALF = float(BATCH_DISCOUNT)

#: Words of an endpoint's name that mark it non-interactive (a Batch API candidate).
NONINTERACTIVE_WORDS = frozenset({"job", "jobs", "batch", "batches", "nightly", "cron", "scheduled", "offline",
                                  "backfill", "worker", "workers"})  # fmt: skip
_FALSE = ("false", "0", "no")
_TRUE = ("true", "1", "yes")


# --------------------------------------------------------------------------- portable SQL


def epoch_of(dialect: str, column: Any) -> ColumnElement[float]:
    """Seconds since 1970 of a timestamp column, as a float, on SQLite and Postgres."""
    if dialect == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return func.date_part("epoch", column)


def day_of(dialect: str, column: Any) -> ColumnElement[Any]:
    """The UTC day of a timestamp column: 'YYYY-MM-DD' on SQLite, the UTC midnight (timestamptz) on Postgres.

    `as_day` turns either into 'YYYY-MM-DD' (Postgres returns instants in the session's time zone).
    """
    if dialect == "sqlite":
        return func.substr(column, 1, 10)  # stored as UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff'
    return func.date_trunc("day", column, "UTC")


def as_day(value: Any) -> str:
    """A `day_of` value as 'YYYY-MM-DD' (UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date().isoformat() if value.tzinfo else value.date().isoformat()
    return str(value)


_TAG_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _check_tag_key(key: str) -> str:
    if not _TAG_KEY.match(key):
        raise ConfigError(f"tag name {key!r} is not supported: use letters, digits, '_', '-' or '.'")
    return key


def tag_text(dialect: str, key: str) -> ColumnElement[str]:
    """A tag's value as text ('true'/'false' for booleans, NULL when absent), the same on both backends."""
    _check_tag_key(key)
    if dialect == "sqlite":
        path = f'$."{key}"'
        kind = func.json_type(records.c.tags, path)
        return case(
            (kind == "true", literal("true")),
            (kind == "false", literal("false")),
            else_=cast(func.json_extract(records.c.tags, path), Text),
        )
    return records.c.tags.op("->>")(literal(key))


def tag_number(dialect: str, key: str) -> ColumnElement[float]:
    """A numeric tag's value as a float; NULL when absent or not a number."""
    _check_tag_key(key)
    if dialect == "sqlite":
        path = f'$."{key}"'
        return case((func.json_type(records.c.tags, path).in_(("integer", "real")),
                     func.json_extract(records.c.tags, path) * 1.0))  # fmt: skip
    value = records.c.tags.op("->")(literal(key))
    return case((func.jsonb_typeof(value) == "number", cast(records.c.tags.op("->>")(literal(key)), Float)))


def tag_filter(dialect: str, key: str, value: str) -> ColumnElement[bool]:
    """Records whose tag `key` equals `value` (compared as text: run=1 matches 1 and "1")."""
    return tag_text(dialect, key) == value


# --------------------------------------------------------------------------- parsing flags

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, what: str = "--cache-ttl") -> float:
    """`90s`, `30m`, `1h`, `7d`, or plain seconds → seconds (more than 0)."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{what} {text!r} is not a duration: use e.g. 30m, 1h, 24h or 7d")
    seconds = float(match.group(1)) * _SECONDS[match.group(2) or "s"]
    if seconds <= 0:
        raise ConfigError(f"{what} must be more than 0")
    return seconds


def parse_swap(text: str) -> Swap:
    """`gpt-4o=gpt-4o-mini` → Swap('gpt-4o', 'gpt-4o-mini')."""
    source, sep, target = text.partition("=")
    if not sep or not source.strip() or not target.strip() or "=" in target:
        raise ConfigError(f"--swap {text!r} is not a swap: write FROM=TO, e.g. gpt-4o=gpt-4o-mini")
    if source.strip() == target.strip():
        raise ConfigError(f"--swap {text!r} swaps a model for itself")
    return Swap(source.strip(), target.strip())


# --------------------------------------------------------------------------- the replay

#: Time differences are computed in floating point (SQLite: from Julian days, ~50 us of noise): a gap within
#: a millisecond of the TTL counts as equal to it.
GAP_TOLERANCE_S = 0.001


@dataclass(frozen=True)
class Buckets:
    """Token buckets of a set of calls, each billed at its own rate."""

    uncached: int = 0
    cached: int = 0
    write_5m: int = 0
    write_1h: int = 0
    output: int = 0

    def __add__(self, other: Buckets) -> Buckets:
        return Buckets(self.uncached + other.uncached, self.cached + other.cached, self.write_5m + other.write_5m,
                       self.write_1h + other.write_1h, self.output + other.output)  # fmt: skip

    def __sub__(self, other: Buckets) -> Buckets:
        return Buckets(self.uncached - other.uncached, self.cached - other.cached, self.write_5m - other.write_5m,
                       self.write_1h - other.write_1h, self.output - other.output)  # fmt: skip

    def price(self, rates: dict[str, Decimal]) -> float:
        """The USD cost of these tokens at `rates` (Rates.effective(): USD per 1M tokens)."""
        total = (self.uncached * rates["input"] + self.cached * rates["cached_input"]
                 + self.write_5m * rates["cache_write"] + self.write_1h * rates["cache_write_1h"]
                 + self.output * rates["output"])  # fmt: skip
        return float(total / _MTOK)


@dataclass
class Group:
    """The calls of one (endpoint, provider, requested model, answered model) in the period.

    `live_*`: the priced calls that reached the provider (not response-cache hits), whose
    tokens a swap reprices; `hit_*`: the part of them a response cache with the replay's
    TTL would have answered.
    """

    endpoint: str
    provider: str
    model_key: str  # the requested model (the answered one when none was recorded)
    model: str  # the answered model
    calls: int = 0
    requests: int = 0  # first attempts: the app's requests (retries and escalations excluded)
    errors: int = 0
    cache_hits: int = 0
    saved_usd: float = 0.0  # cost_saved_usd of the cache hits
    spend_usd: float = 0.0
    unpriced_calls: int = 0
    tokens_input: int = 0
    tokens_output: int = 0
    tokens_cached_input: int = 0
    long_context_calls: int = 0
    live_spend_usd: float = 0.0
    live: Buckets = field(default_factory=Buckets)
    served: int = 0  # successful calls that reached the provider
    served_input: int = 0
    served_output: int = 0
    min_input: int | None = None  # smallest input of a served call
    latency_n: int = 0
    latency_sum_ms: float = 0.0
    first: datetime | None = None
    last: datetime | None = None
    would_hit: int = 0  # calls a response cache with the replay's TTL would have answered
    hit_spend_usd: float = 0.0  # what they cost
    hit: Buckets = field(default_factory=Buckets)  # their tokens (priced calls only)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.endpoint, self.provider, self.model_key, self.model)

    @property
    def rest_spend_usd(self) -> float:
        """Spend of the live calls a cache would not have answered."""
        return self.live_spend_usd - self.hit_spend_usd

    @property
    def rest(self) -> Buckets:
        return self.live - self.hit

    @property
    def cached_share(self) -> float:
        """Share of input tokens read from the provider's prompt cache."""
        return self.tokens_cached_input / self.tokens_input if self.tokens_input else 0.0


@dataclass(frozen=True)
class DayRow:
    """Spend and calls of one (requested) model on one UTC day."""

    day: str
    model_key: str
    calls: int
    spend_usd: float


@dataclass(frozen=True)
class Replay:
    """The period's calls, aggregated once for every what-if."""

    since: datetime | None
    until: datetime | None
    cache_ttl: float | None
    groups: list[Group]
    daily: list[DayRow] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(g.calls for g in self.groups)

    @property
    def requests(self) -> int:
        return sum(g.requests for g in self.groups)

    @property
    def spend_usd(self) -> float:
        return sum(g.spend_usd for g in self.groups)

    @property
    def first(self) -> datetime | None:
        return min((g.first for g in self.groups if g.first), default=None)

    @property
    def last(self) -> datetime | None:
        return max((g.last for g in self.groups if g.last), default=None)

    @property
    def span_days(self) -> float:
        """Days from the first call to the last (may be under one)."""
        first, last = self.first, self.last
        return 0.0 if first is None or last is None else (last - first).total_seconds() / 86400

    @property
    def days(self) -> float:
        """Days the records span (first to last call), at least one day: the denominator of monthly projections."""
        return max(self.span_days, 1.0)

    def endpoints(self) -> list[str]:
        return sorted({g.endpoint for g in self.groups})


def monthly(amount: float, days: float) -> float:
    """An amount observed over `days` days, scaled to a month of 30 days."""
    return amount * DAYS_PER_MONTH / days


def _sum(condition: Any, value: Any) -> Any:
    return func.coalesce(func.sum(case((condition, value), else_=0)), 0)


def _buckets(where: Any, cols: Any, prefix: str) -> list[Any]:
    uncached = cols.tokens_input - cols.tokens_cached_input - cols.tokens_cache_write
    write_5m = cols.tokens_cache_write - cols.tokens_cache_write_1h
    return [
        _sum(where, case((uncached > 0, uncached), else_=0)).label(f"{prefix}uncached"),
        _sum(where, cols.tokens_cached_input).label(f"{prefix}cached"),
        _sum(where, case((write_5m > 0, write_5m), else_=0)).label(f"{prefix}w5"),
        _sum(where, cols.tokens_cache_write_1h).label(f"{prefix}w1h"),
        _sum(where, cols.tokens_output).label(f"{prefix}out"),
    ]


def _row_buckets(row: Any, prefix: str) -> Buckets:
    return Buckets(*(int(getattr(row, f"{prefix}{name}")) for name in ("uncached", "cached", "w5", "w1h", "out")))


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


def totals_query(where: ColumnElement[bool], day: ColumnElement[str] | None = None) -> Any:
    """Per (endpoint, provider, requested model, answered model), and UTC `day` when given: counts, spend, tokens."""
    c = records.c
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
            _sum(c.attempt == 1, 1).label("requests"),
            _sum(c.status == "error", 1).label("errors"),
            _sum(c.cache_hit, 1).label("hits"),
            _sum(c.cache_hit, func.coalesce(c.cost_saved_usd, 0.0)).label("saved"),
            func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"),
            _sum(_unpriced(), 1).label("unpriced"),
            func.coalesce(func.sum(c.tokens_input), 0).label("tin"),
            func.coalesce(func.sum(c.tokens_output), 0).label("tout"),
            func.coalesce(func.sum(c.tokens_cached_input), 0).label("tcached"),
            _sum(c.tokens_input > 128_000, 1).label("long"),
            _sum(live, c.cost_usd).label("live_spend"),
            *_buckets(live, c, "l_"),
            _sum(served, 1).label("served"),
            _sum(served, c.tokens_input).label("served_in"),
            _sum(served, c.tokens_output).label("served_out"),
            func.min(case((and_(served, c.tokens_input > 0), c.tokens_input))).label("min_input"),
            _sum(timed, 1).label("lat_n"),
            _sum(timed, c.latency_ms).label("lat_sum"),
            func.min(c.timestamp).label("first"),
            func.max(c.timestamp).label("last"),
        )
        .where(where)
        .group_by(*group_by)
    )  # fmt: skip


def daily_query(dialect: str, where: ColumnElement[bool]) -> Any:
    """Calls and spend per UTC day and requested model."""
    c = records.c
    day = day_of(dialect, c.timestamp).label("day")
    model = func.coalesce(c.model_requested, c.model, "(unknown)").label("model_key")
    return (
        select(day, model, func.count().label("calls"), func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"))
        .where(where)
        .group_by(day, c.model_requested, c.model)
    )


def hits_query(dialect: str, where: ColumnElement[bool], cache_ttl: float) -> Any:
    """Per group: the successful calls whose request_hash was answered successfully at most `cache_ttl` s before.

    LAG over (request_hash ORDER BY timestamp) on the successful calls only (a failed
    call stores nothing in a cache); the calls that already were cache hits keep the
    entry warm but are not counted again. On SQLite the window sorts only the row id,
    the hash and the time, and the hits are joined back by rowid (the sort is the cost);
    on Postgres carrying the columns through the sort is cheaper than joining back.
    """
    within = float(cache_ttl) + GAP_TOLERANCE_S
    c = records.c
    ts = epoch_of(dialect, c.timestamp)
    ok = and_(where, c.status == "ok", c.request_hash.is_not(None))
    if dialect == "sqlite":
        rowid = literal_column("records.rowid")
        gap = (ts - func.lag(ts).over(partition_by=c.request_hash, order_by=(c.timestamp, c.id))).label("gap")
        window = select(rowid.label("rid"), c.cache_hit.label("was_hit"), gap).where(ok).subquery()
        r = records.c
        source: Any = window.join(records, rowid == window.c.rid)
        hit = and_(window.c.was_hit.is_(False), window.c.gap <= within)
    else:
        partition = c.request_hash.collate("C")
        gap = (ts - func.lag(ts).over(partition_by=partition, order_by=(c.timestamp, c.id))).label("gap")
        window = select(
            c.endpoint, c.provider, c.model, c.model_requested, c.cache_hit, c.cost_usd, c.tokens_input,
            c.tokens_output, c.tokens_cached_input, c.tokens_cache_write, c.tokens_cache_write_1h, gap,
        ).where(ok).subquery()  # fmt: skip
        r = window.c
        source = window
        hit = and_(r.cache_hit.is_(False), r.gap <= within)
    priced = r.cost_usd.is_not(None)
    keys, group_by = _keys(r)
    return (
        select(*keys, func.count().label("would_hit"), _sum(priced, r.cost_usd).label("hit_spend"),
               *_buckets(priced, r, "h_"))
        .select_from(source)
        .where(hit)
        .group_by(*group_by)
    )  # fmt: skip


def execute(engine: Engine, query: Any) -> list[Any]:
    """Run a report query on a connection of its own (so that `run_queries` can run several at once)."""
    with engine.connect() as conn:
        return list(conn.execute(query).all())


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
        g.cache_hits += int(row.hits)
        g.saved_usd += float(row.saved)
        g.spend_usd += float(row.spend)
        g.unpriced_calls += int(row.unpriced)
        g.tokens_input += int(row.tin)
        g.tokens_output += int(row.tout)
        g.tokens_cached_input += int(row.tcached)
        g.long_context_calls += int(row.long)
        g.live_spend_usd += float(row.live_spend)
        g.live = g.live + _row_buckets(row, "l_")
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
    """Rows of `daily_query` (or of `totals_query` by day) → DayRows, by day then model."""
    acc: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        v = acc.setdefault((as_day(row.day), row.model_key), [0, 0.0])
        v[0] += int(row.calls)
        v[1] += float(row.spend)
    return [DayRow(day, model, int(v[0]), v[1]) for (day, model), v in sorted(acc.items())]


def merge_hits(groups: dict[tuple[str, str, str, str], Group], rows: Iterable[Any]) -> None:
    """Add the would-be cache hits of `hits_query` to their groups."""
    for row in rows:
        g = groups.get((row.endpoint, row.provider, row.model_key, row.model_answered))
        if g is None:  # cannot happen: every hit is one of the period's calls
            continue
        g.would_hit += int(row.would_hit)
        g.hit_spend_usd += float(row.hit_spend)
        g.hit = g.hit + _row_buckets(row, "h_")


def run_queries(engine: Engine, queries: dict[str, Any], *, workers: int = 2,
                on_done: Callable[[str], None] | None = None) -> dict[str, list[Any]]:  # fmt: skip
    """Run independent report queries on `workers` connections at once (SQLite and psycopg release the GIL).

    An in-memory SQLite database has a single shared connection: its queries run one after the other.
    """
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        workers = 1
    if workers <= 1 or len(queries) <= 1:
        out = {}
        for name, query in queries.items():
            out[name] = execute(engine, query)
            if on_done is not None:
                on_done(name)
        return out
    from concurrent.futures import ThreadPoolExecutor, as_completed

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="costtrack-report") as pool:
        futures = {pool.submit(execute, engine, query): name for name, query in queries.items()}
        results: dict[str, list[Any]] = {}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if on_done is not None:
                on_done(futures[future])
    return {name: results[name] for name in queries}


def replay_queries(dialect: str, where: ColumnElement[bool], cache_ttl: float | None) -> dict[str, Any]:
    """The queries `replay` runs: totals, daily spend, and the would-be cache hits when there is a TTL.

    On SQLite the daily spend comes with the totals (one more GROUP BY key costs less than
    another scan); Postgres estimates a day expression's groups badly, so it gets its own query.
    """
    if dialect == "sqlite":
        queries = {"totals": totals_query(where, day_of(dialect, records.c.timestamp))}
    else:
        queries = {"totals": totals_query(where), "daily": daily_query(dialect, where)}
    if cache_ttl:
        queries["hits"] = hits_query(dialect, where, cache_ttl)
    return queries


def replay_from(results: dict[str, list[Any]], *, since: datetime | None, until: datetime | None,
                cache_ttl: float | None) -> Replay:  # fmt: skip
    """A Replay from the rows of `replay_queries`."""
    groups = merge_totals(results["totals"])
    if cache_ttl:
        merge_hits(groups, results["hits"])
    ordered = sorted(groups.values(), key=lambda g: g.key)
    daily = merge_daily(results["daily"] if "daily" in results else results["totals"])
    return Replay(since=since, until=until, cache_ttl=cache_ttl, groups=ordered, daily=daily)


def period_where(since: datetime | None, until: datetime | None,
                 where: ColumnElement[bool] | None = None) -> ColumnElement[bool]:  # fmt: skip
    """[since, until), and `where` when given."""
    cond = period_filter(since, until)
    return cond if where is None else and_(cond, where)


def replay(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
           cache_ttl: float | None = None, where: ColumnElement[bool] | None = None) -> Replay:  # fmt: skip
    """Read [since, until) (and `where`): per group, spend and tokens, and what a cache with `cache_ttl` would answer."""
    queries = replay_queries(engine.dialect.name, period_where(since, until, where), cache_ttl)
    return replay_from(run_queries(engine, queries), since=since, until=until, cache_ttl=cache_ttl)


def _aware(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite aggregates lose the column type
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Swap:
    """Reprice the calls of model `source` (requested or answered) at `target`'s rates, on `endpoints` (None: all)."""

    source: str
    target: str
    endpoints: frozenset[str] | None = None

    def matches(self, group: Group) -> bool:
        if self.endpoints is not None and group.endpoint not in self.endpoints:
            return False
        src = self.source.lower()
        return group.model_key.lower() == src or group.model.lower() == src

    def label(self) -> str:
        return f"{self.source}={self.target}"


@dataclass(frozen=True)
class Scenario:
    """A what-if: any combination of a response cache, model swaps and a Batch API share."""

    cache_ttl: float | None = None
    swaps: tuple[Swap, ...] = ()
    batch_share: float = 0.0
    batch_endpoints: frozenset[str] | None = None  # None: every endpoint

    def __post_init__(self) -> None:
        if not 0.0 <= self.batch_share <= 1.0:
            raise ConfigError(f"--batch-share {self.batch_share:g} is a share: give a number from 0 to 1 (0.3 for 30%)")
        if self.cache_ttl is not None and self.cache_ttl <= 0:
            raise ConfigError("--cache-ttl must be more than 0")

    @property
    def empty(self) -> bool:
        return not self.cache_ttl and not self.swaps and not self.batch_share

    def describe(self) -> list[str]:
        """The levers in words, for headers and notes."""
        from ..format import duration, pct

        out: list[str] = []
        if self.cache_ttl:
            out.append(f"response cache, TTL {duration(self.cache_ttl)}")
        for swap in self.swaps:
            where = f" on {', '.join(sorted(swap.endpoints))}" if swap.endpoints else ""
            out.append(f"{swap.source} → {swap.target}{where}")
        if self.batch_share:
            scope = "all endpoints" if self.batch_endpoints is None else (
                ", ".join(sorted(self.batch_endpoints)) or "no endpoint")  # fmt: skip
            out.append(f"Batch API for {pct(self.batch_share)} of the calls of {scope}")
        return out


@dataclass(frozen=True)
class EndpointResult:
    """One endpoint's actual and simulated cost, and each lever's part of the difference."""

    endpoint: str
    calls: int
    requests: int
    actual_usd: float
    simulated_usd: float
    cache_savings_usd: float
    swap_savings_usd: float
    batch_savings_usd: float
    would_hit: int
    unpriced_calls: int

    @property
    def savings_usd(self) -> float:
        return self.actual_usd - self.simulated_usd

    @property
    def savings_share(self) -> float | None:
        return self.savings_usd / self.actual_usd if self.actual_usd else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint, "calls": self.calls, "requests": self.requests,
            "actual_usd": round(self.actual_usd, 10), "simulated_usd": round(self.simulated_usd, 10),
            "savings_usd": round(self.savings_usd, 10), "savings_share": self.savings_share,
            "cache_savings_usd": round(self.cache_savings_usd, 10), "swap_savings_usd": round(self.swap_savings_usd, 10),
            "batch_savings_usd": round(self.batch_savings_usd, 10), "would_be_cache_hits": self.would_hit,
            "unpriced_calls": self.unpriced_calls,
        }  # fmt: skip


@dataclass(frozen=True)
class Simulation:
    """A scenario played on a period: per endpoint and in total, with the rates used."""

    scenario: Scenario
    replay: Replay
    endpoints: list[EndpointResult]
    total: EndpointResult
    rates: dict[str, dict[str, float]] = field(default_factory=dict)  # swap target → USD per 1M tokens
    notes: list[str] = field(default_factory=list)

    @property
    def days(self) -> float:
        return self.replay.days

    def monthly(self, amount: float) -> float:
        return monthly(amount, self.days)

    def as_dict(self) -> dict[str, Any]:
        from ..format import duration

        s = self.scenario
        return {
            "since": self.replay.since.isoformat() if self.replay.since else None,
            "until": self.replay.until.isoformat() if self.replay.until else None,
            "first": self.replay.first.isoformat() if self.replay.first else None,
            "last": self.replay.last.isoformat() if self.replay.last else None,
            "days": self.days,
            "scenario": {
                "cache_ttl_s": s.cache_ttl, "cache_ttl": duration(s.cache_ttl) if s.cache_ttl else None,
                "swaps": [{"from": w.source, "to": w.target,
                           "endpoints": sorted(w.endpoints) if w.endpoints is not None else None} for w in s.swaps],
                "batch_share": s.batch_share,
                "batch_endpoints": sorted(s.batch_endpoints) if s.batch_endpoints is not None else None,
            },  # fmt: skip
            "swap_rates_per_mtok": self.rates,
            "total": self.total.as_dict(),
            "monthly": {"actual_usd": round(self.monthly(self.total.actual_usd), 10),
                        "simulated_usd": round(self.monthly(self.total.simulated_usd), 10),
                        "savings_usd": round(self.monthly(self.total.savings_usd), 10)},  # fmt: skip
            "endpoints": [e.as_dict() for e in self.endpoints],
            "notes": self.notes,
        }


def swap_rates(book: PriceBook, target: str, at: datetime) -> dict[str, Decimal]:
    """`target`'s effective rates at `at` (USD per 1M tokens); ConfigError when it has no per-token price."""
    rates = book.rates(None, target, at)
    if rates is None:
        raise ConfigError(
            f"no price for model {target!r}: check the name with `costtrack prices show {target}`, "
            "or add it to a prices file (--prices-file or $COSTTRACK_PRICES_FILE)"
        )
    if rates.per_hour is not None:
        raise ConfigError(f"{target} is priced per hour (self-hosted), not per token: swap to an API model")
    return rates.effective()


def simulate(replay_: Replay, scenario: Scenario, book: PriceBook) -> Simulation:
    """Play `scenario` on the aggregates of `replay_` (whose TTL must be the scenario's, or it must have none)."""
    if scenario.cache_ttl and replay_.cache_ttl != scenario.cache_ttl:
        raise ValueError("the replay was read with another cache TTL than the scenario's")
    at = replay_.last or datetime.now().astimezone()
    targets: dict[str, dict[str, Decimal]] = {}
    for swap in scenario.swaps:
        if swap.target not in targets:
            targets[swap.target] = swap_rates(book, swap.target, at)
    use_cache = bool(scenario.cache_ttl)
    factor = 1.0 - scenario.batch_share * _HALF
    per_endpoint: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    notes: list[str] = []
    matched = {swap.label(): 0 for swap in scenario.swaps}
    long_swapped = 0
    for g in replay_.groups:
        cache_saving = g.hit_spend_usd if use_cache else 0.0
        swap = next((s for s in scenario.swaps if s.matches(g)), None)
        if swap is not None:
            matched[swap.label()] += g.calls
            rates = targets[swap.target]
            long_swapped += g.long_context_calls
            before = g.rest_spend_usd + (0.0 if use_cache else g.hit_spend_usd)
            after = g.rest.price(rates) + (0.0 if use_cache else g.hit.price(rates))
            swap_saving = before - after
        else:
            swap_saving = 0.0
        remaining = g.spend_usd - cache_saving - swap_saving
        in_batch = scenario.batch_share and (scenario.batch_endpoints is None or g.endpoint in scenario.batch_endpoints)
        batch_saving = remaining * (1.0 - factor) if in_batch else 0.0
        acc = per_endpoint.setdefault(g.endpoint, [0.0, 0.0, 0.0, 0.0])
        acc[0] += g.spend_usd
        acc[1] += cache_saving
        acc[2] += swap_saving
        acc[3] += batch_saving
        cnt = counts.setdefault(g.endpoint, [0, 0, 0, 0])
        cnt[0] += g.calls
        cnt[1] += g.requests
        cnt[2] += g.would_hit if use_cache else 0
        cnt[3] += g.unpriced_calls
    rows = [
        EndpointResult(
            endpoint=name, calls=counts[name][0], requests=counts[name][1], actual_usd=a[0],
            simulated_usd=a[0] - a[1] - a[2] - a[3], cache_savings_usd=a[1], swap_savings_usd=a[2],
            batch_savings_usd=a[3], would_hit=counts[name][2], unpriced_calls=counts[name][3],
        )  # fmt: skip
        for name, a in per_endpoint.items()
    ]
    rows.sort(key=lambda e: (-e.savings_usd, -e.actual_usd, e.endpoint))
    total = EndpointResult(
        endpoint="TOTAL", calls=sum(e.calls for e in rows), requests=sum(e.requests for e in rows),
        actual_usd=sum(e.actual_usd for e in rows), simulated_usd=sum(e.simulated_usd for e in rows),
        cache_savings_usd=sum(e.cache_savings_usd for e in rows), swap_savings_usd=sum(e.swap_savings_usd for e in rows),
        batch_savings_usd=sum(e.batch_savings_usd for e in rows), would_hit=sum(e.would_hit for e in rows),
        unpriced_calls=sum(e.unpriced_calls for e in rows),
    )  # fmt: skip
    for label, calls in matched.items():
        if not calls:
            notes.append(f"--swap {label}: no call in the period used {label.split('=')[0]}")
    if long_swapped:
        notes.append(f"{long_swapped:,} swapped calls had over 128K input tokens: long-context tiers are not applied")
    if scenario.batch_share and scenario.batch_endpoints is not None and not scenario.batch_endpoints:
        notes.append("no non-interactive endpoint found for the Batch API share: name them with --batch-endpoints, "
                     "or use --batch-endpoints all")  # fmt: skip
    if total.unpriced_calls:
        notes.append(f"{total.unpriced_calls:,} unpriced calls are left out of both costs (their cost is unknown)")
    rates = {name: {k: float(v) for k, v in r.items()} for name, r in targets.items()}
    return Simulation(scenario=scenario, replay=replay_, endpoints=rows, total=total, rates=rates, notes=notes)


# --------------------------------------------------------------------------- batch scope


@dataclass(frozen=True)
class Interactivity:
    """Why an endpoint counts as non-interactive: its name, or its records' `interactive` tag."""

    endpoint: str
    reason: str


def _name_is_noninteractive(endpoint: str) -> bool:
    words = {w for w in re.split(r"[^a-z0-9]+", endpoint.lower()) if w}
    return bool(words & NONINTERACTIVE_WORDS)


def interactive_query(dialect: str, where: ColumnElement[bool]) -> Any:
    """Per endpoint, the values of the `interactive` tag its records carry."""
    flag = tag_text(dialect, "interactive")
    return (
        select(records.c.endpoint, flag.label("flag"), func.count().label("calls"))
        .where(where, has_tag(dialect, "interactive"))
        .group_by(records.c.endpoint, flag)
    )


def classify_interactivity(endpoints: Iterable[str], tag_rows: Iterable[Any]) -> list[Interactivity]:
    """Endpoints nobody waits on: tagged ``interactive=false``, or named like a job (/jobs/, batch, nightly, cron, ...).

    A name match is overruled by records tagged ``interactive=true`` on that endpoint.
    """
    tagged: dict[str, set[str]] = {}
    for row in tag_rows:
        tagged.setdefault(row.endpoint, set()).add(str(row.flag).lower())
    out: list[Interactivity] = []
    for endpoint in sorted(set(endpoints)):
        flags = tagged.get(endpoint, set())
        if flags & set(_FALSE):
            out.append(Interactivity(endpoint, "tagged interactive=false"))
        elif _name_is_noninteractive(endpoint) and not flags & set(_TRUE):
            out.append(Interactivity(endpoint, "named like a job"))
    return out


def noninteractive_endpoints(engine: Engine, endpoints: Iterable[str], *, since: datetime | None = None,
                             until: datetime | None = None,
                             where: ColumnElement[bool] | None = None) -> list[Interactivity]:  # fmt: skip
    """`classify_interactivity` of `endpoints`, reading the tags of [since, until)."""
    rows = execute(engine, interactive_query(engine.dialect.name, period_where(since, until, where)))
    return classify_interactivity(endpoints, rows)


def has_tag(dialect: str, key: str) -> ColumnElement[bool]:
    """Records that carry tag `key` (a cheap filter: the JSON is parsed only for those)."""
    _check_tag_key(key)
    if dialect == "sqlite":
        return type_coerce(records.c.tags, Text).like(f'%"{key}"%')
    return records.c.tags.op("?")(literal(key))


def resolve_batch_scope(engine: Engine, replay_: Replay, spec: str, *,
                        where: ColumnElement[bool] | None = None) -> frozenset[str] | None:  # fmt: skip
    """`noninteractive` (the default), `all`, or a comma-separated list of endpoints → the batch scope."""
    spec = spec.strip()
    if spec == "all":
        return None
    if spec == "noninteractive":
        found = noninteractive_endpoints(engine, replay_.endpoints(), since=replay_.since, until=replay_.until, where=where)
        return frozenset(i.endpoint for i in found)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigError("--batch-endpoints is empty: give noninteractive, all, or endpoints separated by commas")
    known = set(replay_.endpoints())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"--batch-endpoints: no calls on {unknown[0]!r} in the period; endpoints seen: {', '.join(sorted(known))}"
        )
    return frozenset(names)


def run(engine: Engine, book: PriceBook, *, since: datetime | None, until: datetime | None,
        cache_ttl: float | None = None, swaps: Sequence[Swap] = (), batch_share: float = 0.0,
        batch_endpoints: str = "noninteractive") -> Simulation:  # fmt: skip
    """Read the period once and play the scenario on it (what `costtrack simulate` does)."""
    rep = replay(engine, since=since, until=until, cache_ttl=cache_ttl)
    scope = resolve_batch_scope(engine, rep, batch_endpoints) if batch_share else None
    scenario = Scenario(cache_ttl=cache_ttl, swaps=tuple(swaps), batch_share=batch_share, batch_endpoints=scope)
    return simulate(rep, scenario, book)
