"""Budget alerts: what an alert says, and where it goes (a callable, Python logging, a webhook).

An :class:`Alert` is built by the budget monitor (``costtrack/budgets/monitor.py``) when a
budget passes one of its thresholds, or when its projected period-end spend passes
the budget. Sinks receive it in costtrack's alert thread, never on the app's thread:

- any callable ``sink(alert)``;
- :class:`LoggingSink`: a log record on the ``costtrack.alerts`` logger (WARNING);
- :class:`WebhookSink`: a JSON POST whose ``text`` field makes it a valid Slack
  incoming-webhook message; the other fields carry the alert's data.

A sink that raises (or a webhook answering an error status) is tried again
``retries`` times, waiting ``backoff``, then twice that, ... between attempts
(the ``sleep`` function is injectable), then logged as an error. Each sink runs in a
thread of its own (always the same one, so a sink may keep thread-bound state such as
a database connection): an attempt that has not returned after ``sink_timeout`` seconds
counts as failed and is not retried, and while it still runs the sink is skipped (an
alert it misses is sent again later, see the budget monitor), so a hung sink holds up
neither other alerts, other sinks nor ``close()``. A sink can never break the app's
call: it does not run there.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import queue
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .forks import renew_locks_in_child
from .logs import log

__all__ = [
    "ENV_ALERT_WEBHOOK",
    "Alert",
    "AlertDispatcher",
    "LoggingSink",
    "Sink",
    "SinkError",
    "SinkTimeout",
    "WebhookError",
    "WebhookSink",
    "as_sink",
    "env_sinks",
]

ENV_ALERT_WEBHOOK = "COSTTRACK_ALERT_WEBHOOK"

#: A sink: anything called with the Alert (its return value is ignored).
Sink = Callable[["Alert"], Any]


def _usd(value: float) -> str:
    return f"${value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"${value:,.4f}"


@dataclass(frozen=True)
class Alert:
    """One budget alert.

    `kind` is ``"threshold"`` (the budget's `threshold` fraction was reached) or
    ``"projected"`` (spend projected to the period's end passes the budget). For a
    daily or weekly budget, ``month_to_date_usd`` and ``projected_month_end_usd`` are
    the period's (day or week to date, projected to its end).
    """

    budget: str  # the budget's key: its name, or "period:amount[:scope]"
    budget_usd: float
    period: str  # "month", "week" or "day" (UTC)
    period_start: datetime
    period_end: datetime
    scope: dict[str, str]
    kind: str  # "threshold" or "projected"
    threshold: float | None  # the fraction reached (0.8), None for a projection alert
    month_to_date_usd: float
    projected_month_end_usd: float
    percent_used: float  # 0-100 (above 100 once the budget is passed)
    top_endpoints: list[tuple[str, float]] = field(default_factory=list)
    top_models: list[tuple[str, float]] = field(default_factory=list)
    hard_limit: bool = False
    at: datetime | None = None  # when it fired (UTC)

    def describe_budget(self) -> str:
        scope = ", ".join(f"{k}={v}" for k, v in self.scope.items())
        return f"{_usd(self.budget_usd)}/{self.period}" + (f" ({scope})" if scope else "")

    def text(self) -> str:
        """One human-readable message (Slack's ``text``)."""
        what = (
            f"passed {self.threshold * 100:g}% of its budget"
            if self.kind == "threshold" and self.threshold is not None
            else "is projected to pass its budget"
        )
        label = self.period_start.strftime("%Y-%m" if self.period == "month" else "%Y-%m-%d")
        lines = [
            (
                f"costtrack budget {self.budget!r} ({self.describe_budget()}) {what}: "
                f"{_usd(self.month_to_date_usd)} spent in the {self.period} of {label} UTC "
                f"({self.percent_used:.1f}%), projected {_usd(self.projected_month_end_usd)} by the {self.period}'s end."
            )
        ]
        if self.top_endpoints:
            lines.append("Top endpoints: " + ", ".join(f"{name} {_usd(usd)}" for name, usd in self.top_endpoints))
        if self.top_models:
            lines.append("Top models: " + ", ".join(f"{name} {_usd(usd)}" for name, usd in self.top_models))
        if self.hard_limit:
            lines.append("Hard limit: calls that would pass the budget are refused (costtrack.BudgetExceeded).")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, with the message in ``text`` (what the webhook posts)."""
        return {
            "text": self.text(),
            "budget": self.budget,
            "budget_usd": self.budget_usd,
            "period": self.period,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "scope": dict(self.scope),
            "kind": self.kind,
            "threshold": self.threshold,
            "month_to_date_usd": round(self.month_to_date_usd, 10),
            "projected_month_end_usd": round(self.projected_month_end_usd, 10),
            "percent_used": round(self.percent_used, 4),
            "top_endpoints": [{"endpoint": name, "usd": round(usd, 10)} for name, usd in self.top_endpoints],
            "top_models": [{"model": name, "usd": round(usd, 10)} for name, usd in self.top_models],
            "hard_limit": self.hard_limit,
            "at": self.at.isoformat() if self.at is not None else None,
        }


# --------------------------------------------------------------------------- sinks


class LoggingSink:
    """Logs each alert's text on `logger` (default ``costtrack.alerts``) at `level` (default WARNING)."""

    def __init__(self, logger: str | logging.Logger = "costtrack.alerts", level: int = logging.WARNING) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def __call__(self, alert: Alert) -> None:
        self.logger.log(self.level, "%s", alert.text(), extra={"costtrack_alert": alert.as_dict()})

    def __repr__(self) -> str:
        return f"LoggingSink({self.logger.name!r})"


class WebhookError(Exception):
    """A webhook answered with an error status."""


class SinkTimeout(Exception):
    """A sink did not return within the dispatcher's `sink_timeout`."""


class SinkError(Exception):
    """A sink raised what is not an Exception (SystemExit): a failed attempt, the alert kept for redelivery."""


#: Seconds one attempt to deliver an alert to a sink may take (a webhook's own timeout is 5 s).
SINK_TIMEOUT = 30.0


def _safe_url(url: str) -> str:
    # Webhook URLs are secrets (Slack's carry the token in the path): show the host only.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/..."


class WebhookSink:
    """POSTs ``alert.as_dict()`` as JSON to `url` (a Slack incoming webhook works as is).

    A 2xx answer is success; anything else, or a network error, raises (and the
    dispatcher tries again). The URL is never logged in full.
    """

    def __init__(self, url: str, *, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ConfigError(f"alert webhook {url!r} is not an http(s) URL: give e.g. https://hooks.slack.com/services/...")
        self.url = url
        self.timeout = timeout
        self.headers = dict(headers or {})

    def __call__(self, alert: Alert) -> None:
        import httpx2

        response = httpx2.post(self.url, json=alert.as_dict(), timeout=self.timeout, headers=self.headers)
        if not 200 <= response.status_code < 300:
            raise WebhookError(f"webhook {_safe_url(self.url)} answered HTTP {response.status_code}")

    def __repr__(self) -> str:
        return f"WebhookSink({_safe_url(self.url)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WebhookSink) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


def as_sink(value: Any) -> Sink:
    """A sink from what a user may pass: a callable, an http(s) URL, "log"/"logging", or a Logger."""
    if isinstance(value, str):
        if value in ("log", "logging"):
            return LoggingSink()
        return WebhookSink(value)
    if isinstance(value, logging.Logger):
        return LoggingSink(value)
    if callable(value):
        return value
    raise ConfigError(
        f"{value!r} is not an alert sink: give a callable taking the Alert, a webhook URL, or 'logging'"
    )


def env_sinks() -> list[Sink]:
    """The webhook named by $COSTTRACK_ALERT_WEBHOOK, if set (a bad value is logged and ignored)."""
    url = (os.environ.get(ENV_ALERT_WEBHOOK) or "").strip()
    if not url:
        return []
    try:
        return [WebhookSink(url)]
    except ConfigError as exc:
        log.error("costtrack: $%s ignored: %s", ENV_ALERT_WEBHOOK, exc)
        return []


def _sink_name(sink: Sink) -> str:
    if isinstance(sink, (LoggingSink, WebhookSink)):
        return repr(sink)
    return getattr(sink, "__qualname__", None) or type(sink).__name__


# --------------------------------------------------------------------------- delivery


class AlertDispatcher:
    """Runs alert jobs in one background thread, in order; delivers alerts to sinks with retries.

    `retries`: extra attempts per sink after a failure; `backoff`: seconds before the
    first retry, doubling after each; `sleep`: how to wait (inject a fake in tests);
    `sink_timeout`: seconds an attempt may take before it counts as failed (None: no limit).
    """

    def __init__(
        self,
        *,
        retries: int = 3,
        backoff: float = 1.0,
        sleep: Callable[[float], Any] = time.sleep,
        sink_timeout: float | None = SINK_TIMEOUT,
    ) -> None:
        if retries < 0 or backoff < 0:
            raise ConfigError("alert retries and backoff must not be negative")
        if sink_timeout is not None and not sink_timeout > 0:
            raise ConfigError(f"budget alert_timeout must be a positive number of seconds (or None), not {sink_timeout!r}")
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.sink_timeout = sink_timeout
        self._workers: dict[Any, _SinkThread] = {}  # each sink's own thread, by the sink
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition(self._lock)
        self._unfinished = 0
        #: Alerts delivered to every sink / sink attempts that failed for good.
        self.delivered = 0
        self.failed = 0
        renew_locks_in_child(self)

    def _renew_locks(self) -> None:
        """In a forked child: no alert thread, nothing queued (the parent runs what it queued), locks anew."""
        self._queue = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread = None
        self._unfinished = 0

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job` for the alert thread (started on first use). Never raises."""
        with self._lock:
            self._unfinished += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="costtrack-alerts", daemon=True)
                self._thread.start()
        self._queue.put(job)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                _close_thread_loop()
                with self._idle:
                    self._idle.notify_all()
                return
            try:
                job()
            except Exception:
                log.error("costtrack: internal error while handling a budget alert", exc_info=True)
            finally:
                with self._idle:
                    self._unfinished -= 1
                    self._idle.notify_all()

    def deliver(self, alert: Alert, sinks: Iterable[Sink]) -> bool:
        """Send `alert` to each sink (called in the alert thread); True if every sink took it."""
        return not self.deliver_each(alert, sinks)

    def deliver_each(self, alert: Alert, sinks: Iterable[Sink]) -> list[Sink]:
        """Send `alert` to each sink (called in the alert thread); the sinks that failed every attempt.

        In rounds: every sink is tried once, then the ones that failed are tried again after the backoff, so a
        failing sink's waits never delay the others' alert.
        """
        failed: list[Sink] = []
        pending = list(sinks)
        attempts = self.retries + 1
        delay = self.backoff
        for attempt in range(1, attempts + 1):
            again: list[Sink] = []
            for sink in pending:
                try:
                    self._attempt(sink, alert)
                except Exception as exc:
                    # A timed-out attempt may still deliver: another now could send the alert twice.
                    if attempt < attempts and not isinstance(exc, SinkTimeout):
                        log.warning(
                            "costtrack: alert sink %s failed (attempt %d of %d: %s); trying again in %gs",
                            _sink_name(sink), attempt, attempts, exc, delay,
                        )  # fmt: skip
                        again.append(sink)
                    else:
                        failed.append(sink)
                        self.failed += 1
                        log.error(
                            "costtrack: alert sink %s failed %d time%s (%s): %s",
                            _sink_name(sink), attempt, "" if attempt == 1 else "s", exc, alert.text().splitlines()[0],
                        )  # fmt: skip
            if not again:
                break
            try:
                self.sleep(delay)
            except Exception:
                log.debug("costtrack: the alert retry sleep failed", exc_info=True)
            delay *= 2
            pending = again
        if not failed:
            self.delivered += 1
        return failed

    def _attempt(self, sink: Sink, alert: Alert) -> None:
        """Call `sink` with `alert`, in its own thread when attempts have a time limit; raise what it raised, or
        SinkTimeout when it has not returned in time (or is still running an earlier attempt)."""
        if self.sink_timeout is None:
            try:
                _call(sink, alert)
            except BaseException as exc:  # SystemExit from a sink: a failed attempt, not the end of the alert thread
                raise _failure(exc)  # noqa: B904 - _failure chains it
            return
        # By identity, not equality (two WebhookSinks of one URL may carry different headers); a bound method is
        # made anew at each access, so it is known by its object and function.
        if isinstance(sink, (types.MethodType, types.BuiltinMethodType)):
            key: Any = (id(sink.__self__), getattr(sink, "__func__", None) or sink.__name__)
        else:
            key = id(sink)
        with self._lock:
            worker = self._workers.get(key)
            if worker is None:
                worker = self._workers[key] = _SinkThread(sink)
        worker.call(alert, self.sink_timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every job queued so far has run (True), or `timeout` seconds passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._unfinished > 0:
                if self._thread is None or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(0.5 if remaining is None else min(remaining, 0.5))
        return True

    def close(self, timeout: float | None = 10.0) -> bool:
        """Run what is queued (up to `timeout` seconds), then stop the thread; it restarts on the next submit."""
        done = self.flush(timeout)
        with self._lock:
            thread, self._thread = self._thread, None
            workers = list(self._workers.values())
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            if done:
                thread.join(timeout=1.0)
        # A sink still running a timed-out attempt keeps its thread (used again, the dispatcher skips it); the
        # others' threads end, and start anew if the sink is used again.
        for worker in workers:
            worker.stop()
        return done


_loops = threading.local()


def _call(sink: Sink, alert: Alert) -> None:
    """Call `sink` with `alert`; an async sink (`async def notify(alert)`) is run to its end here, on the event loop of
    this thread's own, the same for every attempt (its coroutine, never awaited, was taken for a delivered alert; a
    loop per attempt broke a sink keeping an async HTTP client between alerts)."""
    result = sink(alert)
    if inspect.isawaitable(result):
        loop = getattr(_loops, "loop", None)
        if loop is None or loop.is_closed():
            loop = _loops.loop = asyncio.new_event_loop()
        loop.run_until_complete(_awaited(result))


def _close_thread_loop() -> None:
    """Close the event loop `_call` made for this thread, as the thread ends."""
    loop = getattr(_loops, "loop", None)
    if loop is not None and not loop.is_closed():
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _awaited(value: Any) -> Any:
    return await value


def _failure(exc: BaseException) -> Exception:
    """What a sink raised, as the failed attempt it counts as: an Exception as it is, anything else (SystemExit,
    KeyboardInterrupt) as a SinkError, so that it never ends the thread that called the sink."""
    if isinstance(exc, Exception):
        return exc
    error = SinkError(f"the sink raised {type(exc).__name__}")
    error.__cause__ = exc
    return error


class _SinkThread:
    """One sink's thread: its attempts run there one at a time, so a sink always runs on the same thread."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        # Guards the thread and its queue: an attempt queued as close() stops an idle thread gets a new one,
        # never a queue whose thread has just been told to end (it waited out its whole time limit).
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Alert, threading.Event, list[BaseException]] | None] | None = None
        self._busy = False  # an attempt is under way (set by the caller, cleared when it returns)
        renew_locks_in_child(self)

    def _renew_locks(self) -> None:
        """In a forked child: the parent's thread is not there; the next attempt starts one of the child's own."""
        self._lock = threading.Lock()
        self._jobs = None
        self._busy = False

    @property
    def busy(self) -> bool:
        """An attempt is under way."""
        return self._busy

    def call(self, alert: Alert, timeout: float) -> None:
        """Run the sink with `alert` in this thread; raise what it raised (SinkError for what is not an Exception),
        or SinkTimeout."""
        done = threading.Event()
        outcome: list[BaseException] = []
        with self._lock:
            if self._busy:
                raise SinkTimeout("still running an earlier attempt")
            self._busy = True
            if self._jobs is None:
                self._jobs = queue.SimpleQueue()
                threading.Thread(target=self._run, args=(self._jobs,), name="costtrack-alert-sink", daemon=True).start()
            self._jobs.put((alert, done, outcome))
        if not done.wait(timeout):
            raise SinkTimeout(f"no answer in {timeout:g} s; left running")
        if outcome:
            raise _failure(outcome[0])

    def _run(self, jobs: queue.SimpleQueue[tuple[Alert, threading.Event, list[BaseException]] | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                _close_thread_loop()
                return
            alert, done, outcome = job
            try:
                _call(self.sink, alert)
            except BaseException as exc:  # handed to the alert thread, which decides
                outcome.append(exc)
            finally:
                self._busy = False
                done.set()

    def stop(self) -> bool:
        """End the thread unless an attempt is under way (True if it was idle); the next call starts a new one."""
        with self._lock:
            if self._busy:
                return False
            if self._jobs is not None:
                self._jobs.put(None)
                self._jobs = None
            return True
