"""Writing and reading records: fast idempotent inserts and streaming, SQL-side reads.

Inserts bypass SQLAlchemy's per-row machinery: each CallRecord becomes a plain tuple
(read straight from the model's ``__dict__``, ``tags`` JSON-encoded once, timestamps
converted for the dialect) and the batch goes to the driver's ``executemany``, in one
transaction. Inserts are idempotent by ``id`` (``ON CONFLICT (id) DO NOTHING`` on both
SQLite and Postgres), so replaying an outbox never duplicates a record.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from itertools import chain
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Boolean, Engine, and_, bindparam, func, or_, select, update

from ..records import CallRecord
from . import database
from .schema import INSERT_COLUMNS, records

__all__ = ["SQLITE_ROW_VALUES", "count_records", "insert_records", "iter_records", "record_to_row", "update_answer_costs", "update_costs"]

_UTC = timezone.utc


#: "00" to "99": two-digit fields are looked up, not formatted (each %02d cost 1.5k instructions a record).
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))


def _sqlite_ts(value: datetime) -> str:
    # The text form SQLAlchemy's SQLite DateTime reads and writes, in UTC: "%04d-%02d-%02d %02d:%02d:%02d.%06d",
    # written from the fields (isoformat() of an aware datetime, then less "+00:00", costs 40% more), the
    # microseconds as the digits of 1000000 + them.
    if value.tzinfo is not _UTC and value.tzinfo is not None:
        value = value.astimezone(_UTC)
    two, year = _TWO_DIGITS, value.year
    return (f"{year if year >= 1000 else f'{year:04d}'}-{two[value.month]}-{two[value.day]} "
            f"{two[value.hour]}:{two[value.minute]}:{two[value.second]}.{str(1_000_000 + value.microsecond)[1:]}")


def _pg_ts(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)


_stdlib_dumps = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode  # NaN: see _tags


def _tags(value: Any) -> str:
    if not value:
        return "{}"
    try:
        # pydantic-core's serialiser: a fifth of json.dumps' time per record. Values it has no
        # JSON form for are written as str(value); dataclasses, models and sets as JSON.
        # NaN and infinities as "NaN"/"Infinity" text: written bare they are no JSON (Postgres refused the record,
        # SQLite's JSON functions, and every report reading tags, failed on the whole table).
        return to_json(value, fallback=str, inf_nan_mode="strings").decode()
    except ValueError:
        # It refuses bytes that are not UTF-8 and lone surrogates, which the standard
        # encoder writes as text and escapes: the record is stored all the same.
        return _stdlib_dumps(value)


# sqlite3 binds None and bools through its adapter registry, where a failed attribute lookup
# raises and clears an AttributeError per value: 0.3-0.6 us each, 2 us a row for the six or
# seven such values a usual record has. On SQLite each nullable column therefore takes a
# stand-in of a type the column never holds (0 for text, '' for numbers), which NULLIF(?, x)
# turns back into NULL, and a boolean column takes 0 or 1 (SQLite stores booleans so anyway).
_SQLITE_STAND_IN: dict[str, str] = {
    column.name: ("''" if column.type.python_type in (int, float) else "0")
    for column in records.columns
    if column.nullable
}
_SQLITE_BOOLEAN = frozenset(column.name for column in records.columns if isinstance(column.type, Boolean))


def _row_builder(ts: Callable[[datetime], Any], sqlite: bool) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function from a record's __dict__ to its row tuple in INSERT_COLUMNS order.

    Generated once per dialect: a single tuple display with direct dict lookups is
    several times cheaper than model_dump() per record.
    """
    parts = []
    for name in INSERT_COLUMNS:
        if name == "timestamp":
            parts.append(f"_ts(d[{name!r}])")
        elif name == "tags":
            parts.append(f"_tags(d[{name!r}])")
        elif sqlite and name in _SQLITE_BOOLEAN:
            parts.append(f"(1 if d[{name!r}] else 0)")
        elif sqlite and name in _SQLITE_STAND_IN:
            parts.append(f"(v if (v := d[{name!r}]) is not None else {_SQLITE_STAND_IN[name]})")
        else:
            parts.append(f"d[{name!r}]")
    source = "lambda d: (" + ", ".join(parts) + ",)"
    # eval of a lambda built from our own column names: one tuple display, no per-column calls
    return eval(source, {"_ts": ts, "_tags": _tags})


_ROW = {"sqlite": _row_builder(_sqlite_ts, sqlite=True), "postgresql": _row_builder(_pg_ts, sqlite=False)}

_QCOLS = ", ".join(f'"{c}"' for c in INSERT_COLUMNS)
#: One row's values on SQLite, for the rows `record_to_row` builds (stand-ins back to NULL).
SQLITE_ROW_VALUES = (
    "(" + ", ".join(f"NULLIF(?, {_SQLITE_STAND_IN[c]})" if c in _SQLITE_STAND_IN else "?" for c in INSERT_COLUMNS) + ")"
)
# ON CONFLICT (id) rather than OR IGNORE: only a duplicate id is skipped, any
# other constraint violation is an error (OR IGNORE would drop such rows silently).
_POSTGRES_INSERT = (
    f"INSERT INTO records ({_QCOLS}) VALUES "
    f"({', '.join('%s::jsonb' if c == 'tags' else '%s' for c in INSERT_COLUMNS)}) "
    f"ON CONFLICT (id) DO NOTHING"
)


# SQLite gets many rows per INSERT statement: its driver releases the GIL for every
# statement it steps, and with a busy app thread each re-acquisition waits a whole
# switch interval (5 ms), so row-by-row executemany stalls for seconds per batch.
# Statements come in a few row counts: compiling a multi-row INSERT costs about as much
# as running it, and batches of ever-changing sizes would each compile anew, where
# these (multiples of 32, then a remainder under 32: 47 in all) stay in the driver's
# statement cache. Two statements per batch keep the GIL round trips few.
_SQLITE_ROWS_PER_STATEMENT = min(512, 32766 // len(INSERT_COLUMNS)) & ~31
assert _SQLITE_ROWS_PER_STATEMENT >= 32, "too many columns for a multi-row INSERT"


@functools.lru_cache(maxsize=64)
def _sqlite_multi_insert(rows: int) -> str:
    return f"INSERT INTO records ({_QCOLS}) VALUES {', '.join([SQLITE_ROW_VALUES] * rows)} ON CONFLICT (id) DO NOTHING"


def _sqlite_chunks(count: int) -> Iterator[tuple[int, int]]:
    """(start, rows) of each statement for `count` rows: full statements, a multiple of 32, the rest."""
    start = 0
    while count - start >= _SQLITE_ROWS_PER_STATEMENT:
        yield start, _SQLITE_ROWS_PER_STATEMENT
        start += _SQLITE_ROWS_PER_STATEMENT
    bulk = (count - start) & ~31
    if bulk:
        yield start, bulk
        start += bulk
    if count > start:
        yield start, count - start


def record_to_row(record: CallRecord, dialect: str = "sqlite") -> tuple[Any, ...]:
    """The row tuple `insert_records` sends for `record` (columns in INSERT_COLUMNS order; on SQLite, for SQLITE_ROW_VALUES)."""
    return _ROW[dialect](record.__dict__)


def insert_records(engine: Engine, records_: Sequence[CallRecord]) -> int:
    """Insert `records_` in one transaction; records whose id is already stored are skipped.

    Returns the number of rows actually inserted. Raises the driver's (SQLAlchemy-wrapped)
    error when the database cannot be written; nothing is inserted then.
    """
    if not records_:
        return 0
    dialect = engine.dialect.name
    to_row = _ROW[dialect]
    rows = [to_row(r.__dict__) for r in records_]
    with engine.connect() as conn:
        if dialect == "sqlite":
            # Take the write lock up front: a deferred transaction that reads first
            # could fail to upgrade without waiting on the busy timeout.
            conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            if dialect != "sqlite":
                # A lock held on the table (ALTER TABLE, VACUUM FULL, a migration) fails the insert after a while, as
                # SQLite's busy timeout does, rather than holding the writer for as long as it lasts. Set per
                # transaction, not as a startup option: PgBouncer and Neon's pooler refuse those, and an `options`
                # of ours would replace the app's PGOPTIONS (its search_path).
                lock_ms, statement_ms = int(database.POSTGRES_LOCK_TIMEOUT * 1000), int(database.POSTGRES_STATEMENT_TIMEOUT * 1000)
                # One statement (set_config(..., true) is SET LOCAL): two in one string fail on an engine that
                # prepares every statement (psycopg's prepare_threshold=0), and a second round trip costs a batch.
                conn.exec_driver_sql(f"SELECT set_config('lock_timeout', '{lock_ms}', true), "
                                     f"set_config('statement_timeout', '{statement_ms}', true)")  # fmt: skip
                return max(conn.exec_driver_sql(_POSTGRES_INSERT, rows).rowcount, 0)
            inserted = 0
            for start, size in _sqlite_chunks(len(rows)):
                params = tuple(chain.from_iterable(rows[start : start + size]))
                inserted += max(conn.exec_driver_sql(_sqlite_multi_insert(size), params).rowcount, 0)
            return inserted


# --------------------------------------------------------------------------- reads


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)


def _range(since: datetime | None, until: datetime | None) -> list[Any]:
    conds: list[Any] = []
    if since is not None:
        conds.append(records.c.timestamp >= _utc(since))
    if until is not None:
        conds.append(records.c.timestamp < _utc(until))
    return conds


def iter_records(
    engine: Engine,
    since: datetime | None = None,
    until: datetime | None = None,
    batch: int = 5000,
) -> Iterator[CallRecord]:
    """Every record with ``since <= timestamp < until``, in (timestamp, id) order.

    Streams: pages of `batch` rows by keyset pagination on the (timestamp, id) index,
    each page its own short query, so memory stays flat and no long read transaction
    holds up writers. Naive datetimes are taken to be UTC.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    ts, rid = records.c.timestamp, records.c.id
    base = _range(since, until)
    last: tuple[datetime, str] | None = None
    fields = INSERT_COLUMNS
    while True:
        conds = list(base)
        if last is not None:
            conds.append(or_(ts > last[0], and_(ts == last[0], rid > last[1])))
            # Lets the planner seek on the index even when it does not split the OR.
            conds.append(ts >= last[0])
        stmt = select(records).where(*conds).order_by(ts, rid).limit(batch)
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        for row in rows:
            yield CallRecord.model_construct(**dict(zip(fields, row)))
        if len(rows) < batch:
            return
        last = (rows[-1].timestamp, rows[-1].id)


def count_records(engine: Engine, since: datetime | None = None, until: datetime | None = None) -> int:
    """How many records have ``since <= timestamp < until`` (counted by the database)."""
    stmt = select(func.count()).select_from(records).where(*_range(since, until))
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def update_costs(
    engine: Engine,
    updates: Iterable[tuple[str, float | None, str | None]],
    batch: int = 5000,
    *,
    saved: bool = False,
) -> int:
    """Set ``cost_usd`` (or, with `saved`, ``cost_saved_usd``: a cache hit's) and ``price_source`` by id, for re-pricing.

    Returns rows updated. `updates` is consumed in chunks of `batch`, each chunk one
    transaction, so a generator over millions of records is fine. Unknown ids are ignored.
    """
    column = "cost_saved_usd" if saved else "cost_usd"
    values = {column: bindparam("b_cost"), "price_source": bindparam("b_source")}
    rows = ({"b_id": rid, "b_cost": cost, "b_source": source} for rid, cost, source in updates)
    return _update_by_id(engine, values, rows, batch)


def update_answer_costs(
    engine: Engine, updates: Iterable[tuple[str, float | None, float | None, str | None]], batch: int = 5000
) -> int:
    """Set ``cost_usd``, ``cost_saved_usd`` and ``price_source`` by id: fallback answers re-priced (see update_costs)."""
    values = {"cost_usd": bindparam("b_cost"), "cost_saved_usd": bindparam("b_saved"), "price_source": bindparam("b_source")}
    rows = ({"b_id": rid, "b_cost": cost, "b_saved": saved, "b_source": source} for rid, cost, saved, source in updates)
    return _update_by_id(engine, values, rows, batch)


def _update_by_id(engine: Engine, values: dict[str, Any], rows: Iterable[dict[str, Any]], batch: int) -> int:
    stmt = update(records).where(records.c.id == bindparam("b_id")).values(values)
    total = 0
    chunk: list[dict[str, Any]] = []

    def run() -> int:
        with engine.begin() as conn:
            result = conn.execute(stmt, chunk)
            return max(result.rowcount, 0)

    for row in rows:
        chunk.append(row)
        if len(chunk) >= batch:
            total += run()
            chunk = []
    if chunk:
        total += run()
    return total
