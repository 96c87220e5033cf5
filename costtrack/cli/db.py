"""`costtrack db`: the database's schema."""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import DatabaseURLError

__all__ = ["app"]

app = typer.Typer(
    help="Manage the database schema.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_URL_HELP = "Database URL (default: $COSTTRACK_DATABASE_URL, then .env, then sqlite:///costtrack.db)."


@app.command("upgrade")
def upgrade(
    database_url: Optional[str] = typer.Option(None, "--database-url", help=_URL_HELP),
    revision: str = typer.Option("head", "--revision", help="Revision to migrate to."),
) -> None:
    """Create or migrate the records table to the newest schema (safe to run concurrently)."""
    from ..store.database import make_engine, resolve_url, safe_url
    from ..store.database import upgrade as run_upgrade

    url = resolve_url(database_url)  # DatabaseURLError: one line, exit 2
    engine = make_engine(url)
    try:
        try:
            rev = run_upgrade(engine, revision)
        except DatabaseURLError:
            raise
        except Exception as exc:  # noqa: BLE001 - alembic: unknown revision and the like; one line, exit 2
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseURLError(f"cannot migrate the database at {safe_url(engine.url)}: {msg}") from None
    finally:
        engine.dispose()
    if revision not in ("head", "heads") and rev != revision and not revision.startswith(("+", "-")):
        # Alembic's upgrade to an older revision does nothing: the request was silently ignored.
        raise DatabaseURLError(f"{safe_url(url)} is at schema revision {rev}, past {revision}: `db upgrade` only "
                               "migrates forward; give --revision head (the default) or a later revision")
    typer.echo(f"{safe_url(url)}: schema at revision {rev}")
