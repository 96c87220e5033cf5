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
    if _behind(revision, rev):
        # Alembic's upgrade to an older revision does nothing: the request was silently ignored.
        raise DatabaseURLError(f"{safe_url(url)} is at schema revision {rev}, past {revision}: `db upgrade` only "
                               "migrates forward; give --revision head (the default) or a later revision")
    typer.echo(f"{safe_url(url)}: schema at revision {rev or 'base (no costtrack tables)'}")


def _behind(revision: str, reached: str | None) -> bool:
    """Whether `revision` is behind the schema the database reached (Alembic's upgrade to it then does nothing)."""
    if revision in ("head", "heads") or any(mark in revision for mark in "+-@:"):
        return False  # the newest, or a relative or branch form: whatever Alembic made of it is what was asked
    if revision == "base":
        return reached is not None
    from alembic.script import ScriptDirectory

    from ..store.database import alembic_config

    try:
        target = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except Exception:  # noqa: BLE001 - Alembic resolved it for the upgrade already; nothing to add here
        return False
    return target is not None and reached != target.revision
