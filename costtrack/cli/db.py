"""`costtrack db`: database commands (placeholder; filled in by the database work)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Database commands.")
