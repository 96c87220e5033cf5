"""Before/after results, what each optimization measurably saved, A/B tests with confidence intervals.

A *selection* is a period ([since, until)), a tag (``run=optimized``), or both. For each
selection a few SQL aggregates give the metrics of the course's comparison table;
the attribution reads what the records say each optimization saved: response-cache
hits (`cost_saved_usd`), provider prompt caching (cached tokens at the cached rate
instead of the input rate), cheap-first fallback (savings of accepted answers minus
the cost of rejected attempts) and routing (the `route` tag: routed calls against
the same tokens on the model the endpoint used before).

A/B tests (tags `ab_test`, `ab_arm`): per arm the mean cost per call, latency and
quality score with 95% confidence intervals, and the difference to the control arm
with Welch's t-test (Student's t from the regularized incomplete beta function;
no scipy).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, and_, case, func, select, true
from sqlalchemy.sql import ColumnElement

from ..errors import ConfigError
from ..format import count, days, duration, usd, when
from ..pricing import PriceBook
from ..store.schema import records
from .calc import DAYS_PER_MONTH
from .simulate import (
    _buckets,
    _row_buckets,
    _sum,
    execute,
    has_tag,
    period_where,
    run_queries,
    tag_filter,
    tag_number,
    tag_text,
)
from .stats import Percentiles

__all__ = [
    "MIN_REQUESTS",
    "Selection",
    "Metrics",
    "Attribution",
    "ArmStats",
    "Comparison",
    "AbResult",
    "Results",
    "build_results",
    "build_summary",
    "measure",
    "attribution",
    "ab_test",
    "welch",
    "ab_arms",
    "NoRecords",
    "Summary",
    "student_t_cdf",
    "student_t_ppf",
]

#: Fewest requests a selection needs before percentage changes are printed.
MIN_REQUESTS = 30


# --------------------------------------------------------------------------- selections


@dataclass(frozen=True)
class Selection:
    """Which records a side of the comparison is: a period, a tag, or both."""

    label: str
    since: datetime | None = None
    until: datetime | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def where(self, dialect: str) -> ColumnElement[bool]:
        cond = period_where(self.since, self.until)
        for key, value in self.tags:
            cond = and_(cond, has_tag(dialect, key), tag_filter(dialect, key, value))
        return cond

    def describe(self) -> str:
        parts = []
        if self.since is not None or self.until is not None:
            parts.append(f"from {when(self.since) if self.since else 'the first record'} "
                         f"up to {when(self.until) if self.until else 'now'}")
        if self.tags:
            parts.append("tag " + ", ".join(f"{k}={v}" for k, v in self.tags))
        return ", ".join(parts) or "all records"

    @property
    def period_days(self) -> float | None:
        """The length of an explicit period in days (None without both ends)."""
        if self.since is None or self.until is None:
            return None
        return (self.until - self.since).total_seconds() / 86400

    def overlaps(self, other: Selection) -> bool:
        """Whether both are periods that intersect (with tags, telling the runs apart is the tags' job)."""
        if self.tags or other.tags:
            return False
        start = max(self.since or datetime.min.replace(tzinfo=timezone.utc),
                    other.since or datetime.min.replace(tzinfo=timezone.utc))  # fmt: skip
        end = min(self.until or datetime.max.replace(tzinfo=timezone.utc),
                  other.until or datetime.max.replace(tzinfo=timezone.utc))  # fmt: skip
        return start < end


# --------------------------------------------------------------------------- metrics


@dataclass
class Metrics:
    """The course's comparison metrics for one selection."""

    selection: Selection
    calls: int
    requests: int
    spend_usd: float
    errors: int
    cache_hits: int
    tokens_input: int
    tokens_output: int
    quality_n: int
    quality: float | None
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    first: datetime | None
    last: datetime | None
    unpriced_calls: int

    @property
    def days(self) -> float:
        """The period's length, or the days its records span (at least one)."""
        explicit = self.selection.period_days
        if explicit is not None:
            return explicit
        if self.first is None or self.last is None:
            return 1.0
        return max((self.last - self.first).total_seconds() / 86400, 1.0)

    @property
    def cost_per_request(self) -> float | None:
        return self.spend_usd / self.requests if self.requests else None

    @property
    def cost_per_1k(self) -> float | None:
        per = self.cost_per_request
        return None if per is None else per * 1000

    @property
    def requests_per_month(self) -> float:
        return self.requests * DAYS_PER_MONTH / self.days

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.calls if self.calls else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    @property
    def tokens_per_request(self) -> float | None:
        return (self.tokens_input + self.tokens_output) / self.requests if self.requests else None


def _metrics_query(where: ColumnElement[bool], dialect: str) -> Any:
    c = records.c
    quality = tag_number(dialect, "quality")
    has_quality = has_tag(dialect, "quality")
    q = case((has_quality, quality))
    return select(
        func.count().label("calls"),
        _sum(c.attempt == 1, 1).label("requests"),
        func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"),
        _sum(c.status == "error", 1).label("errors"),
        _sum(c.cache_hit, 1).label("hits"),
        func.coalesce(func.sum(c.tokens_input), 0).label("tin"),
        func.coalesce(func.sum(c.tokens_output), 0).label("tout"),
        func.count(q).label("quality_n"),
        func.avg(q).label("quality"),
        func.avg(c.latency_ms).label("latency"),
        func.min(c.timestamp).label("first"),
        func.max(c.timestamp).label("last"),
        _sum(and_(c.cost_usd.is_(None), c.price_source.is_(None), (c.tokens_input + c.tokens_output) > 0), 1)
        .label("unpriced"),
    ).where(where)  # fmt: skip




def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _latency(where: ColumnElement[bool]) -> Percentiles:
    """The selection's latency percentiles (response-cache hits included: what users waited)."""
    return Percentiles(where)


Progress = Callable[[str], None]


def steps(sides: int) -> int:
    """How many queries `build_results` (2 sides) or `build_summary` (1) runs: the progress bar's total."""
    return sides * (3 + len(_attribution_queries("sqlite", true())))


def measure(engine: Engine, selection: Selection, *, rows: dict[str, list[Any]] | None = None,
            progress: Progress | None = None) -> Metrics:  # fmt: skip
    """The metrics of one selection (latency percentiles include response-cache hits: what users waited).

    `rows`: the results of `metric_queries(..., "m")` when the caller ran them (beside its other queries).
    """
    latency = _latency(selection.where(engine.dialect.name))
    if rows is None:
        rows = run_queries(engine, metric_queries(engine.dialect.name, selection, "m"), on_done=progress)
    refine = latency.refine_query(rows["m.latency"])
    refined = run_queries(engine, {"latency": refine}, on_done=progress)["latency"] if refine is not None else []
    p = latency.result(refined).overall
    m = rows["m.metrics"][0]
    return Metrics(
        selection=selection, calls=int(m.calls), requests=int(m.requests), spend_usd=float(m.spend),
        errors=int(m.errors), cache_hits=int(m.hits), tokens_input=int(m.tin), tokens_output=int(m.tout),
        quality_n=int(m.quality_n), quality=float(m.quality) if m.quality is not None else None,
        latency_mean_ms=float(m.latency) if m.latency is not None else None,
        latency_p50_ms=p.get(50), latency_p95_ms=p.get(95), latency_p99_ms=p.get(99),
        first=_aware(m.first), last=_aware(m.last), unpriced_calls=int(m.unpriced),
    )  # fmt: skip


def metric_queries(dialect: str, selection: Selection, prefix: str) -> dict[str, Any]:
    where = selection.where(dialect)
    return {f"{prefix}.metrics": _metrics_query(where, dialect), f"{prefix}.latency": _latency(where).histogram_query()}


# --------------------------------------------------------------------------- attribution


@dataclass
class Saving:
    """What one optimization measurably saved in a selection."""

    name: str
    evidence: str
    saved_usd: float
    monthly_usd: float


@dataclass
class Attribution:
    savings: list[Saving] = field(default_factory=list)
    routes: list[list[Any]] = field(default_factory=list)  # label, calls, spend, cost per call, models
    notes: list[str] = field(default_factory=list)

    @property
    def total_usd(self) -> float:
        return sum(s.saved_usd for s in self.savings)


def _attribution_queries(dialect: str, where: ColumnElement[bool]) -> dict[str, Any]:
    c = records.c
    chain = has_tag(dialect, "fallback_chain")
    reason = has_tag(dialect, "fallback_reason")
    route_tagged = has_tag(dialect, "route")
    route = case((route_tagged, tag_text(dialect, "route"))).label("route")
    live = and_(c.cost_usd.is_not(None), c.cache_hit.is_(False))
    model = func.coalesce(c.model, c.model_requested, "(unknown)").label("model")
    return {
        "hits": select(_sum(c.cache_hit, 1).label("hits"),
                       _sum(c.cache_hit, func.coalesce(c.cost_saved_usd, 0.0)).label("saved")).where(where),
        "cached": select(c.provider, model, func.coalesce(func.sum(c.tokens_cached_input), 0).label("cached"))
        .where(where, c.cache_hit.is_(False), c.tokens_cached_input > 0)
        .group_by(c.provider, c.model, c.model_requested),
        "fallback": select(
            _sum(and_(chain, c.cache_hit.is_(False), c.cost_saved_usd.is_not(None)), 1).label("accepted"),
            _sum(and_(chain, c.cache_hit.is_(False)), func.coalesce(c.cost_saved_usd, 0.0)).label("saved"),
            _sum(reason, 1).label("escalated"),
            _sum(reason, func.coalesce(c.cost_usd, 0.0)).label("escalated_cost"),
        ).where(where, chain),
        "routes": select(route, c.endpoint, c.provider, model, func.count().label("calls"),
                         func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"), _sum(live, c.cost_usd).label("live_spend"),
                         *_buckets(live, c, "l_"))
        .where(where, route_tagged)
        .group_by(route, c.endpoint, c.provider, c.model, c.model_requested),
        "endpoint_models": select(c.endpoint, c.provider, model, func.count().label("calls"))
        .where(where, c.status == "ok", c.cache_hit.is_(False))
        .group_by(c.endpoint, c.provider, c.model, c.model_requested),
    }  # fmt: skip


def attribution(rows: dict[str, list[Any]], prefix: str, book: PriceBook, at: datetime, days: float,
                before_models: dict[str, tuple[str, str]] | None = None) -> Attribution:  # fmt: skip
    """What each optimization saved, from the rows of `_attribution_queries` (keys prefixed)."""
    out = Attribution()

    def month(x: float) -> float:
        return x * DAYS_PER_MONTH / days

    h = rows[f"{prefix}.hits"][0]
    if int(h.hits):
        out.savings.append(Saving("Response cache", f"{count(int(h.hits))} calls answered from the cache (cost_saved_usd)",
                                  float(h.saved), month(float(h.saved))))  # fmt: skip
    cached_saving = 0.0
    cached_tokens = 0
    unpriced: set[str] = set()
    for r in rows[f"{prefix}.cached"]:
        rates = book.rates(r.provider, r.model, at)
        if rates is None or rates.per_hour is not None:
            unpriced.add(r.model)
            continue
        eff = rates.effective()
        cached_tokens += int(r.cached)
        cached_saving += float(Decimal(int(r.cached)) * (eff["input"] - eff["cached_input"]) / Decimal(1_000_000))
    if cached_tokens:
        out.savings.append(Saving("Provider prompt caching",
                                  f"{count(cached_tokens)} input tokens read from the cache at the cached rate",
                                  cached_saving, month(cached_saving)))  # fmt: skip
    if unpriced:
        out.notes.append(f"prompt-cache savings of {', '.join(sorted(unpriced))} are left out: no price")
    f = rows[f"{prefix}.fallback"][0] if rows[f"{prefix}.fallback"] else None
    if f is not None and (int(f.accepted) or int(f.escalated)):
        net = float(f.saved) - float(f.escalated_cost)
        out.savings.append(Saving(
            "Cheap-first fallback",
            f"{count(int(f.accepted))} answers cheaper than the requested model saved {usd(float(f.saved))}; "
            f"{count(int(f.escalated))} escalated attempts cost {usd(float(f.escalated_cost))}",
            net, month(net),
        ))  # fmt: skip
    route_rows = rows[f"{prefix}.routes"]
    if route_rows:
        by_label: dict[str, list[Any]] = {}
        saved = 0.0
        compared = 0
        for r in route_rows:
            acc = by_label.setdefault(str(r.route), [str(r.route), 0, 0.0, None, set()])
            acc[1] += int(r.calls)
            acc[2] += float(r.spend)
            acc[4].add(r.model)
            ref = (before_models or {}).get(r.endpoint)
            if ref is None or ref[1] == r.model:
                continue
            rates = book.rates(ref[0], ref[1], at)
            if rates is None or rates.per_hour is not None:
                continue
            saved += _row_buckets(r, "l_").price(rates.effective()) - float(r.live_spend)
            compared += int(r.calls)
        for acc in by_label.values():
            acc[3] = acc[2] / acc[1] if acc[1] else None
            acc[4] = ", ".join(sorted(acc[4]))
        out.routes = sorted(by_label.values(), key=lambda a: -a[1])
        if compared:
            out.savings.append(Saving(
                "Routing", f"{count(compared)} routed calls against the same tokens on the model each endpoint used before",
                saved, month(saved),
            ))  # fmt: skip
        elif before_models is not None:
            out.notes.append("routed calls used the same models as before on their endpoints: no routing saving to attribute")
    return out


def _endpoint_models(rows: list[Any]) -> dict[str, tuple[str, str]]:
    """The most-called (provider, model) of each endpoint."""
    best: dict[str, tuple[int, str, str]] = {}
    for r in rows:
        n = int(r.calls)
        if r.endpoint not in best or n > best[r.endpoint][0]:
            best[r.endpoint] = (n, r.provider, r.model)
    return {e: (p, m) for e, (_, p, m) in best.items()}


# --------------------------------------------------------------------------- statistics


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2))
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_ppf(p: float, df: float) -> float:
    """The `p` quantile of Student's t (bisection on the CDF)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be between 0 and 1")
    if p < 0.5:
        return -student_t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class Sample:
    """n, mean and sample variance of one metric in one arm."""

    n: int
    mean: float | None
    var: float | None

    def ci(self, level: float = 0.95) -> tuple[float, float] | None:
        if self.n < 2 or self.mean is None or self.var is None:
            return None
        half = student_t_ppf(0.5 + level / 2, self.n - 1) * math.sqrt(self.var / self.n)
        return self.mean - half, self.mean + half


@dataclass(frozen=True)
class Comparison:
    """Variant minus control for one metric: difference, its 95% CI, Welch's p-value."""

    metric: str
    fmt: str
    control: Sample
    variant: Sample
    diff: float | None
    ci: tuple[float, float] | None
    relative: float | None
    p_value: float | None
    df: float | None

    @property
    def significant(self) -> bool | None:
        return None if self.p_value is None else self.p_value < 0.05


def welch(metric: str, control: Sample, variant: Sample, fmt: str = "number", level: float = 0.95) -> Comparison:
    """Welch's t-test of variant - control (unequal variances)."""
    ok = (control.n >= 2 and variant.n >= 2 and None not in (control.mean, variant.mean, control.var, variant.var))
    if not ok:
        return Comparison(metric, fmt, control, variant, None, None, None, None, None)
    assert control.mean is not None and variant.mean is not None and control.var is not None and variant.var is not None
    diff = variant.mean - control.mean
    a, b = control.var / control.n, variant.var / variant.n
    se = math.sqrt(a + b)
    relative = diff / control.mean if control.mean else None
    if se == 0:
        p = 1.0 if diff == 0 else 0.0
        return Comparison(metric, fmt, control, variant, diff, (diff, diff), relative, p, None)
    df = (a + b) ** 2 / ((a * a / (control.n - 1) if a else 0.0) + (b * b / (variant.n - 1) if b else 0.0))
    t = diff / se
    half = student_t_ppf(0.5 + level / 2, df) * se
    p = 2.0 * (1.0 - student_t_cdf(abs(t), df))
    return Comparison(metric, fmt, control, variant, diff, (diff - half, diff + half), relative, max(p, 0.0), df)


@dataclass
class ArmStats:
    arm: str
    calls: int
    spend_usd: float
    cost: Sample
    latency: Sample
    quality: Sample


@dataclass
class AbResult:
    test: str
    control: ArmStats
    variants: list[ArmStats]
    comparisons: dict[str, list[Comparison]]  # variant arm → per-metric comparisons
    notes: list[str] = field(default_factory=list)

    @property
    def enough(self) -> bool:
        return all(a.calls >= MIN_REQUESTS for a in [self.control, *self.variants])


def _ab_queries(dialect: str, where: ColumnElement[bool]) -> tuple[Any, Any]:
    test = tag_text(dialect, "ab_test")
    arm = tag_text(dialect, "ab_arm")
    cond = and_(where, has_tag(dialect, "ab_arm"), arm.is_not(None))
    tests = select(test.label("test"), func.count().label("calls")).where(cond).group_by(test)
    return tests, cond


def ab_test(engine: Engine, where: ColumnElement[bool], name: str | None = None) -> AbResult:
    """Compare the arms of an A/B split in `where` (ConfigError when there is none, or it is ambiguous)."""
    dialect = engine.dialect.name
    tests_query, cond = _ab_queries(dialect, where)
    tests = {str(r.test): int(r.calls) for r in execute(engine, tests_query)}
    if name is None:
        if not tests:
            raise ConfigError("--ab: no records tagged ab_arm in the selection: route calls with costtrack.ABTest(...) "
                              "or tag them with costtrack.context(tags={'ab_test': ..., 'ab_arm': ...})")  # fmt: skip
        if len(tests) > 1:
            raise ConfigError(f"--ab: several A/B tests in the selection ({', '.join(sorted(tests))}): pick one "
                              "with --ab-test NAME")  # fmt: skip
        name = next(iter(tests))
    elif name not in tests:
        known = ", ".join(sorted(tests)) or "none"
        raise ConfigError(f"--ab-test {name!r}: no records of that test in the selection (tests found: {known})")
    test = tag_text(dialect, "ab_test")
    arm = tag_text(dialect, "ab_arm").label("arm")
    cond = and_(cond, test == name)
    c = records.c
    quality = case((has_tag(dialect, "quality"), tag_number(dialect, "quality")))
    values = {"cost": c.cost_usd, "latency": c.latency_ms, "quality": quality}
    means = (
        select(arm, func.count().label("calls"), func.coalesce(func.sum(c.cost_usd), 0.0).label("spend"),
               *(func.count(v).label(f"{k}_n") for k, v in values.items()),
               *(func.avg(v).label(f"{k}_mean") for k, v in values.items()))
        .where(cond)
        .group_by(arm)
        .subquery()
    )  # fmt: skip
    arm_of = tag_text(dialect, "ab_arm")
    var = (
        select(means, *(func.sum((v - getattr(means.c, f"{k}_mean")) * (v - getattr(means.c, f"{k}_mean")))
                        .label(f"{k}_ss") for k, v in values.items()))
        .select_from(records.join(means, arm_of == means.c.arm))
        .where(cond)
        .group_by(*means.c)
    )  # fmt: skip
    stats: dict[str, ArmStats] = {}
    for r in execute(engine, var):
        samples = {}
        for k in values:
            n = int(getattr(r, f"{k}_n"))
            mean = getattr(r, f"{k}_mean")
            ss = getattr(r, f"{k}_ss")
            samples[k] = Sample(n, float(mean) if mean is not None else None,
                                float(ss) / (n - 1) if n >= 2 and ss is not None else None)  # fmt: skip
        stats[str(r.arm)] = ArmStats(str(r.arm), int(r.calls), float(r.spend), samples["cost"], samples["latency"],
                                     samples["quality"])  # fmt: skip
    if len(stats) < 2:
        raise ConfigError(f"--ab: test {name!r} has one arm in the selection ({', '.join(stats)}): "
                          "nothing to compare")  # fmt: skip
    control_name = "control" if "control" in stats else sorted(stats)[0]
    control = stats.pop(control_name)
    variants = [stats[k] for k in sorted(stats)]
    comparisons = {
        v.arm: [welch("Cost per call", control.cost, v.cost, "usd"), welch("Latency", control.latency, v.latency, "ms"),
                welch("Quality score", control.quality, v.quality, "score")]
        for v in variants
    }  # fmt: skip
    result = AbResult(test=name, control=control, variants=variants, comparisons=comparisons)
    if not result.enough:
        result.notes.append(f"fewer than {MIN_REQUESTS} calls in an arm: the intervals are wide and the t "
                            "approximation is rough; collect more before deciding")  # fmt: skip
    if all(a.quality.n == 0 for a in [control, *variants]):
        result.notes.append("no quality score recorded: tag calls with costtrack.context(tags={'quality': score})")
    return result


# --------------------------------------------------------------------------- the documents


@dataclass
class Row:
    """One metric of the comparison table."""

    name: str
    fmt: str
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        if self.before is None or self.after is None or self.before == 0:
            return None
        return (self.after - self.before) / abs(self.before)


@dataclass
class Results:
    generated_at: datetime
    before: Metrics
    after: Metrics
    rows: list[Row]
    enough: bool
    attribution_before: Attribution
    attribution_after: Attribution
    ab: AbResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def monthly_volume(self) -> float:
        return self.before.requests_per_month


def _rows(before: Metrics, after: Metrics) -> list[Row]:
    volume = before.requests_per_month

    def monthly(m: Metrics) -> float | None:
        per = m.cost_per_request
        return None if per is None else per * volume

    rows = [
        Row("Requests", "count", before.requests, after.requests),
        Row("Spend", "usd", before.spend_usd, after.spend_usd),
        Row("Cost per 1K requests", "usd", before.cost_per_1k, after.cost_per_1k),
        Row("Projected monthly cost", "usd", monthly(before), monthly(after)),
        Row("Latency p50", "ms", before.latency_p50_ms, after.latency_p50_ms),
        Row("Latency p95", "ms", before.latency_p95_ms, after.latency_p95_ms),
        Row("Latency p99", "ms", before.latency_p99_ms, after.latency_p99_ms),
        Row("Cache hit rate", "pct", before.cache_hit_rate, after.cache_hit_rate),
        Row("Error rate", "pct", before.error_rate, after.error_rate),
        Row("Tokens per request", "count", before.tokens_per_request, after.tokens_per_request),
    ]
    if before.quality_n or after.quality_n:
        rows.append(Row("Quality score", "score", before.quality, after.quality))
    return rows


def build_results(engine: Engine, book: PriceBook, before: Selection, after: Selection, *, ab: bool = False,
                  ab_name: str | None = None, ab_where: Selection | None = None,
                  now: datetime | None = None, progress: Progress | None = None) -> Results:  # fmt: skip
    """Measure both selections, attribute the savings, and compare the A/B arms (of `ab_where`, else `after`)."""
    dialect = engine.dialect.name
    queries: dict[str, Any] = {}
    queries.update(metric_queries(dialect, before, "before"))
    queries.update(metric_queries(dialect, after, "after"))
    for side, sel in (("before", before), ("after", after)):
        for key, query in _attribution_queries(dialect, sel.where(dialect)).items():
            queries[f"{side}.{key}"] = query
    rows = run_queries(engine, queries, on_done=progress)
    m_before = measure(engine, before, rows={"m.metrics": rows["before.metrics"], "m.latency": rows["before.latency"]},
                       progress=progress)  # fmt: skip
    m_after = measure(engine, after, rows={"m.metrics": rows["after.metrics"], "m.latency": rows["after.latency"]},
                      progress=progress)  # fmt: skip
    empty = [(f, m.selection) for f, m in (("--before", m_before), ("--after", m_after)) if m.calls == 0]
    if empty:
        raise NoRecords([f for f, _ in empty], [s for _, s in empty])
    before_models = _endpoint_models(rows["before.endpoint_models"])
    at_before = m_before.last or now or datetime.now(timezone.utc)
    at_after = m_after.last or now or datetime.now(timezone.utc)
    results = Results(
        generated_at=now or datetime.now(timezone.utc), before=m_before, after=m_after, rows=_rows(m_before, m_after),
        enough=m_before.requests >= MIN_REQUESTS and m_after.requests >= MIN_REQUESTS,
        attribution_before=attribution(rows, "before", book, at_before, m_before.days),
        attribution_after=attribution(rows, "after", book, at_after, m_after.days, before_models),
    )  # fmt: skip
    if not results.enough:
        results.notes.append(
            f"Too little data to compare: {m_before.requests:,} requests before and {m_after.requests:,} after "
            f"(at least {MIN_REQUESTS} each are needed before percentage changes mean anything). The figures are "
            "shown without changes; record more traffic and run the report again."
        )
    for m in (m_before, m_after):
        if m.unpriced_calls:
            results.notes.append(f"{m.selection.label}: {m.unpriced_calls:,} unpriced calls are missing from the spend")
    if ab:
        results.ab = ab_test(engine, (ab_where or after).where(dialect), ab_name)
    if ab_where is not None:
        results.notes.append(
            "Before and after are the arms of the A/B test: they carry different shares of the traffic, so compare "
            "the per-request rows (cost per 1K requests, projected monthly cost, latency, quality), not requests or spend."
        )
    return results


def ab_arms(engine: Engine, selection: Selection, name: str | None = None) -> tuple[str, str, str]:
    """(test, control arm, first variant arm) of the A/B test in `selection`, for `--ab` without --before/--after."""
    result = ab_test(engine, selection.where(engine.dialect.name), name)
    return result.test, result.control.arm, result.variants[0].arm


class NoRecords(ConfigError):
    """A selection without a single record (the CLI adds where the records are)."""

    def __init__(self, flags: list[str], selections: list[Selection]) -> None:
        super().__init__("; ".join(f"no records in {f} ({s.describe()})" for f, s in zip(flags, selections)))
        self.flags = flags
        self.selections = selections


@dataclass
class Summary:
    """The README's Performance section: cost per 1K requests, latency, cache hit rate, strategies and their savings."""

    generated_at: datetime
    metrics: Metrics
    attribution: Attribution
    period: str


def build_summary(engine: Engine, book: PriceBook, selection: Selection, now: datetime | None = None,
                  progress: Progress | None = None) -> Summary:  # fmt: skip
    dialect = engine.dialect.name
    queries = metric_queries(dialect, selection, "m")
    for key, query in _attribution_queries(dialect, selection.where(dialect)).items():
        queries[f"m.{key}"] = query
    rows = run_queries(engine, queries, on_done=progress)
    metrics = measure(engine, selection, rows=rows, progress=progress)
    if metrics.calls == 0:
        raise NoRecords(["the period"], [selection])
    at = metrics.last or now or datetime.now(timezone.utc)
    attr = attribution(rows, "m", book, at, metrics.days)
    span = duration(metrics.days * 86400) if metrics.days < 1 else days(metrics.days)
    return Summary(generated_at=now or datetime.now(timezone.utc), metrics=metrics, attribution=attr, period=span)
