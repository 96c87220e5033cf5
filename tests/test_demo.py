"""The demo workload: real wrapped SDK clients over the simulated providers, and the audit it feeds.

The workload must give the audit real signal for at least five detectors (issue 4:
"at least five, each detected from the records"). Every saving is checked here
against a value computed from the stored records without costtrack's report code.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from costtrack import demo
from costtrack.cli import run as cli
from costtrack.format import pct, usd
from costtrack.pricing import PriceBook
from costtrack.reports.audit import build_audit
from costtrack.reports.render import render
from costtrack.store.database import make_engine
from costtrack.tracker import Tracker

from helpers import nearest_rank, price, rates

MTOK = Decimal(1_000_000)
END = datetime(2026, 11, 1, tzinfo=timezone.utc)





def served(recs, endpoint):
    """Successful calls that reached the provider, in time order."""
    return sorted((r for r in recs if r.endpoint == endpoint and r.status == "ok" and not r.cache_hit),
                  key=lambda r: (r.timestamp, r.id))  # fmt: skip


def expected(recs):
    """Each detector's saving over the period, from the records, as the audit documents its method."""
    first, last = min(r.timestamp for r in recs), max(r.timestamp for r in recs)
    days = max((last - first).total_seconds() / 86400, 1.0)
    spend = sum(r.cost_usd or 0 for r in recs)
    out = {"first": first, "last": last, "days": days, "spend": spend}
    # Response cache, 1 h TTL: a successful call repeating a successful request of the last hour.
    seen: dict[str, datetime] = {}
    out["response-cache"] = 0.0
    for r in sorted(recs, key=lambda r: (r.timestamp, r.id)):
        if r.status != "ok" or not r.request_hash:
            continue
        prev = seen.get(r.request_hash)
        if prev is not None and (r.timestamp - prev).total_seconds() <= 3600:
            out["response-cache"] += r.cost_usd or 0
        seen[r.request_hash] = r.timestamp
    # Prompt caching on the reply drafter: prefix = its smallest prompt; a call within 5 minutes of the
    # previous one reads the cache, the others write it (Anthropic: writes at 1.25x the input rate).
    drafts = served(recs, "/api/draft-reply")
    sonnet = rates("anthropic", drafts[0].model, last)
    prefix = min(r.tokens_input for r in drafts)
    warm = [b for a, b in itertools.pairwise(drafts) if (b.timestamp - a.timestamp).total_seconds() <= 300]
    warm_tokens = sum(max(prefix - r.tokens_cached_input, 0) for r in warm)
    cold = len(drafts) - len(warm)
    out["prompt-cache"] = float((warm_tokens * (sonnet["input"] - sonnet["cached_input"])
                                 - cold * prefix * (sonnet["cache_write"] - sonnet["input"])) / MTOK)  # fmt: skip
    out["prefix"], out["warm"] = prefix, len(warm)
    # gpt-4o -> gpt-4o-mini on ticket triage, same tokens at gpt-4o-mini's rates.
    mini = rates(None, "gpt-4o-mini", last)
    triage = [r for r in recs if r.endpoint == "/api/classify" and r.cost_usd is not None]
    out["model-swap"] = sum(r.cost_usd - price(mini, r.tokens_input, r.tokens_output, r.tokens_cached_input)
                            for r in triage)  # fmt: skip
    # Batch API: half of what the nightly job cost.
    out["batch"] = sum(r.cost_usd or 0 for r in recs if r.endpoint == "/jobs/nightly-digest") / 2
    # Output waste on extraction: output tokens above the median answer, at the output rate.
    extract = served(recs, "/api/extract")
    median = nearest_rank([r.tokens_output for r in extract], 50)
    excess = sum(max(r.tokens_output - median, 0) for r in extract)
    out["output-waste"] = float(excess * rates("openai", extract[0].model, last)["output"] / MTOK)
    # Failed and cut calls: everything they cost.
    out["failures"] = sum(r.cost_usd or 0 for r in recs if r.status in ("error", "incomplete"))
    return out


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    """A month of the demo app (800 calls) in a fresh SQLite file: (url, records, outcome)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo')}/demo.db"
    with pytest.MonkeyPatch.context() as mp:  # as conftest's per-test isolation does
        mp.delenv("COSTTRACK_DATABASE_URL", raising=False)
        mp.setenv("COSTTRACK_OUTBOX_DIR", str(tmp_path_factory.mktemp("outbox")))
        tracker = Tracker(url)
        outcome = demo.run(tracker, 800, seed=7)
        recs = tracker.records()
        tracker.close()
    return url, recs, outcome


def test_the_workload_gives_five_detectors_real_signal(demo_db):
    url, recs, outcome = demo_db
    exp = expected(recs)
    audit = build_audit(make_engine(url), PriceBook(), since=None, now=exp["last"])
    positive = [o for o in audit.opportunities if o.savings_usd and o.savings_usd > 0]
    assert len(positive) >= 5
    by_kind = {o.kind: o for o in positive}
    assert {"response-cache", "prompt-cache", "model-swap", "batch", "failures"} <= set(by_kind)
    assert audit.baseline_usd == pytest.approx(exp["spend"], abs=1e-12)
    for kind, o in by_kind.items():
        assert o.savings_usd == pytest.approx(exp[kind], abs=1e-12), kind
        assert o.monthly_usd == pytest.approx(exp[kind] * 30 / exp["days"], abs=1e-12), kind
        assert o.share == pytest.approx(exp[kind] / exp["spend"]), kind
        assert o.evidence and o.effort and o.notes and o.metric, kind
    # Where each signal comes from.
    assert by_kind["prompt-cache"].per_endpoint.keys() == {"/api/draft-reply"}
    assert by_kind["model-swap"].per_endpoint.keys() == {"/api/classify"}
    assert by_kind["batch"].per_endpoint.keys() == {"/jobs/nightly-digest"}
    billed = {e for e, v in by_kind["failures"].per_endpoint.items() if v > 0}
    assert billed == {"/api/chat"}  # the streams users stopped; the other failures were not billed
    assert f"never fewer than {exp['prefix']:,}" in by_kind["prompt-cache"].evidence[0]
    assert f"{exp['warm']:,} calls came within 5m" in by_kind["prompt-cache"].evidence[0]
    # Ranked by savings; the plan takes the top three.
    assert [o.savings_usd for o in audit.opportunities] == sorted((o.savings_usd for o in audit.opportunities),
                                                                  reverse=True)  # fmt: skip
    assert audit.top == positive[:3]
    assert outcome["ok"] + outcome["failed"] == 800
    text = render("audit", {"audit": audit, "charts": [], "charts_note": "none", "version": "t", "database": "d",
                            "command": "c"})  # fmt: skip
    for o in positive:
        assert f"| {o.rank} | {o.title} | {usd(o.monthly_usd)} | {pct(o.share)} | {o.effort} |" in text
    assert "these records support" not in text  # the "fewer than five" note


def test_the_records_carry_the_signals(demo_db):
    _, recs, _ = demo_db
    by_endpoint = Counter(r.endpoint for r in recs)
    assert set(by_endpoint) == {"/api/classify", "/api/summarize", "/api/chat", "/api/draft-reply", "/api/search",
                                "/jobs/nightly-digest", "/api/extract"}  # fmt: skip
    # The reply drafter sends its ~2,100-token handbook with every ticket and never reads it from a cache...
    drafts = [r for r in recs if r.endpoint == "/api/draft-reply" and r.status == "ok"]
    assert min(r.tokens_input for r in drafts) > 2000 and sum(r.tokens_cached_input for r in drafts) == 0
    # ...while chat marks its system prompt with cache_control and reads it.
    chats = [r for r in recs if r.endpoint == "/api/chat" and r.status == "ok"]
    # The cache lives 5 minutes: read through a conversation and between close ones, written again after a lull
    # (never read hours after its last use).
    assert sum(r.tokens_cached_input for r in chats) > 0.5 * sum(r.tokens_input for r in chats)
    assert sum(r.tokens_cache_write for r in chats) > 0
    last_use: datetime | None = None
    for r in sorted((r for r in recs if r.endpoint == "/api/chat"), key=lambda r: r.timestamp):  # stopped ones too
        if r.tokens_cached_input:
            assert last_use is not None and (r.timestamp - last_use).total_seconds() <= 300 + 60  # + a call's own length
        last_use = r.timestamp
    # Stopped chat streams are recorded as incomplete, billed for the prompt they sent.
    stopped = [r for r in recs if r.status == "incomplete"]
    assert stopped and all(r.endpoint == "/api/chat" and r.cost_usd > 0 for r in stopped)
    # Retries: the SDK retried some failures (attempt 2), and every failure is a record of its own.
    assert any(r.attempt == 2 for r in recs) and any(r.status == "error" for r in recs)


def test_workload_rhythms():
    steps = list(demo.workload(3000, seed=7, end=END))
    assert len(steps) == 3000
    assert all(END - timedelta(days=30) <= s.at < END for s in steps)
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    # The same seed gives the same month.
    again = list(demo.workload(3000, seed=7, end=END))
    assert [(s.at, s.endpoint, s.user) for s in steps] == [(s.at, s.endpoint, s.user) for s in again]
    # The nightly job runs at 02:00 UTC, a call every 45 s or so.
    nightly = [s for s in steps if s.endpoint == "/jobs/nightly-digest"]
    assert nightly and all(s.at.hour == 2 and s.at.minute < 30 and s.user == "cron" for s in nightly)
    # However many calls, they stay in the month.
    many = list(demo.workload(60_000, seed=1, days=2, end=END + timedelta(hours=3)))
    assert all(END + timedelta(hours=3) - timedelta(days=2) <= s.at < END + timedelta(hours=3) for s in many)
    # Reply drafts come in bursts: most follow the previous one within 5 minutes.
    drafts = [s.at for s in steps if s.endpoint == "/api/draft-reply"]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(drafts)]
    assert sum(g <= 300 for g in gaps) / len(gaps) > 0.6
    # Interactive traffic follows working hours: far more at 10:00-16:00 UTC than at 00:00-04:00.
    interactive = Counter(s.at.hour for s in steps if s.endpoint in ("/api/classify", "/api/summarize", "/api/chat"))
    assert sum(interactive[h] for h in range(10, 16)) > 5 * sum(interactive[h] for h in range(4))


def test_cli_demo_writes_an_audit_with_five_opportunities(tmp_path, capsys, monkeypatch):
    """`costtrack demo` end to end: its audit lists at least five opportunities, with the records' figures."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/demo.db"
    assert cli(["demo", "--calls", "800", "--database-url", url]) == 0
    err = capsys.readouterr().err
    assert "800 calls made" in err
    text = (tmp_path / "docs" / "optimization-audit.md").read_text()
    tracker = Tracker(url)
    exp = expected(tracker.records())
    tracker.close()
    ranked = re.findall(r"^\| (\d+) \| .+ \| (\$[\d.,]+) \| [\d.]+% \| (?:Low|Medium|High) \|$", text, re.M)
    assert len(ranked) >= 5 and [int(rank) for rank, _ in ranked] == list(range(1, len(ranked) + 1))
    monthly = {k: usd(exp[k] * 30 / exp["days"]) for k in ("prompt-cache", "model-swap", "batch", "failures")}
    assert f"| Provider prompt caching on /api/draft-reply | {monthly['prompt-cache']} |" in text
    assert f"| gpt-4o → gpt-4o-mini on /api/classify | {monthly['model-swap']} |" in text
    assert f"| Batch API for /jobs/nightly-digest | {monthly['batch']} |" in text
    assert f"| Stop paying for failed, cut and rejected calls | {monthly['failures']} |" in text
    assert "these records support" not in text
