"""A/B tests (costtrack/reports/results/ab_test.py): per-arm statistics checked against the records, and the errors."""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta, timezone

import pytest

from costtrack.cli import run as cli
from costtrack.errors import ConfigError
from costtrack.reports import results as res
from costtrack.store.database import make_engine

A0 = datetime(2026, 11, 10, tzinfo=timezone.utc)


@pytest.fixture
def ab_records(tracker, make_record):
    recs = []
    for i in range(40):
        for arm, cost, latency, quality in (("control", 0.010 + (i % 5) * 0.001, 1000 + (i * 31) % 200, 0.80 + (i % 4) * 0.02),
                                            ("variant", 0.002 + (i % 5) * 0.0002, 1010 + (i * 17) % 200, 0.79 + (i % 4) * 0.02)):  # fmt: skip
            recs.append(make_record(timestamp=A0 + timedelta(minutes=i), cost_usd=cost, latency_ms=float(latency),
                                    tags={"ab_test": "mini", "ab_arm": arm, "quality": quality}))  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    tracker.flush()
    return recs


def test_ab_test(ab_records, database_url):
    result = res.ab_test(make_engine(database_url), res.Selection("all").where(make_engine(database_url).dialect.name))
    assert result.test == "mini" and result.control.arm == "control" and [v.arm for v in result.variants] == ["variant"]
    comps = {c.metric: c for c in result.comparisons["variant"]}
    for metric, attr, key in (("Cost per call", "cost_usd", None), ("Latency", "latency_ms", None),
                              ("Quality score", None, "quality")):  # fmt: skip
        def values(arm, attr=attr, key=key):
            rs = [r for r in ab_records if r.tags["ab_arm"] == arm]
            return [getattr(r, attr) if attr else r.tags[key] for r in rs]

        c, v = values("control"), values("variant")
        comp = comps[metric]
        assert comp.control.n == len(c) and comp.control.mean == pytest.approx(statistics.mean(c))
        assert comp.control.var == pytest.approx(statistics.variance(c))
        assert comp.variant.var == pytest.approx(statistics.variance(v))
        expected = res.welch(metric, res.Sample(len(c), statistics.mean(c), statistics.variance(c)),
                             res.Sample(len(v), statistics.mean(v), statistics.variance(v)))  # fmt: skip
        assert comp.ci == pytest.approx(expected.ci) and comp.p_value == pytest.approx(expected.p_value, abs=1e-12)
    assert comps["Cost per call"].significant is True
    assert comps["Latency"].significant is False
    control_ci = result.control.cost.ci()
    c = [r.cost_usd for r in ab_records if r.tags["ab_arm"] == "control"]
    half = res.student_t_ppf(0.975, len(c) - 1) * statistics.stdev(c) / math.sqrt(len(c))
    assert control_ci == pytest.approx((statistics.mean(c) - half, statistics.mean(c) + half))


def test_ab_errors(tracker, make_record, database_url):
    tracker.add(make_record(tags={"ab_test": "a", "ab_arm": "control"}))
    tracker.add(make_record(tags={"ab_test": "b", "ab_arm": "control"}))
    tracker.flush()
    engine = make_engine(database_url)
    where = res.Selection("all").where(engine.dialect.name)
    with pytest.raises(ConfigError, match="several A/B tests"):
        res.ab_test(engine, where)
    with pytest.raises(ConfigError, match="one arm"):
        res.ab_test(engine, where, "a")
    with pytest.raises(ConfigError, match="no records of that test"):
        res.ab_test(engine, where, "zzz")


def test_an_ab_test_name_without_ab_is_an_error(ab_records, database_url, capsys):
    """`--ab-test foo` with --before/--after was ignored, exit 0 (review finding)."""
    code = cli(["report", "results", "--ab-test", "a", "--before", "2026-11-01..2026-11-08", "--after",
                "2026-11-08..2026-11-15", "--database-url", database_url])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--ab-test goes with --ab" in err


def test_the_regenerate_command_of_an_ab_document_keeps_its_period(ab_records, database_url, tmp_path):
    """`report results --ab --since ...` printed a command without --since: run, it read the default 30 days."""
    import re
    import shlex

    from costtrack.cli import run as cli

    out = tmp_path / "ab results.md"
    assert cli(["report", "results", "--ab", "--since", "2026-11-09", "-o", str(out), "--database-url", database_url]) == 0
    [command] = re.findall(r"Regenerate with `(costtrack report results [^`]+)`", out.read_text())
    args = shlex.split(command)
    assert args[args.index("--since") + 1] == "2026-11-09" and args[args.index("-o") + 1] == str(out)
    assert args[args.index("--database-url") + 1] == database_url
