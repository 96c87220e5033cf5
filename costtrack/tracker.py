"""Tracker: where records go (prices, background writer), and the process-wide default one."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread

from .budgets import Budget, BudgetMonitor, make_monitor
from .calls import Call
from .errors import DatabaseURLError, PricesFileError
from .forks import renew_locks_in_child, renews_in_child
from .logs import log_once
from .pricing import ENV_PRICES_FILE, PriceBook
from .records import CallRecord

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from .store.writer import Writer

__all__ = ["HARD_LIMIT_FLUSH_INTERVAL", "Tracker", "configure", "default_tracker", "flush"]

#: The flush interval when a budget has a hard limit (else the Writer's own, FLUSH_INTERVAL):
#: reservations are settled when records are built.
HARD_LIMIT_FLUSH_INTERVAL = 0.2

C = TypeVar("C")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Tracker:
    """Prices finished calls and hands their records to a background writer.

    Most apps use the process default (`costtrack.configure(...)`, then
    `costtrack.wrap(client)`); an explicit Tracker keeps records apart, e.g. in
    tests or for a second database:

        tracker = costtrack.Tracker("sqlite:///bench.db")
        client = tracker.wrap(OpenAI())
        ...
        tracker.flush()

    Records are written in batches by a background thread at most `flush_interval` seconds
    after the call (default: 1 s, or 0.2 s when a budget has a hard limit, whose reservations
    are settled as records are built); `flush()` writes at once.

    `budget` / `budgets` (costtrack.Budget) set spend limits and alerts; with neither,
    ``$COSTTRACK_MONTHLY_BUDGET_USD`` sets one (alerts only), and ``budgets=[]`` sets none.
    `budget_options` tune the monitor (see costtrack.budgets.BudgetMonitor).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        prices_file: str | os.PathLike[str] | None = None,
        store_content: bool = False,
        outbox_dir: str | os.PathLike[str] | None = None,
        flush_interval: float | None = None,
        max_buffer: int = 100_000,
        pricebook: PriceBook | None = None,
        writer: Writer | None = None,
        clock: Callable[[], float] = time.perf_counter,
        now: Callable[[], datetime] = _utcnow,
        budget: Budget | None = None,
        budgets: Iterable[Budget] | None = None,
        budget_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.database_url = database_url
        #: Why records cannot be stored (a bad URL from the environment), or None. Records are then dropped and
        #: counted, `flush()` returns False; a bad URL given here raises DatabaseURLError at once instead.
        self.unusable: str | None = None
        self._dropped = 0
        if writer is None:
            self._check_url()
        self.store_content = store_content
        self.clock = clock
        self.now = now
        # Set here as well as by the `now` setter: a subclass may define now() as a method.
        self.stamp = time.time if self.now is _utcnow else self.now
        self.pricebook = pricebook if pricebook is not None else PriceBook(prices_file)
        self._writer = writer
        self._writer_options: dict[str, Any] = {"outbox_dir": outbox_dir, "max_buffer": max_buffer}
        self._lock = threading.Lock()
        renew_locks_in_child(self)
        self._exited = False  # closed at interpreter exit: a writer made later is closed at once (see _close_at_exit)
        self._engine: Engine | None = None
        #: The budgets' monitor (None without budgets): running totals, hard limits, alerts.
        # Budgets count what the database holds: without a usable one there is nothing to check against.
        self.budget_monitor: BudgetMonitor | None = (
            make_monitor(self, budget, budgets, budget_options) if self.unusable is None else None
        )
        if flush_interval is None and self.budget_monitor is not None and self.budget_monitor.hard:
            # A hard limit counts a finished call at its (pessimistic) estimate until the writer
            # builds its record: build and write sooner than the Writer's once a second then.
            flush_interval = HARD_LIMIT_FLUSH_INTERVAL
        if flush_interval is not None:
            self._writer_options["flush_interval"] = flush_interval
        if self.budget_monitor is not None:
            self._writer_options["on_records"] = self.budget_monitor.record_stored
            if writer is not None:
                writer.on_records = self.budget_monitor.record_stored
        _live_trackers.add(self)

    @property
    def now(self) -> Callable[[], datetime]:
        """The wall clock records are stamped with (a timezone-aware datetime); injectable for tests."""
        return self._now

    @now.setter
    def now(self, now: Callable[[], datetime]) -> None:
        self._now = now
        #: What a call is stamped with on the app's thread: the default clock's float (the
        #: datetime is made in the writer thread, Call.timestamp), or the injected clock's datetime.
        self.stamp: Callable[[], datetime | float] = time.time if now is _utcnow else now

    @property
    def writer(self) -> Writer:
        """The background writer, started on the first record."""
        writer = self._writer
        if writer is None:
            from .store.writer import Writer

            # Made outside the lock: making it can run the garbage collector, and a dropped stream's finalizer then
            # records its call through this same property on this same thread (it deadlocked on the lock).
            made = Writer(self.database_url, **self._writer_options)
            with self._lock:
                if self._writer is None:
                    self._writer = made
                    if self._exited:
                        made.close()  # nothing would close it: what it is given goes to the outbox
                    made = None
                writer = self._writer
            if made is not None:
                made.close()  # another thread (or that finalizer) made one first: this one was never given a record
        return writer

    def wrap(self, client: C, **options: Any) -> C:
        """`costtrack.wrap(client, ...)` recording into this tracker (same options)."""
        from .wrap import wrap

        return wrap(client, tracker=self, **options)

    def _check_url(self) -> None:
        from .store.database import resolve_url

        try:
            resolve_url(self.database_url)
        except DatabaseURLError as exc:
            if self.database_url is not None:
                raise  # given in code: a configuration error, raised where it is made
            # From the environment, for the default tracker made inside the app's first call: never raised.
            self.unusable = str(exc)
            log_once("tracker.url", "costtrack: %s; calls are not recorded (nor checked against budgets) until it is fixed",
                     exc, level=logging.ERROR)  # fmt: skip

    def submit(self, call: Call) -> None:
        """Record a finished call; never raises into the app.

        Parsing the body, pricing and building the record happen in the writer's
        thread (`Call.to_record`), so the app's call only pays for queueing it.
        """
        if self.unusable is not None:
            self._dropped += 1
            return
        try:
            monitor = self.budget_monitor
            (self._writer or self.writer).submit(call if monitor is None else monitor.settling(call))
        except Exception:
            log_once("tracker.add", "costtrack: could not queue a record for storage", exc_info=True)

    def add(self, record: CallRecord) -> None:
        """Store a record built elsewhere (batch results, imports); never raises."""
        if self.unusable is not None:
            self._dropped += 1
            return
        try:
            if self.budget_monitor is not None:
                self.budget_monitor.record_built(record)
            self.writer.submit(record)
        except Exception:
            log_once("tracker.add", "costtrack: could not queue a record for storage", exc_info=True)

    def records(self, since: datetime | None = None, until: datetime | None = None) -> list[CallRecord]:
        """Every stored record of [since, until), oldest first, after a flush (for checks and notebooks)."""
        from .store.sql import iter_records

        self.flush()
        return list(iter_records(self._read_engine(), since=since, until=until))

    def _read_engine(self) -> Engine:
        """An engine for reads (records(), budgets), its schema checked; made on first use."""
        from .store.database import ensure_schema, make_engine, resolve_url

        engine = self._engine
        if engine is None:
            made = make_engine(resolve_url(self.database_url))  # outside the lock: see `writer`
            with self._lock:
                if self._engine is None:
                    self._engine, made = made, None
                engine = self._engine
            if made is not None:
                made.dispose()  # another thread made one first; this one never connected
        ensure_schema(engine)  # cheap once it has succeeded
        return engine

    def _renew_locks(self) -> None:
        self._lock = threading.Lock()

    def flush(self, timeout: float | None = None) -> bool:
        """Return once every record so far is stored (True), or kept in the outbox, refused by the database or lost (False)."""
        if self._writer is None:
            return not self._dropped
        return self._writer.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - flush()'s own, passed on
        """`flush()` for async code (asyncio or trio): waits in a worker thread, not on the event loop."""
        return await anyio.to_thread.run_sync(self.flush, timeout)

    def close(self) -> None:
        """Flush and stop the writer (and send pending budget alerts); later records start a new one."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if self.budget_monitor is not None:
            self.budget_monitor.close()

    async def aclose(self) -> None:
        """`close()` for async code (asyncio or trio): waits in a worker thread, not on the event loop."""
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Tracker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _close_at_exit(self) -> None:
        """close() at interpreter exit, keeping the closed writer: a record made after it (an exit hook of the app's
        that runs later, a daemon thread still calling) goes to the outbox, not to a new writer nothing would close."""
        with self._lock:
            self._exited = True
            writer = self._writer
        if writer is not None:
            from .store.writer import ATEXIT_CLOSE_TIMEOUT, Writer

            if isinstance(writer, Writer):
                writer.close(timeout=ATEXIT_CLOSE_TIMEOUT)
            else:
                writer.close()  # a stand-in given to Tracker(writer=...): its own close()
        if self.budget_monitor is not None:
            self.budget_monitor.close()


_live_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()
_default: Tracker | None = None
_default_lock = threading.Lock()


@renews_in_child
def _renew_default_lock() -> None:
    global _default_lock
    _default_lock = threading.Lock()


def default_tracker() -> Tracker:
    """The process-wide tracker (configured by `configure()`, or from the environment)."""
    global _default
    tracker = _default
    if tracker is None:
        with _default_lock:
            if _default is None:
                try:
                    _default = Tracker()
                except PricesFileError as exc:
                    # Made from the environment as the first wrapped call runs, where raising would drop every call
                    # (and make costtrack.flush() raise): the calls are recorded unpriced and it is said once why.
                    # The environment sets no hard limit (its budget only alerts), so none goes unguarded.
                    book = PriceBook.without_prices(f"${ENV_PRICES_FILE} cannot be used: {exc}")
                    log_once("pricing.unreadable", "costtrack: %s; every call is recorded unpriced (cost NULL) until "
                             "it is fixed: then `costtrack reprice` prices them", book.unreadable)  # fmt: skip
                    _default = Tracker(pricebook=book)
            tracker = _default
    return tracker


#: A setting `configure()` was not given: it keeps what an earlier call set, else the Tracker's default.
_KEEP: Any = object()
# What configure() calls have set so far, merged: each call changes only the settings it names.
_settings: dict[str, Any] = {}


def configure(
    database_url: str | None = _KEEP,
    *,
    prices_file: str | os.PathLike[str] | None = _KEEP,
    store_content: bool = _KEEP,
    outbox_dir: str | os.PathLike[str] | None = _KEEP,
    budget: Budget | None = _KEEP,
    budgets: Iterable[Budget] | None = _KEEP,
    **options: Any,
) -> Tracker:
    """Set the process default tracker; wrapped clients without an explicit tracker use it from now on.

    Each call changes the settings it names and keeps the others as earlier calls set them, so these
    two lines record into Postgres with a budget (`budget` and `budgets` are one setting: naming either
    replaces both; `budgets=[]` removes them):

        costtrack.configure(database_url="postgresql+psycopg://app@db/costs")
        costtrack.configure(budget=costtrack.Budget(monthly_usd=50, on_alert=notify))
    """
    global _default
    given = {name: value for name, value in (
        ("database_url", database_url), ("prices_file", prices_file), ("store_content", store_content),
        ("outbox_dir", outbox_dir), ("budget", budget), ("budgets", budgets),
    ) if value is not _KEEP}  # fmt: skip
    with _default_lock:
        settings = dict(_settings)
        if "budget" in given or "budgets" in given:
            settings.pop("budget", None)
            settings.pop("budgets", None)
        settings.update(given, **options)
        new = Tracker(**settings)  # a bad setting raises here, and nothing changes
        _settings.clear()
        _settings.update(settings)
        old, _default = _default, new
    if old is not None:
        old.close()
    return new


def flush(timeout: float | None = None) -> bool:
    """Return once every record of the default tracker so far is stored."""
    return default_tracker().flush(timeout)


async def aflush(timeout: float | None = None) -> bool:  # noqa: ASYNC109 - flush()'s own, passed on
    """`flush()` for async code: waits in a worker thread, not on the event loop."""
    return await default_tracker().aflush(timeout)


@atexit.register
def _close_all() -> None:
    # Records still queued at interpreter exit are written (or kept in the outbox), streams left open first.
    finish_open_streams_at_exit()
    for tracker in list(_live_trackers):
        try:
            tracker._close_at_exit()
        except Exception:
            log_once("tracker.exit", "costtrack: could not flush records at exit", exc_info=True)


def finish_open_streams_at_exit() -> None:
    """Record the streams the app left open (incomplete), if any were made: the writers' exit hooks call it too, as
    whichever of theirs and this module's runs first must."""
    transport = sys.modules.get("costtrack.transport")
    if transport is not None:
        transport.finish_open_streams()
