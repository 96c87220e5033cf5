"""`costtrack bench`: measure API and self-hosted endpoints side by side (latency, TTFT, throughput, errors, cost)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

from ..errors import CosttrackError
from ..format import count, usd
from . import _common

if TYPE_CHECKING:
    from rich.console import Console

    from ..bench import BenchReport, FailedTarget, LevelResult

__all__ = ["bench", "render"]

_List = Optional[list[str]]


def bench(
    target: Annotated[_List, typer.Option("--target", "-t", metavar="NAME=URL", help="NAME=URL of an OpenAI-compatible endpoint (…/v1), or NAME=anthropic:URL; repeat per target.")] = None,
    model: Annotated[_List, typer.Option("--model", "-m", metavar="NAME=MODEL", help="NAME=MODEL for each target, e.g. local=llama3.1:8b.")] = None,
    requests: Annotated[int, typer.Option("--requests", "-n", metavar="N", help="Requests per target and concurrency level.")] = 50,
    concurrency: Annotated[str, typer.Option("--concurrency", "-c", metavar="N,N,...", help="Concurrency levels, e.g. 1,4,16.")] = "1",
    prompt: Annotated[Optional[str], typer.Option("--prompt", metavar="TEXT", help="The prompt to send.")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option("--prompt-file", metavar="FILE", help="Send this file's text.", dir_okay=False)] = None,
    docs: Annotated[Optional[Path], typer.Option("--docs", metavar="DIR", help="Summarise each .txt/.md document of this directory, in turn.", file_okay=False)] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", metavar="N", help="Answer length cap.")] = 200,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Stream answers (TTFT is measured on streams only).")] = True,
    api_key_env: Annotated[_List, typer.Option("--api-key-env", metavar="NAME=VAR", help="NAME=VAR: the target's API key is in $VAR (default: $OPENAI_API_KEY / $ANTHROPIC_API_KEY for their own APIs).")] = None,
    provider: Annotated[_List, typer.Option("--provider", metavar="NAME=PROVIDER", help="NAME=PROVIDER recorded and priced (default: from the URL: openai, ollama, vllm, ...).")] = None,
    wait_ready: Annotated[_List, typer.Option("--wait-ready", metavar="NAME", help="NAME: first wait until it answers GET /models, and report that startup time.")] = None,
    ready_timeout: Annotated[float, typer.Option("--ready-timeout", metavar="SECONDS", help="Seconds --wait-ready waits at most.")] = 300.0,
    ready_interval: Annotated[float, typer.Option("--ready-interval", metavar="SECONDS", help="Seconds between --wait-ready probes.")] = 0.2,
    inject: Annotated[_List, typer.Option("--inject", metavar="NAME=SPEC", help="NAME=latency:200ms,error-rate:0.1,rate-limit-after:20,... faults injected in the client.")] = None,
    fallback: Annotated[Optional[str], typer.Option("--fallback", metavar="NAME,NAME", help="NAME,NAME,...: also run a CheapFirst chain over these targets, first one first.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS", help="Seconds per request before it counts as a timeout.")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    chart: Annotated[Optional[Path], typer.Option("--chart", metavar="FILE.png", help="Save a latency chart (PNG, needs matplotlib).", dir_okay=False)] = None,
    database_url: _common.DatabaseOption = None,
    prices_file: Annotated[Optional[Path], typer.Option("--prices-file", metavar="FILE", help="TOML price overrides, e.g. per_hour for a self-hosted model.", dir_okay=False)] = None,
) -> None:
    """Benchmark endpoints side by side: TTFT, latency p50/p95/p99, throughput, errors by type, cost per 1K requests."""
    started = time.monotonic()  # --wait-ready measures startup from here
    from .. import bench as core

    try:
        targets = core.parse_targets(target or [], model or [], api_key_envs=api_key_env or [],
                                     providers=provider or [], injects=inject or [])  # fmt: skip
        levels = core.parse_concurrency(concurrency)
        prompts = core.load_prompts(prompt, prompt_file, docs)
        if not (ready_timeout > 0 and ready_interval > 0) or math.isinf(ready_timeout) or math.isinf(ready_interval):
            _common.fail("--ready-timeout and --ready-interval must be positive")
        if chart is not None:
            _common.check_output(chart, database_url)  # `--chart b.db` made the records database a PNG
            _check_chart(chart)
        names = [t.name for t in targets]
        for name in wait_ready or []:
            if name not in names:
                _common.fail(f"--wait-ready {name}: there is no target named {name!r} (targets: {', '.join(names)})")
        chain = fallback.split(",") if fallback is not None else None
        tracker = _tracker(database_url, prices_file)
        runner = core.Bench(
            targets, tracker=tracker, requests=requests, concurrency=levels, prompts=prompts, max_tokens=max_tokens,
            stream=stream, timeout=timeout, fallback=chain,
        )  # fmt: skip
    except CosttrackError as exc:
        _common.fail(str(exc))

    err = _common.console(stderr=True)
    try:
        if wait_ready:
            with err.status(f"waiting for {', '.join(wait_ready)} to answer GET /models ..."):
                runner.wait_ready(wait_ready, start=started, timeout=ready_timeout, interval=ready_interval)
        report = _run(runner, err)
    except KeyboardInterrupt:
        tracker.close()
        err.print("costtrack: interrupted before the benchmark started")
        raise typer.Exit(130) from None
    except CosttrackError as exc:
        tracker.close()
        _common.fail(str(exc))
    tracker.close()

    if as_json:
        _common.print_json(report.as_dict())
    else:
        render(report, _common.console())
    failed = report.failed_targets()
    said = _said_by_the_error(report, failed)
    for warning in report.warnings:
        if warning not in said:
            err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if chart is not None and report.results:
        path = core.save_chart(report, chart)
        err.print(f"chart: {path}", highlight=False)
    if report.interrupted:
        err.print(f"costtrack: interrupted; partial results above, records of run {report.run_id} flushed", highlight=False)
        raise typer.Exit(130)
    if failed:
        # The run happened (results printed, requests recorded) but measured nothing for these targets: exit 1,
        # not 2, which is for a command rejected before anything is sent.
        typer.echo(f"costtrack: error: {_failure_message(failed)}", err=True)
        raise typer.Exit(1)


def _failure_message(failed: list[FailedTarget]) -> str:
    """One line: the first target none of whose requests succeeded, its first error and what to check."""
    from ..bench.results import errors_text, failure_hint

    first = failed[0]
    message = f"every request to target {first.target} failed ({errors_text(first.errors)})"
    if first.first_error:
        message += f"; first error: {first.first_error}"
    hint = failure_hint(first.errors, first.stream)
    if hint:
        message += f"; {hint}"
    if len(failed) > 1:
        message += f" (every request to {', '.join(f.target for f in failed[1:])} failed too)"
    return message


def _said_by_the_error(report: BenchReport, failed: list[FailedTarget]) -> set[str]:
    """The per-level "every request failed" warnings of the failed targets: the error line says it once."""
    names = {f.target for f in failed}
    return {
        note for r in report.results if r.target in names for note in r.notes
        if note.startswith(f"{r.target} at concurrency {r.concurrency}: every request failed")
    }  # fmt: skip


def _tracker(database_url: str | None, prices_file: Path | None) -> Any:
    """A Tracker on the database (checked and migrated now, so a bad URL fails before any request)."""
    from ..tracker import Tracker

    url = _common.resolve_database_url(database_url)
    _common.read_engine(url, create=True).dispose()
    return Tracker(url, prices_file=prices_file)


def _check_chart(path: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        _common.fail("--chart needs matplotlib: pip install matplotlib (or leave out --chart)")
    if not path.parent.exists():
        _common.fail(f"--chart {path}: the directory {path.parent} does not exist")


def _run(runner: Any, err: Console) -> BenchReport:
    """Run with a progress bar per target on stderr (when it is a terminal)."""
    if not err.is_terminal:
        return runner.run()  # type: ignore[no-any-return]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        tasks = {label: progress.add_task(label, total=runner.planned(label)) for label in runner.labels}
        runner.on_progress = lambda label: progress.advance(tasks[label])
        return runner.run()  # type: ignore[no-any-return]


_SHORT = {"rate_limit": "429", "timeout": "timeout", "connection": "conn"}


def _errors(errors: dict[str, int]) -> str:
    parts = [f"{_SHORT.get(kind, kind)}:{n}" for kind, n in errors.items() if n]
    return " ".join(parts) if parts else "0"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _cost_cell(r: LevelResult) -> str:
    """Cost per 1K requests; "unpriced" only for answers with no price, not for a level that got no answer."""
    if not r.ok:
        return "none to price"  # short enough for a 100-column terminal
    return usd(r.cost_per_1k_requests_usd) + ("*" if r.cost_basis in ("per_hour", "mixed") else "")


def render(report: BenchReport, console: Console) -> None:
    """Print the results as a table for people: targets side by side at each concurrency level."""
    from rich.table import Table

    order = {r.target: i for i, r in reversed(list(enumerate(report.results)))}
    rows = sorted(report.results, key=lambda r: (r.concurrency, order[r.target]))
    stream = any(r.stream for r in rows)
    title = f"costtrack bench {report.run_id}" + (" (interrupted: partial)" if report.interrupted else "")
    wide = console.width >= 140  # a narrow terminal gets the essential columns only
    table = Table(title=title, title_justify="left", pad_edge=False)
    table.add_column("target", no_wrap=True)
    table.add_column("model", no_wrap=True, overflow="ellipsis", max_width=24 if wide else 14)
    columns: list[tuple[str, Any]] = [
        ("conc", lambda r: str(r.concurrency)),
        ("ok/\nsent", lambda r: f"{count(r.ok)}/{count(r.requests)}"),
        ("errors", lambda r: _errors(r.errors)),
    ]
    if stream:
        columns.append(("ttft\np50 ms", lambda r: _ms(r.ttft_ms.get("p50"))))
        if wide:
            columns.append(("ttft\np95 ms", lambda r: _ms(r.ttft_ms.get("p95"))))
    columns += [("p50\nms", lambda r: _ms(r.latency_ms.get("p50"))), ("p95\nms", lambda r: _ms(r.latency_ms.get("p95")))]
    if wide:
        columns.append(("p99\nms", lambda r: _ms(r.latency_ms.get("p99"))))
    columns += [("tok/s\n/req", lambda r: _num(r.output_tokens_per_s)), ("req/s", lambda r: _num(r.requests_per_s))]
    if wide:
        columns.append(("tok/s", lambda r: _num(r.tokens_per_s)))
    columns.append(("$ per\n1K req", _cost_cell))
    if wide:
        columns.append(("client\nms/req", lambda r: "-" if r.client_cpu_ms_per_request is None else f"{r.client_cpu_ms_per_request:.2f}"))
    for header, _ in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for i, r in enumerate(rows):
        last_of_level = i + 1 < len(rows) and rows[i + 1].concurrency != r.concurrency
        table.add_row(escape(r.target), escape(r.model), *(cell(r) for _, cell in columns), end_section=last_of_level)
    console.print(table)
    if not wide:
        console.print("(a wider terminal shows TTFT p95, p99, tok/s overall and the client's CPU; --json has everything)",
                      highlight=False)  # fmt: skip
    for name, seconds in report.startup_s.items():
        console.print(f"startup: {name} answered GET /models {seconds:,.2f} s after the command started", highlight=False)
    for r in rows:
        if r.chain is not None:
            answered = ", ".join(f"{k} {v}" for k, v in (r.answered_by or {}).items())
            attempts = ", ".join(f"{k} {v}" for k, v in (r.attempts or {}).items())
            console.print(f"fallback {r.target} at concurrency {r.concurrency}: answered by {answered}; attempts {attempts}",
                          highlight=False)  # fmt: skip
        if r.injected:
            console.print(f"injected into {r.inject_spec} at concurrency {r.concurrency}: {_errors(r.injected)}", highlight=False)
    if any(r.cost_basis in ("per_hour", "mixed") for r in rows):
        console.print("*: includes a per_hour price over the measured throughput (the machine kept as busy as this run kept it)",
                      highlight=False)  # fmt: skip
