"""`costtrack simulate` and its engine: every figure against an independent replay of the seeded records."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costtrack.cli import run as cli
from costtrack.errors import ConfigError
from costtrack.pricing import PriceBook
from costtrack.reports import simulate as sim
from costtrack.store.database import make_engine

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
GPT4O = {"input": Decimal("2.5"), "output": Decimal(10)}


def _cost(tin: int, tout: int, rates: dict[str, Decimal] = GPT4O) -> float:
    return float((tin * rates["input"] + tout * rates["output"]) / Decimal(1_000_000))


@pytest.fixture
def seeded(tracker, make_record):
    """Classify on gpt-4o every 10 minutes over 3 request hashes, a nightly job, a chat with cached tokens."""
    recs = []
    for i in range(30):
        recs.append(make_record(
            timestamp=T0 + timedelta(minutes=10 * i), endpoint="/api/classify", provider="openai",
            model="gpt-4o-2024-08-06", model_requested="gpt-4o", tokens_input=50 + i, tokens_output=5,
            cost_usd=_cost(50 + i, 5), request_hash=f"c{i % 3}", latency_ms=100.0 + i,
        ))  # fmt: skip
    # A failed attempt of c1 before its first successful call: it stores nothing, and nothing was stored to answer it.
    recs.append(make_record(timestamp=T0 + timedelta(minutes=1), endpoint="/api/classify", model="gpt-4o",
                            model_requested="gpt-4o", status="error", error_type="server_error", tokens_input=0,
                            tokens_output=0, cost_usd=0.0, request_hash="c1", latency_ms=50.0))  # fmt: skip
    # An actual cache hit of c2: keeps the entry warm, costs nothing, is not counted again.
    recs.append(make_record(timestamp=T0 + timedelta(minutes=25), endpoint="/api/classify", provider="openai",
                            model="gpt-4o-2024-08-06", model_requested="gpt-4o", tokens_input=52, tokens_output=5,
                            cost_usd=0.0, cache_hit=True, cost_saved_usd=_cost(52, 5), request_hash="c2",
                            latency_ms=1.0))  # fmt: skip
    for i in range(6):
        recs.append(make_record(
            timestamp=T0 + timedelta(hours=2 + i), endpoint="/jobs/nightly-digest", provider="anthropic",
            model="claude-haiku-4-5-20251001", model_requested="claude-haiku-4-5", tokens_input=800, tokens_output=100,
            cost_usd=(800 * 1.0 + 100 * 5.0) / 1e6, request_hash=f"d{i}",
        ))  # fmt: skip
    recs.append(make_record(
        timestamp=T0 + timedelta(hours=3), endpoint="/api/chat", provider="anthropic",
        model="claude-sonnet-4-5-20250929", model_requested="claude-sonnet-4-5", tokens_input=3000,
        tokens_cached_input=2000, tokens_cache_write=600, tokens_cache_write_1h=200, tokens_output=90,
        cost_usd=0.004, request_hash="chat1",
    ))  # fmt: skip
    recs.append(make_record(timestamp=T0 + timedelta(hours=4), endpoint="/api/classify", model="mystery",
                            model_requested="mystery", cost_usd=None, price_source=None, request_hash="m1"))  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    assert tracker.flush()
    return recs


def replay_hits(recs, ttl):
    """The would-be hits, by hand: a call (any status) whose hash a successful call answered at most `ttl` s before."""
    last_ok: dict[str, datetime] = {}
    hits = []
    for r in sorted(recs, key=lambda r: (r.timestamp, r.id)):
        if r.request_hash is None:
            continue
        prev = last_ok.get(r.request_hash)
        if prev is not None and not r.cache_hit and (r.timestamp - prev).total_seconds() <= ttl:
            hits.append(r)
        if r.status == "ok":
            last_ok[r.request_hash] = r.timestamp
    return hits


@pytest.mark.parametrize("ttl", [1200, 1800, 3600])
def test_cache_replay_matches_hand_replay(seeded, database_url, ttl):
    engine = make_engine(database_url)
    result = sim.run(engine, PriceBook(), since=None, until=None, cache_ttl=ttl)
    hits = replay_hits(seeded, ttl)
    if ttl == 1200:
        assert hits == [] or all(h.endpoint != "/api/classify" for h in hits)  # 30-minute gaps: no hit
    if ttl == 1800:
        assert len([h for h in hits if h.endpoint == "/api/classify"]) == 27  # a gap equal to the TTL counts
    assert result.total.would_hit == len(hits)
    assert result.total.cache_savings_usd == pytest.approx(sum(h.cost_usd or 0 for h in hits), abs=1e-12)
    assert result.total.actual_usd == pytest.approx(sum(r.cost_usd or 0 for r in seeded), abs=1e-12)
    assert result.total.simulated_usd == pytest.approx(result.total.actual_usd - result.total.cache_savings_usd, abs=1e-12)
    classify = next(e for e in result.endpoints if e.endpoint == "/api/classify")
    assert classify.would_hit == len([h for h in hits if h.endpoint == "/api/classify"])
    assert classify.unpriced_calls == 1


def test_swap_reprices_every_bucket_at_the_targets_rates(seeded, database_url):
    engine = make_engine(database_url)
    book = PriceBook()
    last = max(r.timestamp for r in seeded)
    haiku = book.rates(None, "claude-haiku-4-5", last).effective()
    mini = book.rates(None, "gpt-4o-mini", last).effective()
    result = sim.run(engine, book, since=None, until=None,
                     swaps=[sim.Swap("claude-sonnet-4-5", "claude-haiku-4-5"), sim.Swap("gpt-4o", "gpt-4o-mini")])  # fmt: skip
    chat = next(r for r in seeded if r.endpoint == "/api/chat")
    expected_chat = float((Decimal(3000 - 2000 - 600) * haiku["input"] + Decimal(2000) * haiku["cached_input"]
                           + Decimal(400) * haiku["cache_write"] + Decimal(200) * haiku["cache_write_1h"]
                           + Decimal(90) * haiku["output"]) / Decimal(1_000_000))  # fmt: skip
    by = {e.endpoint: e for e in result.endpoints}
    assert by["/api/chat"].simulated_usd == pytest.approx(expected_chat, abs=1e-12)
    assert by["/api/chat"].swap_savings_usd == pytest.approx(chat.cost_usd - expected_chat, abs=1e-12)
    # Classify: live calls repriced, the actual cache hit stays at 0, the unpriced call stays unknown.
    live = [r for r in seeded if r.endpoint == "/api/classify" and r.model_requested == "gpt-4o" and not r.cache_hit]
    expected = sum(float((Decimal(r.tokens_input) * mini["input"] + Decimal(r.tokens_output) * mini["output"])
                         / Decimal(1_000_000)) for r in live)  # fmt: skip
    assert by["/api/classify"].simulated_usd == pytest.approx(expected, abs=1e-12)
    assert result.rates["gpt-4o-mini"]["input"] == float(mini["input"])
    assert by["/jobs/nightly-digest"].savings_usd == 0


@pytest.mark.parametrize("ttl", [None, 3600.0], ids=["no-cache", "with-cache"])
def test_a_swap_prices_web_searches_and_audio_on_the_target_too(tracker, make_record, database_url, ttl):
    """The recorded cost holds the web-search fee and audio rates; a swap priced the tokens only on the other side,
    so a swap to a model at the same rates showed the fees as a saving (review finding)."""
    at = datetime(2026, 11, 2, tzinfo=timezone.utc)
    book = PriceBook()
    from costtrack.usage import Usage, billed_extras

    for i, (requested, model, usage) in enumerate([
        ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", Usage(input=2000, output=300, web_searches=5)),
        # 600 of the input cached: only the 400 uncached tokens are billed as audio (a swap billed all 800: review)
        ("gpt-audio", "gpt-audio-2025-08-28",
         Usage(input=1000, cached_input=600, output=500, audio_input=800, audio_output=400)),
    ]):  # fmt: skip
        cost, source = book.cost("anthropic" if "claude" in model else "openai", model, usage, at)
        for n in range(2):  # the same request twice, an hour apart: the second a would-be cache hit
            tracker.add(make_record(timestamp=at + timedelta(hours=n, minutes=i), endpoint=f"/e{i}", model=model,
                                    model_requested=requested, tokens_input=usage.input,
                                    tokens_cached_input=usage.cached_input,
                                    tokens_output=usage.output, cost_usd=cost, price_source=source,
                                    request_hash=f"h{i}", tags=billed_extras(usage)))  # fmt: skip
    tracker.flush()
    # claude-sonnet-4-6 and gpt-audio-2025-08-28 bill as the models swapped away from: nothing is saved.
    result = sim.run(make_engine(database_url), book, since=None, until=None, cache_ttl=ttl,
                     swaps=[sim.Swap("claude-sonnet-4-5", "claude-sonnet-4-6"), sim.Swap("gpt-audio", "gpt-audio-2025-08-28")])
    assert {e.endpoint: e.swap_savings_usd for e in result.endpoints} == pytest.approx({"/e0": 0.0, "/e1": 0.0}, abs=1e-12)
    assert sum(result.rates["gpt-audio-2025-08-28"][k] > 0 for k in ("input_audio", "output_audio")) == 2
    # To Haiku ($1/$5 per 1M tokens against $3/$15, the same $10 per 1,000 searches): the tokens' difference only,
    # 2,000 x $2 + 300 x $10 per 1M a call, for the calls the cache would not have answered.
    result = sim.run(make_engine(database_url), book, since=None, until=None, cache_ttl=ttl,
                     swaps=[sim.Swap("claude-sonnet-4-5", "claude-haiku-4-5")])  # fmt: skip
    assert result.total.swap_savings_usd == pytest.approx(0.007 * (2 if ttl is None else 1), abs=1e-12)
    # To a model with no known search fee the fees are saved, and a note says so (they were priced $0 silently).
    result = sim.run(make_engine(database_url), book, since=None, until=None, cache_ttl=ttl,
                     swaps=[sim.Swap("claude-sonnet-4-5", "claude-3-haiku-20240307")])  # fmt: skip
    assert "web_search_per_1k" not in result.rates["claude-3-haiku-20240307"]
    # 2 calls of 5 searches; with a cache TTL the second is a would-be hit, not swapped (the note counted it too)
    assert any(f"{5 * (2 if ttl is None else 1)} web searches were swapped to claude-3-haiku-20240307, which has no "
               "known search fee" in n for n in result.notes)  # fmt: skip
    same = sim.run(make_engine(database_url), book, since=None, until=None, cache_ttl=ttl,
                   swaps=[sim.Swap("gpt-audio", "gpt-audio-2025-08-28")])  # fmt: skip
    assert [e.swap_savings_usd for e in same.endpoints if e.endpoint == "/e1"] == [0.0]  # exactly: no float noise



@pytest.mark.parametrize("value", [2.5, "3", -1, True, 0, 10**20])
def test_a_count_tag_that_is_not_a_whole_positive_number_is_read_as_none(tracker, make_record, database_url, value):
    """An app-set `costtrack.web_searches: 2.5` was billed 2.5 searches by simulate and none by reprice: both read a
    count as usage.extras_from_tags does (a positive whole number), on SQLite and Postgres alike."""
    from costtrack.usage import extras_from_tags

    at = datetime(2026, 11, 3, tzinfo=timezone.utc)
    for i, searches in enumerate([value, 4]):
        tracker.add(make_record(timestamp=at + timedelta(minutes=i), endpoint=f"/s{i}", model="claude-sonnet-4-5-20250929",
                                model_requested="claude-sonnet-4-5", tokens_input=100, tokens_output=10,
                                cost_usd=0.001, request_hash=f"s{i}", tags={"costtrack.web_searches": searches}))  # fmt: skip
    tracker.flush()
    assert extras_from_tags({"costtrack.web_searches": value}) == {}
    result = sim.run(make_engine(database_url), PriceBook(), since=None, until=None,
                     swaps=[sim.Swap("claude-sonnet-4-5", "claude-3-haiku-20240307")])  # fmt: skip
    assert [n for n in result.notes if "web searches" in n] == [
        "4 web searches were swapped to claude-3-haiku-20240307, which has no known search fee: priced at $0 there "
        "(the saving counts their fees)"
    ]

def test_a_swap_of_calls_served_at_a_tier_says_the_target_is_priced_standard(tracker, make_record, database_url, capsys):
    """A flex call swapped was priced at the target's standard rates without a word (review note)."""
    # The last two: a record from before costtrack prefixed its tags (its price_source shows the tier), and the
    # app's own tag (standard rates): only the first counts.
    for tags, source in (({"costtrack.service_tier": "flex"}, None), ({}, None), ({"costtrack.service_tier": "flex"}, None),
                         ({"service_tier": "flex"}, "genai-prices 0.2.3:openai/o3 (flex)"),
                         ({"service_tier": "priority"}, "genai-prices 0.2.3:openai/o3")):  # fmt: skip
        tracker.add(make_record(model="o3-2025-04-16", model_requested="o3", tokens_input=1000, tokens_output=100,
                                cost_usd=0.0014, tags=tags, **({"price_source": source} if source else {})))  # fmt: skip
    tracker.flush()
    result = sim.run(make_engine(database_url), PriceBook(), since=None, until=None, swaps=[sim.Swap("o3", "o4-mini")])
    assert any(n.startswith("3 calls of the swapped models were served at a service tier") for n in result.notes)
    # The CLI says so too (it never read the tiers: review finding).
    assert cli(["simulate", "--swap", "o3=o4-mini", "--since", "2020-01-01", "--json", "--database-url", database_url]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any(n.startswith("3 calls of the swapped models were served at a service tier") for n in notes), notes
    plain = sim.run(make_engine(database_url), PriceBook(), since=None, until=None, swaps=[sim.Swap("gpt-4o", "gpt-4o-mini")])
    assert not any("service tier" in n for n in plain.notes)


def test_batch_share_of_noninteractive_endpoints(seeded, database_url):
    engine = make_engine(database_url)
    result = sim.run(engine, PriceBook(), since=None, until=None, batch_share=0.3)
    job = sum(r.cost_usd for r in seeded if r.endpoint == "/jobs/nightly-digest")
    by = {e.endpoint: e for e in result.endpoints}
    assert by["/jobs/nightly-digest"].batch_savings_usd == pytest.approx(job * 0.3 * 0.5, abs=1e-12)
    assert result.total.savings_usd == pytest.approx(job * 0.15, abs=1e-12)
    everything = sim.run(engine, PriceBook(), since=None, until=None, batch_share=1.0, batch_endpoints="all")
    assert everything.total.simulated_usd == pytest.approx(everything.total.actual_usd / 2, abs=1e-12)


@pytest.mark.parametrize(("model", "provider", "batch_per_call"), [
    # OpenAI's Batch table for gpt-4o halves input and output but bills cached input at the standard cached rate
    # ($1.25/M): 200 x $1.25 + 800 x $1.25 + 100 x $5 = $0.00175 a call, not half of $0.0025.
    ("gpt-4o-2024-08-06", "openai", Decimal("0.00175")),
    # Anthropic's Message Batches halve every rate, cache reads too: 200 x $1.50 + 800 x $0.15 + 100 x $7.50.
    ("claude-sonnet-4-5", "anthropic", Decimal("0.00117")),
])
def test_batch_share_is_priced_at_the_models_batch_rates(tracker, make_record, database_url, model, provider, batch_per_call):
    # 1,000 input tokens of which 800 read from the prompt cache, 100 output: gpt-4o's standard price is
    # 200 x $2.50 + 800 x $1.25 + 100 x $10 = $0.0025; Sonnet 4.5's 200 x $3 + 800 x $0.30 + 100 x $15 = $0.00234.
    standard = {"openai": Decimal("0.0025"), "anthropic": Decimal("0.00234")}[provider]
    for i in range(4):
        tracker.add(make_record(timestamp=T0 + timedelta(hours=i), endpoint="/jobs/nightly", provider=provider, model=model,
                                model_requested=model, tokens_input=1000, tokens_cached_input=800, tokens_output=100,
                                cost_usd=float(standard)))  # fmt: skip
    tracker.flush()
    result = sim.run(make_engine(database_url), PriceBook(), since=None, until=None, batch_share=1.0)
    [job] = result.endpoints
    assert job.actual_usd == pytest.approx(float(standard * 4), abs=1e-15)
    assert job.batch_savings_usd == pytest.approx(float((standard - batch_per_call) * 4), abs=1e-15)
    half = sim.run(make_engine(database_url), PriceBook(), since=None, until=None, batch_share=0.5)
    assert half.total.batch_savings_usd == pytest.approx(float((standard - batch_per_call) * 2), abs=1e-15)


def test_calls_already_batched_are_not_discounted_again(tracker, make_record, database_url):
    # Three nightly calls: two went through a Batch API (billed at half), one did not.
    # A record from before costtrack prefixed its tags counts as batched when its price_source says it was priced so.
    old = "genai-prices 0.2.3:openai/gpt-4o-mini (batch 50%)"
    # One unpriced then (no price_source) has the batch_id costtrack.batching wrote beside its batch tag.
    costs = {"b1": (0.004, {"costtrack.batch": True, "costtrack.batch_id": "b1"}, None), "b2": (0.002, {"batch": True}, old),
             "b3": (0.002, {"batch": True, "batch_id": "batch_b3"}, "unpriced then"),
             # An app's own batch_id, unpriced then: not a provider's batch id (batch_..., msgbatch_...).
             "own": (0.010, {"batch": True, "batch_id": "nightly-8"}, "unpriced then"),
             # Nor one that only SQLite's LIKE, which ignores case, took for a provider's (diff review).
             "upper": (0.010, {"batch": True, "batch_id": "BATCH_7"}, "unpriced then"),
             "live": (0.010, {"batch": True}, None),  # the app's own tag: not a Batch API call
             "app": (0.010, {"batch": True, "batch_id": "nightly-7"}, None),  # nor with a batch_id of its own, priced
             "text": (0.010, {"batch": "true", "batch_id": "x"}, "unpriced then")}  # nor the text "true": JSON true only
    for cost, tags, source in costs.values():
        extra = {"price_source": None} if source == "unpriced then" else {"price_source": source} if source else {}
        tracker.add(make_record(endpoint="/jobs/nightly", cost_usd=cost, tags=tags, tokens_input=1000, tokens_output=100,
                                **extra))  # fmt: skip
    tracker.flush()
    engine = make_engine(database_url)
    result = sim.run(engine, PriceBook(), since=None, until=None, batch_share=1.0)
    [job] = result.endpoints
    assert job.actual_usd == pytest.approx(0.058) and job.batch_savings_usd == pytest.approx(0.025)  # half the live calls
    from costtrack.reports.audit import build_audit

    audit = build_audit(engine, PriceBook(), since=None, now=datetime(2025, 1, 2, tzinfo=timezone.utc))
    [batch] = [o for o in audit.opportunities if o.kind == "batch"]
    assert batch.savings_usd == pytest.approx(0.025) and "Batch API: 37.5% → 100%" in batch.metric


def test_an_endpoint_batched_already_is_not_proposed_again(tracker, make_record, database_url):
    for cost in (0.004, 0.002):
        tracker.add(make_record(endpoint="/jobs/nightly", cost_usd=cost, tags={"costtrack.batch": True}, tokens_input=1000))
    tracker.flush()
    from costtrack.reports.audit import build_audit

    audit = build_audit(make_engine(database_url), PriceBook(), since=None, now=datetime(2025, 1, 2, tzinfo=timezone.utc))
    assert not [o for o in audit.opportunities if o.kind == "batch"]
    [finding] = [f for f in audit.findings if f.kind == "batch"]
    assert "already go through a Batch API" in finding.nothing


def test_levers_combine_in_sequence(seeded, database_url):
    engine = make_engine(database_url)
    book = PriceBook()
    last = max(r.timestamp for r in seeded)
    mini = book.rates(None, "gpt-4o-mini", last).effective()
    result = sim.run(engine, book, since=None, until=None, cache_ttl=3600, swaps=[sim.Swap("gpt-4o", "gpt-4o-mini")],
                     batch_share=1.0, batch_endpoints="/api/classify")  # fmt: skip
    hits = {r.id for r in replay_hits(seeded, 3600)}
    rest = [r for r in seeded if r.endpoint == "/api/classify" and r.model_requested == "gpt-4o"
            and not r.cache_hit and r.id not in hits]  # fmt: skip
    repriced = sum(float((Decimal(r.tokens_input) * mini["input"] + Decimal(r.tokens_output) * mini["output"])
                         / Decimal(1_000_000)) for r in rest)  # fmt: skip
    c = next(e for e in result.endpoints if e.endpoint == "/api/classify")
    assert c.simulated_usd == pytest.approx(repriced * 0.5, abs=1e-12)
    assert c.cache_savings_usd + c.swap_savings_usd + c.batch_savings_usd == pytest.approx(c.actual_usd - c.simulated_usd)
    assert c.batch_savings_usd == pytest.approx(repriced * 0.5, abs=1e-12)


def test_an_endpoint_is_projected_over_the_apps_days_not_its_own(tracker, make_record, database_url, capsys):
    # The app ran 20 days; /jobs/rare only on its last 2: a month of it is 30/20 of what it spent, not 30/2.
    t0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
    tracker.add(make_record(endpoint="/api/chat", cost_usd=0.01, timestamp=t0))
    tracker.add(make_record(endpoint="/api/chat", cost_usd=0.01, timestamp=t0 + timedelta(days=20)))
    for day in (18, 19):
        tracker.add(make_record(endpoint="/jobs/rare", model="gpt-4o", model_requested="gpt-4o", cost_usd=0.02,
                                tokens_input=2000, tokens_output=200, timestamp=t0 + timedelta(days=day)))  # fmt: skip
    tracker.flush()
    assert cli(["simulate", "--batch-share", "1", "--batch-endpoints", "all", "--endpoint", "/jobs/rare", "--json",
                "--since", "2026-09-01", "--database-url", database_url]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert data["days"] == pytest.approx(20.0)
    assert data["monthly"]["actual_usd"] == pytest.approx(0.04 * 30 / 20)


def test_noninteractive_by_name_and_tag(tracker, make_record, database_url):
    for endpoint, tags in (("/jobs/report", {}), ("/api/export", {"interactive": False}), ("/api/chat", {}),
                           ("/cron/cleanup", {"interactive": True}), ("/api/sync", {"interactive": "false"})):  # fmt: skip
        tracker.add(make_record(endpoint=endpoint, tags=tags))
    tracker.flush()
    engine = make_engine(database_url)
    found = sim.noninteractive_endpoints(engine, ["/jobs/report", "/api/export", "/api/chat", "/cron/cleanup", "/api/sync"])
    assert {i.endpoint: i.reason for i in found} == {
        "/jobs/report": "named like a job", "/api/export": "tagged interactive=false",
        "/api/sync": "tagged interactive=false",
    }  # fmt: skip


def test_parsers():
    assert sim.parse_duration("90s") == 90 and sim.parse_duration("1.5h") == 5400 and sim.parse_duration("600") == 600
    assert sim.parse_swap(" gpt-4o = gpt-4o-mini ") == sim.Swap("gpt-4o", "gpt-4o-mini")
    for bad in ("soon", "0m", "-1h"):
        with pytest.raises(ConfigError):
            sim.parse_duration(bad)
    for bad in ("gpt-4o", "=x", "a=a", "a=b=c"):
        with pytest.raises(ConfigError):
            sim.parse_swap(bad)


def test_cli_json_and_endpoint_filter(seeded, database_url, capsys):
    code = cli(["simulate", "--cache-ttl", "1h", "--swap", "gpt-4o=gpt-4o-mini", "--endpoint", "/api/classify",
                "--since", "2026-10-01", "--json", "--database-url", database_url])  # fmt: skip
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [e["endpoint"] for e in data["endpoints"]] == ["/api/classify"]
    classify = [r for r in seeded if r.endpoint == "/api/classify"]
    assert data["total"]["actual_usd"] == pytest.approx(sum(r.cost_usd or 0 for r in classify), abs=1e-9)
    assert data["total"]["would_be_cache_hits"] == len([h for h in replay_hits(seeded, 3600) if h.endpoint == "/api/classify"])
    assert data["scenario"]["swaps"] == [{"from": "gpt-4o", "to": "gpt-4o-mini", "endpoints": None}]
    assert data["monthly"]["actual_usd"] == pytest.approx(data["total"]["actual_usd"] * 30, rel=1e-9)  # < 1 day: x 30



def test_cli_refuses_two_targets_for_one_model(seeded, database_url, capsys):
    """The second was ignored and its note said gpt-4o had no calls in the period, exit 0 (review finding)."""
    code = cli(["simulate", "--swap", "gpt-4o=gpt-4o-mini", "--swap", "GPT-4o=claude-haiku-4-5", "--database-url",
                database_url])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--swap GPT-4o=claude-haiku-4-5: GPT-4o is swapped already (--swap gpt-4o=gpt-4o-mini)" in err
    assert cli(["simulate", "--swap", "gpt-4o=gpt-4o-mini", "--swap", "GPT-4o=GPT-4o-mini", "--database-url",
                database_url]) == 0  # the same swap twice, in another case: one target

def test_cli_refuses_two_targets_for_a_snapshot_and_its_alias(seeded, database_url, capsys):
    """gpt-4o's calls are answered by gpt-4o-2024-08-06: a swap of each took them both, the second was ignored."""
    code = cli(["simulate", "--swap", "gpt-4o=gpt-4o-mini", "--swap", "gpt-4o-2024-08-06=claude-haiku-4-5",
                "--database-url", database_url])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert ("--swap gpt-4o=gpt-4o-mini and --swap gpt-4o-2024-08-06=claude-haiku-4-5 both take the calls asking for "
            "gpt-4o answered by gpt-4o-2024-08-06") in err
    assert cli(["simulate", "--swap", "gpt-4o=gpt-4o-mini", "--swap", "gpt-4o-2024-08-06=GPT-4o-mini", "--json",
                "--database-url", database_url]) == 0  # one target, named twice
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert not [n for n in notes if "no call in the period used" in n], notes  # both name the calls (review finding)


def test_cli_table(seeded, database_url, capsys):
    assert cli(["simulate", "--batch-share", "1", "--since", "2026-10-01", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    assert "/jobs/nightly-digest" in out and "TOTAL" in out and "Batch API for 100.0%" in out


@pytest.mark.parametrize(("args", "message"), [
    ([], "give at least one of --cache-ttl"),
    (["--swap", "gpt-4o"], "is not a swap"),
    (["--swap", "gpt-4o=no-such-model-x"], "no price for model 'no-such-model-x'"),
    (["--batch-share", "1.5"], "is a share"),
    (["--cache-ttl", "soon"], "is not a duration"),
    (["--batch-endpoints", "all"], "goes with --batch-share"),
    (["--batch-share", "1", "--batch-endpoints", "/nope"], "no calls on '/nope'"),
    (["--cache-ttl", "1h", "--endpoint", "/nope"], "no calls on /nope"),
    # A table with no saving and a note, exit 0, as if a mistyped model were a what-if (CLI review).
    (["--swap", "gpt-4q=gpt-4o-mini"], "--swap gpt-4q=gpt-4o-mini: no call since 2026-10-01 asked for or was answered by gpt-4q"),
])  # fmt: skip
def test_cli_errors(seeded, database_url, capsys, args, message):
    assert cli(["simulate", *args, "--since", "2026-10-01", "--database-url", database_url]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_empty_database(empty_sqlite_url, capsys):
    assert cli(["simulate", "--cache-ttl", "1h", "--database-url", empty_sqlite_url]) == 2
    assert "run `costtrack demo`" in capsys.readouterr().err


# --------------------------------------------------------------------------- portable tag SQL


def test_has_tag_finds_a_top_level_key_only_on_both_backends(engine, make_record) -> None:
    """Review finding: SQLite's text search alone also matched a value "route", a nested key and another case, so
    results listed those calls as routed (Postgres' `?` did not)."""
    from sqlalchemy import func, select

    from costtrack.reports.simulate.sql import has_tag
    from costtrack.store.schema import records
    from costtrack.store.sql import insert_records

    tags = [{"route": "cheap"}, {"step": "route"}, {"meta": {"route": "x"}}, {"Route": 1}, {"ro_te": 1}, {}, {"route": None}]
    insert_records(engine, [make_record(tags=t) for t in tags])
    with engine.connect() as conn:
        found = conn.execute(select(records.c.tags).where(has_tag(engine.dialect.name, "route"))).scalars().all()
        assert conn.execute(select(func.count()).select_from(records)).scalar_one() == len(tags)
    assert sorted(found, key=json.dumps) == [{"route": "cheap"}, {"route": None}]


@pytest.mark.parametrize("value", [1731241234.123456, 0.30000000000000004, 7, 2**63, "1731241234.123456", True])
def test_tag_text_gives_a_number_as_written_on_both_backends(engine, make_record, value) -> None:
    """Review finding: SQLite read a numeric tag through a float printed to 15 digits (1731241234.12346), so
    `--before-tag deploy=1731241234.123456` found nothing there and A/B arms 0.3 and 0.30000000000000004 merged."""
    from sqlalchemy import select

    from costtrack.reports.simulate.sql import tag_filter, tag_text
    from costtrack.store.sql import insert_records

    insert_records(engine, [make_record(tags={"deploy": value}), make_record(tags={"deploy": "other"})])
    text = "true" if value is True else str(value)
    dialect = engine.dialect.name
    with engine.connect() as conn:
        assert conn.execute(select(tag_text(dialect, "deploy")).where(tag_filter(dialect, "deploy", text))).scalars().all() == [text]


def test_a_repeat_just_over_the_ttl_is_no_hit_on_either_backend(engine, make_record) -> None:
    """Review finding: SQLite timed calls by julianday(), to the millisecond, so repeats 1.1-1.7 ms over an hour's TTL
    (past its 1 ms tolerance) read as would-be hits there, and not on Postgres."""
    from costtrack.reports.simulate.replay import replay
    from costtrack.store.sql import insert_records

    gaps = range(3_599_999_000, 3_600_002_600, 100)  # microseconds, the TTL less 1 ms to the TTL plus 2.5 ms
    start = datetime(2026, 11, 6, tzinfo=timezone.utc)
    rows = []
    for i, gap in enumerate(gaps):
        first = start + timedelta(minutes=3 * i, microseconds=137 * i)
        for at in (first, first + timedelta(microseconds=gap)):
            rows.append(make_record(timestamp=at, endpoint=f"/gap/{gap}", request_hash=f"h{i}", status="ok"))
    insert_records(engine, rows)
    groups = replay(engine, since=start, cache_ttl=3600.0).groups
    hits = {int(g.endpoint.rsplit("/", 1)[1]): g.would_hit for g in groups}
    hits.pop(3_600_001_000)  # at the tolerance exactly: floating point decides
    assert hits == {gap: int(gap < 3_600_001_000) for gap in gaps if gap != 3_600_001_000}  # TTL + 1 ms, no more


def test_a_swap_to_an_embedding_model_of_calls_that_write_answers_is_refused(seeded, tracker, make_record, database_url):
    """`--swap gpt-4o=text-embedding-3-small` priced the answers at $0 and showed a 28.9% saving (CLI review)."""
    engine = make_engine(database_url)
    with pytest.raises(ConfigError, match="bills no output tokens"):
        sim.run(engine, PriceBook(), since=None, until=None, swaps=[sim.Swap("gpt-4o", "text-embedding-3-small")])
    # Embeddings (no output) moved to another embedding model are what such a swap is for.
    for i in range(3):
        tracker.add(make_record(timestamp=T0 + timedelta(minutes=i), endpoint="/api/embed", model="text-embedding-ada-002",
                                model_requested="text-embedding-ada-002", tokens_input=1000, tokens_output=0,
                                cost_usd=1000 * 0.1 / 1e6))  # fmt: skip
    tracker.flush()
    result = sim.run(engine, PriceBook(), since=None, until=None,
                     swaps=[sim.Swap("text-embedding-ada-002", "text-embedding-3-small")])  # fmt: skip
    [embed] = [e for e in result.endpoints if e.endpoint == "/api/embed"]
    assert embed.swap_savings_usd == pytest.approx(3 * 1000 * (0.1 - 0.02) / 1e6, abs=1e-15)
