"""The optimization audit: current state, opportunities detected in the records, a plan, and a cost calculator.

`build_audit` reads the period with a handful of SQL aggregates (run two at a time),
most of them shared with `costtrack simulate` (reports/simulate.py): the replay's
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

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, and_, case, func, or_, select
from sqlalchemy.sql import ColumnElement

from ..format import count, duration, pct, rate, usd
from ..pricing import PriceBook
from ..store.schema import records
from . import calc
from .simulate import (
    GAP_TOLERANCE_S,
    Group,
    Interactivity,
    Replay,
    Scenario,
    Simulation,
    Swap,
    classify_interactivity,
    epoch_of,
    has_tag,
    monthly,
    period_where,
    replay_from,
    replay_queries,
    run_queries,
    simulate,
    tag_text,
)
from .stats import PERCENTILES, PercentileResult, Percentiles

__all__ = [
    "AuditOptions",
    "Audit",
    "Opportunity",
    "Finding",
    "Table",
    "Column",
    "build_audit",
    "CHEAPER_MODELS",
    "SHORT_OUTPUT_TOKENS",
    "min_cacheable_tokens",
]

#: A cheaper model of the same family for each expensive one (matched on the requested model, date suffix ignored).
CHEAPER_MODELS: dict[str, str] = {
    "gpt-4o": "gpt-4o-mini",
    "chatgpt-4o": "gpt-4o-mini",
    "gpt-4-turbo": "gpt-4o-mini",
    "gpt-4": "gpt-4o-mini",
    "gpt-4.1": "gpt-4.1-mini",
    "gpt-5": "gpt-5-mini",
    "gpt-5.1": "gpt-5-mini",
    "o1": "o4-mini",
    "o3": "o4-mini",
    "claude-opus-4-5": "claude-sonnet-4-5",
    "claude-opus-4-1": "claude-sonnet-4-5",
    "claude-opus-4": "claude-sonnet-4-5",
    "claude-3-opus": "claude-sonnet-4-5",
    "claude-sonnet-4-5": "claude-haiku-4-5",
    "claude-sonnet-4": "claude-haiku-4-5",
    "claude-3-7-sonnet": "claude-haiku-4-5",
    "claude-3-5-sonnet": "claude-haiku-4-5",
    "gemini-2.5-pro": "gemini-2.5-flash",
}
#: Mean output at or under which an endpoint's answers count as short (a label, a few fields, a sentence).
SHORT_OUTPUT_TOKENS = 50
#: Mean output above which a classification-like endpoint's answers count as long.
SIMPLE_TASK_OUTPUT_TOKENS = 50
#: Mean output and output/input ratio from which any endpoint's answers count as verbose.
VERBOSE_OUTPUT_TOKENS = 200
VERBOSE_RATIO = 1.0
#: Fewest served calls a group needs before a detector draws a conclusion from it.
MIN_CALLS = 10
#: Below this cached share of input an endpoint counts as not using the provider's prompt cache.
LOW_CACHED_SHARE = 0.5
#: How long a provider keeps a prompt prefix warm by default (OpenAI: 5-10 minutes; Anthropic: 5 minutes).
PROMPT_CACHE_LIFETIME_S = 300.0
#: Endpoint name words of tasks a small model does well (course: "Simple: classification, extraction, formatting").
SIMPLE_TASK_WORDS = frozenset({
    "classify", "classification", "classifier", "label", "labels", "labeling", "labelling", "tag", "tagging",
    "categorize", "categorise", "category", "categories", "intent", "sentiment", "detect", "detection",
    "moderate", "moderation", "extract", "extraction", "route", "router", "routing", "triage", "score", "scoring",
})  # fmt: skip
VOLUMES_PER_MONTH = (100, 1_000, 10_000, 100_000)

_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest|preview)$")


def min_cacheable_tokens(model: str) -> int:
    """The shortest prefix a provider caches for `model` (OpenAI and most Claude models: 1,024 tokens)."""
    name = model.lower()
    if any(k in name for k in ("haiku-4-5", "opus-4-5", "opus-4-6")):
        return 4096
    if "haiku" in name:
        return 2048
    return 1024


def _family(model: str) -> str:
    name = model.lower().split("/")[-1]
    while True:
        stripped = _DATE_SUFFIX.sub("", name)
        if stripped == name:
            return name
        name = stripped


def cheaper_model(model: str) -> str | None:
    """The cheaper counterpart of `model` in CHEAPER_MODELS, if any."""
    return CHEAPER_MODELS.get(_family(model))


def _words(endpoint: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", endpoint.lower()) if w}


# --------------------------------------------------------------------------- document pieces


@dataclass(frozen=True)
class Column:
    """A table column: its title and how its cells are formatted (a key of format.FORMATS, or text)."""

    title: str
    fmt: str = "text"

    @property
    def right(self) -> bool:
        return self.fmt != "text"


@dataclass
class Table:
    """Rows of raw values; the template formats each cell with its column's format."""

    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rows)


@dataclass
class Opportunity:
    """One thing to change, found in the records, with what it would save."""

    kind: str
    title: str
    description: str
    evidence: list[str]
    savings_usd: float | None  # over the period; None: cannot be quantified
    monthly_usd: float | None
    share: float | None  # of the period's spend
    effort: str
    effort_note: str
    notes: list[str]
    assumption: str
    metric: str  # success metric, "baseline → target"
    risks: list[str]
    evidence_table: Table | None = None
    per_endpoint: dict[str, float] = field(default_factory=dict)  # savings over the period, by endpoint
    scenario: Scenario | None = None  # the what-if on the simulate engine, when it is one
    command: str | None = None  # the `costtrack simulate` command that reproduces the figure
    rank: int = 0


@dataclass
class Finding:
    """What one detector found: opportunities, or why none."""

    kind: str
    name: str
    opportunities: list[Opportunity] = field(default_factory=list)
    nothing: str | None = None


@dataclass(frozen=True)
class AuditOptions:
    cache_ttl: float = 3600.0
    hardware: str = "rtx4090"
    hours_per_day: float = 8.0
    prompt_cache_lifetime: float = PROMPT_CACHE_LIFETIME_S
    workers: int = 2
    period_args: str = ""  # how the CLI named the period (--since ...), for the commands the audit prints


@dataclass
class Audit:
    """Everything the audit template shows."""

    generated_at: datetime
    since: datetime | None
    until: datetime | None
    options: AuditOptions
    replay: Replay
    baseline_usd: float
    baseline_monthly_usd: float
    days: float
    span_days: float
    inventory: Table
    latency: Table
    errors: Table
    error_rate: float
    cache_status: str
    cache_lines: list[str]
    unpriced: Table
    findings: list[Finding]
    opportunities: list[Opportunity]
    top: list[Opportunity]
    optimized_usd: float
    optimized_monthly_usd: float
    calculator: Table
    prices: Table
    per_request_tokens: Table
    breakeven: dict[str, Any]
    method: list[str]
    charts: list[Any] = field(default_factory=list)
    charts_note: str | None = None
    #: Timed calls per endpoint and latency bucket (stats.bucket_range): the latency distribution chart's data.
    latency_histogram: dict[str, dict[int, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return self.replay.calls

    @property
    def requests(self) -> int:
        return self.replay.requests

    @property
    def nothing_found(self) -> list[Finding]:
        return [f for f in self.findings if not f.opportunities]

    @property
    def savings_monthly_usd(self) -> float:
        return self.baseline_monthly_usd - self.optimized_monthly_usd


# --------------------------------------------------------------------------- queries of the audit


def _latency(where: ColumnElement[bool]) -> Percentiles:
    """Latency percentiles per endpoint and over all, of the calls that reached a provider (cache hits excluded)."""
    return Percentiles(and_(where, records.c.cache_hit.is_(False)), records.c.endpoint, percentiles=PERCENTILES)


def _side_query(dialect: str, where: ColumnElement[bool]) -> Any:
    """One scan for the rare rows: failed and cut calls by error type, fallback escalations, `interactive` tags."""
    c = records.c
    reason_tagged = has_tag(dialect, "fallback_reason")
    flag_tagged = has_tag(dialect, "interactive")
    reason = case((reason_tagged, tag_text(dialect, "fallback_reason"))).label("reason")
    flag = case((flag_tagged, tag_text(dialect, "interactive"))).label("flag")
    return (
        select(c.endpoint, c.status, c.error_type, reason, flag, func.count().label("calls"),
               func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"))
        .where(where, or_(c.status != "ok", reason_tagged, flag_tagged))
        .group_by(c.endpoint, c.status, c.error_type, reason, flag)
    )  # fmt: skip


@dataclass(frozen=True)
class _Row:
    endpoint: str
    status: str = ""
    error_type: str = ""
    reason: str = ""
    flag: str = ""
    calls: int = 0
    spend: float = 0.0


def _split_side(rows: list[Any]) -> tuple[list[_Row], list[_Row], list[_Row]]:
    """The side query's rows → (errors by endpoint/status/type, fallback escalations by reason, interactive flags)."""
    errors: dict[tuple[str, str, str], list[float]] = {}
    fallback: dict[tuple[str, str], list[float]] = {}
    flags: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        n, spend = int(r.calls), float(r.spend)
        for acc, key, wanted in ((errors, (r.endpoint, r.status, r.error_type or "(none)"), r.status != "ok"),
                                 (fallback, (r.endpoint, str(r.reason)), r.reason is not None),
                                 (flags, (r.endpoint, str(r.flag)), r.flag is not None)):  # fmt: skip
            if wanted:
                v = acc.setdefault(key, [0, 0.0])  # type: ignore[attr-defined]
                v[0] += n
                v[1] += spend
    return (
        [_Row(e, status=s, error_type=t, calls=int(v[0]), spend=v[1]) for (e, s, t), v in errors.items()],
        [_Row(e, reason=x, calls=int(v[0]), spend=v[1]) for (e, x), v in fallback.items()],
        [_Row(e, flag=x, calls=int(v[0]), spend=v[1]) for (e, x), v in flags.items()],
    )


def _pairs(groups: list[Group]) -> ColumnElement[bool]:
    c = records.c
    return or_(*(and_(c.endpoint == g.endpoint, c.provider == g.provider,
                      func.coalesce(c.model, c.model_requested, "(unknown)") == g.model) for g in groups))  # fmt: skip


def _prompt_cache_query(dialect: str, where: ColumnElement[bool], candidates: list[tuple[Group, int]],
                        lifetime: float) -> Any:  # fmt: skip
    """Per candidate group: calls within `lifetime` of the previous one (a warm cache), and their uncached prefix tokens."""
    c = records.c
    ts = epoch_of(dialect, c.timestamp)
    model = func.coalesce(c.model, c.model_requested, "(unknown)")
    prefix = case(*((and_(c.endpoint == g.endpoint, c.provider == g.provider, model == g.model), p)
                    for g, p in candidates), else_=0)  # fmt: skip
    served = and_(where, c.status == "ok", c.cache_hit.is_(False), _pairs([g for g, _ in candidates]))
    inner = select(
        c.endpoint, c.provider, model.label("model"), prefix.label("prefix"), c.tokens_cached_input,
        (ts - func.lag(ts).over(partition_by=(c.endpoint, c.provider, model), order_by=(c.timestamp, c.id))).label("gap"),
    ).where(served).subquery()  # fmt: skip
    r = inner.c
    warm = and_(r.gap.is_not(None), r.gap <= float(lifetime) + GAP_TOLERANCE_S)
    missing = r.prefix - r.tokens_cached_input
    return (
        select(r.endpoint, r.provider, r.model, func.count().label("calls"),
               func.coalesce(func.sum(case((warm, 1), else_=0)), 0).label("warm"),
               func.coalesce(func.sum(case((and_(warm, missing > 0), missing), else_=0)), 0).label("warm_tokens"))
        .group_by(r.endpoint, r.provider, r.model)
    )  # fmt: skip


def _output_query(where: ColumnElement[bool], candidates: list[Group]) -> Any:
    """Per candidate group: the median output (nearest rank) and the output tokens above it."""
    c = records.c
    model = func.coalesce(c.model, c.model_requested, "(unknown)")
    served = and_(where, c.status == "ok", c.cache_hit.is_(False), _pairs(candidates))
    part = (c.endpoint, c.provider, model)
    ranked = select(
        c.endpoint, c.provider, model.label("model"), c.tokens_output.label("out"),
        func.row_number().over(partition_by=part, order_by=c.tokens_output).label("rn"),
        func.count().over(partition_by=part).label("n"),
    ).where(served).subquery()  # fmt: skip
    r = ranked.c
    medians = (
        select(r.endpoint, r.provider, r.model, func.min(case((r.rn >= r.n * 0.5, r.out))).label("p50"),
               func.max(r.n).label("n"))
        .group_by(r.endpoint, r.provider, r.model)
        .subquery()
    )  # fmt: skip
    m = medians.c
    joined = ranked.join(medians, and_(r.endpoint == m.endpoint, r.provider == m.provider, r.model == m.model))
    excess = r.out - m.p50
    return (
        select(r.endpoint, r.provider, r.model, func.max(m.p50).label("p50"), func.count().label("calls"),
               func.coalesce(func.sum(case((excess > 0, excess), else_=0)), 0).label("excess"),
               func.max(r.out).label("max_out"))
        .select_from(joined)
        .group_by(r.endpoint, r.provider, r.model)
    )  # fmt: skip


# --------------------------------------------------------------------------- the audit


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
    latency = _latency(where)
    queries.update({
        "latency": latency.histogram_query(),
        "side": _side_query(dialect, where),
    })  # fmt: skip
    results = run_queries(engine, queries, workers=options.workers, on_done=step)
    rep = replay_from(results, since=since, until=until, cache_ttl=options.cache_ttl)
    at = rep.last or now

    ctx = _Context(engine=engine, book=book, rep=rep, at=at, where=where, options=options, dialect=dialect)
    prompt_candidates = ctx.prompt_cache_candidates()
    output_candidates = ctx.output_candidates()
    second: dict[str, Any] = {}
    refine = latency.refine_query(results["latency"])
    if refine is not None:
        second["latency"] = refine
    if prompt_candidates:
        second["prompt_cache"] = _prompt_cache_query(dialect, where, prompt_candidates, options.prompt_cache_lifetime)
    if output_candidates:
        second["output"] = _output_query(where, output_candidates)
    more = run_queries(engine, second, workers=options.workers, on_done=step) if second else {}

    error_rows, fallback_rows, flag_rows = _split_side(results["side"])
    interactivity = classify_interactivity(rep.endpoints(), flag_rows)
    findings = [
        ctx.response_cache(),
        ctx.prompt_cache(prompt_candidates, more.get("prompt_cache", [])),
        ctx.model_swap(),
        ctx.batch(interactivity),
        ctx.output_waste(output_candidates, more.get("output", [])),
        ctx.failures(error_rows, fallback_rows),
        ctx.unpriced(),
    ]
    opportunities = [o for f in findings for o in f.opportunities]
    opportunities.sort(key=lambda o: (o.savings_usd is None, -(o.savings_usd or 0.0), o.title))
    for rank, opp in enumerate(opportunities, start=1):
        opp.rank = rank
    top = [o for o in opportunities if o.savings_usd and o.savings_usd > 0][:3]
    optimized = ctx.optimized_spend(top)
    step("opportunities")

    audit = Audit(
        generated_at=now, since=since, until=until, options=options, replay=rep, baseline_usd=rep.spend_usd,
        baseline_monthly_usd=monthly(rep.spend_usd, rep.days), days=rep.days, span_days=rep.span_days,
        inventory=ctx.inventory(), latency=ctx.latency(latency.result(more.get("latency", []))),
        errors=ctx.errors_table(error_rows), error_rate=_error_rate(rep), cache_status="", cache_lines=[],
        unpriced=ctx.unpriced_table(), findings=findings, opportunities=opportunities, top=top,
        optimized_usd=optimized, optimized_monthly_usd=monthly(optimized, rep.days), calculator=Table([]),
        prices=ctx.prices_table(opportunities), per_request_tokens=ctx.per_request_tokens(), breakeven={},
        method=[],
    )  # fmt: skip
    audit.latency_histogram = latency.histogram
    audit.cache_status, audit.cache_lines = ctx.cache_status()
    audit.calculator, audit.breakeven = ctx.calculator(optimized)
    audit.method = ctx.method()
    audit.warnings = ctx.warnings()
    return audit


def _error_rate(rep: Replay) -> float:
    calls = rep.calls
    return sum(g.errors for g in rep.groups) / calls if calls else 0.0


@dataclass
class _Use:
    """One requested model on one endpoint (its groups merged)."""

    endpoint: str
    model_key: str
    provider: str
    model: str  # the answered model that served the most calls
    best: int = 0
    served: int = 0
    served_input: int = 0
    served_output: int = 0
    live_spend_usd: float = 0.0
    requests: int = 0


@dataclass
class _Context:
    engine: Engine
    book: PriceBook
    rep: Replay
    at: datetime
    where: ColumnElement[bool]
    options: AuditOptions
    dialect: str
    _rates: dict[tuple[str, str], dict[str, Decimal] | None] = field(default_factory=dict)

    # -- helpers

    @property
    def baseline(self) -> float:
        return self.rep.spend_usd

    def monthly(self, amount: float) -> float:
        return monthly(amount, self.rep.days)

    def share(self, amount: float) -> float | None:
        return amount / self.baseline if self.baseline else None

    def rates(self, provider: str | None, model: str) -> dict[str, Decimal] | None:
        key = (provider or "", model)
        if key not in self._rates:
            found = self.book.rates(provider, model, self.at)
            self._rates[key] = None if found is None or found.per_hour is not None else found.effective()
        return self._rates[key]

    def opportunity(self, *, savings: float | None, per_endpoint: dict[str, float] | None = None,
                    **kw: Any) -> Opportunity:  # fmt: skip
        return Opportunity(
            savings_usd=savings, monthly_usd=None if savings is None else self.monthly(savings),
            share=None if savings is None else self.share(savings), per_endpoint=per_endpoint or {}, **kw,
        )  # fmt: skip

    def by_endpoint(self) -> dict[str, list[Group]]:
        out: dict[str, list[Group]] = {}
        for g in self.rep.groups:
            out.setdefault(g.endpoint, []).append(g)
        return out

    def command(self, levers: str) -> str:
        period = f" {self.options.period_args}" if self.options.period_args else ""
        return f"costtrack simulate {levers}{period}"

    # -- current state

    def inventory(self) -> Table:
        merged: dict[tuple[str, str], list[Any]] = {}
        for g in self.rep.groups:
            row = merged.setdefault((g.endpoint, g.model_key), [g.endpoint, g.model_key, 0, 0, 0, 0, 0.0, 0.0])
            row[2] += g.calls
            row[3] += g.tokens_input
            row[4] += g.tokens_output
            row[5] += g.tokens_cached_input
            row[6] += g.spend_usd
        rows = sorted(merged.values(), key=lambda r: (-r[6], -r[2], r[0], r[1]))
        for row in rows:
            row[7] = self.share(row[6])
        total = ["**Total**", "", self.rep.calls, sum(g.tokens_input for g in self.rep.groups),
                 sum(g.tokens_output for g in self.rep.groups), sum(g.tokens_cached_input for g in self.rep.groups),
                 self.baseline, 1.0 if self.baseline else None]  # fmt: skip
        columns = [Column("Endpoint"), Column("Model"), Column("Calls", "count"), Column("Tokens in", "count"),
                   Column("Tokens out", "count"), Column("Cached in", "count"), Column("Spend", "usd"),
                   Column("Share of spend", "pct")]  # fmt: skip
        return Table(columns, [*rows, total])

    def latency(self, percentiles: PercentileResult) -> Table:
        stats: dict[str, list[Any]] = {}
        for g in self.rep.groups:
            acc = stats.setdefault(g.endpoint, [0, 0.0, 0, 0])
            acc[0] += g.latency_n
            acc[1] += g.latency_sum_ms
            acc[2] += g.calls
            acc[3] += g.errors
        out: list[list[Any]] = []
        for endpoint in sorted(stats):
            n, total, calls, errors = stats[endpoint]
            p = percentiles.groups.get(endpoint, {})
            out.append([endpoint, n, total / n if n else None, *(p.get(x) for x in PERCENTILES),
                        errors / calls if calls else None])  # fmt: skip
        n = sum(v[0] for v in stats.values())
        p = percentiles.overall
        out.append(["**All endpoints**", n, sum(v[1] for v in stats.values()) / n if n else None,
                    *(p.get(x) for x in PERCENTILES), _error_rate(self.rep)])  # fmt: skip
        columns = [Column("Endpoint"), Column("Timed calls", "count"), Column("Mean", "ms"), Column("p50", "ms"),
                   Column("p95", "ms"), Column("p99", "ms"), Column("Error rate", "pct")]  # fmt: skip
        return Table(columns, out)

    def errors_table(self, rows: list[Any]) -> Table:
        out = [[r.endpoint, r.status, r.error_type, int(r.calls), float(r.spend)] for r in rows]
        out.sort(key=lambda r: (-r[3], r[0], r[2]))
        return Table([Column("Endpoint"), Column("Status"), Column("Error type"), Column("Calls", "count"),
                      Column("Cost", "usd")], out)  # fmt: skip

    def cache_status(self) -> tuple[str, list[str]]:
        rep = self.rep
        hits = sum(g.cache_hits for g in rep.groups)
        saved = sum(g.saved_usd for g in rep.groups)
        tin = sum(g.tokens_input for g in rep.groups)
        cached = sum(g.tokens_cached_input for g in rep.groups)
        lines: list[str] = []
        if hits:
            lines.append(f"Response cache: {count(hits)} of {count(rep.calls)} calls answered from the cache "
                         f"({pct(hits / rep.calls)}), saving {usd(saved)}.")  # fmt: skip
        else:
            lines.append("Response cache: none (no call was answered from costtrack's response cache).")
        if cached:
            using = sorted({g.endpoint for g in rep.groups if g.cached_share >= 0.05})
            lines.append(f"Provider prompt caching: {pct(cached / tin)} of input tokens were cache reads"
                         + (f" (on {', '.join(using)})" if using else "") + ".")  # fmt: skip
        else:
            lines.append("Provider prompt caching: none (no input token was read from a provider's prompt cache).")
        status = "sophisticated" if hits and cached else "basic" if hits or cached else "none"
        return status, lines

    def unpriced_table(self) -> Table:
        merged: dict[tuple[str, str], list[Any]] = {}
        for g in self.rep.groups:
            if g.unpriced_calls:
                row = merged.setdefault((g.provider, g.model), [g.model, g.provider, 0, 0, set()])
                row[2] += g.unpriced_calls
                row[3] += g.tokens_input + g.tokens_output
                row[4].add(g.endpoint)
        rows = [[m, p, n, t, ", ".join(sorted(e))] for m, p, n, t, e in merged.values()]
        rows.sort(key=lambda r: (-r[2], r[0]))
        return Table([Column("Model"), Column("Provider"), Column("Unpriced calls", "count"), Column("Tokens", "count"),
                      Column("Endpoints")], rows)  # fmt: skip

    # -- detectors

    def response_cache(self) -> Finding:
        ttl = self.options.cache_ttl
        name = "Exact-duplicate requests → response caching"
        finding = Finding("response-cache", name)
        sim = simulate(self.rep, Scenario(cache_ttl=ttl), self.book)
        rows = [e for e in sim.endpoints if e.would_hit]
        if not rows:
            finding.nothing = (f"no successful request was sent again within {duration(ttl)} of the same request "
                               "(same request_hash)")  # fmt: skip
            return finding
        savings = sim.total.cache_savings_usd
        if savings <= 0:
            finding.nothing = (f"{count(sim.total.would_hit)} calls repeated a request within {duration(ttl)}, "
                               "but they cost nothing (unpriced or free), so caching them saves no money")  # fmt: skip
            return finding
        table = Table([Column("Endpoint"), Column("Calls", "count"), Column("Would-be hits", "count"),
                       Column("Hit rate", "pct"), Column("Saved", "usd"), Column("Saved / month", "usd")],
                      [[e.endpoint, e.calls, e.would_hit, e.would_hit / e.calls if e.calls else None, e.cache_savings_usd,
                        self.monthly(e.cache_savings_usd)] for e in rows])  # fmt: skip
        top = sorted(rows, key=lambda e: -e.cache_savings_usd)
        main = [e.endpoint for e in top if e.cache_savings_usd >= 0.1 * savings] or [top[0].endpoint]
        hit_rate = sim.total.would_hit / self.rep.calls
        finding.opportunities.append(self.opportunity(
            kind="response-cache",
            title=f"Response cache (TTL {duration(ttl)}) on {', '.join(main)}",
            description=("The same request (same request_hash: provider, operation and body) is sent again while "
                         "its answer would still be fresh; a response cache answers it without calling the provider."),
            evidence=[
                f"Replaying the log with a {duration(ttl)} TTL: {count(sim.total.would_hit)} of {count(self.rep.calls)} "
                f"calls ({pct(hit_rate)}) repeat a request answered less than {duration(ttl)} earlier.",
                *(f"{e.endpoint}: {count(e.would_hit)} of {count(e.calls)} calls would be hits, "
                  f"{usd(e.cache_savings_usd)} of {usd(e.actual_usd)}."
                  for e in top[:4] if e.cache_savings_usd >= 0.01 * savings),
            ],
            evidence_table=table, savings=savings, per_endpoint={e.endpoint: e.cache_savings_usd for e in rows},
            effort="Low", effort_note="one argument to wrap(); Redis when several processes serve the app",
            notes=[
                f"`client = costtrack.wrap(OpenAI(), cache=costtrack.MemoryCache(ttl={int(ttl)}))` on the clients of "
                f"{', '.join(main)}; `costtrack.RedisCache(url=..., ttl={int(ttl)})` to share it between processes.",
                "Cache only where the same request must get the same answer (temperature 0, classification, "
                "extraction, embeddings, summaries of unchanged documents); leave free-form chat out.",
                "Invalidation: the TTL bounds staleness; bump the cache namespace when prompts or source data change.",
                "A longer TTL saves more and serves staler answers: compare with `costtrack simulate --cache-ttl 30m`, "
                "`--cache-ttl 24h` before choosing.",
            ],
            assumption=("A call is a would-be hit when a successful call with the same request_hash started at most "
                        f"{duration(ttl)} before it (each hit counts as refreshing the entry: an upper bound for "
                        "caches whose entries expire a fixed time after they were stored)."),
            metric=(f"response-cache hit rate on {', '.join(main)}: "
                    f"{pct(self.actual_hit_rate(main))} → {pct(self.simulated_hit_rate(sim, main))}; "
                    f"monthly cost {usd(self.monthly(self.baseline))} → "
                    f"{usd(self.monthly(self.baseline - savings))}"),
            risks=["Stale answers after the prompt or the underlying data change (mitigation: TTL, namespace bump "
                   "on deploy).", "Caching a non-deterministic task changes behaviour (mitigation: enable per "
                   "endpoint, only where answers may repeat)."],
            scenario=Scenario(cache_ttl=ttl), command=self.command(f"--cache-ttl {duration(ttl)}"),
        ))  # fmt: skip
        return finding

    def actual_hit_rate(self, endpoints: list[str]) -> float | None:
        groups = [g for g in self.rep.groups if g.endpoint in endpoints]
        calls = sum(g.calls for g in groups)
        return sum(g.cache_hits for g in groups) / calls if calls else None

    def simulated_hit_rate(self, sim: Simulation, endpoints: list[str]) -> float | None:
        rows = [e for e in sim.endpoints if e.endpoint in endpoints]
        calls = sum(e.calls for e in rows)
        actual = sum(g.cache_hits for g in self.rep.groups if g.endpoint in endpoints)
        return (sum(e.would_hit for e in rows) + actual) / calls if calls else None

    def prompt_cache_candidates(self) -> list[tuple[Group, int]]:
        out: list[tuple[Group, int]] = []
        for g in self.rep.groups:
            if g.served < 2 or g.min_input is None or g.cached_share >= LOW_CACHED_SHARE:
                continue
            if g.min_input < min_cacheable_tokens(g.model):
                continue
            rates = self.rates(g.provider, g.model)
            if rates is None or rates["cached_input"] >= rates["input"]:
                continue
            out.append((g, g.min_input))
        return out

    def prompt_cache(self, candidates: list[tuple[Group, int]], rows: list[Any]) -> Finding:
        finding = Finding("prompt-cache", "Long repeated prompt prefixes → provider prompt caching")
        lifetime = self.options.prompt_cache_lifetime
        if not candidates:
            finding.nothing = self._prompt_cache_none()
            return finding
        found = {(r.endpoint, r.provider, r.model): r for r in rows}
        table_rows: list[list[Any]] = []
        per_endpoint: dict[str, float] = {}
        evidence: list[str] = []
        total = 0.0
        for g, prefix in candidates:
            r = found.get((g.endpoint, g.provider, g.model))
            rates = self.rates(g.provider, g.model)
            if r is None or rates is None:
                continue
            warm, tokens = int(r.warm), int(r.warm_tokens)
            cold = int(r.calls) - warm
            read_saving = float(Decimal(tokens) * (rates["input"] - rates["cached_input"]) / Decimal(1_000_000))
            write_premium = float(Decimal(cold * prefix) * max(rates["cache_write"] - rates["input"], Decimal(0))
                                  / Decimal(1_000_000))  # fmt: skip
            saving = read_saving - write_premium
            if saving <= 0:
                continue
            total += saving
            per_endpoint[g.endpoint] = per_endpoint.get(g.endpoint, 0.0) + saving
            table_rows.append([g.endpoint, g.model, g.served, g.served_input / g.served, prefix, g.cached_share, warm,
                               saving, self.monthly(saving)])  # fmt: skip
            evidence.append(
                f"{g.endpoint} on {g.model}: {count(g.served)} calls of {count(g.served_input / g.served)} input "
                f"tokens on average, never fewer than {count(prefix)}; only {pct(g.cached_share)} of input was read "
                f"from the prompt cache; {count(warm)} calls came within {duration(lifetime)} of the previous one "
                f"(a warm cache)."
            )
        if not table_rows:
            finding.nothing = (f"endpoints with long prompts were found, but too few of their calls come within "
                               f"{duration(lifetime)} of each other for cache reads to outweigh cache writes")  # fmt: skip
            return finding
        table = Table([Column("Endpoint"), Column("Model"), Column("Calls", "count"), Column("Mean input", "count"),
                       Column("Shared prefix (est.)", "count"), Column("Cached share", "pct"),
                       Column("Warm calls", "count"), Column("Saved", "usd"), Column("Saved / month", "usd")],
                      table_rows)  # fmt: skip
        endpoints = sorted(per_endpoint, key=lambda e: -per_endpoint[e])
        finding.opportunities.append(self.opportunity(
            kind="prompt-cache",
            title=f"Provider prompt caching on {', '.join(endpoints)}",
            description=("Calls on these endpoints carry a long prompt that is sent again and again, but little of "
                         "it is read from the provider's prompt cache, where it would cost a fraction of the input rate."),
            evidence=evidence, evidence_table=table, savings=total, per_endpoint=per_endpoint,
            effort="Low", effort_note="reorder the prompt; one cache_control marker on Anthropic",
            notes=[
                "Put the static part first (system prompt, instructions, examples, reference documents) and the "
                "per-request part last: providers cache the longest identical prefix.",
                "OpenAI caches prefixes of 1,024 tokens or more automatically; on Anthropic mark the end of the "
                "static part with `\"cache_control\": {\"type\": \"ephemeral\"}` (5-minute cache; `\"ttl\": \"1h\"` "
                "for sparse traffic, at twice the input rate for writes).",
                "Measure with `costtrack stats --by endpoint`: the cached input column should rise.",
            ],
            assumption=("Only token counts are stored (not prompts, unless store_content=True), so the shared prefix "
                        "is estimated as the smallest prompt seen on the endpoint and model: a system prompt sent with "
                        "every call is at most that long. Check that the prompts do start with the same text. A call "
                        f"reads the cache when the previous call on the endpoint came within {duration(lifetime)}; "
                        "the other calls write it (Anthropic bills writes at 1.25x the input rate, OpenAI does not)."),
            metric=(f"cached share of input on {', '.join(endpoints)}: "
                    f"{pct(self._cached_share(endpoints))} → {pct(self._target_cached_share(candidates, rows))}"),
            risks=["A prompt that changes early (a timestamp or user name at the top) never hits the cache "
                   "(mitigation: move variable parts to the end).",
                   "Anthropic cache writes cost more than plain input: with sparse traffic a 1-hour cache or none "
                   "is cheaper (mitigation: compare cached input before and after)."],
        ))  # fmt: skip
        return finding

    def _prompt_cache_none(self) -> str:
        long_ones = [g for g in self.rep.groups if g.min_input and g.min_input >= min_cacheable_tokens(g.model)]
        if not long_ones:
            return ("no endpoint sends prompts long enough for a provider to cache (every endpoint has calls "
                    "under 1,024 input tokens, the usual minimum)")  # fmt: skip
        cached = [g for g in long_ones if g.cached_share >= LOW_CACHED_SHARE]
        if cached and len(cached) == len(long_ones):
            names = ", ".join(sorted({g.endpoint for g in cached}))
            return f"the endpoints with long prompts ({names}) already read most of their input from the prompt cache"
        return ("the endpoints with long prompts cannot use it: their model has no cheaper cached-input rate, or too "
                "few of their calls repeat")  # fmt: skip

    def _cached_share(self, endpoints: list[str]) -> float | None:
        groups = [g for g in self.rep.groups if g.endpoint in endpoints]
        tin = sum(g.tokens_input for g in groups)
        return sum(g.tokens_cached_input for g in groups) / tin if tin else None

    def _target_cached_share(self, candidates: list[tuple[Group, int]], rows: list[Any]) -> float | None:
        found = {(r.endpoint, r.provider, r.model): r for r in rows}
        tin = extra = 0
        for g, _ in candidates:
            r = found.get((g.endpoint, g.provider, g.model))
            tin += g.tokens_input
            extra += int(r.warm_tokens) if r is not None else 0
        cached = sum(g.tokens_cached_input for g, _ in candidates)
        return (cached + extra) / tin if tin else None

    def uses(self) -> list[_Use]:
        """The groups merged per (endpoint, requested model): a model's snapshots and failed calls together."""
        merged: dict[tuple[str, str], _Use] = {}
        for g in self.rep.groups:
            u = merged.get((g.endpoint, g.model_key))
            if u is None:
                u = merged[(g.endpoint, g.model_key)] = _Use(g.endpoint, g.model_key, g.provider, g.model)
            if g.served > u.best:
                u.provider, u.model, u.best = g.provider, g.model, g.served
            u.served += g.served
            u.served_input += g.served_input
            u.served_output += g.served_output
            u.live_spend_usd += g.live_spend_usd
            u.requests += g.requests
        return list(merged.values())

    def model_swap(self) -> Finding:
        finding = Finding("model-swap", "Expensive model on short, simple outputs → a cheaper model")
        reasons: list[str] = []
        for g in self.uses():
            target = cheaper_model(g.model_key)
            if target is None or g.served < MIN_CALLS:
                continue
            mean_out = g.served_output / g.served
            if mean_out > SHORT_OUTPUT_TOKENS or mean_out <= 0:
                reasons.append(f"{g.endpoint} on {g.model_key}: answers average {count(mean_out)} output tokens")
                continue
            if self.rates(None, target) is None:
                reasons.append(f"{g.endpoint}: no price for the cheaper {target}")
                continue
            swap = Swap(g.model_key, target, frozenset({g.endpoint}))
            sim = simulate(self.rep, Scenario(swaps=(swap,)), self.book)
            saving = sim.total.swap_savings_usd
            if saving <= 0:
                continue
            current, cheap = self.rates(g.provider, g.model), self.rates(None, target)
            assert cheap is not None
            after = g.live_spend_usd - saving
            evidence = [
                f"{g.endpoint}: {count(g.served)} calls on {g.model_key}, {count(mean_out)} output tokens and "
                f"{count(g.served_input / g.served)} input tokens per call on average.",
                f"The same tokens at {target}'s rates ({rate(float(cheap['input']))} input / "
                f"{rate(float(cheap['output']))} output per 1M tokens"
                + (f", against {rate(float(current['input']))} / {rate(float(current['output']))}" if current else "")
                + f") cost {usd(after)} instead of {usd(g.live_spend_usd)}.",
            ]  # fmt: skip
            if _words(g.endpoint) & SIMPLE_TASK_WORDS:
                evidence.append(f"The endpoint's name says it is a simple task ({g.endpoint}): "
                                "classification, extraction or routing.")  # fmt: skip
            cross = self._provider_of(target) not in (None, g.provider)
            finding.opportunities.append(self.opportunity(
                kind="model-swap",
                title=f"{g.model_key} → {target} on {g.endpoint}",
                description=(f"{g.endpoint} gets short answers from {g.model_key}; a smaller model of the same "
                             f"family ({target}) usually handles such tasks at a fraction of the price."),
                evidence=evidence, savings=saving, per_endpoint={g.endpoint: saving},
                effort="Medium", effort_note="a one-line model change, plus an A/B test to check quality",
                notes=[
                    f"Run an A/B test first: `costtrack.wrap(client, router=costtrack.route(costtrack.ABTest("
                    f"control=\"{g.model_key}\", variant=\"{target}\", share=0.2)))`, then "
                    "`costtrack report results --ab` compares cost, latency and quality with confidence intervals.",
                    f"Or fall back: `costtrack.CheapFirst([\"{target}\", \"{g.model_key}\"], accept=is_valid_label)` "
                    "escalates only the answers your check rejects.",
                    "Record a quality score per call (`costtrack.context(tags={\"quality\": score})`) so the "
                    "comparison covers quality, not only cost.",
                ],
                assumption=(f"Priced with {target}'s real rates (price catalog, at {self.at:%Y-%m-%d}) for the same "
                            "token counts; long-context tiers are not applied"
                            + ("; the providers' tokenizers differ, so token counts will change" if cross else "")
                            + ". Quality is not measured by this estimate."),
                metric=(f"cost per request on {g.endpoint}: {usd(g.live_spend_usd / g.requests if g.requests else None)}"
                        f" → {usd(after / g.requests if g.requests else None)}, with the quality score no lower "
                        "than the control's (95% CI)"),
                risks=[f"Lower answer quality on hard cases (mitigation: A/B test with a quality score, or CheapFirst "
                       f"escalating to {g.model_key})."],
                scenario=Scenario(swaps=(swap,)),
                command=self.command(f"--swap {g.model_key}={target} --endpoint {g.endpoint}"),
            ))  # fmt: skip
        if not finding.opportunities:
            expensive = [g for g in self.rep.groups if cheaper_model(g.model_key)]
            if not expensive:
                finding.nothing = ("no call used a model with a cheaper counterpart of the same family "
                                   f"({', '.join(sorted(CHEAPER_MODELS)[:6])}, ...)")  # fmt: skip
            else:
                finding.nothing = ("the expensive models are used for long answers (over "
                                   f"{SHORT_OUTPUT_TOKENS} output tokens on average) or on fewer than {MIN_CALLS} calls"
                                   + (f": {'; '.join(reasons[:3])}" if reasons else ""))  # fmt: skip
        return finding

    def _provider_of(self, model: str) -> str | None:
        name = model.lower()
        if name.startswith(("gpt", "o1", "o3", "o4", "chatgpt", "text-embedding")):
            return "openai"
        if name.startswith("claude"):
            return "anthropic"
        return None

    def batch(self, interactivity: list[Interactivity]) -> Finding:
        finding = Finding("batch", "Non-interactive endpoints → Batch API (50% off)")
        if not interactivity:
            finding.nothing = ("no endpoint looks non-interactive: none is tagged interactive=false and none is named "
                               "like a job (/jobs/, batch, nightly, cron, scheduled, offline, backfill, worker)")  # fmt: skip
            return finding
        scope = frozenset(i.endpoint for i in interactivity)
        sim = simulate(self.rep, Scenario(batch_share=1.0, batch_endpoints=scope), self.book)
        rows = [e for e in sim.endpoints if e.endpoint in scope]
        saving = sim.total.batch_savings_usd
        if saving <= 0:
            finding.nothing = (f"{', '.join(sorted(scope))} look non-interactive, but their calls cost nothing in the "
                               "period")  # fmt: skip
            return finding
        why = {i.endpoint: i.reason for i in interactivity}
        table = Table([Column("Endpoint"), Column("Why"), Column("Calls", "count"), Column("Spend", "usd"),
                       Column("Saved", "usd"), Column("Saved / month", "usd")],
                      [[e.endpoint, why[e.endpoint], e.calls, e.actual_usd, e.batch_savings_usd,
                        self.monthly(e.batch_savings_usd)] for e in rows])  # fmt: skip
        names = ", ".join(e.endpoint for e in rows if e.batch_savings_usd > 0)
        finding.opportunities.append(self.opportunity(
            kind="batch",
            title=f"Batch API for {names}",
            description=("Nobody waits on these calls, so they can go through the providers' Batch APIs (OpenAI "
                         "Batch, Anthropic Message Batches): the same models at 50% of the price, answers within 24 hours."),
            evidence=[f"{e.endpoint} ({why[e.endpoint]}): {count(e.calls)} calls, {usd(e.actual_usd)} in the period."
                      for e in rows],
            evidence_table=table, savings=saving, per_endpoint={e.endpoint: e.batch_savings_usd for e in rows},
            effort="Medium", effort_note="a job that submits a batch file and collects the results later",
            notes=[
                "Collect the job's requests into a JSONL file, submit it (`client.batches.create(...)` / "
                "`client.messages.batches.create(...)`), poll, then store the results.",
                "Record the batch results with `costtrack.Tracker.add(CallRecord(...))` priced at the batch rate, "
                "so costtrack's spend stays exact.",
                "Mark endpoints with `costtrack.context(tags={\"interactive\": False})` so this detector and "
                "`costtrack simulate --batch-share` find them without relying on the name.",
            ],
            assumption=("Endpoints are non-interactive when their records are tagged interactive=false or their name "
                        "reads like a job (/jobs/, batch, nightly, cron, scheduled, offline, backfill, worker); all "
                        "of their calls are moved to the Batch API at 50% of the cost they had."),
            metric=(f"share of {names} calls through the Batch API: 0% → 100%; their monthly cost "
                    f"{usd(self.monthly(sum(e.actual_usd for e in rows)))} → "
                    f"{usd(self.monthly(sum(e.simulated_usd for e in rows)))}"),
            risks=["Results arrive up to 24 hours later (mitigation: keep an interactive fallback for urgent runs).",
                   "A failed batch needs a retry path (mitigation: resubmit the failed items, alert on expiry)."],
            scenario=Scenario(batch_share=1.0, batch_endpoints=scope),
            command=self.command(f"--batch-share 1 --batch-endpoints {','.join(sorted(scope))}"),
        ))  # fmt: skip
        return finding

    def output_candidates(self) -> list[Group]:
        out: list[Group] = []
        for g in self.rep.groups:
            if g.served < MIN_CALLS or not g.served_output or self.rates(g.provider, g.model) is None:
                continue
            mean_out = g.served_output / g.served
            mean_in = g.served_input / g.served if g.served else 0.0
            simple = bool(_words(g.endpoint) & SIMPLE_TASK_WORDS) and mean_out > SIMPLE_TASK_OUTPUT_TOKENS
            verbose = mean_out >= VERBOSE_OUTPUT_TOKENS and mean_in and mean_out / mean_in >= VERBOSE_RATIO
            if simple or verbose:
                out.append(g)
        return out

    def output_waste(self, candidates: list[Group], rows: list[Any]) -> Finding:
        finding = Finding("output-waste", "Output-token waste → shorter answers (max_tokens, structured output)")
        if not candidates:
            finding.nothing = (f"no classification-like endpoint averages more than {SIMPLE_TASK_OUTPUT_TOKENS} "
                               f"output tokens, and no endpoint averages {VERBOSE_OUTPUT_TOKENS}+ output tokens at "
                               f"{VERBOSE_RATIO:g}x its input or more")  # fmt: skip
            return finding
        found = {(r.endpoint, r.provider, r.model): r for r in rows}
        table_rows: list[list[Any]] = []
        per_endpoint: dict[str, float] = {}
        evidence: list[str] = []
        for g in candidates:
            r = found.get((g.endpoint, g.provider, g.model))
            rates = self.rates(g.provider, g.model)
            if r is None or rates is None:
                continue
            excess = int(r.excess)
            saving = float(Decimal(excess) * rates["output"] / Decimal(1_000_000))
            if saving <= 0:
                continue
            mean_out = g.served_output / g.served
            mean_in = g.served_input / g.served
            per_endpoint[g.endpoint] = per_endpoint.get(g.endpoint, 0.0) + saving
            simple = bool(_words(g.endpoint) & SIMPLE_TASK_WORDS)
            why = (f"a classification-like endpoint averaging {count(mean_out)} output tokens" if simple else
                   f"{count(mean_out)} output tokens per call, {mean_out / mean_in:.1f}x the input")  # fmt: skip
            table_rows.append([g.endpoint, g.model, g.served, mean_in, mean_out, int(r.p50), int(r.max_out), excess,
                               saving, self.monthly(saving)])  # fmt: skip
            evidence.append(f"{g.endpoint} on {g.model}: {why}; median {count(int(r.p50))}, longest "
                            f"{count(int(r.max_out))}; {count(excess)} output tokens lie above the median.")  # fmt: skip
        if not table_rows:
            finding.nothing = "the endpoints with long answers have no spread above their median to trim"
            return finding
        total = sum(per_endpoint.values())
        endpoints = sorted(per_endpoint, key=lambda e: -per_endpoint[e])
        table = Table([Column("Endpoint"), Column("Model"), Column("Calls", "count"), Column("Mean in", "count"),
                       Column("Mean out", "count"), Column("Median out", "count"), Column("Longest", "count"),
                       Column("Tokens above median", "count"), Column("Saved", "usd"), Column("Saved / month", "usd")],
                      table_rows)  # fmt: skip
        finding.opportunities.append(self.opportunity(
            kind="output-waste",
            title=f"Shorter answers on {', '.join(endpoints)}",
            description=("These endpoints generate more output than their task needs: a label or a few fields "
                         "come back as sentences, or answers run far longer than the prompt."),
            evidence=evidence, evidence_table=table, savings=total, per_endpoint=per_endpoint,
            effort="Low", effort_note="prompt wording, max_tokens, a response schema",
            notes=[
                "Ask for exactly the output needed: the label only, or a JSON schema (structured outputs) with enums.",
                "Set max_tokens near the longest useful answer (costtrack records the lengths: "
                "`costtrack export` them and look at the distribution).",
                "Record `stop_reason`/`finish_reason=length` cases as errors in your quality checks.",
            ],
            assumption=("Only output lengths are stored, not max_tokens or the answers; the saving is what the output "
                        "tokens above each endpoint's median length cost, i.e. every longer answer cut to the median "
                        "(an upper bound for what shorter answers can save)."),
            metric=("mean output tokens per call on " + ", ".join(
                f"{g.endpoint}: {count(g.served_output / g.served)} → "
                f"{count(int(found[(g.endpoint, g.provider, g.model)].p50))}"
                for g in candidates if (g.endpoint, g.provider, g.model) in found)),  # fmt: skip
            risks=["Truncated answers if max_tokens is set too low (mitigation: watch finish_reason=length)."],
        ))  # fmt: skip
        return finding

    def failures(self, error_rows: list[Any], fallback_rows: list[Any]) -> Finding:
        finding = Finding("failures", "Money spent on failed, cut and rejected calls")
        error_spend = sum(float(r.spend) for r in error_rows if r.status == "error")
        cut_spend = sum(float(r.spend) for r in error_rows if r.status == "incomplete")
        rejected = [r for r in fallback_rows if str(r.reason) == "rejected"]
        rejected_spend = sum(float(r.spend) for r in rejected)
        escalations = sum(int(r.calls) for r in fallback_rows)
        errors = sum(int(r.calls) for r in error_rows if r.status == "error")
        cut = sum(int(r.calls) for r in error_rows if r.status == "incomplete")
        retries = self.rep.calls - self.rep.requests
        total = error_spend + cut_spend + rejected_spend
        if total <= 0:
            parts = []
            if errors:
                parts.append(f"{count(errors)} failed calls ({pct(errors / self.rep.calls)}) were not billed")
            if retries:
                parts.append(f"{count(retries)} calls were retries or fallback escalations")
            finding.nothing = ("no money was spent on failed, cut or rejected calls"
                               + (f" ({'; '.join(parts)}: they cost latency, not money)" if parts else ""))  # fmt: skip
            return finding
        per_endpoint: dict[str, float] = {}
        for r in error_rows:
            per_endpoint[r.endpoint] = per_endpoint.get(r.endpoint, 0.0) + float(r.spend)
        for r in rejected:
            per_endpoint[r.endpoint] = per_endpoint.get(r.endpoint, 0.0) + float(r.spend)
        table_rows = [[r.endpoint, r.status, r.error_type, int(r.calls), float(r.spend)] for r in error_rows
                      if float(r.spend) > 0]  # fmt: skip
        table_rows += [[r.endpoint, "rejected by fallback", "(answer rejected)", int(r.calls), float(r.spend)]
                       for r in rejected if float(r.spend) > 0]  # fmt: skip
        table_rows.sort(key=lambda row: -row[4])
        evidence = []
        if error_spend:
            evidence.append(f"{count(errors)} failed calls were billed {usd(error_spend)} (tokens processed before "
                            "the failure).")  # fmt: skip
        if cut_spend:
            evidence.append(f"{count(cut)} streams were cut or abandoned after {usd(cut_spend)} of tokens.")
        if rejected_spend:
            evidence.append(f"{count(sum(int(r.calls) for r in rejected))} answers of cheap-first fallback chains "
                            f"were rejected and escalated, after costing {usd(rejected_spend)}.")  # fmt: skip
        if retries:
            evidence.append(f"{count(retries)} calls were SDK retries or fallback escalations "
                            f"({count(escalations)} escalations).")  # fmt: skip
        finding.opportunities.append(self.opportunity(
            kind="failures",
            title="Stop paying for failed, cut and rejected calls",
            description="Money went to calls whose answers were never used.",
            evidence=evidence,
            evidence_table=Table([Column("Endpoint"), Column("Status"), Column("Error type"), Column("Calls", "count"),
                                  Column("Cost", "usd")], table_rows),  # fmt: skip
            savings=total, per_endpoint=per_endpoint,
            effort="Medium", effort_note="depends on the cause: timeouts, rate limits, acceptance checks",
            notes=[
                "Timeouts on long generations: stream, and raise the client timeout rather than retrying from scratch.",
                "Rate limits: back off with jitter, spread batch jobs, or raise the tier.",
                "Rejected fallback answers: tune the accept() check, or start the chain at a model that passes it "
                "more often (`costtrack report results` attributes fallback savings net of rejections).",
            ],
            assumption="Everything these calls cost is counted as saved: an upper bound, reached if no call failed.",
            metric=(f"monthly cost of failed, cut and rejected calls: {usd(self.monthly(total))} → $0; error rate "
                    f"{pct(_error_rate(self.rep))} → under 1%"),
            risks=["Retrying less can lose answers (mitigation: keep retries for errors that are not billed)."],
        ))  # fmt: skip
        return finding

    def unpriced(self) -> Finding:
        finding = Finding("unpriced", "Unpriced models (a cost you cannot see)")
        table = self.unpriced_table()
        if not table.rows:
            finding.nothing = "every call with tokens has a price"
            return finding
        calls = sum(r[2] for r in table.rows)
        finding.opportunities.append(self.opportunity(
            kind="unpriced",
            title=f"Price {', '.join(r[0] for r in table.rows)}",
            description=("Calls to these models have no known price: their cost is recorded as unknown (NULL), not "
                         "$0, and is missing from every total in this audit."),
            evidence=[f"{r[0]} ({r[1]}): {count(r[2])} calls, {count(r[3])} tokens, on {r[4]}." for r in table.rows],
            evidence_table=table, savings=None,
            effort="Low", effort_note="a few lines in a prices file",
            notes=[
                "Add the models to a prices file (`[models.\"NAME\"] input = ... output = ...`, USD per 1M tokens; "
                "`per_hour = ...` for a self-hosted model) and point COSTTRACK_PRICES_FILE at it.",
                "Run `costtrack reprice` to price the stored calls, then run this audit again.",
            ],
            assumption="The saving cannot be estimated before the cost is known.",
            metric=f"unpriced calls: {count(calls)} → 0",
            risks=["None: this only makes costs visible."],
        ))  # fmt: skip
        return finding

    # -- combined, calculator, prices

    def optimized_spend(self, top: list[Opportunity]) -> float:
        """The period's spend after the top opportunities: their simulate scenarios combined exactly, the rest by share."""
        merged = Scenario()
        for opp in top:
            s = opp.scenario
            if s is None:
                continue
            merged = Scenario(
                cache_ttl=s.cache_ttl or merged.cache_ttl, swaps=merged.swaps + s.swaps,
                batch_share=max(merged.batch_share, s.batch_share),
                batch_endpoints=_union(merged.batch_endpoints, s.batch_endpoints, bool(merged.batch_share),
                                       bool(s.batch_share)),
            )  # fmt: skip
        sim = simulate(self.rep, merged, self.book)
        remaining = {e.endpoint: e.simulated_usd for e in sim.endpoints}
        actual = {e.endpoint: e.actual_usd for e in sim.endpoints}
        for opp in top:
            if opp.scenario is not None:
                continue
            for endpoint, saving in opp.per_endpoint.items():
                if actual.get(endpoint):
                    remaining[endpoint] *= max(1.0 - saving / actual[endpoint], 0.0)
        return sum(remaining.values())

    def calculator(self, optimized: float) -> tuple[Table, dict[str, Any]]:
        rep = self.rep
        requests = rep.requests or rep.calls
        current_per = self.baseline / requests if requests else 0.0
        optimized_per = optimized / requests if requests else 0.0
        tokens_out = sum(g.live.output for g in rep.groups)
        tokens = sum(_tokens(g.live) for g in rep.groups)
        info: dict[str, Any] = {"requests": requests, "requests_per_month": monthly(requests, rep.days),
                                "current_per_request": current_per, "optimized_per_request": optimized_per,
                                "hardware": self.options.hardware, "hours_per_day": self.options.hours_per_day}  # fmt: skip
        local: dict[float, tuple[float, int]] = {}
        hw = calc.load_hardware().get(self.options.hardware)
        if hw is None or not tokens or not requests or not self.baseline:
            info["error"] = ("no priced tokens in the period" if hw is not None else
                             f"unknown hardware profile {self.options.hardware!r}")  # fmt: skip
        else:
            days = rep.days
            # One blended rate for every token (the recorded mix), so the API side is the recorded cost per request.
            workload = calc.Workload.per_request(requests / days, (tokens - tokens_out) / requests, tokens_out / requests)
            results = {}
            for label, spend in (("current", self.baseline), ("optimized", optimized)):
                blended = Decimal(repr(spend)) / Decimal(tokens) * Decimal(1_000_000)
                price = calc.ApiPrice(model=f"{label} mix", input=blended, output=blended, cached_input=blended,
                                      source="the recorded calls")  # fmt: skip
                scenario = calc.Scenario(workload=workload, api=price, hardware=hw,
                                         hours_per_day=self.options.hours_per_day)  # fmt: skip
                results[label] = calc.calculate(scenario, tuple(v / calc.DAYS_PER_MONTH for v in VOLUMES_PER_MONTH))
            cur = results["current"]
            for row in cur.volumes:
                local[round(row.requests_per_month or 0.0)] = (row.local_monthly_usd, row.gpus)
            info.update(
                blended_per_mtok=float(Decimal(repr(self.baseline)) / Decimal(tokens) * Decimal(1_000_000)),
                tokens_per_request=tokens / requests, hardware_label=hw.label or hw.name,
                gpu_monthly=cur.local.monthly_per_gpu_usd, gpu_breakdown=cur.local.breakdown_per_gpu_usd,
                breakeven_current=_per_month(cur.breakeven_requests_per_day),
                breakeven_optimized=_per_month(results["optimized"].breakeven_requests_per_day),
                recommendation=cur.recommendation, reasons=cur.reasons,
            )  # fmt: skip
        rows: list[list[Any]] = []
        for volume in VOLUMES_PER_MONTH:
            cur_cost, opt_cost = current_per * volume, optimized_per * volume
            loc = local.get(volume)
            rows.append([volume, cur_cost, opt_cost, cur_cost - opt_cost, loc[0] if loc else None,
                         loc[1] if loc else None])  # fmt: skip
        table = Table([Column("Requests / month", "count"), Column("Current mix", "usd"),
                       Column("Optimized mix", "usd"), Column("Saved", "usd"),
                       Column(f"Self-hosted ({self.options.hardware})", "usd"), Column("GPUs", "count")], rows)  # fmt: skip
        return table, info

    def prices_table(self, opportunities: list[Opportunity]) -> Table:
        seen: dict[tuple[str, str], str] = {}
        for g in self.rep.groups:
            if _tokens(g.live):
                seen.setdefault((g.provider, g.model), "in use")
        for opp in opportunities:
            if opp.scenario is not None:
                for swap in opp.scenario.swaps:
                    seen.setdefault(("", swap.target), "proposed")
        rows = []
        for (provider, model), role in seen.items():
            r = self.rates(provider or None, model)
            if r is None:
                continue
            rows.append([model, role, float(r["input"]), float(r["cached_input"]), float(r["cache_write"]),
                         float(r["output"])])  # fmt: skip
        rows.sort(key=lambda row: (row[1] != "in use", row[0]))
        return Table([Column("Model"), Column("Role"), Column("Input", "rate"), Column("Cached input", "rate"),
                      Column("Cache write", "rate"), Column("Output", "rate")], rows)  # fmt: skip

    def per_request_tokens(self) -> Table:
        acc: dict[str, list[float]] = {}
        for g in self.rep.groups:
            a = acc.setdefault(g.endpoint, [0, 0, 0, 0.0, 0])
            a[0] += g.served
            a[1] += g.served_input
            a[2] += g.served_output
            a[3] += g.spend_usd
            a[4] += g.requests
        rows = [[e, a[0], a[1] / a[0] if a[0] else None, a[2] / a[0] if a[0] else None,
                 a[3] / a[4] if a[4] else None, self.monthly(a[4])] for e, a in sorted(acc.items())]  # fmt: skip
        return Table([Column("Endpoint"), Column("Served calls", "count"), Column("Input tokens / call", "count"),
                      Column("Output tokens / call", "count"), Column("Cost / request", "usd"),
                      Column("Requests / month", "count")], rows)  # fmt: skip

    def method(self) -> list[str]:
        rep = self.rep
        return [
            f"Period: {rep.first:%Y-%m-%d %H:%M} to {rep.last:%Y-%m-%d %H:%M} UTC" if rep.first and rep.last else "",
            "Monthly projection: the period's spend x 30 / the days between its first and last call "
            "(at least one day).",
            "Requests are first attempts (attempt = 1); calls include SDK retries and fallback escalations.",
            "Latency percentiles are nearest-rank over calls that reached the provider (response-cache hits excluded).",
            "Savings of several optimizations on the same calls are combined in sequence (cache, then model, then "
            "batch, exactly on the simulate engine; the others as a share of what is left), never added up.",
            f"Prices: the price catalog at {self.at:%Y-%m-%d} (costtrack prices show MODEL).",
        ]

    def warnings(self) -> list[str]:
        out = []
        rep = self.rep
        if rep.span_days < 1:
            out.append(f"The records span {duration(rep.span_days * 86400)}: the monthly projection multiplies one "
                       "day's worth by 30 and is rough.")  # fmt: skip
        if rep.calls < 30:
            out.append(f"Only {count(rep.calls)} calls: the figures below show what was recorded, not a trend.")
        unpriced = sum(g.unpriced_calls for g in rep.groups)
        if unpriced:
            out.append(f"{count(unpriced)} calls are unpriced: their cost is unknown and missing from every total.")
        return out


def _tokens(b: Any) -> int:
    return b.uncached + b.cached + b.write_5m + b.write_1h + b.output


def _per_month(per_day: float | None) -> float | None:
    return None if per_day is None else per_day * calc.DAYS_PER_MONTH


def _union(a: frozenset[str] | None, b: frozenset[str] | None, a_on: bool, b_on: bool) -> frozenset[str] | None:
    if not a_on:
        return b
    if not b_on:
        return a
    if a is None or b is None:
        return None
    return a | b
