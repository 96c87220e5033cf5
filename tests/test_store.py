"""The records table and its inserts and reads, on SQLite and on Postgres (real databases)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import DataError

from costtrack.records import RECORD_FIELDS, CallRecord
from costtrack.store.schema import INSERT_COLUMNS, metadata, records
from costtrack.store.sql import _sqlite_chunks, count_records, insert_records, iter_records, update_costs

UTC = timezone.utc


def full_record(**overrides: object) -> CallRecord:
    """A record with every field set to something other than its default."""
    fields: dict[str, object] = dict(
        timestamp=datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=2))),
        provider="anthropic",
        model="claude-sonnet-4-5-20250929",
        model_requested="claude-sonnet-4-5",
        operation="messages",
        endpoint="/api/summarise",
        tokens_input=123_456_789_012,
        tokens_output=2_048,
        tokens_cached_input=1_000,
        tokens_cache_write=512,
        tokens_reasoning=300,
        cost_usd=0.1 + 0.2,  # 0.30000000000000004: must come back bit-exact
        latency_ms=1234.5678,
        ttft_ms=98.765,
        cache_hit=True,
        cost_saved_usd=1e-9,
        status="error",
        error_type="RateLimitError",
        request_hash="ab" * 32,
        attempt=3,
        user="user-42",
        tags={"team": "search", "n": 3, "nested": {"ok": True, "list": [1, "two", None]}, "ünï": "çødé ✓"},
        price_source="genai-prices 0.2.3",
        tokens_cache_write_1h=256,
        request_body='{"messages": [{"role": "user", "content": "héllo \\n"}]}',
        response_body="line one\nline two — ✓",
    )
    fields.update(overrides)
    return CallRecord(**fields)


def normalised(record: CallRecord) -> dict[str, object]:
    data = record.model_dump()
    data["timestamp"] = record.timestamp.astimezone(UTC)
    return data


def test_columns_are_exactly_the_record_fields() -> None:
    assert INSERT_COLUMNS == RECORD_FIELDS


def test_migrations_create_exactly_the_schema(engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_insert_round_trips_every_field(engine) -> None:
    rec = full_record()
    assert set(rec.model_fields_set) >= set(RECORD_FIELDS) - {"id"}
    assert insert_records(engine, [rec]) == 1
    (back,) = list(iter_records(engine))
    assert normalised(back) == normalised(rec)
    assert back.timestamp.tzinfo is not None and back.timestamp.utcoffset() == timedelta(0)
    assert back.timestamp == rec.timestamp
    assert back.cost_usd == 0.30000000000000004
    assert type(back.cache_hit) is bool and back.cache_hit is True
    assert CallRecord.model_validate(back.model_dump()) == back


def test_insert_round_trips_defaults_and_nulls(engine) -> None:
    rec = CallRecord(provider="openai", operation="chat", endpoint="/")
    insert_records(engine, [rec])
    (back,) = list(iter_records(engine))
    assert normalised(back) == normalised(rec)
    assert back.tags == {} and back.model is None and back.cost_usd is None and back.cache_hit is False


def test_values_like_the_sqlite_null_stand_ins_are_stored_as_given(engine) -> None:
    # On SQLite a nullable column's None is sent as a stand-in (0 for text, '' for numbers) that
    # NULLIF turns back into NULL: text "0" and "", and the number 0.0, are values, never NULL.
    text = dict.fromkeys(("model", "model_requested", "error_type", "request_hash", "price_source"), "0")
    empty = dict.fromkeys(("user", "request_body", "response_body"), "")
    numbers = dict.fromkeys(("cost_usd", "latency_ms", "ttft_ms", "cost_saved_usd"), 0.0)
    given = [
        full_record(**text, **empty, **numbers, cache_hit=False),
        CallRecord(provider="openai", operation="chat", endpoint="/"),
    ]
    insert_records(engine, given)
    back = {r.id: r for r in iter_records(engine)}
    for rec in given:
        assert normalised(back[rec.id]) == normalised(rec)
    zeros = back[given[0].id]
    assert (zeros.model, zeros.user, zeros.cost_usd, zeros.cache_hit) == ("0", "", 0.0, False)
    nulls = back[given[1].id]
    assert all(getattr(nulls, name) is None for name in (*text, *empty, *numbers))


def test_sqlite_columns_hold_sqlites_own_types(sqlite_url) -> None:
    from costtrack.store.database import ensure_schema, make_engine

    engine = make_engine(sqlite_url)
    try:
        ensure_schema(engine)
        insert_records(
            engine,
            [
                full_record(cost_usd=0.0, user="0", cache_hit=True),
                full_record(cost_usd=None, user=None, cache_hit=False),
            ],
        )
        with engine.connect() as conn:
            raw = conn.exec_driver_sql(
                "SELECT typeof(cost_usd), cost_usd, typeof(user), user, typeof(cache_hit), cache_hit FROM records ORDER BY cache_hit DESC"
            ).all()
    finally:
        engine.dispose()
    assert raw == [("real", 0.0, "text", "0", "integer", 1), ("null", None, "null", None, "integer", 0)]


def test_naive_timestamps_are_taken_as_utc(engine) -> None:
    rec = full_record(timestamp=datetime(2025, 1, 2, 3, 4, 5))
    insert_records(engine, [rec])
    (back,) = list(iter_records(engine))
    assert back.timestamp == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_insert_is_idempotent_by_id(engine, make_record) -> None:
    batch = [make_record() for _ in range(100)]
    assert insert_records(engine, batch) == 100
    assert insert_records(engine, batch) == 0
    more = [make_record() for _ in range(10)]
    assert insert_records(engine, batch[:50] + more) == 10
    assert count_records(engine) == 110
    # A replayed record keeps the first version stored.
    changed = batch[0].model_copy(update={"cost_usd": 99.0})
    assert insert_records(engine, [changed]) == 0
    assert next(r for r in iter_records(engine) if r.id == batch[0].id).cost_usd == batch[0].cost_usd


@pytest.mark.parametrize("count", [1, 7, 137, 512, 1300])
def test_batches_of_any_size_are_stored_whole(engine, make_record, count) -> None:
    batch = [make_record() for _ in range(count)]
    assert insert_records(engine, batch) == count
    assert {r.id for r in iter_records(engine)} == {r.id for r in batch}


def test_sqlite_statements_come_in_few_sizes_whatever_the_batch() -> None:
    # Each distinct row count is a statement SQLite compiles; few sizes stay in the driver's cache of 128.
    sizes: set[int] = set()
    for count in range(1, 3000):
        chunks = list(_sqlite_chunks(count))
        assert [start for start, _ in chunks] == [sum(size for _, size in chunks[:i]) for i in range(len(chunks))]
        assert sum(size for _, size in chunks) == count
        assert len(chunks) <= count // 512 + 2
        sizes.update(size for _, size in chunks)
    assert sizes == set(range(1, 32)) | set(range(32, 513, 32)) and max(sizes) * len(INSERT_COLUMNS) < 32766


def test_insert_nothing(engine) -> None:
    assert insert_records(engine, []) == 0


def test_a_failed_insert_stores_nothing(engine, make_record) -> None:
    good = [make_record() for _ in range(5)]
    bad = make_record(tokens_input=2**70)  # fits no integer column
    with pytest.raises((OverflowError, DataError)):  # sqlite3 refuses the int; Postgres the value
        insert_records(engine, [*good, bad])
    assert count_records(engine) == 0


def test_sqlite_stores_utc_text_that_sorts(sqlite_url, make_record) -> None:
    from costtrack.store.database import ensure_schema, make_engine

    engine = make_engine(sqlite_url)
    try:
        ensure_schema(engine)
        rec = make_record(timestamp=datetime(2025, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5))))
        insert_records(engine, [rec])
        with engine.connect() as conn:
            raw = conn.exec_driver_sql("SELECT timestamp, typeof(timestamp), tags FROM records").one()
    finally:
        engine.dispose()
    assert raw == ("2025-06-01 17:00:00.000000", "text", "{}")


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2025, 6, 1, 17, 0, 0, 120, tzinfo=UTC), "2025-06-01 17:00:00.000120"),
        (datetime(2025, 6, 1, 17, 0, 0, 0, tzinfo=UTC), "2025-06-01 17:00:00.000000"),  # fixed width
        (datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "0999-01-02 03:04:05.000006"),
    ],
)
def test_sqlite_text_is_the_same_for_every_kind_of_timestamp(sqlite_url, make_record, moment, text) -> None:
    from costtrack.store.database import ensure_schema, make_engine

    stamps = [moment, moment.astimezone(timezone(timedelta(hours=9))), moment.replace(tzinfo=None)]
    engine = make_engine(sqlite_url)
    try:
        ensure_schema(engine)
        insert_records(engine, [make_record(timestamp=stamp) for stamp in stamps])
        with engine.connect() as conn:
            raw = conn.exec_driver_sql("SELECT DISTINCT timestamp FROM records").all()
    finally:
        engine.dispose()
    assert raw == [(text,)]
    # ...and it is the text SQLAlchemy's own DateTime writes and reads back.
    from sqlalchemy.dialects.sqlite import DATETIME

    assert DATETIME().bind_processor(engine.dialect)(moment.replace(tzinfo=None)) == text


class _Team:
    def __str__(self) -> str:
        return "team-7"


def test_tag_values_json_cannot_hold_are_stored_as_text(engine, make_record) -> None:
    when = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    rec = make_record(tags={"team": _Team(), "when": when, "ratio": 0.25, "ünï": ["✓", None]})
    assert insert_records(engine, [rec]) == 1
    (back,) = list(iter_records(engine))
    assert back.tags["team"] == "team-7"
    assert datetime.fromisoformat(back.tags["when"].replace("Z", "+00:00")) == when
    assert back.tags["ratio"] == 0.25 and back.tags["ünï"] == ["✓", None]


def test_tag_values_pydantic_core_refuses_are_stored_as_text(engine, make_record) -> None:
    # Bytes that are not UTF-8 and lone surrogates: the standard encoder writes them instead.
    rec = make_record(tags={"digest": b"\x9f", "ok": "fine"})
    assert insert_records(engine, [rec]) == 1
    (back,) = list(iter_records(engine))
    assert back.tags == {"digest": "b'\\x9f'", "ok": "fine"}


def test_postgres_stores_timestamptz(postgres_url, make_record) -> None:
    from costtrack.store.database import make_engine

    engine = make_engine(postgres_url)
    try:
        rec = make_record(timestamp=datetime(2025, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5))))
        insert_records(engine, [rec])
        with engine.connect() as conn:
            conn.exec_driver_sql("SET TIME ZONE 'UTC'")
            raw = conn.exec_driver_sql("SELECT timestamp::text, pg_typeof(tags)::text FROM records").one()
    finally:
        engine.dispose()
    assert raw == ("2025-06-01 17:00:00+00", "jsonb")


def test_rows_written_by_sqlalchemy_core_read_the_same(engine, make_record) -> None:
    """insert_records' hand-made rows and SQLAlchemy's own must be interchangeable."""
    fast = make_record(timestamp=datetime(2025, 1, 1, 0, 0, 0, 500, tzinfo=UTC), tags={"a": 1})
    core = make_record(timestamp=datetime(2025, 1, 1, 0, 0, 0, 400, tzinfo=UTC), tags={"b": [2]})
    insert_records(engine, [fast])
    with engine.begin() as conn:
        conn.execute(records.insert(), [core.model_dump()])
    got = list(iter_records(engine))
    assert [r.id for r in got] == [core.id, fast.id]
    assert [normalised(r) for r in got] == [normalised(core), normalised(fast)]
    assert count_records(engine, since=datetime(2025, 1, 1, 0, 0, 0, 450, tzinfo=UTC)) == 1


def test_iter_records_pages_in_timestamp_then_id_order(engine, make_record) -> None:
    base = datetime(2025, 5, 1, tzinfo=UTC)
    # Many equal timestamps, so pages break in the middle of ties.
    recs = [make_record(timestamp=base + timedelta(seconds=i // 4)) for i in range(103)]
    shuffled = recs[:]
    random.Random(1).shuffle(shuffled)
    insert_records(engine, shuffled)

    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        got = list(iter_records(engine, batch=7))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [r.id for r in got] == [r.id for r in sorted(recs, key=lambda r: (r.timestamp, r.id))]
    assert len(statements) == 103 // 7 + 1  # one short query per page, none loading everything


def test_iter_and_count_filter_by_half_open_range(engine, make_record) -> None:
    base = datetime(2025, 5, 1, tzinfo=UTC)
    recs = [make_record(timestamp=base + timedelta(hours=i)) for i in range(10)]
    insert_records(engine, recs)
    since, until = base + timedelta(hours=2), base + timedelta(hours=5)
    assert [r.id for r in iter_records(engine, since, until)] == [r.id for r in recs[2:5]]
    assert count_records(engine, since, until) == 3
    assert count_records(engine, since=since) == 8
    assert count_records(engine, until=until) == 5
    assert count_records(engine) == 10
    # Naive bounds are UTC; other zones are converted.
    naive = datetime(2025, 5, 1, 2)
    assert count_records(engine, since=naive, until=naive + timedelta(hours=3)) == 3
    tokyo = timezone(timedelta(hours=9))
    assert count_records(engine, since=since.astimezone(tokyo), until=until.astimezone(tokyo)) == 3
    assert list(iter_records(engine, since=until, until=since)) == []


def test_update_costs_by_id_in_chunks(engine, make_record) -> None:
    recs = [make_record(cost_usd=1.0, price_source="old") for _ in range(25)]
    insert_records(engine, recs)
    updates = ((r.id, 0.5 + i, "new") for i, r in enumerate(recs[:20]))
    assert update_costs(engine, updates, batch=6) == 20
    assert update_costs(engine, [("no-such-id", 1.0, "x")]) == 0
    got = {r.id: r for r in iter_records(engine)}
    for i, r in enumerate(recs):
        expected = (0.5 + i, "new") if i < 20 else (1.0, "old")
        assert (got[r.id].cost_usd, got[r.id].price_source) == expected
    with engine.connect() as conn:
        total = conn.execute(select(func.sum(records.c.cost_usd))).scalar_one()
    assert Decimal(repr(total)) == sum(Decimal(repr(0.5 + i)) for i in range(20)) + 5


def test_update_costs_can_clear_a_cost(engine, make_record) -> None:
    rec = make_record(cost_usd=1.0)
    insert_records(engine, [rec])
    assert update_costs(engine, [(rec.id, None, None)]) == 1
    (back,) = iter_records(engine)
    assert back.cost_usd is None and back.price_source is None


def test_reading_while_updating_the_same_rows(engine, make_record) -> None:
    """Re-pricing iterates and updates at once: pages must not hold locks that block the updates."""
    recs = [make_record() for _ in range(30)]
    insert_records(engine, recs)
    seen = 0
    for r in iter_records(engine, batch=4):
        update_costs(engine, [(r.id, 2.0, "repriced")])
        seen += 1
    assert seen == 30
    assert {r.price_source for r in iter_records(engine)} == {"repriced"}
