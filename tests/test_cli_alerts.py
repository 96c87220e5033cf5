"""`costtrack alerts check`: exit 0 under every threshold, 1 past one, 2 on bad input."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import typer

from costtrack import cli
from costtrack.cli import alerts
from costtrack.records import CallRecord
from costtrack.store.database import ensure_schema, make_engine
from costtrack.store.sql import insert_records

UTC = timezone.utc
AT = "2026-01-21T00:00"  # 20 days into January


@pytest.fixture(autouse=True)
def mounted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The main CLI with `alerts` mounted, as costtrack/cli/__init__.py does."""
    if "alerts" not in {group.name for group in cli.app.registered_groups}:
        root = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
        root.add_typer(alerts.app, name="alerts")
        monkeypatch.setattr(cli, "app", root)
    monkeypatch.delenv("COSTTRACK_MONTHLY_BUDGET_USD", raising=False)


def seed(url: str, *spends: tuple[float, str, str]) -> None:
    """Records of (usd, ISO time, endpoint)."""
    engine = make_engine(url)
    try:
        ensure_schema(engine)
        insert_records(engine, [
            CallRecord(provider="openai", operation="chat.completions", endpoint=endpoint, model="gpt-4o-mini",
                       cost_usd=usd, timestamp=datetime.fromisoformat(ts).replace(tzinfo=UTC))
            for usd, ts, endpoint in spends
        ])  # fmt: skip
    finally:
        engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.run(["alerts", "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_under_every_threshold_exits_0(database_url, capsys) -> None:
    seed(database_url, (10.0, "2026-01-05T10:00", "/api/chat"), (5.0, "2025-12-31T23:00", "/api/chat"))
    code, out, err = run(capsys, "--monthly-budget", "100", "--at", AT, "--database-url", database_url)
    assert (code, err) == (0, "")
    assert "budget: $100.00/month, 2026-01 UTC" in out
    assert "month_to_date_usd: $10.0000" in out and "percent_used: 10.0%" in out
    assert "thresholds crossed: none" in out
    assert "projected_month_end_usd: $" in out


def test_crossed_threshold_exits_1_with_json(database_url, capsys) -> None:
    seed(database_url, *[(9.0, f"2026-01-{d:02d}T12:00", "/api/chat") for d in range(14, 21)])  # $63 in 7 days
    code, out, _ = run(capsys, "--monthly-budget", "$100", "--at", AT, "--json", "--database-url", database_url)
    assert code == 1
    data = json.loads(out)
    assert {"budget", "month_to_date_usd", "projected_month_end_usd", "percent_used", "thresholds_crossed"} <= set(data)
    assert data["budget"] == 100.0 and data["month_to_date_usd"] == pytest.approx(63.0)
    assert data["percent_used"] == pytest.approx(63.0) and data["thresholds_crossed"] == [0.5]
    # $63 over the 6.5 days since the window's first record, for the 11 days left.
    assert data["projected_month_end_usd"] == pytest.approx(63 + 63 / 6.5 * 11)
    assert data["projected_overspend"] is True


def test_at_counts_only_what_was_spent_before_it(database_url, capsys) -> None:
    seed(database_url, (10.0, "2026-01-05T10:00", "/api/chat"), (40.0, "2026-01-25T10:00", "/api/chat"))
    code, out, _ = run(capsys, "--monthly-budget", "100", "--at", AT, "--json", "--database-url", database_url)
    data = json.loads(out)
    assert code == 0 and data["month_to_date_usd"] == pytest.approx(10.0)  # the $40 of January 25 came later
    # The projection window is the 7 days before --at: nothing spent in it, nothing projected.
    assert data["projected_month_end_usd"] == pytest.approx(10.0)


def test_budget_from_the_environment_and_scope(sqlite_url, capsys, monkeypatch) -> None:
    seed(sqlite_url, (6.0, "2026-01-02T00:00", "/api/chat"), (30.0, "2026-01-02T00:00", "/api/other"))
    monkeypatch.setenv("COSTTRACK_MONTHLY_BUDGET_USD", "10")
    code, out, _ = run(capsys, "--endpoint", "/api/chat", "--thresholds", "0.5,0.9", "--at", AT, "--json",
                       "--database-url", sqlite_url)  # fmt: skip
    data = json.loads(out)
    assert code == 1 and data["month_to_date_usd"] == 6.0 and data["thresholds_crossed"] == [0.5]
    assert data["scope"] == {"endpoint": "/api/chat"} and data["thresholds"] == [0.5, 0.9]
    # The flag beats the environment.
    code, out, _ = run(capsys, "--monthly-budget", "1000", "--at", AT, "--database-url", sqlite_url)
    assert code == 0 and "percent_used: 3.6%" in out


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ((), None, "no budget: pass --monthly-budget USD or set COSTTRACK_MONTHLY_BUDGET_USD"),
        ((), "ten dollars", "$COSTTRACK_MONTHLY_BUDGET_USD 'ten dollars' is not an amount in USD"),
        (("--monthly-budget", "-5"), None, "--monthly-budget '-5' must be a positive amount"),
        (("--monthly-budget", "5", "--thresholds", "half"), None, "--thresholds 'half' is not a list"),
        # Said as the Budget class's field ("Budget threshold -0.5 ..."), not as the option (CLI review).
        (("--monthly-budget", "5", "--thresholds", "0.5,-0.5"), None, "--thresholds '0.5,-0.5': -0.5 is not a share"),
        (("--monthly-budget", "5", "--at", "yesterday"), None, "--at 'yesterday' is not a date"),
        (("--monthly-budget", "5", "--database-url", "mysql://x/y"), None, "unsupported database"),
        # A period past year 9999: a traceback and exit 1 (read by cron as "crossed": review finding).
        (("--monthly-budget", "5", "--at", "9999-12-31"), None, "is out of range"),
    ],
)
def test_bad_input_is_a_one_line_error_exit_2(args, env, needle, capsys, monkeypatch, sqlite_url) -> None:
    if env is not None:
        monkeypatch.setenv("COSTTRACK_MONTHLY_BUDGET_USD", env)
    if "--database-url" not in args:
        args = (*args, "--database-url", sqlite_url)
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("costtrack: error: ") and needle in err


def test_an_empty_database_is_said_not_passed_at_zero(sqlite_url, capsys) -> None:
    """A mistyped URL or an app not recording yet passed every check at $0, forever (review finding)."""
    seed(sqlite_url)  # the schema, no records
    code, out, err = run(capsys, "--monthly-budget", "10", "--database-url", sqlite_url)
    assert code == 2 and out == "" and "the database has no records" in err and err.count("\n") == 1



@pytest.mark.parametrize(("flag", "value", "known"), [("--endpoint", "/api/caht", "'/api/chat'"),
                                                     ("--model", "gpt4o-mini", "'gpt-4o-mini'"),
                                                     ("--user", "u42", "none")])  # fmt: skip
def test_a_scope_no_record_ever_had_is_said_not_passed_at_zero(flag, value, known, sqlite_url, capsys) -> None:
    """A mistyped endpoint or model passed every check at $0, forever, exit 0 (review finding)."""
    seed(sqlite_url, (6.0, "2026-01-02T00:00", "/api/chat"))
    code, out, err = run(capsys, "--monthly-budget", "10", flag, value, "--at", AT, "--database-url", sqlite_url)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"no record has {flag[2:]} {value!r}: check the name (the database's: {known})" in err
    code, out, _ = run(capsys, "--monthly-budget", "10", "--model", "gpt-4o-mini", "--at", AT, "--database-url", sqlite_url)
    assert code == 1 and "month_to_date_usd: $6.0000" in out

def test_thresholds_with_a_percent_sign_are_percentages(sqlite_url, capsys) -> None:
    """"5%" is 5 percent (it was read as 5.0, 500%, and a crossed threshold went unsaid: review finding)."""
    seed(sqlite_url, (6.0, "2026-01-10T00:00:00", "/x"))
    for thresholds, crossed in (("5%,50%", ["5%", "50%"]), ("0.05,0.5", ["5%", "50%"]), ("5,50", ["50%"])):
        code, out, _ = run(capsys, "--monthly-budget", "10", "--thresholds", thresholds, "--at", AT, "--json",
                           "--database-url", sqlite_url)  # fmt: skip
        result = json.loads(out)
        assert code == 1 and [f"{t * 100:g}%" for t in result["thresholds_crossed"]] == crossed, thresholds


def test_previous_months_do_not_count(sqlite_url, capsys) -> None:
    seed(sqlite_url, (500.0, (datetime(2026, 1, 1, tzinfo=UTC) - timedelta(seconds=1)).isoformat()[:19], "/x"))
    code, out, _ = run(capsys, "--monthly-budget", "10", "--at", AT, "--json", "--database-url", sqlite_url)
    assert code == 0 and json.loads(out)["month_to_date_usd"] == 0.0


def test_a_sub_cent_budget_is_shown_as_given(database_url, capsys) -> None:
    """Review finding: --monthly-budget 0.001 printed "budget: $0.00/month" beside 400% used."""
    seed(database_url, (0.004, "2026-01-05T10:00", "/api/chat"))
    code, out, _ = run(capsys, "--monthly-budget", "0.001", "--at", AT, "--database-url", database_url)
    assert code == 1 and "budget: $0.001000/month, 2026-01 UTC" in out and "percent_used: 400.0%" in out
