"""Reading the records: a workload and measured GPU throughput from the `records` table (`--from-db`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..stats import BENCH_PREFIX, app_traffic
from .inputs import ApiPrice, Throughput, Workload, effective_rates

if TYPE_CHECKING:
    from ...pricing import PriceBook

__all__ = ["BENCH_PREFIX", "BenchThroughput", "DbWorkload", "bench_throughput", "workload_from_db"]


@dataclass(frozen=True)
class DbWorkload:
    """The usage profile of the stored calls: volume, mean sizes, cached share, most-called priced model, and the
    token sums of each priced model (`models`: provider, model, input, cached input, output; most-called first)."""

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
    models: tuple[tuple[str, str, int, int, int], ...] = ()

    def priced_today(self, book: PriceBook, at: datetime) -> list[tuple[str, str]]:
        """The recorded models (provider, model) that have a per-token price at `at`, most-called first."""
        found = []
        for provider, model, *_ in self.models:
            rates = book.rates(provider, model, at)
            if rates is not None and rates.per_hour is None:
                found.append((provider, model))
        return found

    def mix_price(self, book: PriceBook, at: datetime, input_tokens: float | None = None) -> ApiPrice | None:
        """The API side of an app whose priced calls went to several models: each bucket's rate (input, cached input,
        output, and the Batch API's) is the models' catalog rates at `at` (of the long-context tier a request of
        `input_tokens` reaches) weighted by their recorded tokens in that bucket, so a workload's flags (--cached-share,
        --output-tokens) price as the mix would. None: fewer than two models priced per token today (see priced_today)."""
        priced = []
        for provider, model, tin, cached, tout in self.models:
            rates = book.rates(provider, model, at)
            if rates is None or rates.per_hour is not None:
                continue
            batch = book.batch_rates(provider, model, at)
            assert batch is not None  # the model has rates
            priced.append(((max(tin - cached, 0), cached, tout), effective_rates(rates, input_tokens),
                           effective_rates(batch, input_tokens)))
        if len(priced) < 2:
            return None
        rates, batch_rates = [], []
        for i, key in enumerate(("input", "cached_input", "output")):
            weights = [tokens[i] for tokens, *_ in priced]
            if not any(weights):
                weights = [sum(tokens) or 1 for tokens, *_ in priced]  # no such token recorded: by each model's tokens
            total = Decimal(sum(weights))
            rates.append(sum(Decimal(w) * standard[key] for w, (_, standard, _) in zip(weights, priced)) / total)
            batch_rates.append(sum(Decimal(w) * batched[key] for w, (_, _, batched) in zip(weights, priced)) / total)
        return ApiPrice(model=f"recorded mix of {len(priced)} models", input=rates[0], cached_input=rates[1],
                        output=rates[2], source="catalog rates of the recorded models, weighted by their tokens",
                        batch=(batch_rates[0], batch_rates[1], batch_rates[2]))  # fmt: skip

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
            "models": [{"provider": p, "model": m, "input_tokens": i, "cached_input_tokens": c, "output_tokens": o}
                       for p, m, i, c, o in self.models],
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
    from sqlalchemy import and_, func, select

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
    ).where(where)
    models = (
        select(c.provider, c.model, func.count().label("n"), func.sum(c.tokens_input).label("tin"),
               func.sum(c.tokens_cached_input).label("tcached"), func.sum(c.tokens_output).label("tout"))
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
        mean_latency_ms=float(row.latency) if row.latency is not None else None,
        models=tuple((m.provider, m.model, int(m.tin or 0), int(m.tcached or 0), int(m.tout or 0)) for m in model_rows),
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
