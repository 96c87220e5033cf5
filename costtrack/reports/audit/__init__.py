"""The optimization audit: current state, opportunities detected in the records, a plan, and a cost calculator.

`build_audit` reads the period with a handful of SQL aggregates (run two at a time),
most of them shared with `costtrack simulate` (reports/simulate/): the replay's
totals, daily spend and would-be cache hits, error and fallback counts, and latency
percentiles; then, only for what qualifies, a prompt-caching window and an
output-length window. Everything after that is arithmetic on those aggregates;
nothing loops over records in Python.

Latency percentiles are nearest-rank and exact, computed by reports/stats.py's
`Percentiles` (as `costtrack stats` and `report results` compute theirs): a histogram
of the calls per endpoint in the first round of queries, then a ranking of the few
calls around each percentile in the second.

Each detector either finds opportunities, with the evidence and a projected
saving computed from the records, or says why it found none: nothing is invented.
Monthly figures are the period's amounts x 30 / the days the records span (at least one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine

from ...pricing import PriceBook
from ..simulate import (
    classify_interactivity,
    monthly,
    period_where,
    replay_from,
    replay_queries,
    run_queries,
)
from .appendix import method, per_request_tokens, prices_table, warnings
from .batch import batch
from .calculator import VOLUMES_PER_MONTH, calculator
from .combined import optimized_spend
from .context import AuditContext, error_rate
from .document import Audit, AuditOptions, Column, Finding, Opportunity, Table
from .failures import failures
from .formulas import formula_places
from .model_swap import model_swap
from .models import CHEAPER_MODELS, cheaper_model, min_cacheable_tokens
from .output_waste import output_waste, output_waste_candidates
from .prompt_cache import prompt_cache, prompt_cache_candidates
from .queries import (
    latency_percentiles,
    output_query,
    prompt_cache_query,
    side_query,
    split_side,
)
from .response_cache import response_cache
from .state import cache_status, errors_table, inventory_table, latency_table
from .thresholds import (
    LOW_CACHED_SHARE,
    MIN_CALLS,
    PROMPT_CACHE_LIFETIME_S,
    SHORT_OUTPUT_TOKENS,
    SIMPLE_TASK_OUTPUT_TOKENS,
    SIMPLE_TASK_WORDS,
    VERBOSE_OUTPUT_TOKENS,
    VERBOSE_RATIO,
)
from .unpriced import unpriced, unpriced_table

__all__ = [
    "CHEAPER_MODELS",
    "LOW_CACHED_SHARE",
    "MIN_CALLS",
    "PROMPT_CACHE_LIFETIME_S",
    "SHORT_OUTPUT_TOKENS",
    "SIMPLE_TASK_OUTPUT_TOKENS",
    "SIMPLE_TASK_WORDS",
    "VERBOSE_OUTPUT_TOKENS",
    "VERBOSE_RATIO",
    "VOLUMES_PER_MONTH",
    "Audit",
    "AuditOptions",
    "Column",
    "Finding",
    "Opportunity",
    "Progress",
    "Table",
    "build_audit",
    "cheaper_model",
    "min_cacheable_tokens",
]


Progress = Callable[[str], None]


def build_audit(engine: Engine, book: PriceBook, *, since: datetime | None, until: datetime | None = None,
                options: AuditOptions | None = None, now: datetime | None = None,
                progress: Progress | None = None) -> Audit:  # fmt: skip
    """Read the period and build the audit (the CLI checks first that the period has records)."""
    options = options or AuditOptions()
    now = now or datetime.now(timezone.utc)
    dialect = engine.dialect.name
    where = period_where(since, until)
    step = progress or (lambda _name: None)

    queries = replay_queries(dialect, where, options.cache_ttl)
    latency = latency_percentiles(where)
    queries.update({
        "latency": latency.histogram_query(),
        "side": side_query(dialect, where),
    })  # fmt: skip
    results = run_queries(engine, queries, workers=options.workers, on_done=step)
    rep = replay_from(results, since=since, until=until, cache_ttl=options.cache_ttl)
    at = rep.last or now

    ctx = AuditContext(engine=engine, book=book, rep=rep, at=at, where=where, options=options, dialect=dialect)
    prompt_candidates = prompt_cache_candidates(ctx)
    output_candidates = output_waste_candidates(ctx)
    second: dict[str, Any] = {}
    refine = latency.refine_query(results["latency"])
    if refine is not None:
        second["latency"] = refine
    if prompt_candidates:
        second["prompt_cache"] = prompt_cache_query(dialect, where, prompt_candidates, options.prompt_cache_lifetime)
    if output_candidates:
        second["output"] = output_query(where, output_candidates)
    more = run_queries(engine, second, workers=options.workers, on_done=step) if second else {}

    error_rows, fallback_rows, flag_rows = split_side(results["side"])
    interactivity = classify_interactivity(rep.endpoints(), flag_rows)
    findings = [
        response_cache(ctx),
        prompt_cache(ctx, prompt_candidates, more.get("prompt_cache", [])),
        model_swap(ctx),
        batch(ctx, interactivity),
        output_waste(ctx, output_candidates, more.get("output", [])),
        failures(ctx, error_rows, fallback_rows),
        unpriced(ctx),
    ]
    opportunities = [o for f in findings for o in f.opportunities]
    opportunities.sort(key=lambda o: (o.savings_usd is None, -(o.savings_usd or 0.0), o.title))
    for rank, opp in enumerate(opportunities, start=1):
        opp.rank = rank
    top = [o for o in opportunities if o.savings_usd and o.savings_usd > 0][:3]
    optimized = optimized_spend(ctx, top)
    step("opportunities")

    audit = Audit(
        generated_at=now, since=since, until=until, options=options, replay=rep, baseline_usd=rep.spend_usd,
        baseline_monthly_usd=monthly(rep.spend_usd, rep.days), days=rep.days, span_days=rep.span_days,
        inventory=inventory_table(ctx), latency=latency_table(ctx, latency.result(more.get("latency", []))),
        errors=errors_table(ctx, error_rows), error_rate=error_rate(rep),
        failed_calls=sum(int(r.calls) for r in error_rows if r.status == "error"),
        incomplete_calls=sum(int(r.calls) for r in error_rows if r.status == "incomplete"), cache_status="", cache_lines=[],
        unpriced=unpriced_table(ctx), findings=findings, opportunities=opportunities, top=top,
        optimized_usd=optimized, optimized_monthly_usd=monthly(optimized, rep.days), calculator=Table([]),
        prices=prices_table(ctx, opportunities), per_request_tokens=per_request_tokens(ctx), breakeven={},
        method=[],
    )  # fmt: skip
    audit.latency_histogram = latency.histogram
    audit.spend_known = ctx.spend_known
    audit.per_hour_calls = sum(g.per_hour_calls for g in rep.groups)
    audit.cache_status, audit.cache_lines = cache_status(ctx)
    audit.calculator, audit.breakeven = calculator(ctx, optimized)
    audit.method = method(ctx)
    audit.warnings = warnings(ctx)
    audit.places = formula_places(audit)
    return audit
