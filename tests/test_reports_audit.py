"""The optimization audit: every figure of the document against values computed here from the seeded records."""

from __future__ import annotations

import itertools
import math
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costtrack.format import count, days, ms, pct, usd
from costtrack.pricing import PriceBook
from costtrack.reports.audit import AuditOptions, build_audit, min_cacheable_tokens
from costtrack.reports.render import render
from costtrack.store.database import make_engine

from helpers import nearest_rank, price, rates

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
MTOK = Decimal(1_000_000)





@pytest.fixture
def workload(tracker, make_record):
    """One endpoint per detector, with numbers chosen so each saving can be computed by hand."""
    at = T0 + timedelta(days=5)
    gpt4o, sonnet = rates("openai", "gpt-4o-2024-08-06", at), rates("anthropic", "claude-sonnet-4-5-20250929", at)
    haiku, mini = rates("anthropic", "claude-haiku-4-5-20251001", at), rates("openai", "gpt-4o-mini-2024-07-18", at)
    recs = []
    # Classification on gpt-4o, 4 output tokens, each request sent twice 30 minutes apart.
    for i in range(60):
        recs.append(make_record(
            timestamp=T0 + timedelta(minutes=30 * i), endpoint="/api/classify", provider="openai",
            model="gpt-4o-2024-08-06", model_requested="gpt-4o", tokens_input=40 + i % 3, tokens_output=4,
            cost_usd=price(gpt4o, 40 + i % 3, 4), request_hash=f"c{i // 2}", latency_ms=float(100 + (i * 37) % 97),
        ))  # fmt: skip
    # Chat on Claude Sonnet: a 3,000-token prompt every 3 minutes, never cached.
    for i in range(40):
        recs.append(make_record(
            timestamp=T0 + timedelta(days=1, minutes=3 * i), endpoint="/api/chat", provider="anthropic",
            model="claude-sonnet-4-5-20250929", model_requested="claude-sonnet-4-5", tokens_input=3000 + 10 * i,
            tokens_output=100, cost_usd=price(sonnet, 3000 + 10 * i, 100), request_hash=f"chat{i}",
            latency_ms=float(2000 + 50 * i),
        ))  # fmt: skip
    # A nightly job on Haiku.
    for i in range(10):
        recs.append(make_record(
            timestamp=T0 + timedelta(hours=12 * i), endpoint="/jobs/nightly-digest", provider="anthropic",
            model="claude-haiku-4-5-20251001", model_requested="claude-haiku-4-5", tokens_input=800, tokens_output=100,
            cost_usd=price(haiku, 800, 100), request_hash=f"d{i}", latency_ms=900.0 + i,
        ))  # fmt: skip
    # Extraction with long answers: 40, 45, ..., 135 output tokens.
    for i in range(20):
        recs.append(make_record(
            timestamp=T0 + timedelta(days=2, hours=i), endpoint="/api/extract", provider="openai",
            model="gpt-4o-mini-2024-07-18", model_requested="gpt-4o-mini", tokens_input=30, tokens_output=40 + 5 * i,
            cost_usd=price(mini, 30, 40 + 5 * i), request_hash=f"e{i}", latency_ms=800.0 + 10 * i,
        ))  # fmt: skip
    # Money on failures: two unbilled errors, a cut stream, a rejected cheap-first answer.
    recs += [
        make_record(timestamp=T0 + timedelta(hours=1), endpoint="/api/classify", model="gpt-4o", model_requested="gpt-4o",
                    status="error", error_type="rate_limit_exceeded", tokens_input=0, tokens_output=0, cost_usd=0.0,
                    request_hash="x1", latency_ms=30.0, attempt=1),
        make_record(timestamp=T0 + timedelta(hours=1, seconds=1), endpoint="/api/classify", model="gpt-4o",
                    model_requested="gpt-4o", status="error", error_type="rate_limit_exceeded", tokens_input=0,
                    tokens_output=0, cost_usd=0.0, request_hash="x1", latency_ms=31.0, attempt=2),
        make_record(timestamp=T0 + timedelta(days=1, hours=5), endpoint="/api/chat", provider="anthropic",
                    model="claude-sonnet-4-5-20250929", model_requested="claude-sonnet-4-5", status="incomplete",
                    tokens_input=500, tokens_output=20, cost_usd=0.002, request_hash="cut", latency_ms=700.0),
        make_record(timestamp=T0 + timedelta(days=3), endpoint="/api/classify", model="gpt-4o-mini-2024-07-18",
                    model_requested="gpt-4o-mini", tokens_input=40, tokens_output=4, cost_usd=0.0001,
                    request_hash="rej", latency_ms=90.0,
                    tags={"fallback_chain": "gpt-4o-mini>gpt-4o", "fallback_requested": "gpt-4o",
                          "fallback_reason": "rejected"}),
    ]  # fmt: skip
    # An unpriced model.
    for i in range(3):
        recs.append(make_record(timestamp=T0 + timedelta(days=4, hours=i), endpoint="/api/classify", model="mystery-llm",
                                model_requested="mystery-llm", tokens_input=100, tokens_output=10, cost_usd=None,
                                price_source=None, request_hash=f"m{i}", latency_ms=400.0))  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    assert tracker.flush()
    return recs


def cache_replay(recs, ttl):
    """(would-be hits, their cost): calls, whatever their status, whose hash a successful call answered at most `ttl`
    s before (a failed call stores nothing; a successful one, a repeat too, stores the answer afresh)."""
    last_ok: dict[str, datetime] = {}
    cost, hits = 0.0, 0
    for r in sorted(recs, key=lambda r: (r.timestamp, r.id)):
        if not r.request_hash:
            continue
        prev = last_ok.get(r.request_hash)
        if prev is not None and not r.cache_hit and (r.timestamp - prev).total_seconds() <= ttl:
            cost += r.cost_usd or 0
            hits += 1
        if r.status == "ok":
            last_ok[r.request_hash] = r.timestamp
    return hits, cost


def expected(recs):
    """The audit's figures, computed here without costtrack's report code."""
    first, last = min(r.timestamp for r in recs), max(r.timestamp for r in recs)
    days = max((last - first).total_seconds() / 86400, 1.0)
    spend = sum(r.cost_usd or 0 for r in recs)
    at = last
    sonnet = rates("anthropic", "claude-sonnet-4-5-20250929", at)
    mini = rates(None, "gpt-4o-mini", at)

    # Response cache, TTL 1h: the second call of each classify pair.
    hits, cache = cache_replay(recs, 3600)
    # Prompt caching on chat: prefix = smallest prompt; warm = within 5 minutes of the previous call.
    chat = sorted((r for r in recs if r.endpoint == "/api/chat" and r.status == "ok"), key=lambda r: r.timestamp)
    prefix = min(r.tokens_input for r in chat)
    warm = sum(1 for a, b in itertools.pairwise(chat) if (b.timestamp - a.timestamp).total_seconds() <= 300)
    cold = len(chat) - warm
    prompt = float((warm * prefix * (sonnet["input"] - sonnet["cached_input"])
                    - cold * prefix * (sonnet["cache_write"] - sonnet["input"])) / MTOK)  # fmt: skip
    # gpt-4o -> gpt-4o-mini on classify.
    c4o = [r for r in recs if r.endpoint == "/api/classify" and r.model_requested == "gpt-4o" and r.cost_usd]
    swap = sum(r.cost_usd - price(mini, r.tokens_input, r.tokens_output) for r in c4o)
    # Batch API for the nightly job.
    batch = sum(r.cost_usd for r in recs if r.endpoint == "/jobs/nightly-digest") / 2
    # Output waste on extract: tokens above the median (nearest rank) at the output rate.
    outs = [r.tokens_output for r in recs if r.endpoint == "/api/extract"]
    median = nearest_rank(outs, 50)
    waste = float(sum(max(o - median, 0) for o in outs) * rates("openai", "gpt-4o-mini-2024-07-18", at)["output"] / MTOK)
    failures = 0.002 + 0.0001
    return {
        "first": first, "last": last, "days": days, "spend": spend, "monthly": spend * 30 / days, "hits": hits,
        "response-cache": cache, "prompt-cache": prompt, "model-swap": swap, "batch": batch, "output-waste": waste,
        "failures": failures, "median": median, "prefix": prefix, "warm": warm,
    }  # fmt: skip


def test_detectors_savings_and_ranking(workload, database_url):
    exp = expected(workload)
    audit = build_audit(make_engine(database_url), PriceBook(), since=None, now=exp["last"])
    assert audit.baseline_usd == pytest.approx(exp["spend"], abs=1e-12)
    assert audit.baseline_monthly_usd == pytest.approx(exp["monthly"], abs=1e-12)
    by_kind = {o.kind: o for o in audit.opportunities}
    assert set(by_kind) == {"response-cache", "prompt-cache", "model-swap", "batch", "output-waste", "failures", "unpriced"}
    for kind in ("response-cache", "prompt-cache", "model-swap", "batch", "output-waste", "failures"):
        assert by_kind[kind].savings_usd == pytest.approx(exp[kind], abs=1e-12), kind
        assert by_kind[kind].monthly_usd == pytest.approx(exp[kind] * 30 / exp["days"], abs=1e-12), kind
        assert by_kind[kind].share == pytest.approx(exp[kind] / exp["spend"]), kind
    assert by_kind["unpriced"].savings_usd is None
    ranked = sorted(("response-cache", "prompt-cache", "model-swap", "batch", "output-waste", "failures"),
                    key=lambda k: -exp[k])  # fmt: skip
    assert [o.kind for o in audit.opportunities] == [*ranked, "unpriced"]
    assert [o.kind for o in audit.top] == ranked[:3]
    # The top three here touch different endpoints, so their savings add up exactly.
    assert audit.optimized_usd == pytest.approx(exp["spend"] - sum(exp[k] for k in ranked[:3]), abs=1e-12)
    assert not audit.nothing_found


def test_current_state_figures(workload, database_url):
    exp = expected(workload)
    audit = build_audit(make_engine(database_url), PriceBook(), since=None, now=exp["last"])
    latency = {row[0]: row for row in audit.latency.rows}
    for endpoint in ("/api/classify", "/api/chat", "/api/extract", "/jobs/nightly-digest"):
        values = [r.latency_ms for r in workload if r.endpoint == endpoint]
        calls = [r for r in workload if r.endpoint == endpoint]
        row = latency[endpoint]
        assert row[1] == len(values) and row[2] == pytest.approx(sum(values) / len(values))
        assert row[3:6] == [nearest_rank(values, 50), nearest_rank(values, 95), nearest_rank(values, 99)]
        assert row[6] == pytest.approx(sum(r.status == "error" for r in calls) / len(calls))
    everything = [r.latency_ms for r in workload]
    assert latency["**All endpoints**"][3:6] == [nearest_rank(everything, p) for p in (50, 95, 99)]
    inventory = {(row[0], row[1], row[2]): row for row in audit.inventory.rows}
    classify = [r for r in workload if r.endpoint == "/api/classify" and r.model_requested == "gpt-4o"]
    answered = [r for r in classify if r.status != "error"]
    row = inventory[("/api/classify", "gpt-4o-2024-08-06", "gpt-4o")]  # the model that answered
    assert row[3:8] == [len(answered), sum(r.tokens_input for r in answered), sum(r.tokens_output for r in answered), 0,
                        pytest.approx(sum(r.cost_usd for r in answered), abs=1e-12)]  # fmt: skip
    assert row[8] == pytest.approx(sum(r.cost_usd for r in answered) / exp["spend"])
    failed = inventory[("/api/classify", "(failed: no answer)", "gpt-4o")]  # the failed calls got no answer
    assert failed[3] == sum(r.status == "error" for r in classify) == 2
    assert audit.error_rate == pytest.approx(sum(r.status == "error" for r in workload) / len(workload))
    assert audit.failed_calls == sum(r.status == "error" for r in workload)
    assert audit.incomplete_calls == sum(r.status == "incomplete" for r in workload) > 0
    assert audit.cache_status == "none"
    assert [r[0] for r in audit.unpriced.rows] == ["mystery-llm"] and audit.unpriced.rows[0][2] == 3


def test_calculator_and_breakeven(workload, database_url):
    exp = expected(workload)
    audit = build_audit(make_engine(database_url), PriceBook(), since=None, now=exp["last"])
    requests = sum(r.attempt == 1 for r in workload)
    per = exp["spend"] / requests
    optimized_per = audit.optimized_usd / requests
    for row, volume in zip(audit.calculator.rows, (100, 1_000, 10_000, 100_000)):
        assert row[0] == volume
        assert row[1] == pytest.approx(per * volume, abs=1e-12)
        assert row[2] == pytest.approx(optimized_per * volume, abs=1e-12)
    gpu_monthly = 1600 / (3 * 12) + 450 / 1000 * 8 * 30 * 0.12  # rtx4090 (owned), 8 h/day
    assert audit.breakeven["gpu_monthly"] == pytest.approx(gpu_monthly)
    assert audit.calculator.rows[0][4] == pytest.approx(gpu_monthly)
    assert audit.breakeven["breakeven_current"] == pytest.approx(gpu_monthly / per, rel=1e-9)
    assert audit.breakeven["breakeven_optimized"] == pytest.approx(gpu_monthly / optimized_per, rel=1e-9)


def test_document_shows_the_figures(workload, database_url, tmp_path):
    exp = expected(workload)
    audit = build_audit(make_engine(database_url), PriceBook(), since=None, now=exp["last"],
                        options=AuditOptions(period_args="--since 2026-10-01"))  # fmt: skip
    text = render("audit", {"audit": audit, "charts": [], "charts_note": "no charts", "version": "test",
                            "database": "db", "command": "costtrack report audit"})  # fmt: skip
    headings = ["## 1. Current State Analysis", "## 2. Optimization Opportunities", "## 3. Implementation Plan",
                "## 4. Cost Calculator"]  # fmt: skip
    assert [text.index(h) for h in headings] == sorted(text.index(h) for h in headings)
    assert f"**{usd(exp['monthly'])} per month**" in text
    for o in audit.opportunities:
        monthly = usd(o.monthly_usd) if o.monthly_usd is not None else "not quantified"
        assert f"| {o.rank} | {o.title} | {monthly} | {pct(o.share)} | {o.effort} |" in text
    values = [r.latency_ms for r in workload if r.endpoint == "/api/chat"]
    assert (f"| /api/chat | {count(len(values))} | {ms(sum(values) / len(values))} | {ms(nearest_rank(values, 50))} | "
            f"{ms(nearest_rank(values, 95))} | {ms(nearest_rank(values, 99))} |") in text  # fmt: skip
    assert text.count("**Owner:** _____") == 3 and text.count("**Target date:** _____") == 3
    assert "costtrack simulate --swap gpt-4o=gpt-4o-mini --endpoint /api/classify --since 2026-10-01" in text
    assert f"never fewer than {count(exp['prefix'])}" in text and f"{count(exp['warm'])} calls came within 5m" in text
    assert "Detectors that found nothing" not in text
    failed, cut = sum(r.status == "error" for r in workload), sum(r.status == "incomplete" for r in workload)
    assert (f"Error rate: **{pct(failed / len(workload))}** of calls ({count(failed)} failed); {count(cut)} more were "
            "cut or abandoned mid-way") in text  # fmt: skip


def test_detectors_say_when_they_find_nothing(tracker, make_record, database_url, tmp_path, capsys):
    at = T0
    mini = rates("openai", "gpt-4o-mini-2024-07-18", at)
    for i in range(12):
        tracker.add(make_record(timestamp=T0 + timedelta(hours=i), endpoint="/api/answer", model="gpt-4o-mini-2024-07-18",
                                model_requested="gpt-4o-mini", tokens_input=200, tokens_output=80,
                                cost_usd=price(mini, 200, 80), request_hash=f"u{i}"))  # fmt: skip
    tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    assert audit.opportunities == [] and audit.top == []
    assert {f.kind for f in audit.nothing_found} == {"response-cache", "prompt-cache", "model-swap", "batch",
                                                     "output-waste", "failures", "unpriced"}  # fmt: skip
    assert all(f.nothing for f in audit.nothing_found)
    assert audit.optimized_usd == pytest.approx(audit.baseline_usd)
    text = render("audit", {"audit": audit, "charts": [], "charts_note": "none", "version": "t", "database": "d",
                            "command": "c"})  # fmt: skip
    assert "No detector found an opportunity" in text and "Nothing to plan" in text
    assert "optimized: no optimization was found to apply" in text and "top 0" not in text  # "the top 0 optimizations"
    from costtrack.cli import run as cli

    assert cli(["report", "audit", "-o", str(tmp_path / "a.md"), "--since", "2020-01-01", "--no-charts",
                "--database-url", database_url]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "no opportunity found" in err and "top 0" not in err  # the CLI's line said "the top 0 save $0" too


def test_one_record_and_unpriced_only(tracker, make_record, database_url):
    tracker.add(make_record(timestamp=T0, model="mystery", model_requested="mystery", cost_usd=None, price_source=None))
    tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    assert audit.calls == 1 and audit.baseline_usd == 0
    assert [o.kind for o in audit.opportunities] == ["unpriced"]
    assert any("1 calls are unpriced" in w for w in audit.warnings)
    assert "error" in audit.breakeven  # nothing priced: no breakeven
    text = render("audit", {"audit": audit, "charts": [], "charts_note": "none", "version": "t", "database": "d",
                            "command": "c"})  # fmt: skip
    assert "not computed: no priced tokens in the period" in text and "mystery" in text
    audit.warnings = ["first note", "second note"]
    text = render("audit", {"audit": audit, "charts": [], "charts_note": "none", "version": "t", "database": "d",
                            "command": "c"})  # fmt: skip
    assert "> **Note:** first note\n\n> **Note:** second note\n" in text  # two blockquotes, not one merged


def test_min_cacheable_tokens():
    assert min_cacheable_tokens("claude-haiku-4-5-20251001") == 4096
    assert min_cacheable_tokens("claude-3-5-haiku-latest") == 2048
    assert min_cacheable_tokens("gpt-4o") == 1024 and min_cacheable_tokens("claude-sonnet-4-5") == 1024


def test_one_swap_per_endpoint_and_model_across_snapshots(tracker, make_record, database_url):
    """Two snapshots of gpt-4o on one endpoint are one opportunity, its saving counted once."""
    at = T0
    mini = rates(None, "gpt-4o-mini", at)
    recs = []
    for i, snapshot in enumerate(["gpt-4o-2024-08-06", "gpt-4o-2024-11-20"] * 10):
        r = rates("openai", snapshot, at)
        recs.append(make_record(timestamp=T0 + timedelta(minutes=i), endpoint="/api/label", model=snapshot,
                                model_requested="gpt-4o", tokens_input=50, tokens_output=3, cost_usd=price(r, 50, 3),
                                request_hash=f"l{i}"))  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    swaps = [o for o in audit.opportunities if o.kind == "model-swap"]
    assert len(swaps) == 1
    assert swaps[0].savings_usd == pytest.approx(sum(r.cost_usd - price(mini, 50, 3) for r in recs), abs=1e-12)



def test_a_swap_of_calls_served_at_a_tier_says_so_in_its_assumption(tracker, make_record, database_url):
    """The audit's model swap priced flex calls at the target's standard rates without a word (simulate said so)."""
    for i in range(20):
        tags = {"costtrack.service_tier": "flex"} if i % 4 == 0 else {}
        tracker.add(make_record(timestamp=T0 + timedelta(minutes=i), endpoint="/api/label", model="gpt-4o-2024-08-06",
                                model_requested="gpt-4o", tokens_input=50, tokens_output=3, cost_usd=0.0002,
                                request_hash=f"t{i}", tags=tags))  # fmt: skip
    tracker.add(make_record(timestamp=T0, endpoint="/api/other", model="gpt-4o-2024-08-06", model_requested="gpt-4o",
                            tokens_input=50, tokens_output=3, cost_usd=0.0002, tags={"costtrack.service_tier": "flex"}))
    tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    [swap] = [o for o in audit.opportunities if o.kind == "model-swap" and o.title.endswith("/api/label")]
    assert "5 of the calls were served at a service tier (flex, priority, fast)" in swap.assumption
    assert "gpt-4o-mini is priced at its standard rates" in swap.assumption
    text = render("audit", {"audit": audit, "charts": [], "charts_note": "none", "version": "t", "database": "d",
                            "command": "c"})  # fmt: skip
    assert "5 of the calls were served at a service tier" in text

def test_daily_spend_is_by_utc_day(workload, database_url, backend):
    """Spend by day (the chart's data) per UTC day and model, whatever the database session's time zone."""
    kwargs = {"connect_args": {"options": "-c timezone=America/New_York"}} if backend == "postgresql" else {}
    audit = build_audit(make_engine(database_url, **kwargs), PriceBook(), since=None)
    expected: dict[tuple[str, str], float] = {}
    for r in workload:
        key = (r.timestamp.astimezone(timezone.utc).date().isoformat(), r.model_requested)
        expected[key] = expected.get(key, 0.0) + (r.cost_usd or 0.0)
    got = {(d.day, d.model_key): d.spend_usd for d in audit.replay.daily}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("latencies", [
    [250.0],
    [100.0, 3000.0],
    [100.0] * 5 + [100.0000001, 99.9999999, 0.001, 0.0, 5e7, 1e7, 123.456] * 3,
    [float(v) for v in range(1, 202)],
])  # fmt: skip
def test_latency_percentiles_are_exact_nearest_rank(tracker, make_record, database_url, latencies):
    """Edges, ties, tiny and huge values, a single call: the two-step percentiles equal the nearest rank."""
    for i, value in enumerate(latencies):
        tracker.add(make_record(timestamp=T0 + timedelta(seconds=i), endpoint="/a" if i % 2 else "/b", latency_ms=value))
    tracker.add(make_record(timestamp=T0, endpoint="/a", latency_ms=None))  # untimed: not counted
    tracker.add(make_record(timestamp=T0, endpoint="/a", latency_ms=0.5, cache_hit=True))  # a cache hit: excluded
    tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    rows = {row[0]: row for row in audit.latency.rows}
    groups = {"**All endpoints**": latencies, "/a": latencies[1::2], "/b": latencies[0::2]}
    for key, values in groups.items():
        if values:
            assert rows[key][1] == len(values)
            assert rows[key][3:6] == [nearest_rank(values, p) for p in (50, 95, 99)], key


def test_latency_distribution_data(workload, database_url):
    """The distribution chart's histogram: every timed call in the bucket whose range holds its latency."""
    from costtrack.reports.charts import MERGED_BUCKETS, distribution
    from costtrack.reports.stats import bucket_range

    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    edges = [10 ** (i / 32) / 10 for i in range(32 * 8 + 1)]  # 32 a decade from 0.1 ms, as documented
    assert [bucket_range(b) for b in (0, 1, 257)] == [(-math.inf, edges[0]), (edges[0], edges[1]), (edges[-1], math.inf)]
    expected: dict[str, dict[int, int]] = {}
    for r in workload:
        if r.latency_ms is None or r.cache_hit:
            continue
        b = next(b for b in range(len(edges) + 1) if bucket_range(b)[0] <= r.latency_ms < bucket_range(b)[1])
        counts = expected.setdefault(r.endpoint, {})
        counts[b] = counts.get(b, 0) + 1
    assert audit.latency_histogram == expected
    bars, shares = distribution(expected["/api/chat"])
    assert sum(shares) == pytest.approx(1.0) and bars == sorted(bars) and len(bars) == len(shares) + 1
    chat = [r.latency_ms for r in workload if r.endpoint == "/api/chat"]
    for low, high, share in zip(bars, bars[1:], shares):
        assert share == pytest.approx(sum(low <= v < high for v in chat) / len(chat))
    assert MERGED_BUCKETS == 4  # 8 bars a decade


def _render(audit):
    return render("audit", {"audit": audit, "charts": [], "charts_note": "none", "version": "t", "database": "d",
                            "command": "c"})  # fmt: skip


def _amount(text):
    """'$1,234.5678' → 1234.5678; '3,016.6' → 3016.6."""
    return float(text.replace("$", "").replace(",", ""))


@pytest.fixture
def repeats(tracker, make_record):
    """Repeated requests on three endpoints, with failed attempts and SDK retries among them."""
    at = T0 + timedelta(days=1)
    gpt4o, mini = rates("openai", "gpt-4o-2024-08-06", at), rates("openai", "gpt-4o-mini-2024-07-18", at)
    recs = []

    def call(minutes, key, status="ok", attempt=1, endpoint="/api/summarize", r=gpt4o, model="gpt-4o", tin=900):
        answered = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}[model]
        ok = status == "ok"
        recs.append(make_record(
            timestamp=T0 + timedelta(minutes=minutes), endpoint=endpoint, provider="openai",
            model=answered if ok else model, model_requested=model, status=status,
            error_type=None if ok else "rate_limit_exceeded", attempt=attempt, tokens_input=tin if ok else 0,
            tokens_output=80 if ok else 0, cost_usd=price(r, tin, 80) if ok else 0.0, request_hash=key,
            latency_ms=500.0,
        ))  # fmt: skip

    # a: a failed attempt and its SDK retry, 10 minutes after the answer was stored: a cache answers both.
    call(0, "a"), call(10, "a", "error"), call(10.05, "a", attempt=2)
    # b: stored, repeated (failing) 50 minutes later: a hit; again 100 minutes after the answer: not one.
    call(0, "b"), call(50, "b", "error"), call(100, "b")
    # c: a failure first stores nothing; the success after it does.
    call(200, "c", "error"), call(210, "c"), call(220, "c")
    # d: expired after an hour; a failure does not store it again.
    call(300, "d"), call(420, "d", "error"), call(450, "d")
    # Summaries of other tickets, once each.
    for i in range(20):
        call(600 + i, f"s{i}")
    # Two more endpoints, with a small share of the repeats' saving.
    call(700, "x1", endpoint="/api/extract", r=mini, model="gpt-4o-mini", tin=30), call(
        705, "x1", endpoint="/api/extract", r=mini, model="gpt-4o-mini", tin=30)
    call(710, "k1", endpoint="/api/classify", tin=40), call(715, "k1", endpoint="/api/classify", tin=40)
    for rec in recs:
        tracker.add(rec)
    assert tracker.flush()
    return recs


def test_response_cache_counts_what_a_cache_would_answer(repeats, database_url):
    """The stated rule: any call (failed attempts and SDK retries too) is a would-be hit when a successful call with
    the same hash started at most 1h before it; the count in the document follows it."""
    from costtrack.reports import simulate as sim

    hits, cost = cache_replay(repeats, 3600)
    assert hits == 2 + 1 + 1 + 0 + 1 + 1  # a (the failure and its retry), b, c, d, extract, classify
    result = sim.run(make_engine(database_url), PriceBook(), since=None, until=None, cache_ttl=3600)
    assert result.total.would_hit == hits and result.total.cache_savings_usd == pytest.approx(cost, abs=1e-12)
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    [opp] = [o for o in audit.opportunities if o.kind == "response-cache"]
    assert opp.savings_usd == pytest.approx(cost, abs=1e-12)
    assert f"{count(hits)} of {count(len(repeats))} calls" in opp.evidence[0]
    summarize = [r for r in repeats if r.endpoint == "/api/summarize"]
    assert f"/api/summarize: {count(hits - 2)} of {count(len(summarize))} calls would be hits" in opp.evidence[1]
    assert "whatever the call's own status" in opp.assumption


def test_response_cache_title_names_every_endpoint_it_counts(repeats, database_url):
    """The figure counts the would-be hits of every endpoint; the title, the notes and the metric name them all."""
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    [opp] = [o for o in audit.opportunities if o.kind == "response-cache"]
    counted = [e for e, v in sorted(opp.per_endpoint.items(), key=lambda kv: -kv[1]) if v > 0]
    assert set(counted) == {"/api/summarize", "/api/extract", "/api/classify"}
    assert opp.savings_usd == pytest.approx(sum(opp.per_endpoint.values()), abs=1e-15)
    assert opp.per_endpoint["/api/extract"] < 0.1 * opp.savings_usd  # a small part, counted all the same
    assert opp.title == f"Response cache (TTL 1h) on {', '.join(counted)}"
    assert f"on the clients of {', '.join(counted)};" in opp.notes[0]
    assert opp.metric.startswith(f"response-cache hit rate on {', '.join(counted)}: ")


def test_method_and_calculator_formulas_check_as_printed(tracker, make_record, database_url):
    """Each formula the audit prints gives its printed result from its printed operands (days to 3 decimals here)."""
    # $5.4368 over 29.835 days: x 30 / 29.835 is $5.4669, x 30 / 29.84 would be $5.4660.
    for cost, at in ((1.8, T0), (1.8, T0 + timedelta(days=10)), (1.8368, T0 + timedelta(days=29.835))):
        tracker.add(make_record(timestamp=at, endpoint="/api/answer", cost_usd=cost, request_hash=str(at)))
    tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    text = _render(audit)
    spend, days = 5.4368, 29.835
    assert audit.baseline_monthly_usd == pytest.approx(spend * 30 / days)
    m = re.search(r"Method: spend x 30 / days = (\$[\d.,]+) x 30 / ([\d.,]+) = \*\*(\$[\d.,]+) per month\*\*", text)
    assert m is not None
    assert m.group(3) == usd(spend * 30 / days)  # right
    assert m.group(3) == usd(_amount(m.group(1)) * 30 / _amount(m.group(2)))  # and as printed
    # Monthly cost = cost per request x requests per month, at every volume of the calculator and at the recorded one.
    m = re.search(r"Cost per request from the records: \*\*(\$[\d.,]+)\*\* today,\n\*\*(\$[\d.,]+)\*\*", text)
    assert m is not None
    current, optimized = _amount(m.group(1)), _amount(m.group(2))
    assert current == pytest.approx(spend / 3, rel=1e-5)
    for row in audit.calculator.rows:
        assert f"| {count(row[0])} | {usd(current * row[0])} | {usd(optimized * row[0])} |" in text
        assert usd(current * row[0]) == usd(spend / 3 * row[0])
    m = re.search(r"At the recorded volume \(([\d.,]+) requests a month\):\n(\$[\d.,]+) today, (\$[\d.,]+) optimized",
                  text)  # fmt: skip
    assert m is not None
    assert m.group(2) == usd(current * _amount(m.group(1))) == usd(spend * 30 / days)
    assert m.group(3) == usd(optimized * _amount(m.group(1)))
    m = re.search(r"One GPU costs (\$[\d.,]+) a month \(([^)]*)\)", text)
    assert m is not None
    parts = [_amount(p.split(" ")[-1]) for p in m.group(2).split(", ")]
    assert m.group(1) == usd(sum(parts))


def test_small_amounts_never_read_as_zero(tracker, make_record, database_url):
    """An embedding costs a fraction of a millionth of a dollar: it shows with its significant digits, not as $0.000000."""
    for i in range(12):
        tracker.add(make_record(timestamp=T0 + timedelta(hours=i), endpoint="/api/search", operation="embeddings",
                                model="text-embedding-3-small", model_requested="text-embedding-3-small",
                                tokens_input=12, tokens_output=0, cost_usd=2.5e-7, request_hash=f"q{i}"))  # fmt: skip
    tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    text = _render(audit)
    [row] = audit.per_request_tokens.rows
    assert row[4] == pytest.approx(2.5e-7)
    assert "| /api/search | 12 | 12 | 0 | $0.00000025 |" in text
    assert not re.search(r"\$0\.0{4,}(?![\d])", text)  # no nonzero amount printed as zeros
    assert usd(2.5e-7) == "$0.00000025" and usd(9.1e-6) == "$0.0000091" and usd(-3e-9) == "$-0.0000000030"
    # Amounts from $0.00001 up print as before.
    assert [usd(v) for v in (0.000087, 0.001812, 0.0123, 5.46686, 181.2275, 0.0)] == [
        "$0.000087", "$0.001812", "$0.0123", "$5.4669", "$181.23", "$0"]  # fmt: skip


def test_output_waste_is_worded_by_its_rule(workload, database_url):
    """/api/extract is flagged for what the rule tests: a name of a short-answer task, and over 50 output tokens."""
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    [opp] = [o for o in audit.opportunities if o.kind == "output-waste"]
    outs = [r.tokens_output for r in workload if r.endpoint == "/api/extract"]
    assert sum(outs) / len(outs) > 50
    text = _render(audit)
    assert "classification-like" not in text
    assert (f"/api/extract on gpt-4o-mini-2024-07-18: named like a short-answer task ('extract') and averaging "
            f"{count(sum(outs) / len(outs))} output tokens, over the 50 this detector allows") in opp.evidence[0]  # fmt: skip


def test_output_waste_rule_takes_the_name_and_the_length(tracker, make_record, database_url):
    """Long answers on an endpoint not named like a short-answer task, or short ones on one that is: not flagged."""
    at = T0
    mini = rates("openai", "gpt-4o-mini-2024-07-18", at)
    for endpoint, out in (("/api/answer", 90), ("/api/label", 35), ("/api/score", 50)):  # means: 100, 45, 60
        for i in range(12):
            tracker.add(make_record(timestamp=T0 + timedelta(hours=i), endpoint=endpoint, model="gpt-4o-mini-2024-07-18",
                                    model_requested="gpt-4o-mini", tokens_input=400, tokens_output=out + i % 3 * 10,
                                    cost_usd=price(mini, 400, out + i % 3 * 10), request_hash=f"{endpoint}{i}"))  # fmt: skip
    tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    [opp] = [o for o in audit.opportunities if o.kind == "output-waste"]
    assert set(opp.per_endpoint) == {"/api/score"}
    assert "named like a short-answer task ('score')" in opp.evidence[0]


def test_models_are_named_as_answered_in_every_table(workload, database_url):
    """The Model columns hold `model` (as the API answered), in the inventory as in the opportunity and price tables;
    the name the app asked for is in a column that says so."""
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    assert [c.title for c in audit.inventory.columns[:3]] == ["Endpoint", "Model", "Requested as"]
    inventory = {(row[0], row[2]): row[1] for row in audit.inventory.rows[:-1] if row[1] != "(failed: no answer)"}
    answered = {}
    for r in workload:
        if r.status != "error":
            answered.setdefault((r.endpoint, r.model_requested), set()).add(r.model)
    assert inventory == {key: ", ".join(sorted(models)) for key, models in answered.items()}
    assert inventory[("/api/chat", "claude-sonnet-4-5")] == "claude-sonnet-4-5-20250929"
    in_use = {row[0] for row in audit.prices.rows if row[1] == "in use"}
    assert {m for m in inventory.values() if m != "mystery-llm"} <= in_use
    [prompt] = [o for o in audit.opportunities if o.kind == "prompt-cache"]
    assert prompt.evidence_table.rows[0][1] == inventory[("/api/chat", "claude-sonnet-4-5")]
    text = _render(audit)
    assert "| Endpoint | Model | Requested as | Calls |" in text
    assert "| /api/chat | claude-sonnet-4-5-20250929 | claude-sonnet-4-5 |" in text


def test_success_metrics_give_rate_changes_in_points(workload, database_url):
    """A rate's baseline → target comes with its change in percentage points, which the printed rates give."""
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    for kind in ("prompt-cache", "response-cache"):
        [opp] = [o for o in audit.opportunities if o.kind == kind]
        m = re.search(r": ([\d.]+)% → ([\d.]+)% \(([+-]?[\d.]+) pp\)", opp.metric)
        assert m is not None, opp.metric
        before, after, change = (float(g) for g in m.groups())
        assert change == pytest.approx(after - before)


def test_inventory_rows_count_the_calls_of_the_model_they_name(tracker, make_record, database_url):
    """A failed call got no answer (its `model` is the name it asked for): the inventory counts failed calls apart,
    so each row's calls, tokens and spend are those of the model in its Model cell, also when the requested name is
    the answered one, and when a failed call was billed."""
    at = T0
    mini = rates("openai", "gpt-4o-mini-2024-07-18", at)
    recs = []
    for i in range(6):  # requested as an alias, answered by a snapshot; two failures stored under the alias
        ok = i < 4
        recs.append(make_record(timestamp=T0 + timedelta(minutes=i), endpoint="/api/answer",
                                model="gpt-4o-mini-2024-07-18" if ok else "gpt-4o-mini", model_requested="gpt-4o-mini",
                                status="ok" if ok else "error", tokens_input=300 if ok else 0,
                                tokens_output=40 if ok else 0, cost_usd=price(mini, 300, 40) if ok else 0.0))  # fmt: skip
    for i in range(5):  # requested by the name that answers; one failure billed for its input
        ok = i != 2
        recs.append(make_record(timestamp=T0 + timedelta(minutes=10 + i), endpoint="/api/search", operation="embeddings",
                                model="text-embedding-3-small", model_requested="text-embedding-3-small",
                                status="ok" if ok else "error", tokens_input=20 if ok else 15, tokens_output=0,
                                cost_usd=4e-7 if ok else 3e-7))  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    assert tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    expected: dict[tuple[str, str, str], list] = {}
    for r in recs:
        label = r.model if r.status != "error" else "(failed: no answer)"
        row = expected.setdefault((r.endpoint, label, r.model_requested), [0, 0, 0, 0.0])
        row[0] += 1
        row[1] += r.tokens_input
        row[2] += r.tokens_output
        row[3] += r.cost_usd
    got = {(row[0], row[1], row[2]): [row[3], row[4], row[5], row[7]] for row in audit.inventory.rows[:-1]}
    assert got.keys() == expected.keys()
    for key, (calls, tin, tout, spend) in expected.items():
        assert got[key][:3] == [calls, tin, tout], key
        assert got[key][3] == pytest.approx(spend, abs=1e-15), key
    assert got[("/api/answer", "gpt-4o-mini-2024-07-18", "gpt-4o-mini")][0] == 4
    assert got[("/api/search", "text-embedding-3-small", "text-embedding-3-small")][0] == 4
    assert audit.inventory.rows[-1][3] == len(recs)
    text = _render(audit)
    assert "| /api/answer | (failed: no answer) | gpt-4o-mini | 2 |" in text


def test_tokens_and_cost_per_endpoint_share_one_base(tracker, make_record, database_url):
    """Each column of the per-endpoint table is per request (first attempt), over the same calls: all of the
    endpoint's calls, as in the inventory (a cut stream, a billed retry, and a response-cache hit at $0)."""
    at = T0
    sonnet = rates("anthropic", "claude-sonnet-4-5-20250929", at)

    def chat(minute, tin, tout, **kw):
        return make_record(timestamp=T0 + timedelta(minutes=minute), endpoint="/api/chat", provider="anthropic",
                           model="claude-sonnet-4-5-20250929", model_requested="claude-sonnet-4-5", tokens_input=tin,
                           tokens_output=tout, cost_usd=kw.pop("cost", price(sonnet, tin, tout)), **kw)  # fmt: skip

    recs = [chat(i, 2000, 100) for i in range(6)]
    recs += [chat(10, 2000, 30, status="incomplete"), chat(11, 2000, 12, status="incomplete")]  # cut streams, billed
    recs.append(chat(12, 2000, 0, status="error", attempt=2, cost=price(sonnet, 2000, 0)))  # a billed failed retry
    recs.append(chat(13, 2000, 100, cache_hit=True, cost=0.0, cost_saved_usd=price(sonnet, 2000, 100)))
    for rec in recs:
        tracker.add(rec)
    assert tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    [row] = audit.per_request_tokens.rows
    requests = sum(r.attempt == 1 for r in recs)
    assert requests == 9 and [c.title for c in audit.per_request_tokens.columns][1] == "Requests"
    assert row[1] == requests
    assert row[2] == pytest.approx(sum(r.tokens_input for r in recs) / requests)
    assert row[3] == pytest.approx(sum(r.tokens_output for r in recs) / requests)
    assert row[4] == pytest.approx(sum(r.cost_usd for r in recs) / requests)
    assert row[4] == pytest.approx(audit.breakeven["current_per_request"])  # the calculator's cost per request


@pytest.mark.parametrize("span_hours", [0.0, 19.2, 36.0])
def test_period_length_is_the_same_in_the_header_and_the_body(tracker, make_record, database_url, span_hours):
    """The header gives the days the monthly projection divides by, as the body does: under a day (one record, or
    calls at one instant) counts as one day in both."""
    for i, hours in enumerate((0.0, span_hours / 2, span_hours)):
        tracker.add(make_record(timestamp=T0 + timedelta(hours=hours), endpoint="/api/answer", cost_usd=0.01,
                                request_hash=f"p{i}"))  # fmt: skip
    tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    text = _render(audit)
    length = days(max(span_hours / 24, 1.0))
    header = re.search(r"between .* and .*\n?.*?\(([^)]*)\), read from", text)
    assert header is not None and header.group(1).split(",")[0] == length
    assert f"over {length}\n" in text
    m = re.search(r"x 30 / ([\d.,]+) = ", text)
    assert m is not None and _amount(m.group(1)) == pytest.approx(max(span_hours / 24, 1.0), abs=5e-4)


def test_unpriced_calls_alone_cost_an_unknown_amount_not_zero(tracker, make_record, database_url):
    """Every call with tokens unpriced (and a failed call billed $0): the spend, its monthly projection, the cost per
    request and the calculator's API columns read unknown, never $0; the empty price table says why."""
    for i in range(12):
        tracker.add(make_record(timestamp=T0 + timedelta(hours=i), endpoint="/api/answer", model="mystery-llm",
                                model_requested="mystery-llm", tokens_input=300, tokens_output=40, cost_usd=None,
                                price_source=None, request_hash=f"u{i}"))  # fmt: skip
    tracker.add(make_record(timestamp=T0 + timedelta(hours=13), endpoint="/api/answer", model="mystery-llm",
                            model_requested="mystery-llm", status="error", tokens_input=0, tokens_output=0,
                            cost_usd=0.0))  # fmt: skip
    tracker.add(make_record(timestamp=T0 + timedelta(hours=14), endpoint="/api/answer", model="mystery-llm",
                            model_requested="mystery-llm", status="incomplete", tokens_input=300, tokens_output=7,
                            cost_usd=None, price_source=None, request_hash="cut"))  # fmt: skip
    tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    assert not audit.spend_known
    errors = {row[1]: row for row in audit.errors.rows}
    assert errors["incomplete"][4] is None and errors["error"][4] == 0.0  # the cut stream's cost is unknown
    assert [row[1:4] for row in audit.calculator.rows] == [[None, None, None]] * 4
    answered, failed, total = audit.inventory.rows
    assert answered[1] == "mystery-llm" and answered[7] is None and total[7] is None
    assert failed[3] == 1 and failed[7] == 0.0  # the failed call is priced: $0, as billed
    [per_endpoint] = audit.per_request_tokens.rows
    assert per_endpoint[4] is None and per_endpoint[2] == pytest.approx(13 * 300 / 14)  # 14 requests: failed, cut
    assert not audit.prices
    text = _render(audit)
    assert "a month**" not in text.split("## 1.")[0] and "**In short:** what the app spends is **unknown**" in text
    assert "- Spend in the period: **unknown**" in text and "$0 per request" not in text
    assert "| 100 | unpriced | unpriced | unpriced |" in text
    assert "| **Total** |  |  | 14 | 3,900 | 487 | 0 | unpriced |" in text
    assert "None: no priced call in the period used tokens (see *Unpriced models*)" in text


def test_self_hosted_column_needs_no_api_price(tracker, make_record, database_url):
    """Only failed calls (nothing priced, no tokens): the self-hosted cost at each volume is the GPU's own monthly cost
    (one GPU: no throughput is known), not 'unpriced'; only the breakeven needs an API price."""
    for i in range(10):
        tracker.add(make_record(timestamp=T0 + timedelta(hours=i), endpoint="/api/answer", model="gpt-4o-mini",
                                model_requested="gpt-4o-mini", status="error", error_type="server_error",
                                tokens_input=0, tokens_output=0, cost_usd=0.0))  # fmt: skip
    tracker.flush()
    audit = build_audit(make_engine(database_url), PriceBook(), since=None)
    gpu_monthly = 1600 / (3 * 12) + 450 / 1000 * 8 * 30 * 0.12  # rtx4090 (owned), 8 h/day
    for row in audit.calculator.rows:
        assert row[4] == pytest.approx(gpu_monthly) and row[5] == 1, row
    assert "error" in audit.breakeven and audit.breakeven["gpu_monthly"] == pytest.approx(gpu_monthly)
    text = _render(audit)
    assert f"| 100,000 | $0 | $0 | $0 | {usd(gpu_monthly)} | 1 |" in text
    assert f"one GPU costs {usd(gpu_monthly)} a month" in text


@pytest.mark.parametrize(("failed", "cut", "says"), [
    (0, 0, "No call failed or was cut in the period."),
    (2, 0, "The table lists them by endpoint and error type."),
    (0, 1, "The table lists the cut calls by endpoint."),
    (2, 1, "The table lists both."),
])  # fmt: skip
def test_errors_sentence_names_what_the_table_lists(tracker, make_record, database_url, failed, cut, says):
    """'The table lists both' only when there are failed and cut calls; without either there is no table."""
    recs = [make_record(timestamp=T0 + timedelta(minutes=i), endpoint="/api/answer", request_hash=f"ok{i}")
            for i in range(5)]  # fmt: skip
    recs += [make_record(timestamp=T0 + timedelta(minutes=10 + i), endpoint="/api/answer", status="error",
                         error_type="server_error", tokens_input=0, tokens_output=0, cost_usd=0.0) for i in range(failed)]
    recs += [make_record(timestamp=T0 + timedelta(minutes=20 + i), endpoint="/api/answer", status="incomplete")
             for i in range(cut)]  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    tracker.flush()
    text = _render(build_audit(make_engine(database_url), PriceBook(), since=None))
    errors = text.split("### Errors")[1].split("### Cache status")[0]
    sentence = f"Error rate: **{pct(failed / len(recs))}** of calls ({count(failed)} failed)"
    endings = ["No call failed or was cut in the period.", "The table lists them by endpoint and error type.",
               "The table lists the cut calls by endpoint.", "The table lists both."]  # fmt: skip
    assert sentence in errors and [e for e in endings if e in errors] == [says]
    assert ("| Endpoint | Status | Error type |" in errors) == bool(failed or cut)


def test_the_simulate_commands_the_audit_prints_read_the_database_it_read(workload, database_url, tmp_path, capsys):
    """They left --database-url out: run as printed, they read ./costtrack.db (review finding)."""
    import shlex

    from costtrack.cli import run as cli

    out = tmp_path / "my audit.md"  # a space: the regenerate command quotes it (review finding)
    prices = tmp_path / "my prices.toml"
    prices.write_text('[models."in-house"]\ninput = 1\noutput = 2\n')
    assert cli(["report", "audit", "-o", str(out), "--since", "2026-10-01", "--no-charts", "--cache-ttl", "24h",
                "--hardware", "a100_40gb", "--prices-file", str(prices), "--database-url", database_url]) == 0  # fmt: skip
    text = out.read_text()
    # Every command it suggests reads the same records at the same prices (the prices file was left out: review)
    shared = f"--prices-file {shlex.quote(str(prices))} --database-url {database_url}"
    assert f"`costtrack calc --from-db --hardware a100_40gb {shared}`" in text
    assert f"`costtrack report results --ab {shared}`" in text
    # The other commands it suggests read the same database (they read ./costtrack.db: third review)
    assert f"`costtrack stats --by endpoint --json --database-url {database_url}`" in text  # stats prices nothing
    assert f"--after-tag run=optimized {shared}`" in text
    # Every whole command (those naming the period), not a flag named in passing (`costtrack simulate --batch-share`)
    commands = [c for c in re.findall(r"`(costtrack simulate [^`]+)`", text) if "--since" in c]
    assert len(commands) >= 3 and all(c.endswith(shared) for c in commands), commands
    capsys.readouterr()
    assert cli([*shlex.split(commands[0])[1:], "--json"]) == 0  # runs as printed, on the audit's records
    assert capsys.readouterr().out.lstrip().startswith("{")
    [regenerate] = re.findall(r"Regenerate with `(costtrack report audit [^`]+)`", text)
    assert shlex.split(regenerate)[4] == str(out)  # -o FILE, one argument
    assert "--cache-ttl 24h" in regenerate and "--no-charts" in regenerate  # every option that shaped it
    out.unlink()
    assert cli(shlex.split(regenerate)[1:]) == 0 and out.read_text().split("Regenerate with")[1] == text.split(
        "Regenerate with")[1]  # runs as printed, and regenerates the same document (but its time)


def test_printed_commands_with_a_backtick_stay_whole_code_spans(make_record, tmp_path, outbox_dir):
    """A backtick in an endpoint or the output's path ended the Markdown code span early: the command shown was cut."""
    import shlex

    from markdown_it import MarkdownIt

    from costtrack.cli import run as cli
    from costtrack.tracker import Tracker

    url = f"sqlite:///{tmp_path}/app.db"
    endpoint = "/api/`classify`"
    with Tracker(url, outbox_dir=outbox_dir) as tracker:
        for i in range(30):
            tracker.add(make_record(timestamp=T0 + timedelta(minutes=30 * i), endpoint=endpoint,
                                    model="gpt-4o-2024-08-06", model_requested="gpt-4o", tokens_input=40,
                                    tokens_output=4, cost_usd=0.0001, request_hash=f"c{i // 2}"))  # fmt: skip
    out = tmp_path / "audit`s.md"
    assert cli(["report", "audit", "-o", str(out), "--no-charts", "--database-url", url]) == 0
    text = out.read_text()
    spans = [child.content for token in MarkdownIt("commonmark").parse(text) if token.type == "inline"
             for child in token.children or [] if child.type == "code_inline"]  # fmt: skip
    commands = [s for s in spans if s.startswith("costtrack ")]
    simulate = [c for c in commands if c.startswith("costtrack simulate ") and "--endpoint" in c]
    assert simulate and all(shlex.split(c)[shlex.split(c).index("--endpoint") + 1] == endpoint for c in simulate)
    [regenerate] = [c for c in commands if c.startswith("costtrack report audit ")]
    assert shlex.split(regenerate)[4] == str(out)
    out.unlink()
    assert cli(shlex.split(regenerate)[1:]) == 0 and out.exists()  # runs as shown
