"""Helpers shared by the CLI command modules: one-line errors and JSON output."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine

__all__ = ["DatabaseOption", "console", "display_url", "fail", "print_json", "read_engine", "resolve_database_url"]


def fail(message: str) -> NoReturn:
    """Print a one-line error that says what to do, and exit with code 2."""
    typer.echo(f"costtrack: error: {message}", err=True)
    raise typer.Exit(2)


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


def display_url(url: str) -> str:
    """A database URL fit to print (password masked)."""
    from ..store.database import safe_url

    return safe_url(url)


def read_engine(url: str | None) -> Engine:
    """An engine on the records database, its schema up to date; bad URLs end in a one-line error."""
    from ..store.database import ensure_schema, make_engine

    engine = make_engine(resolve_database_url(url))
    ensure_schema(engine)
    return engine


def console(stderr: bool = False) -> Console:
    """A rich console; when output is not a terminal, wide enough that tables are not cut."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)
