"""Ingest throughput: records/s that `insert_records` (and the Writer) put into SQLite and Postgres.

    python benchmarks/bench_ingest.py [--records 100000] [--batch 1000 10000]
                                      [--ids uuid4|uuid7] [--postgres-url URL | --no-postgres]

Records are built before timing; the time covers turning them into rows and
inserting them (each call to insert_records one transaction of --batch records)
into a fresh, migrated database: a SQLite file in a temporary directory, and a
throwaway database created on the Postgres server (default: the admin URL in
$COSTTRACK_BENCH_POSTGRES_URL, else postgres@127.0.0.1:5432) and dropped afterwards.
"Writer" lines time submit() of every record plus the final flush(). The reference line runs
the same rows, built before timing, through sqlite3's own executemany (no SQLAlchemy, one
row per statement): what a plain driver loop reaches on this machine and schema.

Records get CallRecord's own ids (time-ordered UUIDv7, see costtrack/records.py new_id);
--ids uuid4 gives them random ids instead, to show what a random primary key would cost.
Targets: >= 100,000 records/s into SQLite, >= 20,000 records/s into Postgres.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from costtrack.records import CallRecord
from costtrack.store.database import ensure_schema, make_engine, safe_url
from costtrack.store.schema import INSERT_COLUMNS
from costtrack.store.sql import SQLITE_ROW_VALUES, count_records, insert_records, record_to_row
from costtrack.store.writer import Writer

_QUOTED = ", ".join(f'"{c}"' for c in INSERT_COLUMNS)
ROW_INSERT = f"INSERT INTO records ({_QUOTED}) VALUES {SQLITE_ROW_VALUES}"


def uuid4_hex() -> str:
    return uuid.uuid4().hex


def make_records(n: int, ids: str) -> list[CallRecord]:
    out = []
    for i in range(n):
        extra = {"id": uuid4_hex()} if ids == "uuid4" else {}
        out.append(
            CallRecord(
                provider="openai" if i % 3 else "anthropic",
                model="gpt-4o-mini" if i % 3 else "claude-sonnet-4-5",
                model_requested="gpt-4o-mini",
                operation="chat",
                endpoint=f"/api/endpoint-{i % 20}",
                tokens_input=1000 + i % 5000,
                tokens_output=200 + i % 700,
                tokens_cached_input=i % 1024,
                cost_usd=0.000123 * (1 + i % 17),
                latency_ms=100.0 + i % 900,
                ttft_ms=30.0 + i % 50,
                request_hash=f"{i:064x}",
                user=f"user-{i % 100}",
                tags={"team": f"t{i % 7}", "env": "prod"} if i % 2 else {},
                price_source="genai-prices",
                **extra,
            )
        )
    return out


def bench_inserts(url: str, records: list[CallRecord], batch: int) -> float:
    engine = make_engine(url)
    try:
        ensure_schema(engine)
        started = time.perf_counter()
        for start in range(0, len(records), batch):
            insert_records(engine, records[start : start + batch])
        elapsed = time.perf_counter() - started
        assert count_records(engine) == len(records)
        return len(records) / elapsed
    finally:
        engine.dispose()


def bench_raw_sqlite(path: str, records: list[CallRecord], batch: int) -> float:
    """The reference: the same rows (built before timing) through sqlite3's own executemany, no SQLAlchemy."""
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    engine.dispose()
    rows = [record_to_row(r) for r in records]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(ROW_INSERT, rows[start : start + batch])
            conn.execute("COMMIT")
        return len(rows) / (time.perf_counter() - started)
    finally:
        conn.close()


def bench_writer(url: str, records: list[CallRecord], outbox: str) -> float:
    engine = make_engine(url)
    ensure_schema(engine)
    writer = Writer(engine, outbox_dir=outbox)
    try:
        started = time.perf_counter()
        for record in records:
            writer.submit(record)
        assert writer.flush()
        elapsed = time.perf_counter() - started
        assert count_records(engine) == len(records)
        return len(records) / elapsed
    finally:
        writer.close()
        engine.dispose()


class PostgresBench:
    def __init__(self, admin_url: str) -> None:
        from sqlalchemy import create_engine

        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.admin_url = admin_url
        self.names: list[str] = []

    def fresh(self) -> str:
        from sqlalchemy.engine import make_url

        name = f"costtrack_bench_{os.getpid()}_{len(self.names)}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        with self.admin.connect() as conn:
            for name in self.names:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is printed")
    parser.add_argument(
        "--ids",
        choices=["uuid4", "uuid7"],
        default="uuid7",
        help="uuid7: CallRecord's own time-ordered ids (default); uuid4: random ids",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("COSTTRACK_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    records = make_records(args.records, args.ids)
    print(f"{args.records:,} records, {args.ids} ids, median of {args.repeat} runs each")
    tmp = tempfile.mkdtemp(prefix="costtrack-bench-")
    runs = iter(range(10**6))

    def sqlite_url() -> str:
        return f"sqlite:///{tmp}/ingest-{next(runs)}.db"

    backends: list[tuple[str, object]] = [("SQLite", sqlite_url)]
    pg: PostgresBench | None = None
    if not args.no_postgres:
        try:
            pg = PostgresBench(args.postgres_url)
            backends.append(("Postgres", pg.fresh))
        except Exception as exc:  # noqa: BLE001 - report and go on with SQLite
            print(f"Postgres skipped ({safe_url(args.postgres_url)}: {str(exc).splitlines()[0]})")
            pg = None
    try:
        raw = [bench_raw_sqlite(f"{tmp}/raw-{i}.db", records, 10_000) for i in range(args.repeat)]
        print(
            f"SQLite    raw sqlite3 executemany, rows prebuilt, batch 10,000 (reference): {statistics.median(raw):,.0f} rows/s"
        )
        for name, fresh in backends:
            for batch in args.batch:
                rates = [bench_inserts(fresh(), records, batch) for _ in range(args.repeat)]  # type: ignore[operator]
                print(f"{name:<9} insert_records, batch {batch:>6,}: {statistics.median(rates):>10,.0f} records/s")
            rates = [bench_writer(fresh(), records, f"{tmp}/outbox") for _ in range(args.repeat)]  # type: ignore[operator]
            print(f"{name:<9} Writer submit+flush (batch 1,000): {statistics.median(rates):>6,.0f} records/s")
    finally:
        if pg is not None:
            pg.close()


if __name__ == "__main__":
    main()
