"""Running report queries, several at once, each on a connection of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine


def execute(engine: Engine, query: Any) -> list[Any]:
    """Run a report query on a connection of its own (so that `run_queries` can run several at once)."""
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def run_queries(engine: Engine, queries: dict[str, Any], *, workers: int = 2,
                on_done: Callable[[str], None] | None = None) -> dict[str, list[Any]]:  # fmt: skip
    """Run independent report queries on `workers` connections at once (SQLite and psycopg release the GIL).

    An in-memory SQLite database has a single shared connection: its queries run one after the other.
    """
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        workers = 1
    if workers <= 1 or len(queries) <= 1:
        out = {}
        for name, query in queries.items():
            out[name] = execute(engine, query)
            if on_done is not None:
                on_done(name)
        return out
    from concurrent.futures import ThreadPoolExecutor, as_completed

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="costtrack-report") as pool:
        futures = {pool.submit(execute, engine, query): name for name, query in queries.items()}
        results: dict[str, list[Any]] = {}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if on_done is not None:
                on_done(futures[future])
    return {name: results[name] for name in queries}
