"""A/B tests (tags `ab_test`, `ab_arm`): per-arm means with confidence intervals, each variant against the control."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, case, func, select
from sqlalchemy.sql import ColumnElement

from ...errors import ConfigError
from ...store.schema import records
from ..simulate import execute, has_tag, tag_number, tag_text
from ..simulate.queries import sum_where
from ..stats import known_spend, unpriced_filter
from .selection import Selection
from .statistics import Comparison, Sample, welch
from .thresholds import MIN_REQUESTS

__all__ = ["AbResult", "ArmStats", "ab_arms", "ab_test"]


@dataclass
class ArmStats:
    arm: str
    calls: int
    spend_usd: float | None  # None: unknown, every call with tokens unpriced (stats.known_spend)
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
               sum_where(unpriced_filter(), 1).label("unpriced"),
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
        stats[str(r.arm)] = ArmStats(str(r.arm), int(r.calls), known_spend(float(r.spend), int(r.unpriced)),
                                     samples["cost"], samples["latency"], samples["quality"])  # fmt: skip
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


def ab_arms(engine: Engine, selection: Selection, name: str | None = None) -> tuple[str, str, str]:
    """(test, control arm, first variant arm) of the A/B test in `selection`, for `--ab` without --before/--after."""
    result = ab_test(engine, selection.where(engine.dialect.name), name)
    return result.test, result.control.arm, result.variants[0].arm
