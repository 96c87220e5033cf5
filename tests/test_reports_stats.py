"""Stats aggregated in SQL match figures computed independently from the same records."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from costtrack.reports.stats import compute_stats
from costtrack.store.database import make_engine
from costtrack.store.sql import insert_records

from helpers import nearest_rank


@pytest.fixture
def seeded(tracker, make_record):
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    recs = []
    for i in range(200):
        recs.append(make_record(
            timestamp=base + timedelta(hours=i), endpoint="/api/a" if i % 3 else "/api/b",
            model="gpt-4o-mini-2024-07-18", model_requested="gpt-4o-mini" if i % 2 else "gpt-4o",
            cost_usd=(i % 7) * 0.001, latency_ms=float((i * 37) % 101 + 1), tokens_input=100 + i, tokens_output=10,
            status="error" if i % 25 == 0 else "ok", cache_hit=i % 10 == 0, cost_saved_usd=0.002 if i % 10 == 0 else None,
        ))  # fmt: skip
    recs.append(make_record(timestamp=base, model="mystery-model", model_requested="mystery-model", cost_usd=None,
                            price_source=None, tokens_input=50, latency_ms=None))  # fmt: skip
    for rec in recs:
        tracker.add(rec)
    assert tracker.flush()
    return recs


def test_totals_and_percentiles_match(tracker, seeded, database_url):
    stats = compute_stats(make_engine(database_url), by="endpoint")
    assert stats.total.calls == len(seeded)
    assert stats.total.spend_usd == pytest.approx(sum(r.cost_usd or 0 for r in seeded), abs=1e-12)
    assert stats.total.tokens_input == sum(r.tokens_input for r in seeded)
    assert stats.total.errors == sum(r.status == "error" for r in seeded)
    assert stats.total.cache_hits == sum(r.cache_hit for r in seeded)
    assert stats.total.saved_usd == pytest.approx(sum(r.cost_saved_usd or 0 for r in seeded if r.cache_hit))
    live = [r.latency_ms for r in seeded if r.latency_ms is not None and not r.cache_hit]
    for p in (50, 95, 99):
        assert getattr(stats.total, f"latency_p{p}_ms") == nearest_rank(live, p)
    group_b = next(g for g in stats.groups if g.key == "/api/b")
    b_live = [r.latency_ms for r in seeded if r.endpoint == "/api/b" and r.latency_ms is not None and not r.cache_hit]
    assert group_b.latency_p95_ms == nearest_rank(b_live, 95)
    assert stats.unpriced_models == ["mystery-model"]
    assert stats.total.unpriced_calls == 1


def test_period_filter_and_empty(tracker, seeded, database_url):
    engine = make_engine(database_url)
    since = datetime(2026, 11, 5, tzinfo=timezone.utc)
    stats = compute_stats(engine, since=since, by="model")
    assert stats.total.calls == sum(r.timestamp >= since for r in seeded)
    assert {g.key for g in stats.groups} == {"gpt-4o-mini", "gpt-4o"}
    empty = compute_stats(engine, since=datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert empty.total.calls == 0 and empty.total.latency_p50_ms is None


def test_percentiles_exact_per_group_with_nulls_ties_and_extremes(tracker, make_record, database_url):
    """The one percentile implementation (stats, audit, results): exact nearest rank per group and over all.

    Groups include NULL (model_requested unset) and a group named like nothing special; values include ties,
    zeros, values on and next to the bucket edges, tiny and huge ones; a group of one value; NULL values skipped.
    """
    import random

    from sqlalchemy import true

    from costtrack.reports.stats import Percentiles
    from costtrack.store.schema import records

    rng = random.Random(3)
    edges = [10 ** (i / 32) / 10 for i in range(0, 257, 7)]
    pools = {
        "a": [round(rng.lognormvariate(7, 0.6), 3) for _ in range(300)],
        "b": [100.0] * 40 + [100.0000001, 99.9999999, 0.0, 0.001, 5e7, 1e7] * 5 + edges,
        None: [float(v) for v in range(1, 202)],
        "single": [42.5],
    }
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    n = 0
    for key, values in pools.items():
        for v in values:
            tracker.add(make_record(timestamp=base + timedelta(seconds=n), model_requested=key, latency_ms=v,
                                    tokens_output=int(v) % 97))  # fmt: skip
            n += 1
    tracker.add(make_record(timestamp=base, model_requested="a", latency_ms=None))  # NULL: not counted
    assert tracker.flush()
    engine = make_engine(database_url)
    got = Percentiles(true(), records.c.model_requested, percentiles=(1, 50, 95, 99, 100)).compute(engine)
    everything = [v for values in pools.values() for v in values]
    assert got.overall == {p: nearest_rank(everything, p) for p in (1, 50, 95, 99, 100)}
    assert set(got.groups) == set(pools)
    for key, values in pools.items():
        assert got.groups[key] == {p: nearest_rank(values, p) for p in (1, 50, 95, 99, 100)}, key
    # Another column, no groups.
    outs = Percentiles(true(), value=records.c.tokens_output).compute(engine)
    assert outs.groups == {}
    assert outs.overall == {p: nearest_rank([int(v) % 97 for v in everything] + [20], p) for p in (50, 95, 99)}
    # Nothing selected: no percentiles, and no second query.
    none = Percentiles(records.c.endpoint == "/nowhere", records.c.endpoint)
    with engine.connect() as conn:
        assert none.refine_query(list(conn.execute(none.histogram_query()).all())) is None
    assert none.result([]).overall == {} and none.result([]).groups == {}


def test_an_unreadable_usage_is_told_by_its_own_tag_only(engine, make_record) -> None:
    """Review finding: the tag was found by a text search, which on SQLite also matched another case (and a value or
    a nested key on both databases), so a model to price was counted as an unreadable usage instead."""
    unpriced = {"cost_usd": None, "price_source": None}
    insert_records(engine, [
        make_record(model="my-ft", model_requested="my-ft", **unpriced, tags={"Costtrack.Usage_Unreadable": "n/a"}),
        make_record(model="my-ft2", model_requested="my-ft2", **unpriced, tags={"note": "costtrack.usage_unreadable"}),
        make_record(**unpriced, tags={"costtrack.usage_unreadable": True}),
        make_record(**unpriced, tokens_input=0, tokens_output=0, tags={"costtrack.usage_unreadable": True}),
    ])  # fmt: skip
    stats = compute_stats(engine)
    assert (stats.unpriced_models, stats.unreadable_calls) == (["my-ft", "my-ft2"], 2)
    assert stats.total.unpriced_calls == 4  # the last: no count read at all, its cost unknown too


def test_groups_of_equal_spend_and_calls_are_ordered_by_name_on_both_backends(engine, make_record) -> None:
    """Review finding: ties came in each database's order (and each collation's): '/B' first on SQLite, last on one
    Postgres. Now by name, code point order, everywhere."""
    insert_records(engine, [make_record(endpoint=e, tokens_input=10, cost_usd=0.5) for e in ("/b", "/Á", "/a", "/B", "/c")])
    assert [g.key for g in compute_stats(engine, by="endpoint").groups] == ["/B", "/a", "/b", "/c", "/Á"]
