"""`costtrack db upgrade` on SQLite and Postgres, and its one-line errors."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from costtrack.cli import run
from costtrack.store.database import current_revision, head_revision, make_engine


def revision_of(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def new_database_url(request, sqlite_url):
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_url")


def assert_one_line_error(capsys, *needles: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("costtrack: error: ")
    assert "Traceback" not in captured.err + captured.out
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_upgrade_creates_the_schema(new_database_url, capsys) -> None:
    assert revision_of(new_database_url) is None
    assert run(["db", "upgrade", "--database-url", new_database_url]) == 0
    out = capsys.readouterr().out
    assert f"revision {head_revision()}" in out
    assert revision_of(new_database_url) == head_revision()
    engine = make_engine(new_database_url)
    try:
        assert inspect(engine).has_table("records")
    finally:
        engine.dispose()
    # Again: nothing to do, same answer.
    assert run(["db", "upgrade", "--database-url", new_database_url]) == 0
    assert f"revision {head_revision()}" in capsys.readouterr().out


def test_upgrade_uses_the_environment(sqlite_url, monkeypatch, capsys) -> None:
    monkeypatch.setenv("COSTTRACK_DATABASE_URL", sqlite_url)
    assert run(["db", "upgrade"]) == 0
    assert revision_of(sqlite_url) == head_revision()


def test_password_is_not_printed(postgres_url, capsys) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    assert run(["db", "upgrade", "--database-url", url]) == 0  # trust auth ignores it
    assert "s3cret-pw" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mysql://u@h/db", "unsupported database"),
        ("costtrack.db", "sqlite:///costtrack.db"),
        ("postgresql+psycopg2://u@h/db", "psycopg 3"),
    ],
)
def test_bad_url_is_one_line_exit_2(url: str, needle: str, capsys) -> None:
    assert run(["db", "upgrade", "--database-url", url]) == 2
    assert_one_line_error(capsys, needle)


def test_unreachable_postgres_is_one_line_exit_2(capsys) -> None:
    from conftest import free_port

    url = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/nothing"
    assert run(["db", "upgrade", "--database-url", url]) == 2
    line = assert_one_line_error(capsys, "cannot migrate", "check that Postgres is running")
    assert ":pw@" not in line


def test_unopenable_sqlite_is_one_line_exit_2(tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    assert run(["db", "upgrade", "--database-url", f"sqlite:///{tmp_path}/file/c.db"]) == 2
    assert_one_line_error(capsys, "cannot migrate", "directory exists and is writable")
    # A file that is not SQLite: its directory is fine, the file is not (the hint said to check the directory)
    (tmp_path / "notes.db").write_text("not a database, but long enough to have a header page............" * 20)
    assert run(["db", "upgrade", "--database-url", f"sqlite:///{tmp_path}/notes.db"]) == 2
    assert_one_line_error(capsys, "cannot migrate", "that file is not a SQLite database")


def test_unknown_revision_is_one_line_exit_2(sqlite_url, capsys) -> None:
    assert run(["db", "upgrade", "--database-url", sqlite_url, "--revision", "nope"]) == 2
    assert_one_line_error(capsys, "nope")



def test_a_revision_behind_the_schema_is_an_error_not_ignored(tmp_path, capsys) -> None:
    """`--revision 0001` on a database at the newest printed "schema at revision 0003", exit 0 (review finding)."""
    url = f"sqlite:///{tmp_path}/r.db"
    assert run(["db", "upgrade", "--revision", "base", "--database-url", url]) == 0  # nothing to do: fine
    assert run(["db", "upgrade", "--revision", "0001", "--database-url", url]) == 0  # forward, from nothing: fine
    assert run(["db", "upgrade", "--revision", "0001+1", "--database-url", url]) == 0  # Alembic's relative form
    assert current_revision(make_engine(url)) == "0002"
    assert run(["db", "upgrade", "--database-url", url]) == 0
    capsys.readouterr()
    for revision in ("0001", "base"):
        assert run(["db", "upgrade", "--revision", revision, "--database-url", url]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"is at schema revision {head_revision()}, past {revision}" in err
    assert current_revision(make_engine(url)) == head_revision()

def test_db_without_a_command_shows_help(capsys) -> None:
    assert run(["db"]) == 0
    assert "upgrade" in capsys.readouterr().out


def test_upgrade_to_base_of_a_new_database_says_so(sqlite_url, capsys) -> None:
    """It printed "schema at revision None" (CLI review)."""
    assert run(["db", "upgrade", "--database-url", sqlite_url, "--revision", "base"]) == 0
    assert capsys.readouterr().out.strip().endswith("schema at revision base (no costtrack tables)")
