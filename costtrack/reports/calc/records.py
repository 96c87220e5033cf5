"""Reading the records: a workload and measured GPU throughput from the `records` table (`--from-db`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..stats import BENCH_PREFIX, app_traffic
from .inputs import ApiPrice, Throughput, Workload

__all__ = ["BENCH_PREFIX", "BenchThroughput", "DbWorkload", "bench_throughput", "workload_from_db"]


@dataclass(frozen=True)
class DbWorkload:
    """The usage profile of the stored calls: volume, mean sizes, cached share, most-called priced model, and what the
    priced calls cost (`priced_models` models: `priced_usd` for `priced_tokens` input and output tokens)."""

    calls: int
    first: datetime | None
    last: datetime | None
    days: float
    requests_per_day: float
    input_tokens: float
    output_tokens: float
    cached_share: float
    top_model: str | None
    top_provider: str | None
    mean_latency_ms: float | None
    priced_models: int = 0
    priced_usd: float = 0.0
    priced_tokens: int = 0

    def mix_price(self) -> ApiPrice | None:
        """The API side as the app pays it today, when its priced calls went to several models: one rate for every
        token, the recorded spend over the recorded tokens (so the API cost of a request is today's mean). None: one
        model or none (that model's catalog rates price it)."""
        if self.priced_models < 2 or not self.priced_tokens:
            return None
        rate = Decimal(repr(self.priced_usd)) / Decimal(self.priced_tokens) * Decimal(1_000_000)
        return ApiPrice(model=f"recorded mix of {self.priced_models} models", input=rate, output=rate, cached_input=rate,
                        source="the recorded calls' spend over their tokens")  # fmt: skip

    def workload(self, batch_share: float = 0.0) -> Workload:
        return Workload.per_request(self.requests_per_day, self.input_tokens, self.output_tokens,
                                    cached_share=self.cached_share, batch_share=batch_share)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None, "days": self.days,
            "requests_per_day": self.requests_per_day, "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens, "cached_share": self.cached_share, "top_model": self.top_model,
            "top_provider": self.top_provider, "mean_latency_ms": self.mean_latency_ms,
            "priced_models": self.priced_models, "priced_usd": self.priced_usd, "priced_tokens": self.priced_tokens,
        }  # fmt: skip


@dataclass(frozen=True)
class BenchThroughput:
    """One benchmark run's measured throughput (a self-hosted endpoint's best run): calls over the run's wall time."""

    endpoint: str
    calls: int
    seconds: float
    requests_per_s: float
    tokens_per_s: float | None
    model: str | None
    run: str | None = None  # the bench_run tag
    concurrency: str | None = None  # the concurrency tag

    def throughput(self) -> Throughput:
        """Output tokens/s when the run produced tokens (it carries over to other output sizes), else requests/s."""
        at = "".join(f", {name} {value}" for name, value in (("run", self.run), ("concurrency", self.concurrency)) if value)
        source = f"measured: {self.endpoint}{at} ({self.calls:,} calls in {self.seconds:,.1f} s)"
        if self.tokens_per_s:
            return Throughput(tokens_per_s=self.tokens_per_s, source=source)
        return Throughput(requests_per_s=self.requests_per_s, source=source)

    def as_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "calls": self.calls, "seconds": self.seconds,
                "requests_per_s": self.requests_per_s, "tokens_per_s": self.tokens_per_s, "model": self.model,
                "run": self.run, "concurrency": self.concurrency}  # fmt: skip


def _served_filter(since: datetime | None, until: datetime | None) -> Any:
    """Calls that reached a model: not errors, not response-cache hits."""
    from sqlalchemy import and_

    from ...store.schema import records
    from ..stats import period_filter

    c = records.c
    return and_(period_filter(since, until), c.status != "error", c.cache_hit.is_(False))


def workload_from_db(engine: Any, *, since: datetime | None = None, until: datetime | None = None) -> DbWorkload | None:
    """The usage profile of the stored calls in [since, until), benchmark endpoints excluded (None: no calls).

    Requests/day are the calls over the days they span (at least one day);
    errors and response-cache hits are left out (they cost nothing).
    """
    from sqlalchemy import and_, case, func, select

    from ...store.schema import records

    c = records.c
    where = and_(_served_filter(since, until), app_traffic())
    priced = c.cost_usd.is_not(None)
    totals = select(
        func.count().label("calls"),
        func.coalesce(func.sum(c.tokens_input), 0).label("tin"),
        func.coalesce(func.sum(c.tokens_output), 0).label("tout"),
        func.coalesce(func.sum(c.tokens_cached_input), 0).label("tcached"),
        func.min(c.timestamp).label("first"),
        func.max(c.timestamp).label("last"),
        func.avg(c.latency_ms).label("latency"),
        func.coalesce(func.sum(c.cost_usd), 0).label("spend"),
        func.coalesce(func.sum(case((priced, c.tokens_input + c.tokens_output), else_=0)), 0).label("priced_tokens"),
    ).where(where)
    models = (
        select(c.provider, c.model, func.count().label("n"))
        .where(where, c.model.is_not(None), priced)
        .group_by(c.provider, c.model)
        .order_by(func.count().desc(), c.model)
    )
    with engine.connect() as conn:
        row = conn.execute(totals).one()
        model_rows = conn.execute(models).all()
    top_row = model_rows[0] if model_rows else None
    calls = int(row.calls)
    if calls == 0:
        return None
    first, last = row.first, row.last
    span_days = (last - first).total_seconds() / 86400 if first is not None and last is not None else 0.0
    days = max(span_days, 1.0)
    tin, tout, tcached = int(row.tin), int(row.tout), int(row.tcached)
    return DbWorkload(
        calls=calls, first=first, last=last, days=days, requests_per_day=calls / days, input_tokens=tin / calls,
        output_tokens=tout / calls, cached_share=min(tcached / tin, 1.0) if tin else 0.0,
        top_model=top_row.model if top_row else None, top_provider=top_row.provider if top_row else None,
        mean_latency_ms=float(row.latency) if row.latency is not None else None, priced_models=len(model_rows),
        priced_usd=float(row.spend), priced_tokens=int(row.priced_tokens),
    )  # fmt: skip


def bench_throughput(engine: Any, *, since: datetime | None = None, until: datetime | None = None) -> list[BenchThroughput]:
    """Measured throughput of each self-hosted `bench:*` endpoint in [since, until): its best run (bench_run and
    concurrency tags), highest first (tokens/s, then requests/s).

    Only servers of the app's own (Ollama, vLLM, llama.cpp, another compatible server): an API target's speed says
    nothing of a GPU's. A run's wall time is from its first call's start to its last call's start, plus a mean call's
    latency (for the last call to finish); each run apart, so the time between runs is no part of one.
    """
    from sqlalchemy import and_, func, not_, select

    from ...pricing import SELF_HOSTED_PROVIDERS
    from ...store.schema import records
    from ..simulate.sql import tag_text

    c = records.c
    dialect = engine.dialect.name
    run, concurrency = tag_text(dialect, "bench_run"), tag_text(dialect, "concurrency")
    query = (
        select(
            c.endpoint,
            run.label("run"),
            concurrency.label("concurrency"),
            func.count().label("calls"),
            func.coalesce(func.sum(c.tokens_output), 0).label("tout"),
            func.min(c.timestamp).label("first"),
            func.max(c.timestamp).label("last"),
            func.avg(c.latency_ms).label("latency"),
            func.max(c.model).label("model"),
        )
        .where(and_(_served_filter(since, until), not_(app_traffic()), c.provider.in_(sorted(SELF_HOSTED_PROVIDERS))))
        .group_by(c.endpoint, run, concurrency)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    best: dict[str, BenchThroughput] = {}
    for row in rows:
        seconds = (row.last - row.first).total_seconds() + (float(row.latency or 0.0) / 1000)
        if seconds <= 0:
            continue
        calls = int(row.calls)
        tokens = int(row.tout)
        found = BenchThroughput(
            endpoint=row.endpoint, calls=calls, seconds=seconds, requests_per_s=calls / seconds,
            tokens_per_s=tokens / seconds if tokens else None, model=row.model,
            run=None if row.run is None else str(row.run), concurrency=None if row.concurrency is None else str(row.concurrency),
        )  # fmt: skip
        kept = best.get(row.endpoint)
        if kept is None or _rank(found) < _rank(kept):
            best[row.endpoint] = found
    return sorted(best.values(), key=_rank)


def _rank(b: BenchThroughput) -> tuple[float, float, str]:
    return -(b.tokens_per_s or 0.0), -b.requests_per_s, b.endpoint
