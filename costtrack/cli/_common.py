"""Helpers shared by the CLI command modules: one-line errors and JSON output."""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine

    from ..pricing import PriceBook

__all__ = [
    "DatabaseOption", "check_output", "check_provider", "console", "database_error", "display_url", "fail", "no_records", "no_records_message", "print_json",
    "read_engine", "record_span", "resolve_database_url",
]  # fmt: skip


def fail(message: str) -> NoReturn:
    """Print a one-line error that says what to do, and exit with code 2."""
    typer.echo(f"costtrack: error: {message}", err=True)
    raise typer.Exit(2)


def check_provider(book: PriceBook, provider: str | None, model: str | None = None) -> str | None:
    """`--provider` as given, or a one-line error naming the known ones (a mistyped one was ignored, exit 0). Any name
    goes for a model the prices file prices for every provider (`wrap(provider=...)` records any name)."""
    if provider is None or (model is not None and None in book.file_providers(model)):
        return provider
    known = book.providers()
    if provider.strip().lower() not in known:
        first = [p for p in ("openai", "anthropic", "azure", "google", "ollama", "vllm") if p in known]
        fail(f"unknown provider {provider!r}: use one of {', '.join(first)}, ... ({len(known)} in all: "
             "`costtrack prices show MODEL` names a model's), or list it in the prices file")
    return provider


def print_json(data: Any) -> None:
    """Print machine-readable output."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


DatabaseOption = Annotated[
    Optional[str],
    typer.Option("--database-url", help="Database URL; default $COSTTRACK_DATABASE_URL, .env, or sqlite:///costtrack.db."),
]


def resolve_database_url(url: str | None) -> str:
    """The database URL a command uses: the flag, else the environment, .env, or the default file."""
    from ..store.database import resolve_url

    return resolve_url(url)


def check_output(output: str | os.PathLike[str] | None, database_url: str | None) -> None:
    """Refuse an output path (-o) that is the SQLite records database or one of its companion files: writing there
    destroyed the records (`export -o costtrack.db` truncated it; a report overwrote it with Markdown)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from ..errors import ConfigError

    if output is None or str(output) == "-":
        return
    try:
        url = make_url(resolve_database_url(database_url))
    except (ArgumentError, ValueError):
        return  # a bad URL (ConfigError is a ValueError) is the database's own error, said where it is opened
    path = url.database or ""
    if path.startswith("file:"):  # the URI form (sqlite:///file:x.db?mode=ro&uri=true)
        path = path[len("file:") :].partition("?")[0]
    if not url.drivername.startswith("sqlite") or not path or path == ":memory:":
        return
    database = Path(path).expanduser().resolve()
    target = Path(output).expanduser().resolve()
    companions = {database.name + suffix for suffix in ("-wal", "-shm", "-journal")}
    if (target == database or (target.parent == database.parent and target.name in companions)
            or (target.exists() and database.exists() and os.path.samefile(target, database))):  # a hard link  # fmt: skip
        raise ConfigError(f"{output} is the records database itself: write the output to another file")


def display_url(url: str) -> str:
    """A database URL fit to print (password masked)."""
    from ..store.database import safe_url

    return safe_url(url)


def database_flag(url: str) -> str:
    """`--database-url URL` for a command to print, shell-quoted (a path with a space, a query with `&`) and its
    password masked (the reader puts theirs back)."""
    import shlex

    return f"--database-url {shlex.quote(display_url(url))}"


def read_engine(url: str | None, *, create: bool = False, refuse_foreign: bool = False) -> Engine:
    """An engine on the records database, its schema up to date; a bad or unreadable database ends in a one-line error.

    A SQLite file that does not exist is an error (a mistyped path would otherwise
    become a new, empty database) unless `create` (the commands that record calls).
    `refuse_foreign` with `create`: a database holding another app's tables and no records table is refused too
    (the demo's simulated calls do not belong there; real calls, `bench`'s, may share the app's database).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from ..store.database import POSTGRES_LOCK_TIMEOUT, ensure_schema, make_engine, safe_url

    resolved = resolve_database_url(url)
    engine = make_engine(resolved)
    if engine.dialect.name == "postgresql":
        _bound_lock_waits(engine, int(POSTGRES_LOCK_TIMEOUT * 1000))
    database = engine.url.database
    if (
        not create
        and engine.url.get_backend_name() == "sqlite"
        and database not in (None, "", ":memory:")
        and not database.startswith("file:")
        and not os.path.exists(database)
    ):
        engine.dispose()
        fail(f"no records database at {database}: check --database-url, or record calls first (run `costtrack demo` for a sample)")
    try:
        if not create or refuse_foreign:
            _refuse_another_apps_database(engine, resolved, empty_ok=create)
        ensure_schema(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        fail(database_error(exc, resolved))
    except Exception as exc:  # Alembic's own errors: another app's migrations in this database, say
        if type(exc).__module__.split(".")[0] != "alembic":
            raise
        engine.dispose()
        fail(f"cannot use {safe_url(resolved)} as the records database: {str(exc).splitlines()[0]} "
             "(it holds another app's Alembic migrations? give costtrack a database of its own with --database-url)")
    return engine


def _bound_lock_waits(engine: Engine, milliseconds: int) -> None:
    """Have each of `engine`'s transactions wait for a lock at most `milliseconds`, as an insert does: behind a table
    another session locked (a migration, a LOCK TABLE) a report waited for good. Set per transaction (SET LOCAL), not
    as a startup option, which PgBouncer refuses and which would override the user's PGOPTIONS."""
    from sqlalchemy import event

    @event.listens_for(engine, "begin")
    def _bounded(conn: Any) -> None:
        conn.exec_driver_sql(f"SELECT set_config('lock_timeout', '{milliseconds}', true)")


def _refuse_another_apps_database(engine: Engine, url: str, *, empty_ok: bool = False) -> None:
    """A read finding no records table (a mistyped URL: another app's tables, or none, as in Postgres' own `postgres`
    database when the name was left out): say so rather than add costtrack's tables there."""
    from sqlalchemy import inspect

    from ..store.database import safe_url

    names = set(inspect(engine).get_table_names())
    if "records" in names or (empty_ok and not names):
        return
    engine.dispose()
    if names:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        fail(f"{safe_url(url)} holds no costtrack records (its tables: {shown}): check --database-url")
    fail(f"{safe_url(url)} holds no costtrack records (no tables at all): check --database-url (its database name) and, "
         "on Postgres, that this role may use the schema; or record calls first (run `costtrack demo` for a sample)")


def record_span(engine: Engine) -> str | None:
    """"from <first> to <last>": the times the database's records cover (None: it has none)."""
    from sqlalchemy import func, select

    from ..store.schema import records

    with engine.connect() as conn:
        first, last = conn.execute(select(func.min(records.c.timestamp), func.max(records.c.timestamp))).one()
    return None if first is None else f"from {_when(first)} to {_when(last)}"


def no_records_message(engine: Engine, what: str = "in that period", hint: str = "widen --since or check the dates") -> str:
    """What to say of a query that found no records: an empty database, how to get some; else the range it covers.

    `what` names the period asked for ("since 2030-01-01 00:00 UTC", "in 2020-01"); `hint` says how to change it.
    """
    span = record_span(engine)
    if span is None:
        return ("the database has no records: run `costtrack demo` for a month of sample traffic, or wrap a client "
                "with costtrack.wrap(...) and make some calls")  # fmt: skip
    return f"no records {what} (the database has records {span}): {hint}"


def no_records(engine: Engine, what: str = "in that period", hint: str = "widen --since or check the dates") -> NoReturn:
    """Fail (exit 2, one line) with `no_records_message`."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        message = no_records_message(engine, what, hint)
    except SQLAlchemyError as exc:
        fail(database_error(exc))
    fail(message)


def _when(value: Any) -> str:
    from ..format import when

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return when(value)


#: Database errors of a user or file not allowed what the command does, where the URL itself is right.
_NOT_ALLOWED = re.compile(r"permission denied|readonly database|read-only|unable to open database file|"
                          r"no schema has been selected", re.I)


def database_error(exc: BaseException, url: str | None = None) -> str:
    """The one-line message for a database that cannot be used."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    where = f" {display_url(url)}" if url is not None else ""
    if getattr(getattr(exc, "orig", None), "sqlstate", None) == "55P03":  # lock_not_available: the lock_timeout ran out
        from ..store.database import POSTGRES_LOCK_TIMEOUT

        return (f"cannot read the records database{where}: its records table stayed locked by another session for "
                f"{POSTGRES_LOCK_TIMEOUT:g} s; try again when that session is done (a migration, a LOCK TABLE)")
    text = detail[0] if detail else type(exc).__name__
    if _NOT_ALLOWED.search(text):
        # Most often the URL is right and the database refuses this user, or a file or directory cannot be written (a
        # write, or SQLite's WAL files beside a read); a mistyped directory looks the same.
        return (f"cannot use the records database{where} ({text}): check --database-url, and that its user may read "
                "and write it (a Postgres role's privileges on the database and its schema; a SQLite file's directory, "
                "which must exist, and their permissions)")
    # The URL may come from the flag, $COSTTRACK_DATABASE_URL or .env (the flag wins): name all three.
    return (f"cannot read the records database{where} ({text}): "
            "check --database-url, or $COSTTRACK_DATABASE_URL / .env when the flag is not given")


def console(stderr: bool = False) -> Console:
    """A rich console; when output is not a terminal, wide enough that tables are not cut."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # No emoji codes: model names such as `openai/gpt-oss-20b:free` are printed as they are.
    return Console(stderr=stderr, width=None if stream.isatty() else 160, emoji=False)
