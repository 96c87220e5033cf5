"""`costtrack report audit` (and `simulate`, `report results`) over a large log: wall time and peak RSS.

    python benchmarks/bench_report.py [--rows 1000000] [--backend sqlite|postgres|both]
                                      [--postgres-url URL] [--sqlite-path FILE] [--reuse]

Fills a database with `--rows` records of a capstone-like workload (bulk insert through
costtrack.store.sql.insert_records, 50,000 rows a transaction), then runs each command
in a child process and prints its wall time and the child's peak RSS. The targets:
the audit in at most 10 s and 300 MB on a 2-core machine, on SQLite and on Postgres.
`--reuse` keeps a database that already holds exactly `--rows` records.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from costtrack.records import CallRecord

DEFAULT_PG = os.environ.get("COSTTRACK_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/costtrack_bench")

# endpoint, weight, provider, requested model, answered model, (in, out) token means, $/1M (in, cached, out),
# distinct requests per 1,000 calls (the rest repeat), cached share of input, latency median ms
WORKLOAD = [
    ("/api/classify", 0.34, "openai", "gpt-4o", "gpt-4o-2024-08-06", (47, 5), (2.5, 1.25, 10.0), 15, 0.0, 1400),
    ("/api/summarize", 0.22, "openai", "gpt-4o", "gpt-4o-2024-08-06", (830, 85), (2.5, 1.25, 10.0), 50, 0.0, 1900),
    ("/api/chat", 0.20, "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", (2450, 93), (3.0, 0.3, 15.0),
     950, 0.97, 4300),
    ("/api/search", 0.14, "openai", "text-embedding-3-small", "text-embedding-3-small", (12, 0), (0.02, 0.02, 0.0),
     450, 0.0, 150),
    ("/jobs/nightly-digest", 0.06, "anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001", (810, 99),
     (1.0, 0.1, 5.0), 500, 0.0, 900),
    ("/api/extract", 0.04, "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", (33, 68), (0.15, 0.075, 0.6), 130,
     0.0, 950),
]  # fmt: skip


def generate(rows: int, *, seed: int = 11, days: int = 30, end: datetime | None = None) -> Iterator[list[CallRecord]]:
    """`rows` records in chunks of 50,000, oldest first."""
    rng = random.Random(seed)
    end = end or datetime(2026, 11, 30, tzinfo=timezone.utc)
    start = end - timedelta(days=days)
    step = timedelta(days=days) / rows
    weights = [w[1] for w in WORKLOAD]
    chunk: list[CallRecord] = []
    for i in range(rows):
        endpoint, _, provider, requested, answered, (tin, tout), (p_in, p_cached, p_out), distinct, cached_share, lat = (
            rng.choices(WORKLOAD, weights)[0]
        )
        pool = max(distinct * rows // 1000 // len(WORKLOAD), 4)
        key = rng.randrange(pool)
        tokens_in = max(1, int(rng.gauss(tin, tin * 0.15)))
        tokens_out = max(0, int(rng.gauss(tout, tout * 0.2))) if tout else 0
        cached = int(tokens_in * cached_share)
        failed = rng.random() < 0.02
        cost = 0.0 if failed else ((tokens_in - cached) * p_in + cached * p_cached + tokens_out * p_out) / 1e6
        tags: dict[str, object] = {"source": "bench"}
        if i % 20 == 0:
            tags["quality"] = round(rng.uniform(0.6, 1.0), 3)
        chunk.append(CallRecord.model_construct(
            id=uuid.UUID(int=rng.getrandbits(128)).hex, timestamp=start + step * i, provider=provider, model=answered,
            model_requested=requested, operation="embeddings" if "embedding" in requested else "chat.completions",
            endpoint=endpoint, tokens_input=0 if failed else tokens_in, tokens_output=0 if failed else tokens_out,
            tokens_cached_input=0 if failed else cached, tokens_cache_write=0, tokens_reasoning=0, cost_usd=cost,
            latency_ms=lat * rng.lognormvariate(0, 0.35), ttft_ms=None, cache_hit=False, cost_saved_usd=None,
            status="error" if failed else "ok", error_type="rate_limit_exceeded" if failed else None,
            request_hash=f"{endpoint}:{key}", attempt=1, user=f"user{rng.randint(1, 500)}", tags=tags,
            price_source="bench", tokens_cache_write_1h=0, request_body=None, response_body=None,
        ))  # fmt: skip
        if len(chunk) == 50_000:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def fill(url: str, rows: int, reuse: bool) -> None:
    from costtrack.store.database import make_engine, upgrade
    from costtrack.store.sql import count_records, insert_records

    upgrade(url)  # a database left by an older run gets the current schema
    engine = make_engine(url)
    have = count_records(engine)
    if reuse and have == rows:
        print(f"  reusing {have:,} records")
        return
    if have:
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM records")
    started = time.perf_counter()
    for chunk in generate(rows):
        insert_records(engine, chunk)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE records")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    print(f"  inserted {rows:,} records in {time.perf_counter() - started:.1f} s")
    engine.dispose()


def run_child(argv: list[str]) -> tuple[float, float, float, int, str]:
    """Run a command in a child process: (wall s, child CPU s, child peak RSS MB, exit code, stderr's last line)."""
    script = (
        "import sys, typer\n"
        "from costtrack.cli import report, simulate\n"
        "app = typer.Typer()\n"
        "app.add_typer(report.app, name='report')\n"
        "app.command('simulate')(simulate.simulate)\n"
        "app(args=sys.argv[1:], prog_name='costtrack')\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    # ru_maxrss of children is the largest of any child so far: this process runs one command only.
    return seconds, cpu, after.ru_maxrss / 1024, proc.returncode, last


def bench(url: str, label: str, outdir: Path) -> None:
    commands = [
        ("report audit", ["report", "audit", "--since", "2026-10-01", "-o", str(outdir / f"audit-{label}.md"),
                          "--database-url", url]),
        ("simulate", ["simulate", "--since", "2026-10-01", "--cache-ttl", "1h", "--swap", "gpt-4o=gpt-4o-mini",
                      "--batch-share", "1", "--database-url", url]),
        ("report results", ["report", "results", "--before", "2026-11-01..2026-11-14", "--after",
                            "2026-11-15..2026-11-29", "-o", str(outdir / f"results-{label}.md"), "--database-url", url]),
    ]  # fmt: skip
    for name, argv in commands:
        # Each command in its own measuring process, so the peak RSS is that command's.
        load = os.getloadavg()[0]
        wrapper = [sys.executable, __file__, "--child", *argv]
        proc = subprocess.run(wrapper, capture_output=True, text=True)
        out = proc.stdout.strip().splitlines()
        print(f"  {name:<15} {out[-1] if out else proc.stderr.strip()[-300:]} [load {load:.2f} before]")


def child(argv: list[str]) -> None:
    seconds, cpu, peak, code, last = run_child(argv)
    status = "ok" if code == 0 else f"exit {code}: {last}"
    print(f"{seconds:6.2f} s wall, {cpu:6.2f} s CPU in the client process, peak RSS {peak:6.1f} MB ({status})")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--sqlite-path", default=None, help="SQLite file (default: a temporary one)")
    parser.add_argument("--postgres-url", default=DEFAULT_PG, help="a Postgres database to fill (its records are replaced)")
    parser.add_argument("--reuse", action="store_true", help="keep a database that already has --rows records")
    args = parser.parse_args()
    outdir = Path(tempfile.mkdtemp(prefix="costtrack-bench-report-"))
    print(f"{os.cpu_count()} CPUs; {args.rows:,} records; documents in {outdir}")
    targets = []
    if args.backend in ("sqlite", "both"):
        path = args.sqlite_path or str(outdir / "bench.db")
        targets.append(("sqlite", f"sqlite:///{path}"))
    if args.backend in ("postgres", "both"):
        _create_pg_database(args.postgres_url)
        targets.append(("postgres", args.postgres_url))
    for label, url in targets:
        print(f"{label}:")
        fill(url, args.rows, args.reuse)
        bench(url, label, outdir)


def _create_pg_database(url: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    u = make_url(url)
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (u.database,)).first()
        if not exists:
            conn.exec_driver_sql(f'CREATE DATABASE "{u.database}"')
    admin.dispose()


if __name__ == "__main__":
    main()
