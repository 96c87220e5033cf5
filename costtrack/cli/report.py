"""`costtrack report audit|results|summary`: the course's optimization documents, from the recorded calls."""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import ConfigError
from . import _common

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ..reports.results import Selection

__all__ = ["app", "audit", "delayed_progress", "open_records", "parse_tag", "results", "summary"]

app = typer.Typer(
    help="Write the optimization documents: the audit, the before/after results, the README's Performance section.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

TemplateOption = Annotated[
    Optional[Path],
    typer.Option("--template", help="Render your own copy of the Jinja2 template instead of the built-in one.",
                 dir_okay=False),
]
PricesOption = Annotated[
    Optional[Path],
    typer.Option("--prices-file", help="TOML price overrides (default: $COSTTRACK_PRICES_FILE).", dir_okay=False),
]


# --------------------------------------------------------------------------- shared with `costtrack simulate`


@contextmanager
def delayed_progress(total: int, what: str, delay: float = 1.0,
                     timer: Callable[[float, Callable[[], None]], Any] = threading.Timer) -> Iterator[Callable[[str], None]]:  # fmt: skip
    """A step callback; a rich progress bar on stderr appears if the work takes longer than `delay` seconds.

    Only on a terminal. `timer(delay, start)` makes the object whose start() arms the delay (threading.Timer).
    """
    console = _common.console(stderr=True)
    lock = threading.Lock()
    state: dict[str, Any] = {"done": 0, "progress": None, "task": None, "closed": False}

    def start() -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        with lock:
            if state["closed"]:
                return
            progress = Progress(SpinnerColumn(), TextColumn(f"[bold]{what}[/] {{task.description}}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)  # fmt: skip
            state["task"] = progress.add_task("", total=total, completed=min(state["done"], total))
            progress.start()
            state["progress"] = progress

    armed = timer(delay, start) if console.is_terminal else None
    if armed is not None:
        armed.daemon = True
        armed.start()

    def step(name: str) -> None:
        with lock:
            state["done"] += 1
            progress = state["progress"]
            if progress is not None:
                progress.update(state["task"], completed=min(state["done"], total), description=name)

    try:
        yield step
    finally:
        if armed is not None:
            armed.cancel()
        with lock:
            state["closed"] = True
            progress = state["progress"]
        if progress is not None:
            progress.stop()


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """ConfigError and database errors end the command with one line on stderr and exit code 2."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except ConfigError as exc:
        _common.fail(str(exc))
    except SQLAlchemyError as exc:
        _common.fail(_common.database_error(exc))


def open_records(database_url: str | None, since: datetime | None, until: datetime | None,
                 what: str = "in that period") -> Engine:  # fmt: skip
    """The records engine, after checking that [since, until) has records of the app's own calls (a one-line error
    otherwise: none at all, or only `costtrack bench`'s, which the reports leave out)."""
    from sqlalchemy import func, select

    from ..reports.simulate import period_where
    from ..store.schema import records
    from ..store.sql import count_records

    engine = _common.read_engine(database_url)
    if count_records(engine, since, until):
        with engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(records).where(period_where(since, until))).scalar_one():
                return engine
        raise ConfigError(f"only `costtrack bench` records (bench:* endpoints) {what}: the reports cover the app's own "
                          "calls; wrap the app's client with costtrack.wrap() and run it, or see `costtrack stats`")  # fmt: skip
    raise ConfigError(_common.no_records_message(engine, what))


def parse_period(since: str | None, until: str | None, now: datetime) -> tuple[datetime | None, datetime | None]:
    """--since (7d, 24h, an ISO date) and --until (an ISO date or datetime) → [since, until)."""
    from ..periods import parse_instant, parse_since

    start = parse_since(since, now) if since else None
    end = parse_instant(until, "--until") if until else None
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"--until {until} is not after --since {since}")
    return start, end


def parse_tag(text: str, flag: str) -> tuple[str, str]:
    """`key=value` → (key, value)."""
    import re

    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise ConfigError(f"{flag} {text!r} is not a tag: write KEY=VALUE, e.g. run=baseline")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key):
        raise ConfigError(f"{flag} {text!r}: the tag name may use letters, digits, '_', '-' and '.'")
    return key, value


def _write(text: str, output: str, what: str) -> Path | None:
    """Write the document (or print it for `-o -`); returns the path written."""
    import sys

    if output == "-":
        sys.stdout.write(text)
        return None
    path = Path(output).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {what} to {path} ({exc.strerror or exc}): choose another -o path") from None
    return path


@contextmanager
def _staged_charts(output: str, enabled: bool) -> Iterator[tuple[Path | None, str]]:
    """A scratch directory for the charts; they are moved beside the document only once it is written."""
    import shutil
    import tempfile

    if output == "-" or not enabled:
        yield None, ""
        return
    out = Path(output).expanduser()
    scratch = Path(tempfile.mkdtemp(prefix="costtrack-charts-"))
    try:
        yield scratch, out.stem
        for png in scratch.glob("*.png"):
            shutil.move(str(png), str(out.parent / png.name))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _context(database_url: str | None, command: str) -> dict[str, Any]:
    from .. import __version__

    if database_url is not None:  # given on the command line: the command to regenerate names it too (password masked)
        command += f" {_common.database_flag(database_url)}"
    return {"version": __version__, "database": _common.display_url(_common.resolve_database_url(database_url)),
            "command": command}  # fmt: skip


def _pricebook(prices_file: Path | None) -> Any:
    from ..pricing import PriceBook

    return PriceBook(prices_file)


# --------------------------------------------------------------------------- audit


@app.command("audit")
def audit(
    output: Annotated[str, typer.Option("--output", "-o", help="Markdown file to write ('-': print it); charts go beside it.")] = "docs/optimization-audit.md",
    since: Annotated[str, typer.Option(help="Records newer than this: 30d, 7d, 24h, or an ISO date.")] = "30d",
    until: Annotated[Optional[str], typer.Option(help="Records older than this ISO date or datetime (default: now).")] = None,
    cache_ttl: Annotated[str, typer.Option("--cache-ttl", help="TTL of the response cache the duplicate replay simulates.")] = "1h",
    hardware: Annotated[str, typer.Option(help="Self-hosted GPU profile of the breakeven (rtx4090, a100_40gb, cloud_gpu).")] = "rtx4090",
    charts: Annotated[bool, typer.Option("--charts/--no-charts", help="Write PNG charts beside the document (needs matplotlib).")] = True,
    template: TemplateOption = None,
    prices_file: PricesOption = None,
    database_url: _common.DatabaseOption = None,
) -> None:
    """Write docs/optimization-audit.md: current state, opportunities with savings, plan, cost calculator."""
    from ..reports.audit import AuditOptions, build_audit
    from ..reports.calc import load_hardware
    from ..reports.charts import write_charts
    from ..reports.render import check, render
    from ..reports.simulate import parse_duration

    with errors_to_exit():
        now = datetime.now(timezone.utc)
        start, end = parse_period(since, until, now)
        ttl = parse_duration(cache_ttl)
        _common.check_output(output, database_url)
        check("audit", template)
        if load_hardware().get(hardware) is None:
            names = ", ".join(sorted(load_hardware().profiles))
            raise ConfigError(f"--hardware {hardware!r} is not a hardware profile: use one of {names}")
        book = _pricebook(prices_file)
        engine = open_records(database_url, start, end, f"since {since}" + (f" until {until}" if until else ""))
        period_args = f"--since {shlex.quote(since)}" + (f" --until {shlex.quote(until)}" if until else "")
        # The commands the audit prints read the same records at the same prices: named when they were named here.
        database_args = _common.database_flag(database_url) if database_url is not None else ""
        options = AuditOptions(cache_ttl=ttl, hardware=hardware, period_args=period_args, database_args=database_args,
                               prices_args=_shaping_args(("--prices-file", prices_file)).strip())  # fmt: skip
        with delayed_progress(11, "auditing") as step:
            result = build_audit(engine, book, since=start, until=end, options=options, now=now, progress=step)
            command = f"costtrack report audit -o {shlex.quote(output)} {period_args}" + _shaping_args(
                ("--cache-ttl", cache_ttl if cache_ttl != "1h" else None), ("--hardware", hardware if hardware != "rtx4090" else None),
                ("--no-charts", not charts), ("--template", template), ("--prices-file", prices_file))  # fmt: skip
            with _staged_charts(output, charts) as (chart_dir, stem):
                chart_list: list[Any] = []
                note = "Charts are written only beside a file (-o FILE)." if output == "-" else "Charts skipped (--no-charts)."
                if chart_dir is not None:
                    chart_list, note = write_charts(result, chart_dir, stem)
                step("charts")
                text = render("audit", {"audit": result, "charts": chart_list, "charts_note": note,
                                        **_context(database_url, command)}, template)  # fmt: skip
                path = _write(text, output, "the audit")
            step("document")
    if path is not None:
        extra = f" and {len(chart_list)} chart{'s' if len(chart_list) != 1 else ''}" if chart_list else ""
        from ..format import pct, usd

        saved = result.savings_monthly_usd
        share = pct(saved / result.baseline_monthly_usd) if result.baseline_monthly_usd else "-"
        found = len(result.opportunities)
        plural = "y" if found == 1 else "ies"
        if result.spend_known and result.top:
            spend = (f"{usd(result.baseline_monthly_usd)}/month; {found} opportunit{plural}, the top "
                     f"{len(result.top)} save {usd(saved)}/month ({share})")
        elif result.spend_known:
            spend = f"{usd(result.baseline_monthly_usd)}/month; " + (
                f"{found} opportunit{plural}, none with a measurable saving" if found else "no opportunity found")
        else:  # unpriced calls alone: an unknown cost, not $0
            spend = f"spend unknown (unpriced calls); {found} opportunit{plural}"
        _common.console(stderr=True).print(f"Wrote {path}{extra}: {result.calls:,} calls, {spend}.", highlight=False,
                                           markup=False, soft_wrap=True)  # fmt: skip


# --------------------------------------------------------------------------- results


def _selection(label: str, period: str | None, tag: str | None, flag: str) -> Selection | None:
    from ..periods import parse_range
    from ..reports.results import Selection

    if period is None and tag is None:
        return None
    start, end = parse_range(period, f"--{flag}") if period else (None, None)
    tags = (parse_tag(tag, f"--{flag}-tag"),) if tag else ()
    return Selection(label=label, since=start, until=end, tags=tags)


@app.command("results")
def results(
    before: Annotated[Optional[str], typer.Option(help="The baseline period START..END (ISO dates or datetimes).")] = None,
    after: Annotated[Optional[str], typer.Option(help="The optimized period START..END.")] = None,
    before_tag: Annotated[Optional[str], typer.Option("--before-tag", help="The baseline run's tag KEY=VALUE, e.g. run=baseline.")] = None,
    after_tag: Annotated[Optional[str], typer.Option("--after-tag", help="The optimized run's tag KEY=VALUE, e.g. run=optimized.")] = None,
    ab: Annotated[bool, typer.Option("--ab", help="Compare the arms of an A/B split (tags ab_test, ab_arm) with 95% confidence intervals.")] = False,
    ab_test: Annotated[Optional[str], typer.Option("--ab-test", help="With --ab: the test's name, when there are several.")] = None,
    since: Annotated[Optional[str], typer.Option(help="With --ab alone: records newer than this (30d, an ISO date); default 30d.")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Markdown file to write ('-': print it).")] = "docs/optimization-results.md",
    template: TemplateOption = None,
    prices_file: PricesOption = None,
    database_url: _common.DatabaseOption = None,
) -> None:
    """Write docs/optimization-results.md: before/after metrics, savings per optimization, A/B test."""
    from ..reports.render import check, render
    from ..reports.results import NoRecords, Selection, ab_arms, build_results, steps
    from ..reports.results.selection import shared_records

    with errors_to_exit():
        now = datetime.now(timezone.utc)
        check("results", template)
        _common.check_output(output, database_url)
        sel_before = _selection("before", before, before_tag, "before")
        sel_after = _selection("after", after, after_tag, "after")
        if ab_test is not None and not ab:
            raise ConfigError("--ab-test goes with --ab: give both (--ab compares the arms of the test it names)")
        if since is not None and (sel_before is not None or sel_after is not None):
            raise ConfigError("--since goes with --ab alone: the --before/--after sides carry their own periods or tags")
        since = since or "30d"
        engine = _common.read_engine(database_url)
        book = _pricebook(prices_file)
        ab_where: Selection | None = None
        if sel_before is None and sel_after is None:
            if not ab:
                raise ConfigError("give --before and --after (periods START..END), or --before-tag and --after-tag "
                                  "(e.g. run=baseline and run=optimized), or --ab for an A/B test")  # fmt: skip
            start, _ = parse_period(since, None, now)
            open_records(database_url, start, None, f"since {since}")
            ab_where = Selection("A/B test", since=start)
            name, control, variant = ab_arms(engine, ab_where, ab_test)
            sel_before = Selection(f"arm {control}", since=start, tags=(("ab_test", name), ("ab_arm", control)))
            sel_after = Selection(f"arm {variant}", since=start, tags=(("ab_test", name), ("ab_arm", variant)))
            ab_test = name
        elif sel_before is None or sel_after is None:
            missing = "--before (or --before-tag)" if sel_before is None else "--after (or --after-tag)"
            raise ConfigError(f"{missing} is missing: the results compare two sides")
        if sel_before.overlaps(sel_after) and ab_where is None:
            raise ConfigError("--before and --after overlap: the same records would count on both sides; give "
                              "periods that do not overlap, or different tags")  # fmt: skip
        if ab_where is None and (shared := shared_records(engine, sel_before, sel_after)):
            raise ConfigError(f"--before and --after share {shared:,} records ({sel_before.describe()}; "
                              f"{sel_after.describe()}): a record counts on one side only; give periods that do not "
                              "overlap, or tags no record has both of")  # fmt: skip
        try:
            with delayed_progress(steps(2), "comparing") as step:
                result = build_results(engine, book, sel_before, sel_after, ab=ab, ab_name=ab_test, ab_where=ab_where,
                                       now=now, progress=step)  # fmt: skip
        except NoRecords as exc:
            open_records(database_url, None, None)  # an empty database gets its own message
            raise ConfigError(f"{exc}; {_range_hint(engine)}") from None
        command = _results_command(before, after, before_tag, after_tag, ab, ab_test, output) + _shaping_args(
            ("--since", since if ab_where is not None else None), ("--template", template), ("--prices-file", prices_file))
        text = render("results", {"results": result, **_context(database_url, command)}, template)
        path = _write(text, output, "the results")
    if path is not None:
        from ..format import change, usd

        cost = next(r for r in result.rows if r.name == "Cost per 1K requests")
        verdict = f", cost per 1K requests {usd(cost.before)} → {usd(cost.after)} ({change(cost.change)})" if result.enough else (
            ": too little data for percentages")  # fmt: skip
        _common.console(stderr=True).print(f"Wrote {path}{verdict}.", highlight=False, markup=False, soft_wrap=True)


def _range_hint(engine: Engine) -> str:
    return f"the database has records {_common.record_span(engine)}"


def _shaping_args(*options: tuple[str, Any]) -> str:
    """The options given that shape a document, for its regenerate command: ` --flag value` each (a bare flag for
    True), shell-quoted; None and False are left out."""
    parts = [flag if value is True else f"{flag} {shlex.quote(str(value))}" for flag, value in options
             if value is not None and value is not False]  # fmt: skip
    return "".join(" " + part for part in parts)


def _results_command(before: str | None, after: str | None, before_tag: str | None, after_tag: str | None, ab: bool,
                     ab_test: str | None, output: str) -> str:  # fmt: skip
    parts = ["costtrack report results"]
    for flag, value in (("--before", before), ("--after", after), ("--before-tag", before_tag),
                        ("--after-tag", after_tag)):  # fmt: skip
        if value:
            parts.append(f"{flag} {shlex.quote(value)}")  # a tag value may hold spaces: the command runs as printed
    if ab:
        parts.append("--ab" + (f" --ab-test {shlex.quote(ab_test)}" if ab_test else ""))
    parts.append(f"-o {shlex.quote(output)}")
    return " ".join(parts)


# --------------------------------------------------------------------------- summary


@app.command("summary")
def summary(
    since: Annotated[str, typer.Option(help="Records newer than this: 30d, 7d, or an ISO date.")] = "30d",
    output: Annotated[str, typer.Option("--output", "-o", help="File to write ('-', the default: print it).")] = "-",
    template: TemplateOption = None,
    prices_file: PricesOption = None,
    database_url: _common.DatabaseOption = None,
) -> None:
    """Print the README's Performance section: cost per 1K requests, latency, cache hit rate, savings by strategy."""
    from ..reports.render import check, render
    from ..reports.results import Selection, build_summary, steps

    with errors_to_exit():
        now = datetime.now(timezone.utc)
        check("summary", template)
        _common.check_output(output, database_url)
        start, _ = parse_period(since, None, now)
        engine = open_records(database_url, start, None, f"since {since}")
        with delayed_progress(steps(1), "measuring") as step:
            result = build_summary(engine, _pricebook(prices_file), Selection("period", since=start), now=now,
                                   progress=step)  # fmt: skip
        text = render("summary", {"summary": result, **_context(database_url, f"costtrack report summary --since {since}")},
                      template)  # fmt: skip
        _write(text, output, "the summary")
