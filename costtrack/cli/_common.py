"""Helpers shared by the CLI command modules: one-line errors and JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer

__all__ = ["fail", "print_json"]


def fail(message: str) -> NoReturn:
    """Print a one-line error that says what to do, and exit with code 2."""
    typer.echo(f"costtrack: error: {message}", err=True)
    raise typer.Exit(2)


def print_json(data: Any) -> None:
    """Print machine-readable output."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
