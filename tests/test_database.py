"""Database URLs, engines and migrations (real SQLite files and a real Postgres server)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading

import pytest
from sqlalchemy import inspect

from costtrack.errors import DatabaseURLError
from costtrack.store import database
from costtrack.store.database import (
    DEFAULT_URL,
    current_revision,
    ensure_schema,
    head_revision,
    make_engine,
    resolve_url,
    safe_url,
    upgrade,
)

# --------------------------------------------------------------------------- resolve_url


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_default_is_a_sqlite_file_in_the_working_directory(workdir) -> None:
    assert resolve_url(None) == DEFAULT_URL == "sqlite:///costtrack.db"
    engine = make_engine(None)
    assert engine.url.database == str(workdir / "costtrack.db")


def test_argument_beats_environment_beats_dotenv(workdir, monkeypatch) -> None:
    (workdir / ".env").write_text("OTHER=1\nCOSTTRACK_DATABASE_URL=sqlite:///from-dotenv.db\n")
    assert resolve_url(None) == "sqlite:///from-dotenv.db"
    assert "COSTTRACK_DATABASE_URL" not in os.environ  # .env is read, not loaded
    monkeypatch.setenv("COSTTRACK_DATABASE_URL", "sqlite:///from-env.db")
    assert resolve_url(None) == "sqlite:///from-env.db"
    assert resolve_url("sqlite:///from-arg.db") == "sqlite:///from-arg.db"


def test_empty_environment_variable_falls_through(workdir, monkeypatch) -> None:
    monkeypatch.setenv("COSTTRACK_DATABASE_URL", "  ")
    assert resolve_url(None) == DEFAULT_URL


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:pw@db.example:5433/app", "postgresql+psycopg://u:pw@db.example:5433/app"),
        ("postgres://u@localhost/app", "postgresql+psycopg://u@localhost/app"),
        ("postgresql+psycopg://u@localhost/app?sslmode=require", "postgresql+psycopg://u@localhost/app?sslmode=require"),
        ("sqlite:////var/lib/costtrack.db", "sqlite:////var/lib/costtrack.db"),
        ("sqlite+pysqlite:///x.db", "sqlite:///x.db"),
        ("sqlite://", "sqlite://"),
        ("  sqlite:///padded.db  ", "sqlite:///padded.db"),
    ],
)
def test_urls_are_normalised(given: str, expected: str) -> None:
    assert resolve_url(given) == expected


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("costtrack.db", "sqlite:///costtrack.db"),
        ("not a url at all", "malformed"),
        ("", "empty"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql+psycopg2://u@h/db", "psycopg 3"),
        ("postgresql+asyncpg://u@h/db", "psycopg 3"),
        ("sqlite+aiosqlite:///x.db", "unsupported SQLite driver"),
        # pysqlite ignored it with a warning, and `?mode=ro` wrote to the file (CLI review).
        ("sqlite:///x.db?mode=ro", "which needs uri=true and the file: form: write sqlite:///file:x.db?mode=ro&uri=true"),
        # uri=true without file: made a file named `x.db?mode=ro`, written to (diff review).
        ("sqlite:///x.db?mode=ro&uri=true", "write sqlite:///file:x.db?mode=ro&uri=true"),
        ("sqlite://relative.db", "three slashes"),
        ("postgresql://u:hunter2@h:notaport/db", "malformed"),
    ],
)
def test_bad_urls_are_one_line_errors_that_say_what_to_do(url: str, needle: str) -> None:
    with pytest.raises(DatabaseURLError) as info:
        resolve_url(url)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert "hunter2" not in message
    assert "sqlite:///" in message or "postgresql+psycopg://" in message


def test_bad_url_from_the_environment_names_its_source(workdir, monkeypatch) -> None:
    monkeypatch.setenv("COSTTRACK_DATABASE_URL", "oracle://x@y/z")
    with pytest.raises(DatabaseURLError, match=r"\$COSTTRACK_DATABASE_URL"):
        resolve_url(None)
    monkeypatch.delenv("COSTTRACK_DATABASE_URL")
    (workdir / ".env").write_text("COSTTRACK_DATABASE_URL=oracle://x@y/z\n")
    with pytest.raises(DatabaseURLError, match=r"\.env"):
        resolve_url(None)



def test_a_dotenv_line_naming_the_database_that_cannot_be_parsed_is_an_error(workdir) -> None:
    """python-dotenv skipped it with a warning, and the default ./costtrack.db was used, created by `db upgrade`."""
    (workdir / ".env").write_text('OTHER=1\nCOSTTRACK_DATABASE_URL="postgresql://u:secret@h/db\n')
    with pytest.raises(DatabaseURLError, match=r"\.env, line 2, cannot be read") as raised:
        resolve_url(None)
    assert "secret" not in str(raised.value) and "\n" not in str(raised.value)
    # A long URL: masked before it is cut short (cut first, the @ fell past the cut and the password showed)
    (workdir / ".env").write_text('COSTTRACK_DATABASE_URL="postgresql+psycopg://costtrack_service:Sup3rS3cret'
                                  'Passw0rdXYZ123456@db.example.internal:5432/costtrack_production\n')
    with pytest.raises(DatabaseURLError, match="line 1") as raised:
        resolve_url(None)
    assert "Sup3r" not in str(raised.value)
    # Its `=` left out (CLI review): skipped with python-dotenv's warning, and the default database used.
    (workdir / ".env").write_text("COSTTRACK_DATABASE_URL sqlite:///../costtrack.db\n")
    with pytest.raises(DatabaseURLError, match="line 1, cannot be read"):
        resolve_url(None)
    (workdir / ".env").write_text('COSTTRACK_DATABASE_URL_OLD="unclosed\nCOSTTRACK_DATABASE_URL=sqlite:///y.db\n')
    assert resolve_url(None) == "sqlite:///y.db"  # another variable's line, whose name only starts like ours
    (workdir / ".env").write_text("this line is the app's own and not ours ===\nCOSTTRACK_DATABASE_URL=sqlite:///x.db\n")
    assert resolve_url(None) == "sqlite:///x.db"  # a line of the app's that dotenv cannot read is its business

def test_missing_postgres_driver(monkeypatch) -> None:
    real = database.find_spec
    monkeypatch.setattr(database, "find_spec", lambda name: None if name == "psycopg" else real(name))
    with pytest.raises(DatabaseURLError, match=r"pip install 'costtrack\[postgres\]'"):
        resolve_url("postgresql://u@h/db")


def test_safe_url_hides_the_password() -> None:
    assert safe_url("postgresql+psycopg://u:secret@h/db") == "postgresql+psycopg://u:***@h/db"


# --------------------------------------------------------------------------- engines


def test_sqlite_engine_pragmas(sqlite_url) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000
    finally:
        engine.dispose()


def test_postgres_connections_use_tcp_keepalives_unless_the_url_says_otherwise(postgres_url) -> None:
    def options(url: str) -> dict[str, str]:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                params = conn.connection.driver_connection.info.get_parameters()
        finally:
            engine.dispose()
        return {k: v for k, v in params.items() if k.startswith("keepalives")}

    assert options(postgres_url) == {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
                                     "keepalives_count": "3"}  # fmt: skip
    joiner = "&" if "?" in postgres_url else "?"
    assert options(f"{postgres_url}{joiner}keepalives_idle=5")["keepalives_idle"] == "5"


def test_sqlite_relative_path_is_fixed_when_the_engine_is_made(workdir, tmp_path) -> None:
    engine = make_engine("sqlite:///sub.db")
    os.chdir(tmp_path.parent)
    ensure_schema(engine)
    engine.dispose()
    assert (workdir / "sub.db").exists()


def test_in_memory_sqlite_is_shared_across_threads() -> None:
    engine = make_engine("sqlite://")
    ensure_schema(engine)
    seen: list[bool] = []
    t = threading.Thread(target=lambda: seen.append(inspect(engine).has_table("records")))
    t.start()
    t.join()
    assert seen == [True]


# --------------------------------------------------------------------------- migrations


def test_new_sqlite_file_is_migrated_on_first_use(sqlite_url, tmp_path) -> None:
    engine = make_engine(sqlite_url)
    assert current_revision(engine) is None
    ensure_schema(engine)
    assert current_revision(engine) == head_revision() == "0003"
    ensure_schema(engine)  # cheap and harmless the second time
    engine.dispose()
    assert (tmp_path / "costtrack.db").exists()


def test_fresh_postgres_database_is_migrated_on_first_use(fresh_postgres_url) -> None:
    engine = make_engine(fresh_postgres_url)
    try:
        assert current_revision(engine) is None
        ensure_schema(engine)
        assert current_revision(engine) == head_revision()
        assert inspect(engine).has_table("records")
    finally:
        engine.dispose()


def _record_indexes(engine) -> set[str]:
    return {ix["name"] for ix in inspect(engine).get_indexes("records")}


def test_0003_drops_the_model_index_and_keeps_the_rows(unmigrated_url) -> None:
    from alembic import command

    from costtrack.records import CallRecord
    from costtrack.store.database import alembic_config
    from costtrack.store.sql import count_records, insert_records

    assert upgrade(unmigrated_url, "0002") == "0002"
    engine = make_engine(unmigrated_url)
    try:
        assert "ix_records_model_timestamp" in _record_indexes(engine)
        insert_records(engine, [CallRecord(provider="openai", operation="chat.completions", endpoint="/a")])
        assert upgrade(unmigrated_url) == "0003"
        assert _record_indexes(engine) == {"ix_records_timestamp_id", "ix_records_endpoint_timestamp"}
        assert count_records(engine) == 1
        with engine.begin() as conn:  # and back down
            command.downgrade(alembic_config(connection=conn), "0002")
        assert "ix_records_model_timestamp" in _record_indexes(engine) and current_revision(engine) == "0002"
    finally:
        engine.dispose()


def test_a_read_only_sqlite_file_at_an_older_revision_is_read_with_a_warning(sqlite_url, tmp_path, capsys, caplog) -> None:
    import json

    from costtrack.cli import run
    from costtrack.records import CallRecord
    from costtrack.store.sql import insert_records

    assert upgrade(sqlite_url, "0002") == "0002"
    engine = make_engine(sqlite_url)
    insert_records(engine, [CallRecord(provider="openai", operation="chat.completions", endpoint="/a", cost_usd=0.5)])
    engine.dispose()
    read_only = f"sqlite:///file:{tmp_path / 'costtrack.db'}?mode=ro&uri=true"
    with caplog.at_level(logging.WARNING, logger="costtrack"):
        assert run(["stats", "--json", "--database-url", read_only]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["calls"] == 1
    assert "is at revision 0002, not 0003, and could not be upgraded" in caplog.text
    assert current_revision(make_engine(sqlite_url)) == "0002"  # untouched


def test_upgrade_is_idempotent(database_url) -> None:
    assert upgrade(database_url) == head_revision()
    assert upgrade(database_url) == head_revision()


def test_unknown_newer_revision_is_left_alone_with_a_warning(fresh_postgres_url, caplog) -> None:
    upgrade(fresh_postgres_url)
    engine = make_engine(fresh_postgres_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        with caplog.at_level(logging.WARNING, logger="costtrack"):
            ensure_schema(engine)
        assert "which this costtrack (at " in caplog.text and "does not know" in caplog.text
        assert current_revision(engine) == "9999"
    finally:
        engine.dispose()


def test_postgres_table_made_elsewhere_is_not_altered(fresh_postgres_url, caplog) -> None:
    from costtrack.store.schema import metadata

    engine = make_engine(fresh_postgres_url)
    try:
        metadata.create_all(engine)
        with caplog.at_level(logging.WARNING, logger="costtrack"):
            ensure_schema(engine)
        assert "costtrack db upgrade" in caplog.text
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_upgrade_unreachable_database_is_a_url_error(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatabaseURLError, match="cannot migrate") as info:
        upgrade(f"sqlite:///{tmp_path}/file/costtrack.db")
    assert "\n" not in str(info.value)


def _migrate_in_process(url: str, barrier, results) -> None:
    from costtrack.store.database import current_revision, ensure_schema, make_engine

    engine = make_engine(url)
    barrier.wait(timeout=60)
    try:
        ensure_schema(engine)
        results.put(current_revision(engine))
    except Exception as exc:  # pragma: no cover - reported to the parent
        results.put(f"error: {exc!r}")
    finally:
        engine.dispose()


def test_concurrent_first_use_from_many_threads(unmigrated_url) -> None:
    """Eight engines (as in eight processes) race to migrate one new database."""
    barrier = threading.Barrier(8)
    results: list[str] = []

    def worker() -> None:
        engine = make_engine(unmigrated_url)
        barrier.wait(timeout=30)
        try:
            ensure_schema(engine)
            results.append(current_revision(engine) or "none")
        except Exception as exc:  # pragma: no cover - shown by the assert
            results.append(repr(exc))
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [head_revision()] * 8


def test_concurrent_first_use_from_many_processes(unmigrated_url) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    procs = [ctx.Process(target=_migrate_in_process, args=(unmigrated_url, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert got == [head_revision()] * 4
    assert all(p.exitcode == 0 for p in procs)
