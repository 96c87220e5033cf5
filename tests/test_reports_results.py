"""Before/after results, savings attribution and the README summary, checked against the records."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costtrack.format import change, count, days, ms, pct, pp, usd
from costtrack.pricing import PriceBook
from costtrack.reports import results as res
from costtrack.reports.render import render
from costtrack.store.database import make_engine

from helpers import nearest_rank

B0 = datetime(2026, 11, 1, tzinfo=timezone.utc)  # before: 2026-11-01..2026-11-05
A0 = datetime(2026, 11, 10, tzinfo=timezone.utc)  # after: 2026-11-10..2026-11-14
MTOK = Decimal(1_000_000)
MIN = res.MIN_REQUESTS



def gpt4o_cost(tin, tout):
    return (tin * 2.5 + tout * 10.0) / 1e6


@pytest.fixture
def periods(tracker, make_record):
    recs = []
    for i in range(40):  # before: gpt-4o on every request
        recs.append(make_record(
            timestamp=B0 + timedelta(hours=2 * i), endpoint="/api/classify", provider="openai",
            model="gpt-4o-2024-08-06", model_requested="gpt-4o", tokens_input=100 + i, tokens_output=10,
            cost_usd=gpt4o_cost(100 + i, 10), latency_ms=float(900 + (i * 53) % 400), request_hash=f"b{i % 10}",
            tags={"quality": 0.8} if i < 10 else {},
        ))  # fmt: skip
    recs.append(make_record(timestamp=B0 + timedelta(hours=3), endpoint="/api/classify", model="gpt-4o",
                            model_requested="gpt-4o", status="error", tokens_input=0, tokens_output=0, cost_usd=0.0,
                            latency_ms=20.0))  # fmt: skip
    mini = PriceBook().rates("openai", "gpt-4o-mini-2024-07-18", A0).effective()
    for i in range(20):  # after: cache hits
        recs.append(make_record(
            timestamp=A0 + timedelta(hours=i), endpoint="/api/classify", provider="openai", model="gpt-4o-2024-08-06",
            model_requested="gpt-4o", tokens_input=100, tokens_output=10, cost_usd=0.0, cache_hit=True,
            cost_saved_usd=gpt4o_cost(100, 10), latency_ms=2.0 + i, tags={"quality": 0.9} if i < 10 else {},
        ))  # fmt: skip
    for i in range(20):  # after: routed to the cheap tier
        recs.append(make_record(
            timestamp=A0 + timedelta(hours=i, minutes=20), endpoint="/api/classify", provider="openai",
            model="gpt-4o-mini-2024-07-18", model_requested="gpt-4o-mini", tokens_input=120, tokens_output=12,
            cost_usd=float((120 * mini["input"] + 12 * mini["output"]) / MTOK), latency_ms=float(600 + 7 * i),
            tags={"route": "cheap", "quality": "good"},
        ))  # fmt: skip
    for i in range(5):  # after: cheap-first fallback, a rejected cheap answer then the accepted one
        tags = {"fallback_chain": "gpt-4o-mini>gpt-4o", "fallback_requested": "gpt-4o"}
        recs.append(make_record(timestamp=A0 + timedelta(days=1, hours=i), endpoint="/api/summarize",
                                model="gpt-4o-mini", model_requested="gpt-4o-mini", cost_usd=0.0002, attempt=1,
                                latency_ms=300.0, tags={**tags, "fallback_reason": "rejected"}))  # fmt: skip
        recs.append(make_record(timestamp=A0 + timedelta(days=1, hours=i, seconds=1), endpoint="/api/summarize",
                                model="gpt-4o-mini", model_requested="gpt-4o-mini", cost_usd=0.0003, attempt=2,
                                cost_saved_usd=0.001, latency_ms=320.0, tags=tags))  # fmt: skip
    sonnet = PriceBook().rates("anthropic", "claude-sonnet-4-5-20250929", A0).effective()
    for i in range(4):  # after: prompt-cache reads on chat
        recs.append(make_record(
            timestamp=A0 + timedelta(days=2, hours=i), endpoint="/api/chat", provider="anthropic",
            model="claude-sonnet-4-5-20250929", model_requested="claude-sonnet-4-5", tokens_input=2000,
            tokens_cached_input=1500, tokens_output=50, cost_usd=0.002, latency_ms=1500.0,
        ))  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    assert tracker.flush()
    return recs, {"mini": mini, "sonnet": sonnet}


def side(recs, start, end):
    return [r for r in recs if start <= r.timestamp < end]


def metrics(rs):
    requests = sum(r.attempt == 1 for r in rs)
    spend = sum(r.cost_usd or 0 for r in rs)
    lat = [r.latency_ms for r in rs if r.latency_ms is not None]
    q = [r.tags["quality"] for r in rs if isinstance(r.tags.get("quality"), (int, float))]
    return {
        "requests": requests, "spend": spend, "per1k": spend / requests * 1000, "p50": nearest_rank(lat, 50),
        "p95": nearest_rank(lat, 95), "p99": nearest_rank(lat, 99), "hit": sum(r.cache_hit for r in rs) / len(rs),
        "err": sum(r.status == "error" for r in rs) / len(rs),
        "tpr": sum(r.tokens_input + r.tokens_output for r in rs) / requests, "quality": sum(q) / len(q) if q else None,
    }  # fmt: skip


def test_a_period_opening_before_the_records_begin_counts_the_days_they_cover(periods, database_url):
    """--before 2026-10-01..2026-11-09 over records from 2026-10-26 divided their requests by 40 days (1,093 a month
    against 2,946 by tags: review finding); the days before tracking began, and after now, are no part of the period."""
    before = res.Selection("before", B0 - timedelta(days=20), B0 + timedelta(days=5))  # tracking began at B0
    after = res.Selection("after", A0, A0 + timedelta(days=10))  # ends 5 days after "now"
    now = A0 + timedelta(days=5)
    result = res.build_results(make_engine(database_url), PriceBook(), before, after, now=now)
    assert result.before.days == pytest.approx(5.0) and result.after.days == pytest.approx(5.0)
    assert result.before.requests_per_month == pytest.approx(result.before.requests * 30 / 5)
    inside = res.build_results(make_engine(database_url), PriceBook(), res.Selection("b", B0, B0 + timedelta(days=5)),
                               res.Selection("a", A0, A0 + timedelta(days=5)), now=now)  # fmt: skip
    assert inside.before.days == 5.0 and inside.after.days == 5.0  # a period inside the records: as given
    # Records beginning an hour before the window closes: a day at least, as a tag's span (it read as 1/24 of one).
    late = res.build_results(make_engine(database_url), PriceBook(), res.Selection("b", B0 - timedelta(days=7), B0 + timedelta(hours=1)),
                             res.Selection("a", A0, A0 + timedelta(days=5)), now=now)  # fmt: skip
    assert late.before.days == 1.0


def test_metrics_comparison(periods, database_url):
    recs, _ = periods
    before = res.Selection("before", B0, B0 + timedelta(days=5))
    after = res.Selection("after", A0, A0 + timedelta(days=5))
    result = res.build_results(make_engine(database_url), PriceBook(), before, after)
    b, a = metrics(side(recs, B0, B0 + timedelta(days=5))), metrics(side(recs, A0, A0 + timedelta(days=5)))
    rows = {r.name: r for r in result.rows}
    volume = b["requests"] * 30 / 5  # the before period is 5 days long
    checks = {
        "Requests": ("requests", "requests"), "Spend": ("spend", "spend"), "Cost per 1K requests": ("per1k", "per1k"),
        "Latency p50": ("p50", "p50"), "Latency p95": ("p95", "p95"), "Latency p99": ("p99", "p99"),
        "Cache hit rate": ("hit", "hit"), "Error rate": ("err", "err"), "Tokens per request": ("tpr", "tpr"),
        "Quality score": ("quality", "quality"),
    }  # fmt: skip
    for name, (kb, ka) in checks.items():
        assert rows[name].before == pytest.approx(b[kb], abs=1e-12), name
        assert rows[name].after == pytest.approx(a[ka], abs=1e-12), name
        if name in ("Cache hit rate", "Error rate"):  # rates change in percentage points: after - before
            assert rows[name].change == pytest.approx(a[ka] - b[kb], abs=1e-12), name
        else:
            assert rows[name].change == pytest.approx((a[ka] - b[kb]) / b[kb]) if b[kb] else rows[name].change is None
    monthly = rows["Projected monthly cost"]
    assert monthly.before == pytest.approx(b["spend"] / b["requests"] * volume)
    assert monthly.after == pytest.approx(a["spend"] / a["requests"] * volume)
    assert result.enough
    text = render("results", {"results": result, "version": "t", "database": "d", "command": "c"})
    assert f"| Spend | {usd(b['spend'])} | {usd(a['spend'])} | {change((a['spend'] - b['spend']) / b['spend'])} |" in text
    assert f"| Latency p95 | {ms(b['p95'])} | {ms(a['p95'])} |" in text
    hit = rows["Cache hit rate"].places
    assert f"| Cache hit rate | {pct(b['hit'], hit)} | {pct(a['hit'], hit)} | {pp(a['hit'] - b['hit'], hit)} |" in text
    for section in ("## Implementation Details", "## Challenges & Solutions", "## Future Work"):
        assert f"{section}\n\n<!-- write this section -->" in text


def test_progress_counts_every_query(periods, database_url):
    """The progress callback fires once per query, as many times as the bar's total (steps)."""
    engine = make_engine(database_url)
    done: list[str] = []
    res.build_results(engine, PriceBook(), res.Selection("before", B0, B0 + timedelta(days=5)),
                      res.Selection("after", A0, A0 + timedelta(days=5)), progress=done.append)  # fmt: skip
    assert len(done) == res.steps(2)
    done.clear()
    res.build_summary(engine, PriceBook(), res.Selection("period", since=A0), progress=done.append)
    assert len(done) == res.steps(1)


def test_attribution(periods, database_url):
    recs, rates = periods
    before = res.Selection("before", B0, B0 + timedelta(days=5))
    after = res.Selection("after", A0, A0 + timedelta(days=5))
    result = res.build_results(make_engine(database_url), PriceBook(), before, after)
    saved = {s.name: s for s in result.attribution_after.savings}
    after_recs = side(recs, A0, A0 + timedelta(days=5))
    assert saved["Response cache"].saved_usd == pytest.approx(sum(r.cost_saved_usd for r in after_recs if r.cache_hit))
    sonnet = rates["sonnet"]
    assert saved["Provider prompt caching"].saved_usd == pytest.approx(
        float(4 * 1500 * (sonnet["input"] - sonnet["cached_input"]) / MTOK))
    assert saved["Cheap-first fallback"].saved_usd == pytest.approx(5 * 0.001 - 5 * 0.0002)
    gpt4o = PriceBook().rates("openai", "gpt-4o-2024-08-06", A0).effective()
    routed = [r for r in after_recs if r.tags.get("route") == "cheap"]
    expected = sum(float((r.tokens_input * gpt4o["input"] + r.tokens_output * gpt4o["output"]) / MTOK) - r.cost_usd
                   for r in routed)  # fmt: skip
    assert saved["Routing"].saved_usd == pytest.approx(expected, abs=1e-12)
    assert saved["Routing"].monthly_usd == pytest.approx(expected * 30 / 5)  # the after period is 5 days long
    assert result.attribution_after.routes[0][:2] == ["cheap", 20]
    assert result.attribution_before.savings == []


def test_tag_selection_and_too_little_data(tracker, make_record, database_url):
    for i in range(10):
        tracker.add(make_record(timestamp=B0 + timedelta(minutes=i), tags={"run": "baseline"}, cost_usd=0.002))
        tracker.add(make_record(timestamp=B0 + timedelta(minutes=i, seconds=30), tags={"run": 2}, cost_usd=0.001))
    tracker.flush()
    result = res.build_results(make_engine(database_url), PriceBook(), res.Selection("before", tags=(("run", "baseline"),)),
                               res.Selection("after", tags=(("run", "2"),)))  # fmt: skip
    assert result.before.requests == 10 and result.after.requests == 10
    assert result.before.spend_usd == pytest.approx(0.02) and result.after.spend_usd == pytest.approx(0.01)
    assert not result.enough and "Too little data" in result.notes[0]
    text = render("results", {"results": result, "version": "t", "database": "d", "command": "c"})
    assert "| Metric | Before | After |\n" in text and "| Change |" not in text
    with pytest.raises(res.NoRecords):
        res.build_results(make_engine(database_url), PriceBook(), res.Selection("before", tags=(("run", "nope"),)),
                          res.Selection("after", tags=(("run", "2"),)))  # fmt: skip


def test_summary(periods, database_url):
    recs, _ = periods
    selection = res.Selection("period", since=A0)
    summary = res.build_summary(make_engine(database_url), PriceBook(), selection)
    after = [r for r in recs if r.timestamp >= A0]
    m = metrics(after)
    assert summary.metrics.cost_per_1k == pytest.approx(m["per1k"])
    text = render("summary", {"summary": summary, "version": "t", "database": "d", "command": "c"})
    lat = [r.latency_ms for r in after]
    assert f"| Cost per 1K requests | {usd(m['per1k'])} |" in text
    assert f"| Average latency | {ms(sum(lat) / len(lat))} |" in text
    assert f"| p95 latency | {ms(nearest_rank(lat, 95))} |" in text
    assert f"| Cache hit rate | {pct(m['hit'])} |" in text
    assert "**Response cache**" in text and "**Cheap-first fallback**" in text and "**Provider prompt caching**" in text
    assert f"({count(20)} calls answered from the cache" in text
    span = (max(r.timestamp for r in after) - min(r.timestamp for r in after)).total_seconds() / 86400
    assert f"over the last {days(max(span, 1.0))}\n" in text  # the records' span, at least a day


def _cell(text: str) -> float:
    """The number in a document's cell or operand: '$1,234.5678' → 1234.5678, '2.15%' → 2.15, '-0.47 pp' → -0.47."""
    return float(text.replace("$", "").replace(",", "").replace("%", "").replace("pp", "").strip())


@pytest.fixture
def runs(tracker, make_record):
    """A baseline and an optimized run (tags), over uneven spans.

    Both read the chat prompt from the provider's cache at the same 1,500 tokens a request, but the optimized run
    has twice the chat traffic: it saves more in total, not more per request. The response cache on /api/classify
    answered 4 of 40 baseline requests and 10 of 30 optimized ones.
    """
    recs = []

    def chat(at, run):
        return make_record(timestamp=at, endpoint="/api/chat", provider="anthropic", model="claude-sonnet-4-5-20250929",
                           model_requested="claude-sonnet-4-5", tokens_input=2000, tokens_cached_input=1500,
                           tokens_output=50, cost_usd=0.0022, latency_ms=1500.0, tags={"run": run})  # fmt: skip

    def classify(at, run, hit, status="ok"):
        return make_record(timestamp=at, endpoint="/api/classify", provider="openai", model="gpt-4o-2024-08-06",
                           model_requested="gpt-4o", tokens_input=100, tokens_output=10, status=status,
                           cost_usd=0.0 if hit or status != "ok" else gpt4o_cost(100, 10), cache_hit=hit,
                           cost_saved_usd=gpt4o_cost(100, 10) if hit else None, latency_ms=900.0,
                           tags={"run": run})  # fmt: skip

    for i in range(20):
        recs.append(chat(B0 + timedelta(minutes=97 * i), "baseline"))
    for i in range(40):
        recs.append(classify(B0 + timedelta(minutes=97 * i, seconds=30), "baseline", hit=i < 4,
                             status="error" if i in (10, 20, 30) else "ok"))  # fmt: skip
    for i in range(40):
        recs.append(chat(A0 + timedelta(minutes=61 * i), "optimized"))
    for i in range(30):
        recs.append(classify(A0 + timedelta(minutes=61 * i, seconds=30), "optimized", hit=i < 10,
                             status="error" if i == 15 else "ok"))  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    assert tracker.flush()
    return recs


def test_an_optimization_is_credited_with_its_change_only(runs, database_url):
    """Savings by optimization: the change per request on each endpoint, x the after side's requests; caching that
    was already on, at the same rate per request, is not credited although it saves more in total after."""
    before, after = res.Selection("before", tags=(("run", "baseline"),)), res.Selection("after", tags=(("run", "optimized"),))
    result = res.build_results(make_engine(database_url), PriceBook(), before, after)
    sonnet = PriceBook().rates("anthropic", "claude-sonnet-4-5-20250929", A0).effective()
    per_chat_request = float(1500 * (sonnet["input"] - sonnet["cached_input"]) / MTOK)
    credits = {c.name: c for c in result.credits}
    caching = credits["Provider prompt caching"]
    assert caching.before_usd == pytest.approx(20 * per_chat_request) and caching.after_usd == pytest.approx(40 * per_chat_request)
    assert caching.saved_usd == pytest.approx(0.0, abs=1e-12) and not caching.changed
    assert result.unchanged == [caching]
    # Response cache: 4 hits in 40 classify requests before, 10 in 30 after.
    hit = gpt4o_cost(100, 10)
    cache = credits["Response cache"]
    expected = 10 * hit - (4 * hit / 40) * 30
    assert cache.before_usd == pytest.approx(4 * hit) and cache.after_usd == pytest.approx(10 * hit)
    assert cache.saved_usd == pytest.approx(expected, abs=1e-12) and cache.endpoints == ["/api/classify"]
    after_requests = sum(r.attempt == 1 for r in runs if r.tags["run"] == "optimized")
    assert cache.monthly_usd == pytest.approx(expected / after_requests * result.monthly_volume)
    assert result.savings == [cache]
    # The document: the change credited, the unchanged one named as such, and the formulas check as printed.
    text = render("results", {"results": result, "version": "t", "database": "d", "command": "c"})
    assert "| Provider prompt caching |" not in text
    assert (f"Not credited, as they save the same per request on both sides: provider prompt caching (saved "
            f"{usd(20 * per_chat_request)} before, {usd(40 * per_chat_request)} after).") in text  # fmt: skip
    [row] = [line for line in text.splitlines() if line.startswith("| Response cache |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:4] == [usd(4 * hit), usd(10 * hit)]
    saved, monthly = _cell(cells[4]), cells[5]
    assert cells[4].startswith("+") and saved == pytest.approx(expected, rel=1e-3)
    volume = re.search(r"the after side's ([\d,]+) requests\nx ([\d,.]+) requests a month", text)
    assert volume is not None and _cell(volume.group(1)) == after_requests
    assert monthly == "+" + usd(saved / after_requests * _cell(volume.group(2)))  # as printed
    assert monthly == "+" + usd(cache.monthly_usd)  # and right


def test_rates_change_in_points_and_formulas_check_as_printed(runs, database_url):
    """Error and cache-hit rates change in percentage points; projected monthly cost = cost per 1K / 1,000 x the
    monthly traffic, and the traffic = requests / days x 30, all as printed."""
    before, after = res.Selection("before", tags=(("run", "baseline"),)), res.Selection("after", tags=(("run", "optimized"),))
    result = res.build_results(make_engine(database_url), PriceBook(), before, after)
    text = render("results", {"results": result, "version": "t", "database": "d", "command": "c"})
    sides = {run: [r for r in runs if r.tags["run"] == run] for run in ("baseline", "optimized")}
    b, a = metrics(sides["baseline"]), metrics(sides["optimized"])
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
            for line in text.splitlines() if line.startswith("| ") and line.count("|") == 5}  # fmt: skip
    for name, key in (("Error rate", "err"), ("Cache hit rate", "hit")):
        shown_before, shown_after, shown_change = rows[name]
        assert shown_change.endswith(" pp") and "%" not in shown_change
        decimals = len(shown_before.split(".")[1].rstrip("%"))
        assert _cell(shown_before) == pytest.approx(round(b[key] * 100, decimals))
        assert _cell(shown_after) == pytest.approx(round(a[key] * 100, decimals))
        assert shown_change == pp(a[key] - b[key], decimals)  # right
        assert _cell(shown_change) == pytest.approx(_cell(shown_after) - _cell(shown_before))  # and as printed
    assert rows["Error rate"][2] != "0.0 pp" and b["err"] != a["err"]
    m = re.search(r"\(([\d,.]+) requests a month: its ([\d,]+) requests / ([\d,.]+) days x 30\)", text)
    assert m is not None
    volume, requests, days_ = (_cell(g) for g in m.groups())
    span = (max(r.timestamp for r in sides["baseline"]) - min(r.timestamp for r in sides["baseline"])).total_seconds()
    assert requests == b["requests"] and days_ == pytest.approx(span / 86400, abs=0.5 * 10 ** -len(m.group(3).split(".")[-1]))
    places = len(m.group(1).split(".")[1]) if "." in m.group(1) else 0
    assert f"{requests / days_ * 30:,.{places}f}" == m.group(1)
    per_1k, monthly = rows["Cost per 1K requests"], rows["Projected monthly cost"]
    for side, x in ((0, b), (1, a)):
        assert _cell(per_1k[side]) == pytest.approx(x["per1k"], rel=1e-4)
        assert monthly[side] == usd(_cell(per_1k[side]) / 1000 * volume)  # as printed
        assert monthly[side] == usd(x["per1k"] / 1000 * b["requests"] * 30 / (span / 86400))  # and right


def test_prompt_caching_saving_is_net_of_cache_writes(tracker, make_record, database_url):
    """Cache reads save input - cached rate; cache writes cost their rate - input rate (5-minute and 1-hour writes
    each at their own rate), which the saving subtracts; a call that only wrote the cache counts too."""
    def chat(hour, cached, write, write_1h, **kw):
        return make_record(timestamp=A0 + timedelta(hours=hour), endpoint="/api/chat", provider="anthropic",
                           model="claude-sonnet-4-5-20250929", model_requested="claude-sonnet-4-5", tokens_input=3000,
                           tokens_cached_input=cached, tokens_cache_write=write, tokens_cache_write_1h=write_1h,
                           tokens_output=40, cost_usd=0.004, **kw)  # fmt: skip

    recs = [chat(0, 0, 2000, 0), chat(1, 2000, 0, 0), chat(2, 2000, 0, 0), chat(3, 0, 2500, 2500),
            chat(4, 2500, 0, 0, status="incomplete"),
            make_record(timestamp=A0 + timedelta(hours=5), endpoint="/api/classify", provider="openai",
                        model="gpt-4o-2024-08-06", model_requested="gpt-4o", tokens_input=1500,
                        tokens_cached_input=1024, tokens_output=5, cost_usd=0.003)]  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    assert tracker.flush()
    summary = res.build_summary(make_engine(database_url), PriceBook(), res.Selection("period", since=A0))
    book = PriceBook()
    s = book.rates("anthropic", "claude-sonnet-4-5-20250929", A0).effective()
    o = book.rates("openai", "gpt-4o-2024-08-06", A0).effective()
    assert s["cache_write"] > s["input"] and s["cache_write_1h"] > s["cache_write"]  # the premium this test is about
    chat_saved = float(((2000 + 2000 + 2500) * (s["input"] - s["cached_input"])
                        - 2000 * (s["cache_write"] - s["input"]) - 2500 * (s["cache_write_1h"] - s["input"])) / MTOK)
    classify_saved = float(1024 * (o["input"] - o["cached_input"]) / MTOK)
    caching = next(x for x in summary.attribution.savings if x.name == "Provider prompt caching")
    assert caching.by_endpoint == pytest.approx({"/api/chat": chat_saved, "/api/classify": classify_saved}, abs=1e-15)
    assert caching.saved_usd == pytest.approx(chat_saved + classify_saved, abs=1e-15)
    assert caching.evidence.startswith(f"{count(2000 + 2000 + 2500 + 1024)} input tokens read")
    assert f"net of {count(2000 + 2500)} written" in caching.evidence
    text = render("summary", {"summary": summary, "version": "t", "database": "d", "command": "c"})
    assert f"**Provider prompt caching**: {usd(chat_saved + classify_saved)} over the period" in text


def test_fallback_counts_answers_from_a_cheaper_model_apart(tracker, make_record, database_url):
    """Only answers from a model cheaper than the requested one are counted as cheaper: the requested model
    answering after an escalation, or a cheap model asked for by name, saved nothing, and a dearer one cost more.
    The dollar figure stays over every answer, less the escalated attempts."""
    book = PriceBook()

    def cost(model, tin, tout):
        r = book.rates("openai", model, A0).effective()
        return float((tin * r["input"] + tout * r["output"]) / MTOK)

    recs = []

    def answer(i, requested, model, chain):
        saved = cost(requested, 200, 30) - cost(model, 200, 30)  # what CheapFirst stores: the requested model's price
        recs.append(make_record(timestamp=A0 + timedelta(minutes=i), endpoint="/api/summarize", model=model,
                                model_requested=model, tokens_input=200, tokens_output=30,
                                cost_usd=cost(model, 200, 30), cost_saved_usd=saved, attempt=2 if "+" in chain else 1,
                                tags={"fallback_chain": chain.strip("+"), "fallback_requested": requested}))  # fmt: skip

    def escalated(i, requested, model, chain):
        recs.append(make_record(timestamp=A0 + timedelta(minutes=i, seconds=-1), endpoint="/api/summarize", model=model,
                                model_requested=model, tokens_input=200, tokens_output=30, cost_usd=cost(model, 200, 30),
                                tags={"fallback_chain": chain, "fallback_requested": requested,
                                      "fallback_reason": "rejected"}))  # fmt: skip

    for i in range(3):  # gpt-4o asked for, gpt-4o-mini's answer accepted: cheaper
        answer(i, "gpt-4o", "gpt-4o-mini", "gpt-4o-mini>gpt-4o")
    for i in range(3, 5):  # gpt-4o-mini rejected, gpt-4o (the requested model) answered: not cheaper
        escalated(i, "gpt-4o", "gpt-4o-mini", "gpt-4o-mini>gpt-4o")
        answer(i, "gpt-4o", "gpt-4o", "gpt-4o-mini>gpt-4o+")
    answer(5, "gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini>gpt-4o")  # the cheap model asked for by name
    escalated(6, "gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini>gpt-4o")  # escalated past the requested model: dearer
    answer(6, "gpt-4o-mini", "gpt-4o", "gpt-4o-mini>gpt-4o+")
    for rec in recs:
        tracker.add(rec)
    assert tracker.flush()
    summary = res.build_summary(make_engine(database_url), PriceBook(), res.Selection("period", since=A0))
    fallback = next(x for x in summary.attribution.savings if x.name == "Cheap-first fallback")
    answers = [r for r in recs if "fallback_reason" not in r.tags]
    rejected = [r for r in recs if "fallback_reason" in r.tags]
    saved, spent = sum(r.cost_saved_usd for r in answers), sum(r.cost_usd for r in rejected)
    assert fallback.evidence == (f"{count(7)} chain answers ({count(3)} from a model cheaper than the requested one, "
                                 f"{count(1)} from a dearer one) saved {usd(saved)} against the requested model; "
                                 f"{count(3)} escalated attempts cost {usd(spent)}")  # fmt: skip
    assert fallback.saved_usd == pytest.approx(saved - spent, abs=1e-15)


def test_routed_calls_name_only_the_models_that_answered(tracker, make_record, database_url):
    """A failed routed call got no answer: its stored `model` (the name it asked for) is not among the route's models,
    while its call still counts."""
    recs = [make_record(timestamp=A0 + timedelta(minutes=i), endpoint="/api/classify", model="gpt-4o-mini-2024-07-18",
                        model_requested="gpt-4o-mini", tags={"route": "cheap"}) for i in range(3)]  # fmt: skip
    recs.append(make_record(timestamp=A0 + timedelta(minutes=5), endpoint="/api/classify", model="gpt-4o-mini",
                            model_requested="gpt-4o-mini", status="error", tokens_input=0, tokens_output=0,
                            cost_usd=0.0, tags={"route": "cheap"}))  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    assert tracker.flush()
    summary = res.build_summary(make_engine(database_url), PriceBook(), res.Selection("period", since=A0))
    [route] = summary.attribution.routes
    assert route[0] == "cheap" and route[1] == len(recs)
    assert route[4] == "gpt-4o-mini-2024-07-18"


def test_unpriced_calls_alone_cost_an_unknown_amount_not_zero(tracker, make_record, database_url):
    """A side whose calls are all unpriced has an unknown spend, cost per 1K requests and monthly cost, never $0;
    so do the README summary and an A/B arm."""
    for i in range(2 * MIN):
        tracker.add(make_record(timestamp=(B0 if i < MIN else A0) + timedelta(minutes=i), model="mystery-llm",
                                model_requested="mystery-llm", tokens_input=200, tokens_output=20, cost_usd=None,
                                price_source=None, tags={"ab_test": "t", "ab_arm": "control" if i % 2 else "cheap"}))  # fmt: skip
    assert tracker.flush()
    engine = make_engine(database_url)
    result = res.build_results(engine, PriceBook(), res.Selection("before", B0, B0 + timedelta(days=1)),
                               res.Selection("after", A0, A0 + timedelta(days=1)), ab=True)  # fmt: skip
    rows = {r.name: r for r in result.rows}
    for name in ("Spend", "Cost per 1K requests", "Projected monthly cost"):
        assert rows[name].before is None and rows[name].after is None, name
    assert rows["Requests"].before == MIN
    text = render("results", {"results": result, "version": "t", "database": "d", "command": "c"})
    assert "| Spend | unpriced | unpriced | - |" in text and "| Cost per 1K requests | unpriced | unpriced | - |" in text
    assert f"before: {count(MIN)} unpriced calls and no priced cost: its spend and cost per request are unknown" in text
    assert result.ab is not None and result.ab.control.spend_usd is None
    assert f"**control** ({count(MIN // 2)} calls, unpriced)" in text
    summary = res.build_summary(engine, PriceBook(), res.Selection("period", since=B0))
    assert "| Cost per 1K requests | unpriced |" in render("summary", {"summary": summary, "version": "t",
                                                                     "database": "d", "command": "c"})  # fmt: skip
