"""`costtrack stats`, `export`, `reprice` and `demo` on real databases, through the CLI entry point."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest

from costtrack.cli import run

from helpers import Recorder, openai_client, serve


@pytest.fixture
def seeded(tracker, make_record):
    recs = [
        make_record(endpoint="/api/a", model="gpt-4o-mini-2024-07-18", model_requested="gpt-4o-mini", cost_usd=0.001,
                    latency_ms=100.0, timestamp=datetime(2026, 11, 2, tzinfo=timezone.utc), tags={"run": "x"}),
        make_record(endpoint="/api/b", model="gpt-4o-2024-08-06", model_requested="gpt-4o", cost_usd=0.01,
                    latency_ms=300.0, timestamp=datetime(2026, 10, 30, tzinfo=timezone.utc)),
    ]  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    tracker.flush()
    return recs


def test_stats_json(seeded, database_url, capsys):
    assert run(["stats", "--json", "--by", "endpoint", "--database-url", database_url]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["calls"] == 2 and data["total"]["spend_usd"] == pytest.approx(0.011)
    assert {g["key"]: g["calls"] for g in data["groups"]} == {"/api/a": 1, "/api/b": 1}


def test_stats_month(seeded, database_url, capsys):
    assert run(["stats", "--json", "--month", "2026-11", "--database-url", database_url]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["calls"] == 1


def test_stats_table(seeded, database_url, capsys):
    assert run(["stats", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    assert "gpt-4o-mini" in out and "TOTAL" in out


def test_unpriced_spend_is_shown_as_unknown_not_zero(seeded, tracker, make_record, database_url, capsys):
    for endpoint in ("/api/a", "/api/u"):
        tracker.add(make_record(endpoint=endpoint, model="my-finetune", cost_usd=None, price_source=None,
                                tokens_input=100, tokens_output=10, timestamp=datetime(2026, 11, 3, tzinfo=timezone.utc)))  # fmt: skip
    tracker.flush()
    assert run(["stats", "--by", "endpoint", "--database-url", database_url]) == 0
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip() for line in capsys.readouterr().out.splitlines()
            if line.count("│") > 3}  # fmt: skip
    assert rows["/api/u"] == "unpriced" and rows["/api/a"] == "≥$0.001000" and rows["/api/b"] == "$0.0100"
    assert rows["TOTAL"] == "≥$0.0110"
    assert run(["stats", "--by", "endpoint", "--database-url", database_url]) == 0
    shares = {line.split("│")[1].strip(): line.split("│")[4].strip() for line in capsys.readouterr().out.splitlines()
              if line.count("│") > 4}  # fmt: skip
    assert shares["/api/u"] == "-"  # no share of a cost nobody knows (it said 0.0%)
    assert run(["stats", "--by", "endpoint", "--json", "--database-url", database_url]) == 0
    data = json.loads(capsys.readouterr().out)
    groups = {g["key"]: g for g in data["groups"]}
    # Unknown is null, never 0.0 (review finding); a partly priced figure says it is a lower bound.
    assert groups["/api/u"]["spend_usd"] is None and groups["/api/u"]["spend_complete"] is False
    assert groups["/api/a"]["spend_usd"] == pytest.approx(0.001) and groups["/api/a"]["spend_complete"] is False
    assert groups["/api/b"]["spend_usd"] == pytest.approx(0.01) and groups["/api/b"]["spend_complete"] is True
    assert data["total"]["spend_usd"] == pytest.approx(0.011) and data["total"]["spend_complete"] is False


@pytest.mark.parametrize(
    "argv, message",
    [
        (["stats", "--by", "colour"], "--by 'colour'"),
        (["stats", "--since", "yesterday"], "--since 'yesterday'"),
        (["stats", "--month", "2026-13"], "--month '2026-13'"),
        (["stats", "--bogus"], "No such option"),
        (["stats", "--database-url", "nosuchdb://x"], "nosuchdb"),
        (["export", "--format", "xml"], "--format 'xml'"),
        (["stats", "--database-url", "sqlite:///unused.db", "--by"], "requires an argument. (see `costtrack stats --help`)"),
        (["stats", "--database-url", "postgresql+psycopg://nobody@127.0.0.1:9/x?connect_timeout=2"],
         "check --database-url, or $COSTTRACK_DATABASE_URL / .env when the flag is not given"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    if "--database-url" not in argv:
        argv = [*argv, "--database-url", f"sqlite:///{tmp_path}/x.db"]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("costtrack: error:") and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "command",
    [["stats"], ["export", "--format", "jsonl"], ["reprice"], ["alerts", "check", "--monthly-budget", "10"],
     ["report", "audit", "--no-charts"], ["simulate", "--cache-ttl", "1h"], ["demo", "--calls", "5", "--no-report"],
     ["bench", "--target", "a=http://127.0.0.1:9/v1", "--model", "a=x"]],
    ids=lambda c: " ".join(c[:2]),
)  # fmt: skip
@pytest.mark.parametrize("database", ["refused", "no-directory", "not-sqlite"])
def test_a_database_that_cannot_be_used_is_one_line_and_exit_2(command, database, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.db").write_text("these are notes, not a database\n" * 100)
    url = {
        "refused": "postgresql+psycopg://postgres@127.0.0.1:9/x?connect_timeout=2",
        "no-directory": f"sqlite:///{tmp_path}/missing/dir/x.db",
        "not-sqlite": f"sqlite:///{tmp_path}/notes.db",
    }[database]
    assert run([*command, "--database-url", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("costtrack: error:") and "--database-url" in err
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", [["stats"], ["export", "--format", "csv"], ["report", "audit"], ["reprice"],
                                     ["alerts", "check", "--monthly-budget", "10"]], ids=lambda c: c[0])  # fmt: skip
@pytest.mark.parametrize("app_tables", ["users", "migrated"])
def test_another_apps_database_is_an_error_and_left_as_it_was(command, app_tables, tmp_path, capsys):
    """A read pointed at another app's database added costtrack's tables to it; one with the app's own Alembic
    migrations ended in a 100-line traceback (review findings)."""
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        if app_tables == "migrated":  # the app's own Alembic history, which costtrack's cannot follow
            db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
            db.execute("INSERT INTO alembic_version VALUES ('deadbeef1234')")
    with sqlite3.connect(path) as db:
        before = sorted(name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    assert run([*command, "--database-url", f"sqlite:///{path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("costtrack: error:") and "--database-url" in err
    with sqlite3.connect(path) as db:
        assert sorted(name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")) == before


def test_cli_input_the_review_found_untold(tmp_path, capsys, monkeypatch, seeded, database_url):
    """Each was a traceback (exit 1): a .env saved as UTF-16, a date an offset takes before year 1, an export to a
    full disk, a cache prefix that globbed another app's keys; and a demo into an in-memory database said it stored
    its records, then found none."""
    cases = [
        (["stats", "--since", "0001-01-01T00:00+01:00", "--database-url", database_url], "out of range"),
        (["prices", "show", "gpt-4o", "--at", "9999-12-31T23:00"], "out of range"),
        (["export", "-o", "/dev/full", "--database-url", database_url], "No space left on device"),
        (["cache", "clear", "--redis-url", "redis://127.0.0.1:9/0", "--prefix", "*"], "invalid cache prefix"),
        # A count past a float's range priced Infinity, printed as `"cost_usd": Infinity`, no JSON (CLI review).
        (["prices", "cost", "gpt-4o", "--input-tokens", "1" + "0" * 320, "--output-tokens", "1", "--json"],
         "less than or equal to 9007199254740992"),
        # redis-py ignored a database that is no number and cleared database 0 (CLI review).
        (["cache", "clear", "--redis-url", "redis://127.0.0.1:9/3abc"], "database '3abc' is not a number"),
        (["prices", "cost", "gpt-4o", "--input-tokens", "10", "--output-tokens", "1", "--service-tier", "batch"],
         "is priced with --batch"),  # it priced the standard rates (diff review)
        (["calc", "--compare", "", "--requests-per-day", "1", "--input-tokens", "1", "--output-tokens", "1"],
         "--compare is given an empty list"),  # said as "--models is empty", a flag never typed (diff review)
        (["calc", "--volumes", "1,,2", "-m", "gpt-4o-mini", "--requests-per-day", "1", "--input-tokens", "1",
          "--output-tokens", "1"], "has an empty item"),
        (["demo", "--database-url", "sqlite://", "--calls", "5", "--no-report"], "in-memory database"),
    ]
    for argv, message in cases:
        assert run(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COSTTRACK_DATABASE_URL", raising=False)
    (tmp_path / ".env").write_bytes("COSTTRACK_DATABASE_URL=sqlite:///x.db\n".encode("utf-16"))
    assert run(["stats"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "save it as UTF-8" in err


@pytest.mark.parametrize("command", [["stats"], ["export", "--format", "csv"], ["report", "audit"]], ids=lambda c: c[0])
def test_a_mistyped_sqlite_path_is_an_error_not_a_new_database(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run([*command, "--database-url", f"sqlite:///{tmp_path}/costrack.db"]) == 2
    err = capsys.readouterr().err
    assert "no records database at" in err and err.count("\n") == 1
    assert not (tmp_path / "costrack.db").exists()


@pytest.mark.parametrize(
    "argv, message",
    [(["stats", "--month", "9999-12"], "out of range"), (["stats", "--since", "99999999999d"], "before year 1")],
)
def test_periods_out_of_range_are_one_line_errors(argv, message, seeded, database_url, capsys):
    assert run([*argv, "--database-url", database_url]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_empty_database_says_what_to_do(tmp_path, capsys):
    assert run(["stats", "--database-url", f"sqlite:///{tmp_path}/empty.db"]) == 2
    err = capsys.readouterr().err
    assert "no records" in err and "costtrack demo" in err


def test_a_model_priced_per_hour_shows_per_hour_not_zero(tracker, make_record, database_url, capsys):
    """A self-hosted model priced per hour has no per-call cost: stats says so, never a silent $0."""
    tracker.add(make_record(model="llama3.1:8b", model_requested="llama3.1:8b", provider="ollama", cost_usd=None,
                            price_source="overrides:prices.toml:llama3.1:8b (per hour)", tokens_input=100, tokens_output=20))  # fmt: skip
    tracker.add(make_record(model="llama3.1:8b", model_requested="llama3.1:8b", provider="ollama", cost_usd=0.0,
                            status="error", error_type="http_500"))  # a failed call: not billed  # fmt: skip
    tracker.add(make_record(model="gpt-4o-mini", cost_usd=0.25, tokens_input=100, tokens_output=20))
    tracker.flush()
    assert run(["stats", "--by", "model", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    spend = {cells[1].strip(): cells[3].strip() for line in out.splitlines() if len(cells := line.split("│")) > 4}
    assert (spend["llama3.1:8b"], spend["TOTAL"]) == ("per hour", "$0.2500 + per hour")
    assert "1 calls went to self-hosted models priced per hour" in out
    assert run(["stats", "--json", "--by", "model", "--database-url", database_url]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["per_hour_calls"] == 1 and data["unpriced_models"] == []
    models = {g["key"]: g for g in data["groups"]}
    assert models["llama3.1:8b"]["spend_usd"] is None and models["llama3.1:8b"]["spend_complete"] is False
    assert data["total"]["spend_usd"] == pytest.approx(0.25) and data["total"]["spend_complete"] is False


def test_endpoint_names_are_printed_as_they_are(tracker, make_record, database_url, capsys):
    tracker.add(make_record(endpoint="/api/[bold]items:free:"))
    tracker.flush()
    assert run(["stats", "--by", "endpoint", "--database-url", database_url]) == 0
    assert "/api/[bold]items:free:" in capsys.readouterr().out


def test_export_jsonl_and_csv(seeded, database_url, capsys, tmp_path):
    assert run(["export", "--format", "jsonl", "--database-url", database_url]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["endpoint"] for line in lines] == ["/api/b", "/api/a"]  # oldest first
    assert lines[1]["timestamp"] == "2026-11-02T00:00:00+00:00" and lines[1]["tags"] == {"run": "x"}
    assert "request_body" not in lines[0] and {"id", "cost_usd", "price_source", "tokens_reasoning"} <= set(lines[0])
    out = tmp_path / "calls.csv"
    assert run(["export", "--format", "csv", "-o", str(out), "--since", "2026-11-01", "--database-url", database_url]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 1 and rows[0]["model"] == "gpt-4o-mini-2024-07-18" and json.loads(rows[0]["tags"]) == {"run": "x"}


def test_export_gives_tags_in_key_order_on_both_backends(tracker, make_record, database_url, capsys, tmp_path):
    """Review finding: JSONL tags came in the order the app wrote them from SQLite and in jsonb's order from Postgres
    (CSV sorted them already)."""
    tracker.add(make_record(tags={"ab_test": "t1", "ab_arm": "b", "meta": {"zeta": 1, "alpha": [{"y": 1, "x": 2}]}}))
    tracker.flush()
    assert run(["export", "--format", "jsonl", "--database-url", database_url]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert '"tags": {"ab_arm": "b", "ab_test": "t1", "meta": {"alpha": [{"x": 2, "y": 1}], "zeta": 1}}' in line


def test_reprice_after_adding_an_override(tracker, make_record, database_url, tmp_path, capsys):
    tracker.add(make_record(model="my-model", model_requested="my-model", provider="openai", cost_usd=None,
                            price_source=None, tokens_input=1_000_000, tokens_output=500_000))  # fmt: skip
    tracker.flush()
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."my-model"]\ninput = 0.5\noutput = 1.5\n')
    assert run(["reprice", "--prices-file", str(prices), "--database-url", database_url]) == 0
    assert "1 changed" in capsys.readouterr().out
    [rec] = tracker.records()
    assert rec.cost_usd == pytest.approx(0.5 + 0.75) and "my-model" in rec.price_source


def test_reprice_without_the_prices_file_keeps_what_it_priced(tracker, make_record, database_url, tmp_path, capsys, caplog):
    """Re-pricing without the prices file a call was priced from leaves its cost as it is, never unpriced."""
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."my-model"]\ninput = 0.5\noutput = 1.5\n')
    tracker.add(make_record(model="my-model", model_requested="my-model", provider="openai", cost_usd=None,
                            price_source=None, tokens_input=1_000_000, tokens_output=500_000))  # fmt: skip
    tracker.add(make_record(model="other-model", model_requested="other-model", provider="openai", cost_usd=None,
                            price_source=None, tokens_input=10, tokens_output=5))  # fmt: skip
    tracker.flush()
    assert run(["reprice", "--prices-file", str(prices), "--database-url", database_url]) == 0
    assert "1 changed, 1 still unpriced" in capsys.readouterr().out
    from costtrack.logs import reset_once

    reset_once()
    with caplog.at_level("WARNING", logger="costtrack"):
        assert run(["reprice", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    assert "0 changed, 1 still unpriced" in out and "1 records kept as they were" in out
    assert "recorded unpriced" not in caplog.text  # the call-time warning would contradict "kept"
    priced, unpriced = sorted(tracker.records(), key=lambda r: r.model != "my-model")
    assert priced.cost_usd == pytest.approx(0.5 + 0.75) and f"{prices}" in priced.price_source
    assert (unpriced.cost_usd, unpriced.price_source) == (None, None)


def test_reprice_takes_back_a_catalog_price_the_catalog_no_longer_gives(tracker, make_record, database_url, capsys):
    """gpt-oss on the app's own vLLM was priced at a host's catalog price: reprice unprices it (it kept it, advising a
    prices file the price never came from: review finding). A prices-file price stays kept (the test above)."""
    tracker.add(make_record(model="gpt-oss-20b", model_requested="gpt-oss-20b", provider="vllm", cost_usd=0.4,
                            price_source="genai-prices 0.2.3:openai/gpt-oss-20b", tokens_input=1000, tokens_output=100))  # fmt: skip
    tracker.flush()
    assert run(["reprice", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    assert "1 changed, 1 still unpriced" in out and "kept as they were" not in out
    [rec] = tracker.records()
    assert (rec.cost_usd, rec.price_source) == (None, None)


def test_reprice_where_the_catalog_cannot_load_keeps_catalog_prices(tracker, make_record, database_url, capsys,
                                                                    monkeypatch):  # fmt: skip
    """Without the catalog (genai-prices needs Python 3.11+) nothing finds a price: that is not the catalog taking one
    back, so catalog-priced records keep their costs (a review found them all wiped)."""
    from costtrack import pricing

    tracker.add(make_record(model="gpt-4o-mini", model_requested="gpt-4o-mini", provider="openai", cost_usd=0.0035,
                            price_source="genai-prices 0.2.3:openai/gpt-4o-mini", tokens_input=1000, tokens_output=100))  # fmt: skip
    tracker.flush()
    monkeypatch.setattr(pricing, "_catalog", pricing._EmptyCatalog())
    assert run(["reprice", "--database-url", database_url]) == 0
    assert "1 records kept as they were" in capsys.readouterr().out
    [rec] = tracker.records()
    assert rec.cost_usd == 0.0035


def test_reprice_prices_a_call_at_the_service_tier_it_was_served_at(tracker, make_record, database_url, capsys):
    """A flex answer (its tier in its tags) is re-priced at flex rates, not the standard ones."""
    tracker.add(make_record(model="o3-2025-04-16", model_requested="o3", cost_usd=None, price_source=None,
                            timestamp=datetime(2026, 11, 2, tzinfo=timezone.utc), tags={"costtrack.service_tier": "flex"},
                            tokens_input=1_000_000, tokens_output=1_000_000))  # fmt: skip
    tracker.flush()
    assert run(["reprice", "--database-url", database_url]) == 0
    assert "1 changed" in capsys.readouterr().out
    [rec] = tracker.records()
    assert rec.cost_usd == pytest.approx(1.0 + 4.0) and rec.price_source.endswith("(flex)")  # o3 flex: $1 / $4 per 1M


def test_reprice_reads_no_billing_fact_from_the_apps_own_tags(tracker, database_url, capsys):
    """An app's own `batch` and `service_tier` tags were read back as how the call was billed: reprice halved a
    call tagged batch="nightly" and priced one tagged service_tier="priority" at the priority rates (review finding)."""
    import costtrack

    client = tracker.wrap(openai_client(Recorder(*[serve("openai_chat.json") for _ in range(3)])))
    for tags in ({"batch": "nightly"}, {"batch": True, "service_tier": "priority"}, {"batch": True, "batch_id": "nightly-7"}):
        with costtrack.context(tags=tags):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    tracker.flush()
    before = {r.id: (r.cost_usd, r.price_source) for r in tracker.records()}
    assert run(["reprice", "--database-url", database_url]) == 0
    assert "0 changed" in capsys.readouterr().out
    assert {r.id: (r.cost_usd, r.price_source) for r in tracker.records()} == before
    assert all(r.tags.get("batch") is not None and "costtrack.service_tier" not in r.tags for r in tracker.records())


def test_reprice_reads_the_billing_tags_of_records_made_before_they_were_prefixed(tracker, make_record, database_url,
                                                                                  capsys):  # fmt: skip
    """Records stored before costtrack prefixed its tags (`batch`, `service_tier`) keep their discount and tier: their
    price_source shows costtrack priced them so."""
    at = datetime(2026, 11, 2, tzinfo=timezone.utc)
    tokens = {"tokens_input": 1_000_000, "tokens_output": 1_000_000, "timestamp": at, "cost_usd": None}
    tracker.add(make_record(model="o3-2025-04-16", model_requested="o3", tags={"service_tier": "flex"},
                            price_source="genai-prices 0.2.3:openai/o3 (flex)", **tokens))  # fmt: skip
    tracker.add(make_record(model="gpt-4o-mini-2024-07-18", model_requested="gpt-4o-mini", tags={"batch": True},
                            price_source="genai-prices 0.2.3:openai/gpt-4o-mini (batch 50%)", **tokens))  # fmt: skip
    # A batch result unpriced when stored (no price_source) has the batch_id costtrack.batching wrote beside its batch
    # tag (review finding: it was repriced at the full rates). A tier on a record unpriced then reads as an app's own tag
    # would: standard rates, as an app's `service_tier` must never be read as one (second review).
    tracker.add(make_record(model="gpt-4o-mini-2024-07-18", model_requested="gpt-4o-mini", price_source=None,
                            tags={"batch": True, "batch_id": "batch_abc"}, **tokens))  # fmt: skip
    tracker.add(make_record(model="gpt-4o-2024-08-06", model_requested="gpt-4o", tags={"service_tier": "priority"},
                            price_source=None, **tokens))  # fmt: skip
    # An app's own batch and batch_id tags on a call unpriced then: its batch_id is no provider's (batch_..., msgbatch_...),
    # so the call was not sent through a Batch API: standard rates (it was halved).
    tracker.add(make_record(model="gpt-4o-mini-2024-07-18", model_requested="gpt-4o-mini", price_source=None,
                            tags={"batch": True, "batch_id": "nightly-7", "own": True}, **tokens))  # fmt: skip
    tracker.flush()
    assert run(["reprice", "--database-url", database_url]) == 0
    assert "5 changed" in capsys.readouterr().out
    for rec in tracker.records():
        if rec.model == "o3-2025-04-16":  # o3 flex: $1 / $4 per 1M
            assert rec.cost_usd == pytest.approx(1.0 + 4.0) and rec.price_source.endswith("(flex)")
        elif rec.model == "gpt-4o-2024-08-06":  # gpt-4o standard: $2.50 / $10 per 1M
            assert rec.cost_usd == pytest.approx(2.5 + 10.0) and not rec.price_source.endswith(")")
        elif rec.tags.get("own"):  # gpt-4o-mini standard: $0.15 / $0.60 per 1M
            assert rec.cost_usd == pytest.approx(0.15 + 0.60) and not rec.price_source.endswith(")")
        else:
            assert rec.cost_usd == pytest.approx((0.15 + 0.60) / 2) and "batch" in rec.price_source


def test_reprice_gives_a_per_hour_model_its_source_but_keeps_an_unreadable_usage_unknown(tracker, make_record, database_url,
                                                                                        tmp_path, capsys):  # fmt: skip
    """An unreadable usage stays unknown whatever the prices, but a model priced per hour gets its per-hour source (an
    older record of a self-hosted model stayed 'unpriced' for good: review finding)."""
    tags = {"costtrack.usage_unreadable": True}
    tracker.add(make_record(model="llama3.1:8b", model_requested="llama3.1:8b", provider="ollama", cost_usd=None,
                            price_source=None, tokens_input=300, tags=tags))  # fmt: skip
    tracker.add(make_record(model="gpt-4o-mini", model_requested="gpt-4o-mini", cost_usd=None, price_source=None,
                            tokens_input=300, tags=tags))  # fmt: skip
    tracker.flush()
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."llama3.1:8b"]\nper_hour = 0.80\n')
    assert run(["reprice", "--prices-file", str(prices), "--database-url", database_url]) == 0
    assert "1 changed, 1 still unpriced" in capsys.readouterr().out
    local, api = sorted(tracker.records(), key=lambda r: r.model != "llama3.1:8b")
    assert local.cost_usd is None and local.price_source is not None and local.price_source.endswith(":llama3.1:8b")
    assert (api.cost_usd, api.price_source) == (None, None)  # priced per token: unknown, never the readable part's


def test_reprice_prices_what_a_cache_hit_saved(tracker, make_record, database_url, tmp_path, capsys):
    tokens = {"tokens_input": 1_000_000, "tokens_output": 500_000, "price_source": None}
    tracker.add(make_record(model="my-model", model_requested="my-model", provider="openai", cost_usd=None, **tokens))
    tracker.add(make_record(model="my-model", model_requested="my-model", provider="openai", cost_usd=0.0,
                            cache_hit=True, cost_saved_usd=None, **tokens))  # fmt: skip
    tracker.flush()
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."my-model"]\ninput = 0.5\noutput = 1.5\n')
    assert run(["reprice", "--prices-file", str(prices), "--database-url", database_url]) == 0
    assert "2 changed" in capsys.readouterr().out
    hit, live = sorted(tracker.records(), key=lambda r: not r.cache_hit)
    assert (live.cost_usd, live.cost_saved_usd) == (pytest.approx(1.25), None)
    assert (hit.cost_usd, hit.cost_saved_usd) == (0.0, pytest.approx(1.25)) and "my-model" in hit.price_source


def test_reprice_prices_what_a_fallback_answer_saved(tracker, make_record, database_url, tmp_path, capsys):
    """An answer's saving is priced again against what it names: the tag, or (older records) the requested model."""
    tokens = {"tokens_input": 1_000_000, "tokens_output": 500_000, "price_source": None, "cost_usd": None}
    chain = {"fallback_chain": "ollama:my-local>my-model", "fallback_requested": "my-model"}
    tracker.add(make_record(model="my-local", model_requested="my-local", provider="ollama", cost_saved_usd=None,
                            tags={**chain, "fallback_saved_against": "openai:my-model"}, **tokens))  # fmt: skip
    tracker.add(make_record(model="my-cheap", model_requested="my-cheap", provider="openai", cost_saved_usd=0.5,
                            tags={"fallback_chain": "my-cheap>my-model", "fallback_requested": "my-model"}, **tokens))  # fmt: skip
    tracker.add(make_record(model="my-cheap", model_requested="my-cheap", provider="openai", cost_saved_usd=None,
                            tags={"fallback_chain": "my-cheap>my-model", "fallback_requested": "my-model",
                                  "fallback_reason": "rejected"}, **tokens))  # fmt: skip
    tracker.flush()
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."my-model"]\ninput = 2\noutput = 8\n[models."my-cheap"]\ninput = 0.5\noutput = 1.5\n'
                      '[models."my-local"]\nprovider = "ollama"\ninput = 0\noutput = 0\n')  # fmt: skip
    assert run(["reprice", "--prices-file", str(prices), "--database-url", database_url]) == 0
    assert "3 changed" in capsys.readouterr().out
    local, cheap, rejected = tracker.records()
    reference = 2 + 4  # my-model: 1M input at $2, 0.5M output at $8
    assert (local.cost_usd, local.cost_saved_usd) == (0.0, pytest.approx(reference))
    assert (cheap.cost_usd, cheap.cost_saved_usd) == (pytest.approx(1.25), pytest.approx(reference - 1.25))
    assert (rejected.cost_usd, rejected.cost_saved_usd) == (pytest.approx(1.25), None)  # not the answer: saved nothing
    # Nothing left to change: a second run changes nothing.
    assert run(["reprice", "--prices-file", str(prices), "--database-url", database_url]) == 0
    assert "0 changed" in capsys.readouterr().out


def test_demo_replaces_an_earlier_demo_and_leaves_an_apps_database_alone(tracker, make_record, database_url, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/demo.db"
    counts = []
    for _ in range(2):
        assert run(["demo", "--calls", "40", "--no-report", "--database-url", url]) == 0
        capsys.readouterr()
        assert run(["stats", "--json", "--database-url", url]) == 0
        counts.append(json.loads(capsys.readouterr().out)["total"]["calls"])
    assert counts[0] >= 40 and counts == [counts[0]] * 2  # one record per attempt (SDK retries included), not doubled
    # Records of an earlier release's demo (tagged source=demo) are the demo's too: replaced.
    from costtrack.store.database import make_engine
    from costtrack.store.schema import records

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(records.update().values(tags={"source": "demo"}))
    engine.dispose()
    assert run(["demo", "--calls", "40", "--no-report", "--database-url", url]) == 0
    assert "replaced the" in capsys.readouterr().err
    # A database with the app's own records: the demo refuses, and changes nothing.
    tracker.add(make_record())
    tracker.flush()
    assert run(["demo", "--calls", "5", "--no-report", "--database-url", database_url]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "already holds 1 records that are not the demo's" in err
    assert "--database-url sqlite:///costtrack-demo.db" in err
    assert len(tracker.records()) == 1


def test_demo_runs_offline_records_and_audits(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/demo.db"
    assert run(["demo", "--calls", "300", "--database-url", url]) == 0
    captured = capsys.readouterr()
    assert "/api/classify" in captured.out and "TOTAL" in captured.out
    # The next commands it suggests read the database it wrote, not ./costtrack.db (review finding)
    assert f"`costtrack stats --by model --database-url {url}`" in " ".join(captured.err.split())
    audit = (tmp_path / "docs" / "optimization-audit.md").read_text()
    assert "## 1. Current State Analysis" in audit and "/api/classify" in audit
    assert run(["stats", "--json", "--by", "endpoint", "--database-url", url]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["calls"] >= 300 and data["total"]["spend_usd"] > 0
    assert data["unpriced_models"] == []


# --------------------------------------------------------------------------- nothing in the period: said, exit 2


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert captured.out == "" and err.count("\n") == 1 and err.startswith("costtrack: error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_with_no_records_in_the_period_says_the_range_and_exits_2(fmt, seeded, database_url, capsys, tmp_path):
    assert run(["export", "--format", fmt, "--since", "2030-01-01", "--database-url", database_url]) == 2
    err = _one_line_error(capsys)
    assert "no records since 2030-01-01" in err
    assert "the database has records from 2026-10-30 00:00 UTC to 2026-11-02 00:00 UTC" in err and "--since" in err
    out = tmp_path / "calls.csv"
    assert run(["export", "--format", fmt, "-o", str(out), "--since", "2030-01-01", "--database-url", database_url]) == 2
    assert "no records since 2030-01-01" in _one_line_error(capsys)
    assert not out.exists()  # no empty file, no bare CSV header


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_of_an_empty_database_says_what_to_do_and_exits_2(fmt, engine, database_url, capsys):
    assert run(["export", "--format", fmt, "--database-url", database_url]) == 2
    err = _one_line_error(capsys)
    assert "the database has no records" in err and "costtrack demo" in err


@pytest.mark.parametrize(
    "argv, period, hint",
    [(["--month", "2020-01"], "no records in 2020-01", "--month"),
     (["--since", "2030-01-01"], "no records since 2030-01-01", "--since")],
)  # fmt: skip
def test_stats_with_records_outside_the_period_gives_the_range_not_the_demo(argv, period, hint, seeded, database_url, capsys):
    assert run(["stats", *argv, "--database-url", database_url]) == 2
    err = _one_line_error(capsys)
    assert period in err and hint in err
    assert "the database has records from 2026-10-30 00:00 UTC to 2026-11-02 00:00 UTC" in err
    assert "costtrack demo" not in err  # the database has records: recording more is not the answer


def test_version(capsys):
    assert run(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("costtrack ") and out.count("\n") == 1


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_into_a_pipe_closed_early_stops_quietly(fmt, tracker, make_record, database_url):
    """`costtrack export | head`: the reader has what it wanted; no error line (it said "Broken pipe", exit 2)."""
    for _ in range(2000):  # more than a pipe's buffer holds
        tracker.add(make_record())
    tracker.flush()
    command = [sys.executable, "-m", "costtrack", "export", "--format", fmt, "--database-url", database_url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read()
    code = process.wait(timeout=60)
    assert first.strip() and stderr == b""
    assert code == 1  # as Click and the Python docs have it for a closed pipe: quiet, not success


def test_printed_database_flags_are_shell_quoted_with_the_password_masked():
    """A path with a space broke the pasted command, a query's `&` sent it to the background (review finding)."""
    import shlex

    from costtrack.cli._common import database_flag

    spaced = database_flag("sqlite:////tmp/my demo.db")
    assert shlex.split(spaced) == ["--database-url", "sqlite:////tmp/my demo.db"]
    query = database_flag("postgresql+psycopg://app:s3cret@db:5432/app?sslmode=require&application_name=x")
    [_, url] = shlex.split(query)
    assert "s3cret" not in query and url.startswith("postgresql+psycopg://app:***@db:5432/app?")
    assert sorted(url.split("?")[1].split("&")) == ["application_name=x", "sslmode=require"]


def test_a_read_behind_a_locked_postgres_table_ends_in_one_line(postgres_url, capsys, monkeypatch):
    """`costtrack stats` behind a table another session locked (a migration, LOCK TABLE) waited for good: reads had no
    lock_timeout, only inserts (CLI review)."""
    import psycopg

    import costtrack.store.database as database

    monkeypatch.setattr(database, "POSTGRES_LOCK_TIMEOUT", 0.3)  # the waiting, shortened
    codes: list[int] = []
    reader = threading.Thread(target=lambda: codes.append(run(["stats", "--database-url", postgres_url])))
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as holder:
        holder.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")  # held until the block ends (rolled back)
        reader.start()
        reader.join(timeout=30)  # ends at once after the lock_timeout; without one it waits for the lock's end
        finished = not reader.is_alive()
    reader.join()
    assert finished and codes == [2]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stayed locked by another session for 0.3 s" in err, err


@pytest.mark.parametrize("command", [["stats"], ["export"], ["report", "audit", "-o", "-"], ["simulate", "--cache-ttl", "1h"],
                                     ["alerts", "check", "--monthly-budget", "10"]])
def test_a_read_of_a_database_without_tables_adds_none(fresh_postgres_url, capsys, command):
    """`costtrack stats --database-url postgresql://postgres@host:5432/` (the name left out) created costtrack's tables
    in Postgres' own `postgres` database, then said it had no records (CLI review)."""
    from sqlalchemy import inspect

    from costtrack.store.database import make_engine

    assert run([*command, "--database-url", fresh_postgres_url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no costtrack records (no tables at all)" in err, err
    engine = make_engine(fresh_postgres_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_a_database_the_command_may_not_write_is_said_so(tmp_path, capsys):
    """`demo` into a directory that does not exist said "cannot read the records database ... check --database-url" (CLI
    review): the URL was right, the file could not be made."""
    assert run(["demo", "--database-url", f"sqlite:///{tmp_path}/missing/sub/d.db", "--calls", "5", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot use the records database" in err and "which must exist" in err, err


def test_the_demo_refuses_another_apps_database(tmp_path, capsys):
    """`demo --database-url sqlite:///other.db` added costtrack's tables and simulated records to another app's database,
    which the read commands then refused (CLI review)."""
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER)")
    assert run(["demo", "--calls", "5", "--no-report", "--database-url", f"sqlite:///{path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no costtrack records (its tables: users)" in err
    with sqlite3.connect(path) as db:
        assert [name for (name,) in db.execute("SELECT name FROM sqlite_master")] == ["users"]


def test_the_reads_lock_bound_leaves_the_users_pgoptions_alone(postgres_url, monkeypatch):
    """The bound was first a startup option (-c lock_timeout): it overrode PGOPTIONS (a search_path putting costtrack in
    a schema of its own) and PgBouncer refuses startup options (diff review). It is set per transaction instead."""
    from sqlalchemy import text

    from costtrack.cli import _common

    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=4321")
    engine = _common.read_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "4321ms"
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "30s"
    finally:
        engine.dispose()


def test_export_to_dash_is_the_standard_output(tmp_path, capsys, make_record, monkeypatch):
    """`export -o -` wrote a file named "-" where `report audit -o -` prints (quick review)."""
    import costtrack

    monkeypatch.chdir(tmp_path)
    tracker = costtrack.Tracker(f"sqlite:///{tmp_path}/r.db", budgets=[])
    tracker.add(make_record())
    tracker.close()
    assert run(["export", "-o", "-", "--database-url", f"sqlite:///{tmp_path}/r.db"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["provider"] == "openai"
    assert not (tmp_path / "-").exists()
