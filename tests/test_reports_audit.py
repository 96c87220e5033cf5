"""The optimization audit: every figure of the document against values computed here from the seeded records."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costtrack.format import count, ms, pct, usd
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
    """(would-be hits, their cost): successful calls whose hash was answered at most `ttl` s before."""
    seen: dict[str, datetime] = {}
    cost, hits = 0.0, 0
    for r in sorted(recs, key=lambda r: (r.timestamp, r.id)):
        if r.status != "ok" or not r.request_hash:
            continue
        prev = seen.get(r.request_hash)
        if prev is not None and not r.cache_hit and (r.timestamp - prev).total_seconds() <= ttl:
            cost += r.cost_usd or 0
            hits += 1
        seen[r.request_hash] = r.timestamp
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
    inventory = {(row[0], row[1]): row for row in audit.inventory.rows}
    classify = [r for r in workload if r.endpoint == "/api/classify" and r.model_requested == "gpt-4o"]
    row = inventory[("/api/classify", "gpt-4o")]
    assert row[2:7] == [len(classify), sum(r.tokens_input for r in classify), sum(r.tokens_output for r in classify), 0,
                        pytest.approx(sum(r.cost_usd for r in classify), abs=1e-12)]  # fmt: skip
    assert row[7] == pytest.approx(sum(r.cost_usd for r in classify) / exp["spend"])
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


def test_detectors_say_when_they_find_nothing(tracker, make_record, database_url):
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
