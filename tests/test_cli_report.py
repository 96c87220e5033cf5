"""`costtrack report audit|results|summary` end to end: files, charts, templates, one-line errors with exit code 2."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar

import pytest

from costtrack.cli import run as cli

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture
def seeded(tracker, make_record):
    for i in range(40):
        tracker.add(make_record(
            timestamp=T0 + timedelta(minutes=20 * i), endpoint="/api/classify", provider="openai",
            model="gpt-4o-2024-08-06", model_requested="gpt-4o", tokens_input=60, tokens_output=3,
            cost_usd=(60 * 2.5 + 3 * 10) / 1e6, request_hash=f"h{i // 2}", latency_ms=float(500 + i),
            tags={"run": "baseline" if i < 20 else "optimized"},
        ))  # fmt: skip
        tracker.add(make_record(
            timestamp=T0 + timedelta(minutes=20 * i, seconds=5), endpoint="/jobs/nightly", provider="anthropic",
            model="claude-haiku-4-5-20251001", model_requested="claude-haiku-4-5", tokens_input=700, tokens_output=90,
            cost_usd=(700 * 1.0 + 90 * 5.0) / 1e6, request_hash=f"j{i}", latency_ms=900.0,
            tags={"run": "baseline" if i < 20 else "optimized"},
        ))  # fmt: skip
    tracker.flush()


def test_audit_writes_document_and_charts(seeded, database_url, tmp_path, capsys):
    out = tmp_path / "docs" / "optimization-audit.md"
    assert cli(["report", "audit", "-o", str(out), "--since", "2026-10-01", "--database-url", database_url]) == 0
    text = out.read_text()
    for name in ("spend-by-day", "spend-by-model", "latency", "latency-distribution"):
        png = out.parent / f"optimization-audit-{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and f"]({png.name})" in text
    assert "# Optimization Audit" in text and "Batch API for /jobs/nightly" in text
    assert "Wrote" in capsys.readouterr().err
    # The command to regenerate it names the database it was read from.
    from costtrack.store.database import safe_url

    assert f"--since 2026-10-01 --database-url {safe_url(database_url)}`" in text


def test_audit_without_matplotlib(seeded, database_url, tmp_path, monkeypatch):
    from costtrack.reports import charts

    monkeypatch.setattr(charts, "available", lambda: False)
    out = tmp_path / "audit.md"
    assert cli(["report", "audit", "-o", str(out), "--since", "2026-10-01", "--database-url", database_url]) == 0
    assert charts.MISSING_NOTE in out.read_text()
    assert not list(tmp_path.glob("*.png"))


def test_audit_to_stdout_and_custom_template(seeded, database_url, tmp_path, capsys):
    assert cli(["report", "audit", "-o", "-", "--since", "2026-10-01", "--database-url", database_url]) == 0
    assert "## 4. Cost Calculator" in capsys.readouterr().out
    template = tmp_path / "mine.md.j2"
    template.write_text("Spend {{ audit.baseline_usd | usd }} over {{ audit.calls | count }} calls\n")
    assert cli(["report", "audit", "-o", "-", "--template", str(template), "--since", "2026-10-01",
                "--database-url", database_url]) == 0  # fmt: skip
    spend = 40 * (60 * 2.5 + 3 * 10) / 1e6 + 40 * (700 * 1.0 + 90 * 5.0) / 1e6
    from costtrack.format import usd

    assert capsys.readouterr().out == f"Spend {usd(spend)} over 80 calls\n"


@pytest.mark.parametrize(("body", "message"), [
    ("ok\n{{ audit.no_such_field }}\n", "line 2: UndefinedError"),
    ("ok\n\n{% for x in %}\n", "line 3: Expected an expression"),
    ("{{ audit.baseline_usd | no_filter }}", "line 1: No filter named 'no_filter'"),
    (b"Spend \xa3{{ audit.baseline_usd }}\n", "is not UTF-8 text (byte 6): save it as UTF-8"),  # Latin-1
])  # fmt: skip
def test_template_errors(seeded, database_url, tmp_path, capsys, body, message):
    template = tmp_path / "bad.md.j2"
    template.write_bytes(body) if isinstance(body, bytes) else template.write_text(body)
    out = tmp_path / "out" / "audit.md"
    code = cli(["report", "audit", "-o", str(out), "--template", str(template), "--since", "2026-10-01",
                "--database-url", database_url])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"template {template}" in err and message in err and err.count("\n") == 1
    assert not out.parent.exists()  # neither the document nor its charts


def test_results_by_tag_and_ab_and_summary(seeded, database_url, tmp_path, capsys):
    out = tmp_path / "results.md"
    assert cli(["report", "results", "--before-tag", "run=baseline", "--after-tag", "run=optimized", "-o", str(out),
                "--database-url", database_url]) == 0  # fmt: skip
    text = out.read_text()
    assert "tag run=baseline" in text and "| Requests | 40 | 40 | 0.0% |" in text
    assert cli(["report", "summary", "--since", "2026-10-01", "--database-url", database_url]) == 0
    summary = capsys.readouterr().out
    assert summary.startswith("## Performance") and "Cost per 1K requests" in summary


def test_audit_of_unpriced_calls_reports_an_unknown_spend(tracker, make_record, database_url, tmp_path, capsys):
    """Unpriced calls alone: the line the audit prints reads the spend as unknown, not $0/month."""
    for i in range(3):
        tracker.add(make_record(timestamp=T0 + timedelta(hours=i), model="mystery-llm", model_requested="mystery-llm",
                                cost_usd=None, price_source=None))  # fmt: skip
    tracker.flush()
    out = tmp_path / "audit.md"
    assert cli(["report", "audit", "-o", str(out), "--since", "2026-10-01", "--no-charts",
                "--database-url", database_url]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "3 calls, spend unknown (unpriced calls)" in err and "$0" not in err


def _unpriced_job(tracker, make_record):
    """A nightly job on a model without a price: repeated requests, cost unknown."""
    for i in range(12):
        tracker.add(make_record(timestamp=T0 + timedelta(minutes=20 * i, seconds=30), endpoint="/jobs/digest",
                                model="mystery-llm", model_requested="mystery-llm", cost_usd=None, price_source=None,
                                tokens_input=800, tokens_output=100, request_hash=f"d{i % 3}"))  # fmt: skip
    tracker.flush()


def test_an_endpoint_of_unpriced_calls_is_unpriced_in_the_audit_never_0(seeded, tracker, make_record, database_url,
                                                                        tmp_path):  # fmt: skip
    """Its would-be cache hits were a row of `$0 | $0`, and the Batch API finding said its calls "cost nothing"
    (review finding)."""
    _unpriced_job(tracker, make_record)
    out = tmp_path / "audit.md"
    assert cli(["report", "audit", "-o", str(out), "--since", "2026-10-01", "--no-charts", "--cache-ttl", "24h",
                "--database-url", database_url]) == 0  # fmt: skip
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| /jobs/digest |")]
    assert rows and all("$0" not in row for row in rows)  # inventory, latency, would-be hits, calculator
    # The spend is the priced calls' part: a lower bound, said so (review finding).
    assert "**In short:** the app spends **at least $" in text and "(its unpriced calls, whose cost is unknown" in text
    assert rows[0].endswith("| unpriced | - |")  # the inventory: no spend, no share of spend (it said 0.0%)
    assert "| /jobs/digest | 12 | 9 | 75.0% | unpriced | unpriced |" in rows  # the would-be cache hits
    assert "cost nothing" not in text


def test_a_model_priced_per_hour_is_per_hour_in_the_audit_never_0(seeded, tracker, make_record, database_url, capsys):
    """Its calls (cost null, a price_source) were a `$0 | 0.0%` row, and the audit said no model was unpriced without a
    word of them (review finding): as in `costtrack stats`, they are "per hour" and the audit says what that means."""
    for i in range(5):
        tracker.add(make_record(timestamp=T0 + timedelta(minutes=i), endpoint="/api/local", provider="ollama",
                                model="llama3.1:8b", model_requested="llama3.1:8b", cost_usd=None, tokens_input=300,
                                tokens_output=40, price_source="overrides:prices.toml:llama3.1:8b (per hour)"))  # fmt: skip
    tracker.flush()
    assert cli(["report", "audit", "-o", "-", "--no-charts", "--since", "2026-10-01", "--database-url", database_url]) == 0
    text = capsys.readouterr().out
    [row] = [line for line in text.splitlines() if line.startswith("| /api/local | llama3.1:8b |")]
    assert row.endswith("| per hour | - |")
    assert "a month** at the recorded rate, plus the hours its self-hosted models priced per hour served." in text
    assert "5 calls went to self-hosted models priced per hour (llama3.1:8b)" in text


def test_prompt_caching_on_unpriced_models_is_in_use_not_absent(tracker, make_record, database_url, capsys):
    """The summary and the results said "no prompt-cache read" beside 958,208 cached tokens of an unpriced model,
    and the summary never showed its own note about them (review finding)."""
    for i in range(20):
        tracker.add(make_record(timestamp=T0 + timedelta(hours=i), endpoint="/api/chat", model="my-local-model",
                                model_requested="my-local-model", cost_usd=None, price_source=None, tokens_input=2000,
                                tokens_cached_input=1500, tokens_output=50))  # fmt: skip
    tracker.flush()
    assert cli(["report", "summary", "-o", "-", "--since", "2026-10-01", "--database-url", database_url]) == 0
    text = capsys.readouterr().out
    assert "Provider prompt caching is in use (30,000 input tokens read from or written to the cache)" in text
    assert "No optimization strategy shows" not in text and "prompt-cache savings of my-local-model are left out" in text
    assert cli(["report", "results", "-o", "-", "--before", "2026-11-01T00:00..2026-11-01T10:00", "--after",
                "2026-11-01T10:00..2026-11-01T20:00", "--database-url", database_url]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "Provider prompt caching is in use on models without a price (30,000 input tokens" in text
    assert "no prompt-cache read" not in text


def test_a_database_of_per_hour_calls_is_per_hour_in_simulate_and_the_audit_never_0(tracker, make_record, database_url,
                                                                                    capsys):  # fmt: skip
    """simulate printed `$0 | $0 | $0` and "Per month: $0 actual"; the audit said the app spends $0 a month, its total
    was $0 and its detectors said the calls "cost nothing" (review finding)."""
    for i in range(10):
        tracker.add(make_record(timestamp=T0 + timedelta(minutes=10 * i), endpoint="/jobs/local", provider="ollama",
                                model="llama3.1:8b", model_requested="llama3.1:8b", cost_usd=None, tokens_input=300,
                                tokens_output=40, request_hash=f"r{i % 2}",
                                price_source="overrides:prices.toml:llama3.1:8b (per hour)"))  # fmt: skip
    tracker.flush()
    args = ["--since", "2026-10-01", "--database-url", database_url]
    assert cli(["simulate", "--cache-ttl", "1h", "--batch-share", "1", *args]) == 0
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if "/jobs/local" in line and "│" in line]
    assert "per hour" in row and "$0" not in row and "Per month: unknown" in out
    assert cli(["simulate", "--cache-ttl", "1h", "--json", *args]) == 0
    [job] = json.loads(capsys.readouterr().out)["endpoints"]
    assert job["actual_usd"] is None and job["per_hour_calls"] == 10 and job["unpriced_calls"] == 0  # why it is null
    assert cli(["report", "audit", "-o", "-", "--no-charts", "--cache-ttl", "1h", *args]) == 0
    text = capsys.readouterr().out
    assert "**In short:** the app's calls went to self-hosted models priced per hour" in text
    [total] = [line for line in text.splitlines() if line.startswith("| **Total** |")]
    assert "| per hour |" in total and "$0" not in total
    assert "cost nothing" not in text and "priced per hour, whose cost is the hours served" in text
    assert "which no Batch API serves" in text


def test_in_short_of_unpriced_and_per_hour_calls_names_both(tracker, make_record, database_url, capsys):
    """With one unpriced call beside per-hour ones it said only that the calls are unpriced (review finding)."""
    for i in range(4):
        tracker.add(make_record(timestamp=T0 + timedelta(minutes=i), endpoint="/api/local", provider="ollama",
                                model="llama3.1:8b", model_requested="llama3.1:8b", cost_usd=None, tokens_input=300,
                                tokens_output=40, price_source="overrides:prices.toml:llama3.1:8b (per hour)"))  # fmt: skip
    tracker.add(make_record(timestamp=T0 + timedelta(minutes=9), model="mystery-llm", model_requested="mystery-llm",
                            cost_usd=None, price_source=None))  # fmt: skip
    tracker.flush()
    assert cli(["report", "audit", "-o", "-", "--no-charts", "--since", "2026-10-01", "--database-url", database_url]) == 0
    text = capsys.readouterr().out
    assert "its calls are unpriced (see *Unpriced models*) or go to self-hosted models priced per hour" in text


@pytest.mark.parametrize("seed", [True, False])
def test_simulate_shows_an_unknown_cost_as_unpriced(seeded, tracker, make_record, database_url, capsys, seed):
    """simulate printed `$0 | $0 | $0` for an endpoint of unpriced calls, and on a database of them only
    "Per month: $0 actual, $0 simulated, $0 saved" (review finding)."""
    if not seed:
        from costtrack.store.database import make_engine

        engine = make_engine(database_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM records")
        engine.dispose()
    _unpriced_job(tracker, make_record)
    args = ["simulate", "--cache-ttl", "1h", "--batch-share", "1", "--since", "2026-10-01", "--database-url", database_url]
    assert cli(args) == 0
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if "/jobs/digest" in line and "│" in line]
    assert "unpriced" in row and "$0" not in row
    assert ("Per month: unknown" in out) is not seed and ("Per month: $" in out) is seed
    assert cli([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    [job] = [e for e in data["endpoints"] if e["endpoint"] == "/jobs/digest"]
    assert job["actual_usd"] is None and job["cache_savings_usd"] is None and job["unpriced_calls"] == 12
    assert (data["monthly"]["actual_usd"] is None) is not seed
    if not seed:  # the audit's Batch API detector: the job's calls have no known cost, not "cost nothing"
        assert cli(["report", "audit", "-o", "-", "--no-charts", "--since", "2026-10-01", "--database-url", database_url]) == 0
        text = capsys.readouterr().out
        assert "/jobs/digest looks non-interactive, but its calls have no known cost" in text and "cost nothing" not in text


@pytest.mark.parametrize("hours", [12, 6, 1])
def test_results_over_periods_of_half_a_day_or_less(seeded, database_url, tmp_path, hours):
    """A period of 12 h or less is a fraction of a day: the traffic's formula shows it as such (it read 0 days, and
    the report ended in ZeroDivisionError), and checks as printed."""
    import re

    out = tmp_path / "results.md"
    mid = T0 + timedelta(hours=hours)
    before = f"{T0:%Y-%m-%dT%H:%M}..{mid:%Y-%m-%dT%H:%M}"
    after = f"{mid:%Y-%m-%dT%H:%M}..{mid + timedelta(hours=hours):%Y-%m-%dT%H:%M}"
    assert cli(["report", "results", "--before", before, "--after", after, "-o", str(out),
                "--database-url", database_url]) == 0  # fmt: skip
    m = re.search(r"\(([\d,.]+) requests a month: its ([\d,]+) requests / ([\d.]+) days x 30\)", out.read_text())
    assert m is not None
    volume, requests, days = (float(g.replace(",", "")) for g in m.groups())
    assert requests == 2 * 3 * hours  # two endpoints, a call on each every 20 minutes
    decimals = len(m.group(3).split(".")[1]) if "." in m.group(3) else 0
    assert days == pytest.approx(hours / 24, abs=0.5 * 10**-decimals) and days > 0  # right
    assert m.group(1) == f"{requests / days * 30:,.0f}"  # and as printed
    assert volume == pytest.approx(requests / (hours / 24) * 30, rel=1e-9)


@pytest.mark.parametrize(("args", "message"), [
    (["report", "results"], "give --before and --after"),
    (["report", "results", "--before", "2026-11-01..2026-11-02"], "--after (or --after-tag) is missing"),
    (["report", "results", "--before", "2026-11-01..2026-11-03", "--after", "2026-11-02..2026-11-04"], "overlap"),
    (["report", "results", "--before", "2020-01-01..2020-01-02", "--after", "2026-11-01..2026-11-02"],
     "no records in --before"),
    (["report", "results", "--before-tag", "run", "--after-tag", "run=x"], "is not a tag"),
    # The same tag on both sides compared the records with themselves (review finding).
    (["report", "results", "--before-tag", "run=a", "--after-tag", "run=a"], "overlap"),
    (["report", "results", "--before", "yesterday", "--after", "2026-11-01..2026-11-02"], "--before 'yesterday' is not a period"),
    # A date error named no option (CLI review).
    (["report", "results", "--before", "x..y", "--after", "2026-11-01..2026-11-02"], "--before 'x' is not a date"),
    (["report", "audit", "--since", "2026-10-01", "--until", "30d"], "--until '30d' is not a date"),
    (["report", "results", "--ab", "--since", "2026-10-01"], "no records tagged ab_arm"),
    (["report", "results", "--before", "2026-10-25..2026-11-05", "--after", "2026-11-06..2026-11-20", "--since", "7x"],
     "--since goes with --ab alone"),
    (["report", "results", "--ab", "--since", "7x"], "--since '7x'"),
    (["report", "audit", "--since", "2020-01-01", "--until", "2020-02-01"], "no records since 2020-01-01"),
    (["report", "audit", "--since", "soon"], "--since 'soon' is not understood"),
    (["report", "audit", "--since", "2026-10-01", "--cache-ttl", "0"], "--cache-ttl must be more than 0"),
    (["report", "audit", "--since", "2026-10-01", "--hardware", "abacus"], "is not a hardware profile"),
    (["report", "audit", "--since", "2026-10-01", "--template", "/no/such.j2"], "does not exist"),
    (["report", "audit", "--since", "2026-10-01", "--template", "/dev/null"], "/dev/null is not a file"),  # "does not exist"
])  # fmt: skip
def test_errors_are_one_line_exit_2(seeded, database_url, capsys, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli([*args, "--database-url", database_url]) == 2
    assert not (tmp_path / "docs").exists()
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("command", [["report", "audit"], ["report", "summary"],
                                     ["report", "results", "--before", "2026-11-01..2026-11-02", "--after",
                                      "2026-11-03..2026-11-04"]])  # fmt: skip
def test_empty_database(empty_sqlite_url, capsys, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli([*command, "--database-url", empty_sqlite_url]) == 2
    err = capsys.readouterr().err
    assert "run `costtrack demo`" in err and err.count("\n") == 1
    assert not Path("docs").exists()


def _bench_records(tracker, make_record, n=30):
    """What `costtrack bench` records: an API target's requests, repeated prompts, under bench:api."""
    for i in range(n):
        tracker.add(make_record(timestamp=T0 + timedelta(hours=1, seconds=i), endpoint="bench:api", provider="openai",
                                model="gpt-4o-2024-08-06", model_requested="gpt-4o", tokens_input=500, tokens_output=50,
                                cost_usd=(500 * 2.5 + 50 * 10) / 1e6, request_hash="same-prompt", latency_ms=300.0,
                                tags={"bench_run": "r1", "concurrency": 4}))  # fmt: skip
    tracker.flush()


@pytest.mark.parametrize("command", [["report", "audit", "-o", "-"], ["simulate", "--cache-ttl", "1h"],
                                     ["report", "summary", "-o", "-"]])  # fmt: skip
def test_bench_records_are_no_part_of_the_apps_traffic(seeded, tracker, make_record, database_url, capsys, command):
    """`costtrack bench` records went into the audit, simulate and the summary as the app's calls (review finding):
    spend, request counts, a response cache "on bench:api" for its repeated prompt; calc --from-db left them out."""
    args = [*command, "--since", "2026-10-01", "--database-url", database_url]
    assert cli(args) == 0
    without = capsys.readouterr().out
    _bench_records(tracker, make_record)
    assert cli(args) == 0
    with_bench = capsys.readouterr().out
    assert "bench:api" not in with_bench

    def undated(text: str) -> list[str]:  # the document's "Generated ... on <minute>" line moves with the clock
        return [line for line in text.splitlines() if not line.startswith("*Generated by")]

    assert undated(without) == undated(with_bench)


def test_a_database_of_bench_records_only_is_no_app_traffic(tracker, make_record, database_url, capsys, tmp_path,
                                                            monkeypatch):  # fmt: skip
    """The audit wrote a document of 0 calls and simulate failed with a traceback (review finding)."""
    monkeypatch.chdir(tmp_path)
    _bench_records(tracker, make_record)
    for command in (["report", "audit"], ["simulate", "--cache-ttl", "1h"], ["report", "summary"]):
        assert cli([*command, "--since", "2026-10-01", "--database-url", database_url]) == 2
        err = capsys.readouterr().err
        assert "only `costtrack bench` records (bench:* endpoints)" in err and err.count("\n") == 1
    assert not Path("docs").exists()


def test_an_endpoint_named_like_bench_in_another_case_is_the_apps_own(tracker, make_record, database_url, capsys):
    """Only `costtrack bench`'s own `bench:` prefix is left out, alike on both databases (SQLite's case-blind LIKE
    left out a `Bench:checkout` endpoint that Postgres kept)."""
    for i in range(3):
        tracker.add(make_record(timestamp=T0 + timedelta(minutes=i), endpoint="Bench:checkout"))
    tracker.flush()
    assert cli(["simulate", "--cache-ttl", "1h", "--since", "2026-10-01", "--json", "--database-url", database_url]) == 0
    assert [e["endpoint"] for e in json.loads(capsys.readouterr().out)["endpoints"]] == ["Bench:checkout"]


class FakeTimer:
    """Stands in for threading.Timer: the test decides when the delay has passed."""

    made: ClassVar[list[FakeTimer]] = []

    def __init__(self, delay, function):
        self.delay, self.function, self.started, self.cancelled, self.daemon = delay, function, False, False, False
        FakeTimer.made.append(self)

    def start(self):
        self.started = True

    def cancel(self):
        self.cancelled = True


@pytest.mark.parametrize("slow", [False, True])
def test_progress_bar_only_after_a_second(monkeypatch, slow):
    import io

    from rich.console import Console

    from costtrack.cli import _common, report

    out = io.StringIO()
    monkeypatch.setattr(_common, "console", lambda stderr=False: Console(file=out, force_terminal=True, width=100))
    FakeTimer.made.clear()
    with report.delayed_progress(3, "auditing", timer=FakeTimer) as step:
        step("totals")
        assert out.getvalue() == ""
        if slow:
            FakeTimer.made[0].function()  # a second has passed: the bar appears
        step("latency")
    [timer] = FakeTimer.made
    assert timer.delay == 1.0 and timer.started and timer.daemon and timer.cancelled
    assert ("auditing" in out.getvalue()) is slow
    assert ("/3" in out.getvalue()) is slow  # the bar counts the steps


def test_no_progress_bar_off_a_terminal(monkeypatch):
    import io

    from rich.console import Console

    from costtrack.cli import _common, report

    out = io.StringIO()
    monkeypatch.setattr(_common, "console", lambda stderr=False: Console(file=out, force_terminal=False))
    FakeTimer.made.clear()
    with report.delayed_progress(3, "auditing", timer=FakeTimer) as step:
        step("totals")
    assert FakeTimer.made == [] and out.getvalue() == ""



@pytest.mark.parametrize("command", [["export"], ["report", "summary"], ["report", "audit", "--no-charts", "--since", "3650d"],
                                     ["report", "results", "--before-tag", "run=baseline", "--after-tag", "run=optimized"]])
@pytest.mark.parametrize("suffix", ["", "-wal"])
def test_an_output_onto_the_records_database_is_refused(make_record, tmp_path, capsys, command, suffix):
    """`export -o costtrack.db` truncated the database before failing; the reports overwrote it with Markdown and exited
    0 (CLI review)."""
    import costtrack
    from costtrack.store.database import make_engine
    from costtrack.store.sql import count_records

    database = tmp_path / "records.db"
    tracker = costtrack.Tracker(f"sqlite:///{database}", budgets=[])
    for i in range(4):
        tracker.add(make_record(timestamp=datetime.now(timezone.utc) - timedelta(hours=i),
                                tags={"run": "baseline" if i < 2 else "optimized"}))  # fmt: skip
    tracker.close()
    assert cli([*command, "--database-url", f"sqlite:///{database}", "-o", f"{database}{suffix}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the records database itself" in err
    assert count_records(make_engine(f"sqlite:///{database}")) == 4

    # The URI form (diff review), and a hard link to the file.
    assert cli([*command, "--database-url", f"sqlite:///file:{database}?mode=ro&uri=true", "-o", str(database)]) == 2
    (tmp_path / "linked.db").hardlink_to(database)
    assert cli([*command, "--database-url", f"sqlite:///{database}", "-o", str(tmp_path / "linked.db")]) == 2
    assert capsys.readouterr().err.count("is the records database itself") == 2
    assert count_records(make_engine(f"sqlite:///{database}")) == 4


@pytest.mark.parametrize("sides", [
    ["--before-tag", "run=baseline", "--after-tag", "request=any"],  # tags on different keys: both can hold a record
    ["--before", "2026-10-31..2026-11-03", "--after-tag", "run=optimized"],  # a period and a tag
])  # fmt: skip
def test_results_whose_sides_share_records_is_an_error(seeded, tracker, make_record, database_url, tmp_path, capsys, sides):
    """`--before-tag run=baseline --after-tag ab_arm=A` and `--before PERIOD --after-tag run=optimized` counted the
    same records on both sides, exit 0 (CLI review): only two periods, or one tag key, were checked."""
    for i in range(3):  # calls of the baseline run also tagged request=any
        tracker.add(make_record(timestamp=T0 + timedelta(hours=1, minutes=i), tags={"run": "baseline", "request": "any"}))
    tracker.flush()
    assert cli(["report", "results", *sides, "--database-url", database_url, "-o", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--before and --after share" in err, err
    assert not (tmp_path / "r.md").exists()
