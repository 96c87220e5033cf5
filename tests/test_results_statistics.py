"""Student's t and Welch's t-test (costtrack/reports/results/statistics.py) against tables and hand computation."""

from __future__ import annotations

import math
import statistics

import pytest

from costtrack.reports import results as res


def test_student_t_against_tables():
    table = {(1, 0.975): 12.706204736174698, (2, 0.975): 4.302652729749464, (10, 0.975): 2.228138851986274,
             (30, 0.975): 2.0422724563012373, (5, 0.95): 2.0150483733330233, (1000, 0.975): 1.9623390808264078}  # fmt: skip
    for (df, p), value in table.items():
        assert res.student_t_ppf(p, df) == pytest.approx(value, rel=1e-9)
        assert res.student_t_cdf(value, df) == pytest.approx(p, abs=1e-12)
    assert res.student_t_cdf(0.0, 7) == pytest.approx(0.5)
    assert res.student_t_ppf(0.025, 10) == pytest.approx(-2.228138851986274, rel=1e-9)


def test_welch_matches_hand_computation():
    xs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    ys = [2.0, 4.0, 6.0, 8.0, 9.0, 11.0, 13.0]
    cx = res.Sample(len(xs), statistics.mean(xs), statistics.variance(xs))
    cy = res.Sample(len(ys), statistics.mean(ys), statistics.variance(ys))
    comp = res.welch("m", cx, cy)
    a, b = statistics.variance(xs) / len(xs), statistics.variance(ys) / len(ys)
    df = (a + b) ** 2 / (a * a / (len(xs) - 1) + b * b / (len(ys) - 1))
    diff = statistics.mean(ys) - statistics.mean(xs)
    half = res.student_t_ppf(0.975, df) * math.sqrt(a + b)
    assert comp.df == pytest.approx(df) and comp.diff == pytest.approx(diff)
    assert comp.ci == pytest.approx((diff - half, diff + half))
    assert comp.p_value == pytest.approx(2 * (1 - res.student_t_cdf(diff / math.sqrt(a + b), df)))
    assert comp.significant is (comp.p_value < 0.05)
