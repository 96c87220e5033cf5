"""Spend, calls, tokens, latency percentiles, error and cache-hit rates: aggregated in SQL."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Boolean, Engine, and_, case, func, literal, literal_column, not_, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from ..store.schema import records
from ..usage import UNREADABLE_TAG

__all__ = ["GroupStats", "PercentileResult", "Percentiles", "Stats", "bucket_range", "compute_stats", "period_filter"]

GroupBy = Literal["model", "endpoint", "provider", "none"]
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class GroupStats:
    """Figures for one group of records (a model, an endpoint, or all of them)."""

    key: str
    calls: int
    spend_usd: float
    tokens_input: int
    tokens_output: int
    tokens_cached_input: int
    errors: int
    cache_hits: int
    saved_usd: float
    unpriced_calls: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    #: Calls of a self-hosted model priced per hour: their cost is the hours served, not a sum over calls.
    per_hour_calls: int = 0

    @property
    def error_rate(self) -> float:
        """Share of calls that failed."""
        return self.errors / self.calls if self.calls else 0.0

    @property
    def cache_hit_rate(self) -> float:
        """Share of calls answered from the response cache."""
        return self.cache_hits / self.calls if self.calls else 0.0

    @property
    def spend_known(self) -> bool:
        """Whether spend_usd is every call's cost: no unpriced call, none of a model priced per hour."""
        return not self.unpriced_calls and not self.per_hour_calls

    def as_dict(self) -> dict[str, Any]:
        """Figures as a JSON-ready dict, rates included (dollars rounded to 1e-10, below any price step).

        `spend_usd` is null when no call of the group has a known cost (unpriced, or priced per hour) and some
        have tokens: unknown, never 0; `spend_complete` says whether it is every call's cost or a lower bound.
        """
        data = asdict(self)
        for key in ("spend_usd", "saved_usd"):
            data[key] = round(data[key], 10)
        if not self.spend_usd and not self.spend_known:
            data["spend_usd"] = None
        return {**data, "spend_complete": self.spend_known, "error_rate": self.error_rate,
                "cache_hit_rate": self.cache_hit_rate}  # fmt: skip


@dataclass(frozen=True)
class Stats:
    """Totals, the groups, and the models no price was found for."""

    since: datetime | None
    until: datetime | None
    by: str
    total: GroupStats
    groups: list[GroupStats] = field(default_factory=list)
    unpriced_models: list[str] = field(default_factory=list)
    #: Unpriced calls whose usage had a count costtrack could not read (tag costtrack.usage_unreadable): their model
    #: may well have a price, so they are counted here rather than under unpriced_models.
    unreadable_calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Everything as a JSON-ready dict."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "by": self.by,
            "total": self.total.as_dict(),
            "groups": [group.as_dict() for group in self.groups],
            "unpriced_models": self.unpriced_models,
            "unreadable_usage_calls": self.unreadable_calls,
        }


def period_filter(since: datetime | None, until: datetime | None) -> ColumnElement[bool]:
    """WHERE clause for [since, until)."""
    clauses: list[ColumnElement[bool]] = []
    if since is not None:
        clauses.append(records.c.timestamp >= since)
    if until is not None:
        clauses.append(records.c.timestamp < until)
    return and_(true(), *clauses)


#: The endpoints `costtrack bench` records its requests under (bench:NAME): measurements, not the app's traffic.
BENCH_PREFIX = "bench:"


def app_traffic() -> ColumnElement[bool]:
    """Records of the app's own calls: not `costtrack bench`'s (which the audit, simulate and results leave out, as
    calc --from-db's workload does; stats lists them as endpoints of their own)."""
    # Compared exactly, on both databases (SQLite's LIKE ignores case: it left out a `Bench:x` endpoint Postgres kept).
    return func.coalesce(func.substr(records.c.endpoint, 1, len(BENCH_PREFIX)), "") != BENCH_PREFIX


def unpriced_filter() -> ColumnElement[bool]:
    """Rows that used tokens but found no price (a per-hour model has a price_source, so it is priced), and rows
    whose usage could not be read at all (tagged costtrack.usage_unreadable, no count read: billed, cost unknown)."""
    return and_(
        records.c.cost_usd.is_(None),
        records.c.price_source.is_(None),
        or_((records.c.tokens_input + records.c.tokens_output) > 0, unreadable_usage()),
    )


def known_spend(spend: float, unpriced_calls: int) -> float | None:
    """A total's spend, or None (unknown) when it has unpriced calls and nothing priced above $0.

    Unpriced is never $0: a total made only of unknown costs is unknown. A partly priced one is
    the priced part, which the documents note leaves the unpriced calls out.
    """
    return None if unpriced_calls and not spend else spend


class _TagIsTrue(FunctionElement[bool]):
    """Tag `key` is JSON true: SQL for SQLite or Postgres, told apart when it is compiled (the queries that use it are
    built without their engine at hand)."""

    type = Boolean()
    inherit_cache = True
    name = "tag_is_true"


@compiles(_TagIsTrue, "sqlite")
def _tag_is_true_sqlite(element: _TagIsTrue, compiler: Any, **kw: Any) -> str:
    tags, path, _ = element.clauses
    return f"(json_type({compiler.process(tags, **kw)}, {compiler.process(path, **kw)}) IS 'true')"  # never NULL


@compiles(_TagIsTrue)
def _tag_is_true_postgres(element: _TagIsTrue, compiler: Any, **kw: Any) -> str:
    tags, _, key = element.clauses
    t, k = compiler.process(tags, **kw), compiler.process(key, **kw)
    return f"COALESCE(jsonb_typeof({t} -> {k}) = 'boolean' AND ({t} ->> {k}) = 'true', false)"  # never NULL (NOT of it)


def unreadable_usage() -> ColumnElement[bool]:
    """Records tagged costtrack.usage_unreadable (JSON true, a top-level key: a text search also matched other cases,
    nested keys and values, on SQLite)."""
    return _TagIsTrue(records.c.tags, literal(f'$."{UNREADABLE_TAG}"'), literal(UNREADABLE_TAG))


def per_hour_filter() -> ColumnElement[bool]:
    """Rows of a model priced per hour (self-hosted): a price_source, tokens, and no per-call cost."""
    return and_(
        records.c.cost_usd.is_(None),
        records.c.price_source.is_not(None),
        (records.c.tokens_input + records.c.tokens_output) > 0,
    )


#: Latency buckets of the exact percentiles: 32 log-spaced edges per decade, from 0.1 ms to 10^7 ms.
_EDGES = tuple(10 ** (i / 32) / 10 for i in range(32 * 8 + 1))
_ALL: Any = object()  # the key of the overall percentiles among the groups' (a group's key is (value,))
_Key = Any


def _bucket(value: Any) -> ColumnElement[int]:
    """The bucket of `value`: a binary search written as nested CASEs (b: _EDGES[b-1] <= value < _EDGES[b])."""

    def node(lo: int, hi: int) -> Any:
        if lo == hi:
            return literal_column(str(lo))
        mid = (lo + hi) // 2
        return case((value < literal_column(repr(_EDGES[mid])), node(lo, mid)), else_=node(mid + 1, hi))

    return node(0, len(_EDGES))


def _in_bucket(value: Any, b: int) -> ColumnElement[bool]:
    """`value` in bucket `b`, by the same comparisons `_bucket` makes."""
    conds = []
    if b > 0:
        conds.append(value >= literal_column(repr(_EDGES[b - 1])))
    if b < len(_EDGES):
        conds.append(value < literal_column(repr(_EDGES[b])))
    return and_(*conds)


def bucket_range(b: int) -> tuple[float, float]:
    """The values [low, high) of the percentile histogram's bucket `b` (-inf and inf at the two ends)."""
    low = _EDGES[b - 1] if b > 0 else -math.inf
    high = _EDGES[b] if b < len(_EDGES) else math.inf
    return low, high


@dataclass
class PercentileResult:
    """Nearest-rank percentiles: {group value: {p: value}} and the overall {p: value} (empty when no values)."""

    groups: dict[Any, dict[int, float]] = field(default_factory=dict)
    overall: dict[int, float] = field(default_factory=dict)


class Percentiles:
    """Exact nearest-rank percentiles of a column, per group and over all, in SQL on any backend, in two queries.

    The p-th percentile is the smallest value whose rank is at least p% of the count
    (nearest rank), so it is always an observed value. No query sorts every row:

    1. `histogram_query`: the rows per group over fine log-spaced buckets of the value
       (a GROUP BY, no sort). It tells in which bucket each percentile falls, and at
       which rank within it.
    2. `refine_query(histogram rows)`: only the rows of those buckets are ranked
       (window functions over a few thousand rows out of millions); `result(its rows)`.

    The steps are separate so that a report can run each step's queries beside its
    other queries (`run_queries`); `compute` runs both, one after the other.
    Rows whose value is NULL are not counted.
    """

    def __init__(self, where: ColumnElement[bool], group: ColumnElement[Any] | None = None, value: Any = None,
                 percentiles: tuple[int, ...] = PERCENTILES) -> None:  # fmt: skip
        self.value = records.c.latency_ms if value is None else value
        self.where = and_(where, self.value.is_not(None))
        self.group = group
        self.percentiles = percentiles
        self._hist: dict[_Key, dict[int, int]] = {}
        self._targets: dict[tuple[_Key, int], tuple[int, int]] = {}
        self._selected: dict[_Key, set[int]] = {}

    def histogram_query(self) -> Any:
        """Step 1: rows per group and bucket."""
        bucket = _bucket(self.value).label("bucket")
        if self.group is None:
            return select(literal_column("0").label("key"), bucket, func.count().label("n")).where(self.where) \
                .group_by(bucket)  # fmt: skip
        key = self.group.label("key")
        return select(key, bucket, func.count().label("n")).where(self.where).group_by(self.group, bucket)

    def refine_query(self, histogram_rows: list[Any]) -> Any | None:
        """Step 2: the rows at the percentiles' ranks among the rows of the selected buckets (None: no rows at all)."""
        hist: dict[_Key, dict[int, int]] = {}
        for r in histogram_rows:
            counts = hist.setdefault((r.key,), {})
            counts[int(r.bucket)] = counts.get(int(r.bucket), 0) + int(r.n)
        self._hist = hist
        self._targets = targets = self._find_targets(hist)
        if not targets:
            return None
        overall = {b for (k, _), (b, _) in targets.items() if k == _ALL}
        self._selected = selected = {
            k: {b for (tk, _), (b, _) in targets.items() if tk == k} | (overall & set(counts)) for k, counts in hist.items()
        }  # fmt: skip
        v = self.value

        def buckets(bs: set[int]) -> ColumnElement[bool]:
            return or_(*(_in_bucket(v, b) for b in sorted(bs)))

        if self.group is None:
            chosen = buckets(selected[(0,)])
        else:
            chosen = or_(*(and_(self.group.is_(None) if k[0] is None else self.group == k[0], buckets(bs))
                           for k, bs in selected.items() if bs))  # fmt: skip
        columns = [v.label("v"), func.row_number().over(order_by=v).label("rn_all")]
        if self.group is not None:
            columns += [self.group.label("key"), func.row_number().over(partition_by=self.group, order_by=v).label("rn")]
        inner = select(*columns).where(self.where, chosen).subquery()
        r = inner.c
        wanted = []
        for (key, _), rank in self._ranks().items():
            if key == _ALL:
                wanted.append(r.rn_all == rank)
            else:
                wanted.append(and_(r.key.is_(None) if key[0] is None else r.key == key[0], r.rn == rank))
        return select(*r).where(or_(*wanted))

    @property
    def histogram(self) -> dict[Any, dict[int, int]]:
        """After `refine_query`: {group value (0 without groups): {bucket: rows}} (see `bucket_range`)."""
        return {key[0]: dict(counts) for key, counts in self._hist.items()}

    def result(self, refine_rows: list[Any]) -> PercentileResult:
        """The percentiles, from the refine query's rows."""
        by_rank = {int(row.rn_all): float(row.v) for row in refine_rows}
        by_key = {(row.key, int(row.rn)): float(row.v) for row in refine_rows} if self.group is not None else {}
        out = PercentileResult()
        for (key, p), rank in self._ranks().items():
            if key == _ALL:
                if rank in by_rank:
                    out.overall[p] = by_rank[rank]
            elif (key[0], rank) in by_key:
                out.groups.setdefault(key[0], {})[p] = by_key[(key[0], rank)]
        return out

    def compute(self, engine: Engine) -> PercentileResult:
        """Both steps, one after the other."""
        with engine.connect() as conn:
            refine = self.refine_query(list(conn.execute(self.histogram_query()).all()))
            return self.result(list(conn.execute(refine).all()) if refine is not None else [])

    def _find_targets(self, hist: dict[_Key, dict[int, int]]) -> dict[tuple[_Key, int], tuple[int, int]]:
        """(group key or _ALL, p) → (bucket, rank within the bucket) of the nearest-rank percentile."""
        overall: dict[int, int] = {}
        for counts in hist.values():
            for bucket, n in counts.items():
                overall[bucket] = overall.get(bucket, 0) + n
        targets: dict[tuple[_Key, int], tuple[int, int]] = {}
        groups = list(hist.items()) if self.group is not None else []
        for key, counts in [*groups, (_ALL, overall)]:
            n = sum(counts.values())
            for p in self.percentiles:
                rank = max(math.ceil(n * (p / 100.0)), 1)
                below = 0
                for bucket, m in sorted(counts.items()):
                    if below + m >= rank:
                        targets[(key, p)] = (bucket, rank - below)
                        break
                    below += m
        return targets

    def _ranks(self) -> dict[tuple[_Key, int], int]:
        """Each target's rank among the selected rows (of its group, or of all)."""
        hist, selected = self._hist, self._selected
        ranks: dict[tuple[_Key, int], int] = {}
        for (key, p), (b, k) in self._targets.items():
            if key == _ALL:
                below = sum(n for g, counts in hist.items() for bb, n in counts.items() if bb in selected[g] and bb < b)
            else:
                below = sum(n for bb, n in hist[key].items() if bb in selected[key] and bb < b)
            ranks[(key, p)] = below + k
        return ranks


def _group_rows(engine: Engine, group: ColumnElement[Any] | None, where: ColumnElement[bool],
                latency: PercentileResult) -> list[GroupStats]:  # fmt: skip
    c = records.c
    key = literal_column("'all'") if group is None else group
    query = (
        select(
            key.label("key"),
            func.count().label("calls"),
            func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"),
            func.coalesce(func.sum(c.tokens_input), 0).label("tin"),
            func.coalesce(func.sum(c.tokens_output), 0).label("tout"),
            func.coalesce(func.sum(c.tokens_cached_input), 0).label("tcached"),
            func.coalesce(func.sum(case((c.status == "error", 1), else_=0)), 0).label("errors"),
            func.coalesce(func.sum(case((c.cache_hit, 1), else_=0)), 0).label("hits"),
            func.coalesce(func.sum(case((c.cache_hit, c.cost_saved_usd), else_=0.0)), 0.0).label("saved"),
            func.coalesce(func.sum(case((unpriced_filter(), 1), else_=0)), 0).label("unpriced"),
            func.coalesce(func.sum(case((per_hour_filter(), 1), else_=0)), 0).label("per_hour"),
        )
        .where(where)
        .group_by(*([] if group is None else [group]))
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    # Ties broken by the key, in Python: the databases' collations order text differently (and each its own way).
    rows.sort(key=lambda row: (-float(row.spend), -int(row.calls), str(row.key)))
    out = []
    for row in rows:
        p = latency.overall if group is None else latency.groups.get(row.key, {})
        out.append(GroupStats(
            key=str(row.key), calls=int(row.calls), spend_usd=float(row.spend), tokens_input=int(row.tin),
            tokens_output=int(row.tout), tokens_cached_input=int(row.tcached), errors=int(row.errors),
            cache_hits=int(row.hits), saved_usd=float(row.saved or 0.0), unpriced_calls=int(row.unpriced),
            latency_p50_ms=p.get(50), latency_p95_ms=p.get(95), latency_p99_ms=p.get(99), per_hour_calls=int(row.per_hour),
        ))  # fmt: skip
    return out


def compute_stats(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
                  by: GroupBy = "model") -> Stats:  # fmt: skip
    """Aggregate the records of [since, until), in total and per group."""
    where = period_filter(since, until)
    group_column = {"model": func.coalesce(records.c.model_requested, records.c.model, "(unknown)"),
                    "endpoint": records.c.endpoint,
                    "provider": records.c.provider}.get(by)  # fmt: skip
    # Latency percentiles of the calls that reached a provider (response-cache hits excluded), per group and in total.
    latency = Percentiles(and_(where, records.c.cache_hit.is_(False)), group_column).compute(engine)
    [total] = _group_rows(engine, None, where, latency)
    groups = _group_rows(engine, group_column, where, latency) if group_column is not None else []
    unreadable = unreadable_usage()
    with engine.connect() as conn:
        unpriced = conn.execute(
            select(records.c.model).where(where, unpriced_filter(), not_(unreadable))
            .group_by(records.c.model).order_by(records.c.model)
        ).scalars().all()
        unreadable_calls = conn.execute(select(func.count()).where(where, unpriced_filter(), unreadable)).scalar_one()
    return Stats(since=since, until=until, by=by, total=total, groups=groups, unpriced_models=[str(m) for m in unpriced],
                 unreadable_calls=int(unreadable_calls))  # fmt: skip
