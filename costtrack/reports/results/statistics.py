"""Student's t (from the regularized incomplete beta function, no scipy), samples and Welch's t-test."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Comparison", "Sample", "student_t_cdf", "student_t_ppf", "welch"]


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
