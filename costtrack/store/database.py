"""Which database, how to connect to it, and keeping its schema current.

URL resolution (:func:`resolve_url`), first match wins:

1. the URL passed in (``--database-url``, ``Tracker(database_url=...)``);
2. the ``COSTTRACK_DATABASE_URL`` environment variable;
3. ``COSTTRACK_DATABASE_URL`` in a ``.env`` file in the working directory
   (read with python-dotenv; ``os.environ`` is left alone);
4. ``sqlite:///costtrack.db``: a SQLite file in the working directory.

Supported: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite://``
(in memory), and Postgres as ``postgresql+psycopg://user:password@host:5432/dbname``
(``postgresql://`` and ``postgres://`` are taken to mean psycopg 3).

Schema (:func:`ensure_schema`, :func:`upgrade`):

- SQLite files are migrated automatically on first use.
- A Postgres database whose ``records`` table is missing (a fresh database) is also
  migrated automatically, so the first run just works. A Postgres database that has
  the table but at an older revision is *not* altered behind the operator's back: a
  warning says to run ``costtrack db upgrade``.
- Migrating is safe when several processes start at once: on SQLite the migration
  runs inside ``BEGIN IMMEDIATE`` (one writer at a time; the others wait on the
  busy timeout, then find the schema current); on Postgres inside a transaction
  holding an advisory lock. If a migration fails anyway (e.g. the table was created
  by other means), the schema is checked again and an up-to-date schema is accepted.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import weakref
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, inspect, text
from sqlalchemy import create_engine as _sa_create_engine
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from ..errors import DatabaseURLError
from ..forks import renews_in_child

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "POSTGRES_LOCK_TIMEOUT",
    "POSTGRES_STATEMENT_TIMEOUT",
    "SQLITE_BUSY_TIMEOUT",
    "alembic_config",
    "current_revision",
    "database_key",
    "ensure_schema",
    "head_revision",
    "make_engine",
    "migration_transaction",
    "resolve_url",
    "safe_url",
    "upgrade",
]

log = logging.getLogger("costtrack")

DEFAULT_URL = "sqlite:///costtrack.db"
ENV_VAR = "COSTTRACK_DATABASE_URL"
#: Seconds a SQLite connection waits for a lock held by another connection.
SQLITE_BUSY_TIMEOUT = 30.0
#: Seconds a Postgres insert waits for a lock (``lock_timeout``) before it fails, like SQLite's busy timeout.
POSTGRES_LOCK_TIMEOUT = 30.0
#: Seconds one batch insert may run on Postgres (a server that stops answering mid-statement): then it fails as an
#: outage does and the records go on to the outbox; with no bound the writer waited for good and flush() with it.
POSTGRES_STATEMENT_TIMEOUT = 60.0
#: Milliseconds data sent may stay unacknowledged before the connection is dropped (a host gone mid-statement: TCP
#: keepalives only run on an idle connection). Linux; elsewhere libpq ignores it.
POSTGRES_TCP_USER_TIMEOUT_MS = 60_000
#: WAL pages (4 KiB) between automatic checkpoints on SQLite.
SQLITE_WAL_AUTOCHECKPOINT = 10_000
#: Seconds to wait for a Postgres connection before treating the database as down.
POSTGRES_CONNECT_TIMEOUT = 10
_POSTGRES_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
                        "tcp_user_timeout": POSTGRES_TCP_USER_TIMEOUT_MS}
#: Seconds a Postgres migration waits for another process's migration to finish.
POSTGRES_MIGRATION_LOCK_TIMEOUT = 120
_ADVISORY_LOCK_KEY = zlib.crc32(b"costtrack.migrations")

_EXAMPLES = "use sqlite:///path/to/costtrack.db or postgresql+psycopg://user:password@host:5432/dbname"


# --------------------------------------------------------------------------- URLs


def _mask(raw: str) -> str:
    """A raw URL string with any password replaced, for messages."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", raw)


def safe_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return (make_url(url) if isinstance(url, str) else url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is still masked, never shown whole
        return _mask(str(url))


def resolve_url(url: str | None = None) -> str:
    """The database URL to use: `url` > $COSTTRACK_DATABASE_URL > .env > sqlite:///costtrack.db.

    Returns it normalised (Postgres URLs name the psycopg driver). Raises
    DatabaseURLError, with a one-line message saying what to do, for a malformed URL,
    an unsupported database or driver, or a driver that is not installed.
    """
    source = ""
    if url is not None:
        if not url.strip():
            raise DatabaseURLError(f"the database URL is empty: {_EXAMPLES}")
    else:
        env = os.environ.get(ENV_VAR)
        if env is not None and env.strip():
            url, source = env, f" (from ${ENV_VAR})"
        else:
            dotenv_path = Path.cwd() / ".env"
            if dotenv_path.is_file():
                from dotenv import dotenv_values

                try:
                    _check_dotenv(dotenv_path)
                    value = dotenv_values(dotenv_path).get(ENV_VAR)
                except (OSError, UnicodeError) as exc:  # unreadable, or saved as UTF-16 by Windows Notepad
                    raise DatabaseURLError(f"cannot read {dotenv_path} ({exc.__class__.__name__}): save it as UTF-8 "
                                           f"text, or set ${ENV_VAR} or --database-url") from None
                if value is not None and value.strip():
                    url, source = value, f" (from {ENV_VAR} in {dotenv_path})"
    if url is None:
        return DEFAULT_URL
    return _normalise(url.strip(), source)


_NAMES_URL = re.compile(rf"\s*(?:export\s+)?{ENV_VAR}\b")  # with its `=` or without (a line python-dotenv skips)


def _check_dotenv(path: Path) -> None:
    """Raise DatabaseURLError when a line of the `.env` file that names COSTTRACK_DATABASE_URL cannot be parsed:
    python-dotenv skips it with a warning, and the default database was used instead, created if need be."""
    from dotenv.parser import parse_stream

    with path.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.error and _NAMES_URL.match(binding.original.string):
                line = binding.original.string.strip().splitlines()[0] if binding.original.string.strip() else ""
                raise DatabaseURLError(f"{path}, line {binding.original.line}, cannot be read: {_mask(line)[:80]!r}; "
                                       f"write it as {ENV_VAR}=sqlite:///costtrack.db (quotes closed)")


def _normalise(raw: str, source: str) -> str:
    try:
        u = make_url(raw)
    except (ArgumentError, ValueError, TypeError):
        hint = f" (for a file, write sqlite:///{raw})" if "://" not in raw else ""
        raise DatabaseURLError(f"malformed database URL {_mask(raw)!r}{source}: {_EXAMPLES}{hint}") from None
    backend, _, driver = u.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise DatabaseURLError(
                f"unsupported Postgres driver {driver!r}{source}: costtrack uses psycopg 3, "
                f"write postgresql+psycopg://... (pip install 'costtrack[postgres]')"
            )
        if find_spec("psycopg") is None:
            raise DatabaseURLError(
                f"the database URL{source} is for Postgres but the psycopg driver is not installed: "
                f"pip install 'costtrack[postgres]'"
            )
        u = u.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise DatabaseURLError(f"unsupported SQLite driver {driver!r}{source}: write sqlite:///path/to/costtrack.db")
        if u.host or u.port or u.username or u.password:
            raise DatabaseURLError(
                f"malformed SQLite URL {_mask(raw)!r}{source}: use three slashes for a relative path "
                f"(sqlite:///costtrack.db) and four for an absolute one (sqlite:////var/lib/costtrack.db)"
            )
        uri_args = sorted(set(u.query) - _PYSQLITE_ARGS)
        is_uri = str(u.query.get("uri", "")).lower() in ("true", "1") and (u.database or "").startswith("file:")
        if uri_args and not is_uri:  # without file: pysqlite made a file named `x.db?mode=ro`, read-write
            # pysqlite ignores them with a warning: `?mode=ro` wrote to the file all the same.
            raise DatabaseURLError(
                f"SQLite URL {_mask(raw)!r}{source}: {', '.join(uri_args)} "
                f"{'is a SQLite URI argument, which needs' if len(uri_args) == 1 else 'are SQLite URI arguments, which need'} "
                f"uri=true and the file: form: write sqlite:///file:{(u.database or '').removeprefix('file:')}?{'&'.join(f'{k}={u.query[k]}' for k in uri_args)}&uri=true"
            )
        u = u.set(drivername="sqlite")
    else:
        raise DatabaseURLError(f"unsupported database {backend!r}{source}: {_EXAMPLES}")
    return u.render_as_string(hide_password=False)


#: The query arguments SQLAlchemy's pysqlite dialect takes itself; any other is a SQLite URI argument (mode, cache...).
_PYSQLITE_ARGS = frozenset({"timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements", "uri"})


def database_key(url: str | URL) -> str:
    """A short stable name for a database, for naming its outbox files.

    The same database reached through differently spelled URLs gets the same key:
    for SQLite the file's real path (query options such as ``mode=ro`` ignored), for
    Postgres host, port and database name (user, password and options ignored).
    """
    import hashlib

    u = make_url(url) if isinstance(url, str) else url
    if u.get_backend_name() == "sqlite":
        path = u.database or ""
        if _is_memory(u):
            ident = f"sqlite-memory:{os.getpid()}:{path}"
        else:
            if path.startswith("file:"):
                path = path[len("file:") :].split("?", 1)[0]
            ident = "sqlite:" + os.path.realpath(os.path.expanduser(path))
    else:
        host = u.host or str(u.query.get("host", ""))
        ident = f"{u.get_backend_name()}://{host}:{u.port or 5432}/{u.database or ''}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- engines


def _is_memory(u: URL) -> bool:
    db = u.database or ""
    return db in ("", ":memory:") or "mode=memory" in db or u.query.get("mode") == "memory"


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An Engine for `url` (resolved with :func:`resolve_url`), configured for costtrack.

    SQLite: WAL journal, ``busy_timeout`` of 30 s, ``synchronous=NORMAL``, a checkpoint
    every ~40 MB of WAL, relative paths
    made absolute now (so a later chdir does not move the database), and proper
    transactions (BEGIN is emitted by SQLAlchemy, not guessed by the sqlite3 module).
    Postgres: psycopg 3, a 10 s connect timeout, TCP keepalives (a vanished host is noticed
    within about a minute), pre-ping on checkout (inserts set their own ``lock_timeout``, see store/sql.py).
    Creating the engine does not connect. Extra keyword arguments go to ``create_engine``.
    """
    u = make_url(resolve_url(url))
    if u.get_backend_name() == "sqlite":
        return _sqlite_engine(u, **kwargs)
    query = dict(u.query)
    connect_args = kwargs.pop("connect_args", {})
    if "connect_timeout" not in query:
        connect_args.setdefault("connect_timeout", POSTGRES_CONNECT_TIMEOUT)
    if "application_name" not in query:
        connect_args.setdefault("application_name", "costtrack")
    # A database host that vanishes (a network partition, a dead VM) is found within ~1 minute
    # instead of the kernel's ~2 hours, so the writer moves on to the outbox.
    for key, value in _POSTGRES_KEEPALIVES.items():
        if key not in query:
            connect_args.setdefault(key, value)
    kwargs.setdefault("pool_pre_ping", True)
    return _sa_create_engine(u, connect_args=connect_args, **kwargs)


def _sqlite_engine(u: URL, **kwargs: Any) -> Engine:
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT)
    connect_args.setdefault("check_same_thread", False)
    if _is_memory(u):
        # One shared connection, or every thread would see its own empty database.
        kwargs.setdefault("poolclass", StaticPool)
    elif u.query.get("uri") not in ("true", "1") and not (u.database or "").startswith("file:"):
        u = u.set(database=os.path.abspath(os.path.expanduser(u.database or "")))
    engine = _sa_create_engine(u, connect_args=connect_args, **kwargs)
    busy_ms = int(SQLITE_BUSY_TIMEOUT * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, record: Any) -> None:
        # Let SQLAlchemy emit BEGIN (see _on_begin): the sqlite3 module's own
        # transaction handling does not wrap DDL and cannot BEGIN IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
            for pragma in (
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = NORMAL",
                # Checkpoint every ~40 MB of WAL rather than every 4 MB: random uuid4 ids
                # dirty a page of the primary-key index per record, and checkpointing
                # less often writes each such page back once instead of many times
                # (1.5x the insert rate on a 500k-row database).
                f"PRAGMA wal_autocheckpoint = {SQLITE_WAL_AUTOCHECKPOINT}",
                f"PRAGMA journal_size_limit = {SQLITE_WAL_AUTOCHECKPOINT * 4096 * 2}",
            ):
                try:
                    cur.execute(pragma)
                except sqlite3.Error as exc:
                    # Read-only or locked right now: the connection still works, and
                    # WAL, once set by any connection, is a property of the file.
                    log.debug("costtrack: %s failed on %s: %s", pragma, safe_url(u), exc)
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


# --------------------------------------------------------------------------- migrations


def _migrations_dir() -> str:
    """Where the Alembic scripts are: package ``costtrack.migrations`` (top-level ``migrations/``)."""
    try:
        import costtrack.migrations as pkg

        return os.path.dirname(os.path.abspath(pkg.__file__))
    except ImportError:
        # A source checkout that was not pip-installed: migrations/ sits beside costtrack/.
        here = Path(__file__).resolve().parents[2] / "migrations"
        if (here / "env.py").is_file():
            return str(here)
        raise


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Any:
    """An alembic Config built in code (no alembic.ini needed) for costtrack's migrations.

    With `connection`, migrations run on it (in the caller's transaction); otherwise
    env.py connects to `url` (or the resolved URL) itself.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", _migrations_dir())
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest migration revision shipped with this version of costtrack."""
    head = _script().get_current_head()
    assert head is not None
    return head


def _known_revision(rev: str) -> bool:
    try:
        return _script().get_revision(rev) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown revision
        return False


def _state(conn: Connection) -> tuple[bool, str | None]:
    """(records table exists, alembic revision or None)."""
    insp = inspect(conn)
    has_records = insp.has_table("records")
    version = None
    if insp.has_table("alembic_version"):
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return has_records, version


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return _state(conn)[1]


@contextmanager
def migration_transaction(conn: Connection) -> Iterator[Connection]:
    """A transaction on `conn` that only one process at a time can hold, for migrating."""
    if is_sqlite(conn):
        conn.execution_options(sqlite_begin="IMMEDIATE")
        try:
            with conn.begin():
                yield conn
        finally:
            conn.execution_options(sqlite_begin="DEFERRED")
    else:
        with conn.begin():
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{POSTGRES_MIGRATION_LOCK_TIMEOUT}s'")
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
            yield conn


# Engines whose schema has been seen current in this process: checked once, not per write.
_schema_ok: weakref.WeakSet[Engine] = weakref.WeakSet()
_warned: set[str] = set()
_lock = threading.Lock()


# Alembic keeps per-run state in module globals: two migrations in one process at once
# (trackers on different databases) must take turns. The database lock covers other processes.
_ALEMBIC_LOCK = threading.Lock()


@renews_in_child
def _renew_locks() -> None:
    global _lock, _ALEMBIC_LOCK
    _lock, _ALEMBIC_LOCK = threading.Lock(), threading.Lock()


def _alembic_upgrade(conn: Connection, revision: str) -> None:
    from alembic import command

    with _ALEMBIC_LOCK:
        command.upgrade(alembic_config(connection=conn), revision)


def upgrade(target: Engine | str | None = None, revision: str = "head") -> str | None:
    """Migrate the database to `revision` (default: the newest). Returns the revision reached.

    Safe to run from several processes at once. `target` is an Engine, a URL, or None
    for the resolved URL. Raises DatabaseURLError when the database cannot be reached.
    """

    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        try:
            with engine.connect() as conn:
                with migration_transaction(conn):
                    _alembic_upgrade(conn, revision)
        except DBAPIError:
            # Another process may have won a race we could not serialise (e.g. the
            # table was created outside Alembic): accept a schema that is now current.
            try:
                rev = current_revision(engine)
            except SQLAlchemyError:
                rev = None
            if revision != "head" or rev != head_revision():
                raise
        rev = current_revision(engine)
        if rev == head_revision():
            _schema_ok.add(engine)
        return rev
    except DBAPIError as exc:
        raise DatabaseURLError(
            f"cannot migrate the database at {safe_url(engine.url)}: {_first_line(exc)}; {_reach_hint(engine, exc)}"
        ) from None
    finally:
        if engine is not target:
            engine.dispose()


def ensure_schema(engine: Engine) -> None:
    """Make sure the `records` table exists and is current enough to write to.

    SQLite: migrated automatically. Postgres: migrated automatically only when the
    table is missing; an outdated schema gets a warning to run ``costtrack db upgrade``.
    Cheap after the first success for an engine. Raises SQLAlchemy errors when the
    database cannot be reached (callers decide what that means).
    """
    if engine in _schema_ok:
        return
    with engine.connect() as conn:
        has_records, version = _state(conn)
    head = head_revision()
    if version == head:
        _schema_ok.add(engine)
        return
    if has_records and version is not None and not _known_revision(version):
        _warn_once(
            engine,
            f"costtrack: the database at {safe_url(engine.url)} is at revision {version}, which this costtrack "
            f"(at {head}) does not know: a newer costtrack's (upgrade costtrack) or another app's migrations "
            "(give costtrack a database of its own)",
        )
        _schema_ok.add(engine)
        return
    if is_sqlite(engine) or not has_records:
        _upgrade_in_place(engine)
        _schema_ok.add(engine)
        return
    if version is None:
        _warn_once(
            engine,
            f"costtrack: the database at {safe_url(engine.url)} has a records table that Alembic "
            f"did not create; run `costtrack db upgrade` if writes fail",
        )
    else:
        _warn_once(
            engine,
            f"costtrack: the database at {safe_url(engine.url)} is at revision {version}, "
            f"not {head}: run `costtrack db upgrade`",
        )
    _schema_ok.add(engine)


def _upgrade_in_place(engine: Engine) -> None:
    """Migrate to head; a database that cannot be written but holds an older known schema is used as it is."""
    try:
        with engine.connect() as conn:
            with migration_transaction(conn):
                _alembic_upgrade(conn, "head")
    except DBAPIError as exc:
        with engine.connect() as conn:
            has_records, version = _state(conn)
        if not has_records:
            raise
        if version is not None and version != head_revision() and _known_revision(version):
            # A read-only file, or one another user owns: every reader and writer of the
            # records table still works on the older schema, so say so instead of failing.
            _warn_once(
                engine,
                f"costtrack: the database at {safe_url(engine.url)} is at revision {version}, not "
                f"{head_revision()}, and could not be upgraded ({_first_line(exc)}): run `costtrack db upgrade` "
                f"with write access",
            )


def _warn_once(engine: Engine, message: str) -> None:
    with _lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning(message)


def forget_schema(engine: Engine) -> None:
    """Check the schema again on the next :func:`ensure_schema` (after a write failed)."""
    _schema_ok.discard(engine)


def _reach_hint(engine: Engine, exc: BaseException | None = None) -> str:
    if is_sqlite(engine):
        if exc is not None and "not a database" in _first_line(exc):
            return "that file is not a SQLite database: give the path of a costtrack database, or a new file"
        return "check that the file's directory exists and is writable"
    return "check that Postgres is running and the host, port, user, password and database in the URL"


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    msg = str(orig if orig is not None else exc).strip()
    return msg.splitlines()[0] if msg else type(exc).__name__
