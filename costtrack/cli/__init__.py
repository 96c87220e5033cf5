"""The `costtrack` command line: one typer app assembled from one module per command group."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from typing import Any

import typer

from .. import errors
from . import _common, alerts, bench, cache, calc, db, demo, export, prices, report, reprice, simulate, stats

__all__ = ["app", "main"]

app = typer.Typer(
    name="costtrack",
    help="Cost tracking for LLM applications: stats, exports, prices, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"costtrack {version('costtrack')}")
        except PackageNotFoundError:  # run from a source tree that was not installed
            typer.echo("costtrack (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Cost tracking for LLM applications: stats, exports, prices, reports."""


app.command("demo")(demo.demo)
app.command("stats")(stats.stats)
app.command("export")(export.export)
app.command("reprice")(reprice.reprice)
app.command("calc")(calc.calc)
app.command("bench")(bench.bench)
app.add_typer(prices.app, name="prices")
app.add_typer(db.app, name="db")
app.add_typer(cache.app, name="cache")
app.add_typer(report.app, name="report")
app.add_typer(alerts.app, name="alerts")
app.command("simulate")(simulate.simulate)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors print one line to stderr and exit with code 2."""
    sys.exit(run(argv))


def _optional_compare_value(args: list[str]) -> list[str]:
    """`calc --compare gpt-4o,claude-haiku-4-5` (an optional value, which click options cannot take) as `--compare --models ...`."""
    if not args or args[0] != "calc":
        return args
    out: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg.startswith("--compare="):
            out += ["--compare", "--models", _compared(arg.split("=", 1)[1])]
            continue
        out.append(arg)
        if arg == "--compare":
            following = next(rest, None)
            if following is not None:
                out += ["--models", _compared(following)] if not following.startswith("-") else [following]
    return out


def _compared(models: str) -> str:
    """`--compare`'s value, which must name models: an empty one was said as `--models is empty`, a flag never typed."""
    if not models.strip():
        raise errors.ConfigError("--compare is given an empty list of models: name them (--compare gpt-4o,claude-haiku-4-5), "
                                 "or give --compare alone for the usual set")  # fmt: skip
    return models


def _empty_option(args: list[str]) -> tuple[str, str] | None:
    """(the option, the command) of an option given an empty value (`--since ''`, `--since=`), which commands read as
    the option left out (`export --since "$UNSET"` exported everything); None when there is none."""
    if all(arg.strip() and not arg.endswith("=") for arg in args):
        return None  # the usual command line: nothing empty
    command: Any = typer.main.get_command(app)
    path = ["costtrack"]
    rest = list(args)
    while rest and rest[0] in (getattr(command, "commands", None) or {}):
        command = command.commands[rest[0]]
        path.append(rest.pop(0))
    # Options that take a value (typer's, on its own copy of click): not flags, not counters, not arguments.
    takes_value = {name for param in getattr(command, "params", ()) if getattr(param, "is_flag", True) is False
                   and not getattr(param, "count", False) for name in param.opts if name.startswith("-")}  # fmt: skip
    for i, arg in enumerate(rest):
        name, equals, value = arg.partition("=")
        if equals and name in takes_value and not value.strip():
            return name, " ".join(path)
        if arg in takes_value and i + 1 < len(rest) and not rest[i + 1].strip():
            return arg, " ".join(path)
    return None


def _command_path(args: list[str]) -> str:
    """The command `args` name (`costtrack prices cost`), for a parse error that comes without a context (an
    option missing its value): the leading arguments that are command or group names."""
    command: Any = typer.main.get_command(app)
    path = ["costtrack"]
    for arg in args:
        commands = getattr(command, "commands", None)
        if not commands or arg not in commands:
            break
        command = commands[arg]
        path.append(arg)
    return " ".join(path)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code instead of exiting."""
    if sys.stdout is None:
        # Started with its output closed (`costtrack stats >&-`): Python has no stdout at all, and printing to None was
        # a traceback (or nothing, exit 0). Commands that print fail at their first write, in one line; the others
        # (`export -o FILE`, `report audit`) run as usual.
        sys.stdout = _ClosedOutput()
    try:
        return _run(argv)
    except OSError as exc:
        return _os_error(exc)


class _ClosedOutput(io.TextIOBase):
    """Stands in for a standard output the process was started without: any write is an OSError (see _os_error)."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "the standard output is closed: redirect it (> FILE, > /dev/null)")

    def isatty(self) -> bool:
        return False


def _os_error(exc: OSError) -> int:
    """An OSError no command turned into a message: a pipe its reader closed (quiet, exit 1, as Click has it), or an
    output that cannot be written (`> /dev/full`, a full disk) and the like: one line, exit 2. Output still buffered
    is dropped, so that Python's flush at exit adds no traceback of its own."""
    try:
        sys.stdout.flush()
    except OSError:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if exc.errno == errno.EPIPE:
        return 1
    writing = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)  # what a full or failing output gives
    where = f": {exc.filename}" if exc.filename else " (writing the output)" if writing else ""
    print(f"costtrack: error: {exc.strerror or exc}{where}", file=sys.stderr)
    return 2


def _run(argv: list[str] | None) -> int:
    try:
        args = _optional_compare_value(sys.argv[1:] if argv is None else list(argv))
        empty = _empty_option(args)
        if empty is not None:
            print(f"costtrack: error: {empty[0]} is empty: give it a value, or leave it out (see `{empty[1]} --help`)",
                  file=sys.stderr)
            return 2
        result = app(args=args, prog_name="costtrack", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("costtrack: aborted", file=sys.stderr)
        return 130
    except errors.CosttrackError as exc:
        print(f"costtrack: error: {exc}", file=sys.stderr)
        return 2
    except typer.TyperException as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
            return 0
        hint = f" (see `{ctx.command_path if ctx is not None else _command_path(args)} --help`)"
        print(f"costtrack: error: {exc.format_message()}{hint}", file=sys.stderr)
        return 2
    except Exception as exc:
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(exc, SQLAlchemyError):
            raise
        # The database failed mid-command (it went away, or a file that is not SQLite was read).
        print(f"costtrack: error: {_common.database_error(exc)}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
