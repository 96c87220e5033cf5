"""The background writer: batches records into the database, never troubling the app.

``Writer.submit(record)`` appends to an in-memory buffer and returns (microseconds,
never raises). A daemon thread writes the buffer in batches of ``batch_size`` (as
soon as a batch is full, or ``flush_interval`` seconds after the oldest unwritten
record arrived), each batch one idempotent transaction.

When the database cannot be written (refused connection, read-only or missing
directory, disk error, lock held too long...), the app is unaffected:

- records stay in memory, and the writer retries with capped exponential backoff
  (``backoff_initial`` doubling up to ``backoff_max`` seconds, on the injectable clock);
- past ``max_buffer`` records in memory, and whenever ``flush()``/``close()`` asks,
  they are spilled to the *outbox*: JSON Lines files, fsync'd, one per process, in
  ``outbox_dir`` (default ``$COSTTRACK_OUTBOX_DIR``, else
  ``$XDG_CACHE_HOME/costtrack/outbox``, else ``~/.cache/costtrack/outbox``: a place that
  stays writable when the database's own directory is not);
- once the database is back, the outbox is replayed into it. Files left by processes
  that died are replayed too, by whichever writer for the same database finds them
  first: a file is claimed by taking its ``flock`` and renaming it, and the owner of
  a live file holds that lock for its whole life, so no two processes ever replay
  the same file (ids make replays idempotent anyway).

Memory stays bounded when the writer thread falls behind: past ``max_backlog`` records
waiting for it, ``submit()`` waits (at most ``backlog_wait`` seconds) until the thread
has caught up. A caller that never waits on I/O (a loop over a mocked or cached client)
can otherwise keep the GIL from the writer thread for long stretches while Calls pile up.

A record is never dropped silently: if even the outbox cannot be written, the writer
keeps what it can in memory and logs an error with the count of what it loses. Any
internal error is logged once (logger ``costtrack``), never raised into the app.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError

from ..records import CallRecord
from .database import (
    database_key,
    ensure_schema,
    forget_schema,
    make_engine,
    resolve_url,
    safe_url,
)
from .outbox import Outbox, default_outbox_dir, fallbacks, iter_outbox
from .sql import insert_records

__all__ = ["FLUSH_INTERVAL", "Pending", "Writer"]


class Pending(Protocol):
    """Something that becomes a record in the writer thread (e.g. a finished call, parsed and priced there)."""

    def to_record(self) -> CallRecord:
        """Build the record; may raise (logged once, and the item is not stored)."""
        ...

log = logging.getLogger("costtrack")

#: Seconds a record may wait in memory before its batch is written (Writer's default).
FLUSH_INTERVAL = 1.0
#: Seconds close() waits at interpreter exit before spilling what is left to the outbox.
ATEXIT_CLOSE_TIMEOUT = 30.0
#: Seconds between looks for outbox files left by dead processes (while healthy).
ORPHAN_SCAN_INTERVAL = 60.0

# Errors caused by the records themselves, not by the database being unreachable:
# retrying the batch cannot help, so records are tried one by one.
_RECORD_ERRORS = (DataError, IntegrityError, ValueError, TypeError, OverflowError, RecursionError)


def _record_error(exc: BaseException) -> bool:
    """Whether `exc` is about a record, not the database: then the batch is written one by one and only what the
    database refuses is set aside. Postgres' program limits (class 54: an endpoint too long for its index) are raised as
    OperationalError, as an outage is: told apart by their SQLSTATE."""
    if isinstance(exc, _RECORD_ERRORS):
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("54")


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    msg = str(orig if orig is not None else exc).strip()
    line = msg.splitlines()[0] if msg else ""
    return f"{type(orig if orig is not None else exc).__name__}: {line}" if line else type(exc).__name__


# --------------------------------------------------------------------------- writer

#: Seconds in one database or outbox call after which the writer counts as stuck there (a batch takes milliseconds).
HUNG_AFTER = 1.0
#: Seconds close() lets one database call hang (a locked table, a host gone) before it keeps what is unwritten in
#: the outbox and returns: container runtimes kill a process 10 s after asking it to stop.
CLOSE_STUCK_AFTER = 5.0

_LIVE: weakref.WeakSet[Writer] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    tracker = sys.modules.get("costtrack.tracker")
    if tracker is not None:
        tracker.finish_open_streams_at_exit()  # streams left open are records to write too
    for writer in list(_LIVE):
        try:
            writer.close(timeout=ATEXIT_CLOSE_TIMEOUT)
        except Exception:  # pragma: no cover - never let exit fail
            log.exception("costtrack: closing the writer at exit failed")


_child_exit_hook_pid: int | None = None


def _close_at_child_exit() -> None:
    """In a multiprocessing fork or forkserver child, also close the writers when it ends: such a child leaves
    through os._exit, which skips atexit, but its bootstrap runs threading's exit hooks (a spawn child exits normally)."""
    global _child_exit_hook_pid
    if _child_exit_hook_pid == os.getpid():
        return
    _child_exit_hook_pid = os.getpid()
    mp = sys.modules.get("multiprocessing")
    register = getattr(threading, "_register_atexit", None)  # what concurrent.futures uses for the same need
    if mp is None or register is None or mp.parent_process() is None:
        return
    if mp.get_start_method(allow_none=True) not in ("fork", "forkserver"):
        return
    try:
        register(_close_all_after_threads)
    except RuntimeError:  # the interpreter is already shutting down
        pass


def _close_all_after_threads() -> None:
    # threading's exit hooks run before it waits for the app's own (non-daemon) threads, which may still be
    # making calls: wait for them first, as a normal exit does before atexit.
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon and thread is not threading.main_thread():
            thread.join()
    _close_all_at_exit()


#: Seconds a fork waits, in all, for SQLite writer threads to leave the database (a batch takes milliseconds).
FORK_WAIT = 5.0
# Per forking thread: the locks its fork holds until the parent goes on.
_held_for_fork: dict[int, list[threading.Lock]] = {}


def _before_fork() -> None:
    """Wait for SQLite writer threads to leave the database, and hold them out of it until the fork is done.

    SQLite is not fork-safe while another thread is inside it: a child forked mid-write inherits its locks (mutexes,
    file-lock bookkeeping) held, and its own writer hung in sqlite3.connect for good. A writer waiting on a lock
    (past HUNG_AFTER: busy, not inside a write) is not waited for, nor is Postgres, whose driver has no such state.
    """
    deadline = time.monotonic() + FORK_WAIT
    held: list[threading.Lock] = []
    for writer in list(_LIVE):
        lock = getattr(writer, "_db_lock", None)
        engine = getattr(writer, "_engine", None)
        if lock is None or engine is None or engine.dialect.name != "sqlite" or not writer._thread_alive():
            continue
        if writer._in_io and time.monotonic() - writer._io_wall >= HUNG_AFTER:
            continue
        if lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            held.append(lock)
    _held_for_fork[threading.get_ident()] = held


def _after_fork_in_parent() -> None:
    """Let the writer threads the fork held out of the database go on."""
    for lock in _held_for_fork.pop(threading.get_ident(), ()):
        lock.release()


def _after_fork_in_child() -> None:
    """Start the child's writers afresh (new locks, an empty buffer: the parent owns what it had)."""
    _held_for_fork.clear()
    for writer in list(_LIVE):
        writer._reset_after_fork()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


class Writer:
    """Writes submitted records to the database from a background thread.

    `target` is a database URL (resolved with ``resolve_url``; None means the default
    resolution), an Engine (used as is, never disposed by the writer), or a callable
    returning an Engine (called in the writer thread, again after a connection
    failure). A bad URL raises DatabaseURLError here, at construction; nothing after
    construction raises.

    `flush_interval` (seconds) bounds how long a record waits in memory before its batch
    is built and written. One second rather than less: each transaction costs SQLite a
    fixed ~0.5 ms to commit, so bigger batches cost less CPU per record (Tracker picks
    0.2 s when a budget has a hard limit, see costtrack/tracker.py); `flush()`, `close()`
    and interpreter exit write at once.

    `clock` (seconds, monotonic) drives batching age and retry backoff; `sleep(seconds)`
    is how the thread waits between polls (default: an event wait that submit, flush
    and close cut short; an injected one is not cut short). Tests inject a fake clock
    and never wait in real time: flush() does not depend on the clock.

    `max_buffer` is enforced by the writer thread, so while the thread is blocked in
    one database call (at most the SQLite busy timeout or the Postgres connect
    timeout) the buffer can briefly exceed it; submit() itself never does I/O.

    `stats` counts what happened: attempts, batches, stored (records written,
    replays included), inserted (new rows), failures, spilled, replayed, rejected,
    lost. `pending` is the number of records submitted but not yet settled.

    `on_records(batch)`, when set, is called in the writer thread with each batch of
    records just stored (outbox replays included); what it raises is logged once.
    """

    def __init__(
        self,
        target: str | Engine | Callable[[], Engine] | None = None,
        *,
        batch_size: int = 1000,
        flush_interval: float = FLUSH_INTERVAL,
        max_buffer: int = 100_000,
        outbox_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        on_records: Callable[[list[CallRecord]], None] | None = None,
        max_backlog: int = 2000,
        backlog_wait: float = 0.5,
        handoff_after: float = 0.002,
    ) -> None:
        if batch_size < 1 or max_buffer < 1 or max_backlog < 1:
            raise ValueError("batch_size, max_buffer and max_backlog must be at least 1")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.max_backlog = max_backlog
        self.backlog_wait = backlog_wait
        self.handoff_after = handoff_after
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        #: Called in the writer thread with each batch just stored (or set aside as rejected),
        #: replays included; used by budgets to know what the database now holds. Errors are logged.
        self.on_records = on_records
        self._clock = clock
        self._sleep = sleep
        self.outbox_dir = Path(outbox_dir) if outbox_dir is not None else default_outbox_dir()

        self._engine: Engine | None = None
        self._owns_engine = True
        self._factory: Callable[[], Engine]
        key: str | None = None
        if isinstance(target, Engine):
            self._engine = target
            self._owns_engine = False
            self._factory = lambda: target
            key = database_key(target.url)
        elif target is None or isinstance(target, str):
            url = resolve_url(target)  # raises DatabaseURLError: a configuration error
            self._engine = make_engine(url)  # does not connect
            self._factory = lambda: make_engine(url)
            key = database_key(self._engine.url)
        elif callable(target):
            self._factory = target
        else:
            raise TypeError("Writer target must be a URL, an Engine or a callable returning an Engine")
        self._outbox = Outbox(self.outbox_dir, key or "unknown")
        self._key_known = key is not None
        self._db_name = safe_url(self._engine.url) if self._engine is not None else "the database"

        self._init_runtime_state()
        _LIVE.add(self)

    def _init_runtime_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._buffer: collections.deque[CallRecord] = collections.deque()
        self._inflight: list[CallRecord] = []
        self._first_pending_at: float | None = None
        self._woken_at: float | None = None  # when submit() woke the thread, until it runs (see _hand_off)
        self._passes = 0  # passes of the thread's loop
        self._stalled_at = -1  # a pass a hand-off gave up waiting for
        self._in_io = False  # the thread is in a database or outbox call (waiting on I/O, not on the GIL)
        self._io_since = 0.0  # when that call began (the writer's clock)
        self._io_wall = 0.0  # the same on time.monotonic: how long it has really hung (close(), forks)
        # Held by the thread while it is in the database: a fork waits for it (see _before_fork).
        self._db_lock = threading.Lock()
        #: Held while a batch is inserted and counted (on_records): a reader of the database that keeps its own count
        #: of what was stored (budgets) holds it while it reads, so that no batch commits uncounted meanwhile.
        self.store_lock = threading.Lock()
        self._submitted = 0  # records submitted
        self._refused = 0  # of those, refused by the database (kept in rejected-*.jsonl): not all are in the database
        self._settled = 0  # of those, in FIFO order: stored, in the outbox, or reported lost
        self._flush_gen = 0  # flush requests made
        self._flush_done = 0  # flush requests served
        self._closing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        # Worker-only state.
        self._failing = False
        self._backoff = 0.0
        self._next_retry = 0.0
        self._next_orphan_scan = 0.0
        self._held: list[tuple[int, Path, int]] = []  # claimed outbox files not yet replayed
        self._own_unreadable = False  # one of our own outbox files could not be read back
        self._logged: set[str] = set()
        self.stats: dict[str, int] = collections.Counter()  # type: ignore[assignment]

    # ------------------------------------------------------------------ public API

    def submit(self, record: CallRecord | Pending) -> None:
        """Queue `record` (or a Pending one, built into a record in the writer thread). Returns at once; never raises."""
        try:
            # isinstance first: hasattr() of a name a pydantic model lacks goes through its
            # __getattr__ and an AttributeError, 2 us a record.
            if not isinstance(record, CallRecord) and not hasattr(record, "to_record"):
                self._log_once("type", logging.ERROR, "costtrack: Writer.submit() got a %s, not a CallRecord; it was not recorded", type(record).__name__)
                return
            with self._lock:
                if self._closed:
                    closed = True
                else:
                    closed = False
                    buffer = self._buffer
                    buffer.append(record)
                    self._submitted += 1
                    n = len(buffer)
                    if n == 1:
                        self._first_pending_at = self._clock()
            if closed:
                self._submit_after_close(record)
                return
            # The usual case, kept short (it runs on the app's thread, once per call): the writer is not
            # waiting to be woken, nor due, and nothing calls for waiting on it.
            if 1 < n < self.batch_size and n <= self.max_backlog and n <= self.max_buffer and self._woken_at is None:
                first = self._first_pending_at
                if first is not None and self._clock() - first < self.flush_interval:
                    return
            self._after_submit(n)
        except Exception as exc:  # pragma: no cover - defensive
            self._log_once("submit", logging.ERROR, "costtrack: could not queue a record: %s", _first_line(exc))

    def _after_submit(self, n: int) -> None:
        """What a submit leaves the writer to do with `n` records queued: start or wake its thread, hand it the GIL, wait for a backlog."""
        if self._thread is None:
            self._start()
        now = self._clock()
        first = self._first_pending_at
        woken = self._woken_at
        if woken is None:
            if n == 1 or n >= self.batch_size or n > self.max_buffer or (first is not None and now - first >= self.flush_interval):
                self._woken_at = now
                self._wake.set()
        elif now - woken >= self.handoff_after and self._passes != self._stalled_at and not (self._failing or self._in_io):
            self._hand_off()
        # A writer starved of the GIL catches up if callers wait; one stuck in the database does not
        # (a database that hangs): then callers only wait once the buffer is full (max_buffer).
        if n > self.max_backlog and not self._failing and self.backlog_wait > 0 and (
            n > self.max_buffer or not (self._in_io and now - self._io_since >= HUNG_AFTER)
        ):
            self._wait_for_backlog()

    def _hand_off(self) -> None:
        """Wait (releasing the GIL) while the writer thread, woken but starved of the GIL, makes one pass.

        A caller that never blocks on I/O keeps the GIL from a woken thread for long stretches
        (each voluntary release, e.g. os.urandom in the SDK, resets the thread's claim), and
        while it waits every such release costs the caller a futex handoff. Letting the thread
        run its pass in one go costs one call a few milliseconds instead. A pass that does not
        end within backlog_wait (a database that hangs) is not waited for again.
        """
        start = self._passes
        if not self._wait_for_thread(lambda: self._passes != start, "handoffs", "handoff_timeouts"):
            self._stalled_at = start

    def _wait_for_backlog(self) -> None:
        """Block the submitting thread until the writer is down to one batch (or failing), or backlog_wait passes."""
        self._wake.set()
        self._wait_for_thread(lambda: len(self._buffer) <= self.batch_size or self._failing, "backlog_waits", "backlog_timeouts")

    def _wait_for_thread(self, done: Callable[[], bool], waited: str, timed_out: str) -> bool:
        """Block the submitting thread (releasing the GIL) until `done()`, at most backlog_wait; count the outcome in stats."""
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        deadline = time.monotonic() + self.backlog_wait
        with self._cond:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not thread.is_alive() or self._closing:
                    self.stats[timed_out] += 1
                    return False
                self._cond.wait(remaining)
            self.stats[waited] += 1
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record submitted so far is in the database or durably in the outbox.

        Returns True if all of them are in the database (and nothing this writer spilled
        is still waiting in the outbox); False if some are only in the outbox, if some
        could not be stored anywhere or were refused by the database (set aside in a
        rejected-*.jsonl file), or if `timeout` (seconds) ran out first. `timeout=0`
        only tells, without asking the thread for a pass.
        """
        try:
            if self._pid != os.getpid():
                self._reset_after_fork()
            with self._lock:
                if self._closed or (timeout is not None and timeout <= 0):
                    return self._all_stored()  # a flush that may not wait says what is stored already
            return self._flush(timeout, closing=False)[1]
        except Exception as exc:  # pragma: no cover - defensive
            self._log_once("flush", logging.ERROR, "costtrack: flush failed: %s", _first_line(exc))
            return False

    def _flush(self, timeout: float | None, closing: bool) -> tuple[bool, bool]:
        """Ask the thread for a pass and wait for it: (pass completed, all stored). Closing, stop waiting once the
        thread has hung in one database call for CLOSE_STUCK_AFTER seconds (close() then spills what it holds)."""
        with self._lock:
            if closing:
                self._closing = True
            target = self._submitted
            self._flush_gen += 1
            gen = self._flush_gen
        if self._thread is None:
            if closing and target == 0:
                return True, True
            self._start()
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._flush_done < gen:
                if not self._thread_alive():
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False, False
                if closing and self._in_io and time.monotonic() - self._io_wall >= CLOSE_STUCK_AFTER:
                    return False, False
                self._cond.wait(min(remaining, 0.25) if remaining is not None else 0.25)
            completed = self._flush_done >= gen
            ok = self._settled >= target and self.stats["lost"] == 0 and self._refused == 0
        return completed, ok and not self._outbox_pending()

    def _all_stored(self) -> bool:
        return (self._settled >= self._submitted and self.stats["lost"] == 0 and self._refused == 0
                and not self._outbox_pending())

    def close(self, timeout: float | None = None) -> bool:
        """Flush, stop the thread, release the engine. Idempotent; never raises.

        Waits up to `timeout` seconds (None: as long as it takes) for the final write, but
        no more than CLOSE_STUCK_AFTER seconds for one database call that hangs; whatever is
        still unwritten then is spilled to the outbox from this thread.
        Returns True if every record submitted was stored in the database.
        """
        try:
            with self._lock:
                if self._closed:
                    return self._all_stored()
            ok = True
            completed = True
            if self._pid == os.getpid():
                completed, ok = self._flush(timeout, closing=True)
                self._wake.set()
                if self._thread is not None and completed:
                    self._thread.join(timeout=5.0)
            with self._lock:
                self._closing = True
                self._closed = True
                leftover = list(self._inflight) + list(self._buffer)
                self._buffer.clear()
            if leftover:
                # The thread is stuck (or gone): keep what it holds in the outbox. Ids
                # make it harmless if the stuck write completes after all.
                self._spill(leftover, final=True)
                ok = False
                with self._lock:
                    self._settled = self._submitted
            self._outbox.close()
            if self._thread is None or not self._thread.is_alive():
                for fd, _path, _n in self._held:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._held = []
                if self._owns_engine and self._engine is not None:
                    self._engine.dispose()
            _LIVE.discard(self)
            return ok
        except Exception as exc:  # pragma: no cover - defensive
            self._log_once("close", logging.ERROR, "costtrack: closing the writer failed: %s", _first_line(exc))
            return False

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Records submitted but not yet stored or spilled."""
        with self._lock:
            return self._submitted - self._settled

    # ------------------------------------------------------------------ thread

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="costtrack-writer", daemon=True)
        self._thread.start()
        _close_at_child_exit()

    def _run(self) -> None:
        while True:
            self._wake.clear()
            self._woken_at = None  # the thread has the GIL: no caller needs to hand it over
            try:
                self._work()
            except Exception as exc:  # never let the thread die
                self._log_once("worker", logging.ERROR, "costtrack: internal error in the writer thread: %s", _first_line(exc), exc_info=True)
                self._mark_flushes_done()
            with self._cond:
                self._passes += 1
                self._cond.notify_all()
            with self._lock:
                if self._closing and self._flush_done >= self._flush_gen:
                    return
            delay = self._next_delay()
            if delay is None:
                self._wake.wait()
            elif delay > 0:
                if self._sleep is None:
                    self._wake.wait(delay)
                else:
                    self._sleep(delay)

    def _next_delay(self) -> float | None:
        now = self._clock()
        with self._lock:
            n = len(self._buffer)
            first = self._first_pending_at
            if self._flush_gen > self._flush_done or (self._closing and n):
                return 0
        if self._failing:
            if n or self._replay_pending():
                return max(self._next_retry - now, 0.0)
            return None
        if n:
            if n >= self.batch_size:
                return 0
            return max((first or now) + self.flush_interval - now, 0.0)
        if self._replay_pending():
            return 0
        return None

    def _work(self) -> None:
        now = self._clock()
        with self._lock:
            gen = self._flush_gen
            forced = gen > self._flush_done or self._closing
            n = len(self._buffer)
            first = self._first_pending_at
        if self._failing and now < self._next_retry:
            # Backing off: no attempt now. Move records to the outbox if asked to.
            if forced or n > self.max_buffer:
                self._spill_buffer()
            self._mark_flushes_done(gen)
            return
        due = forced or self._failing or n >= self.batch_size or (
            n > 0 and first is not None and now - first >= self.flush_interval
        )
        # Only what was queued when this pass began: calls that arrive while a batch is written wait
        # for the next pass, instead of going one small batch each, at a whole transaction apiece
        # (streams, queued one by one, went 12 to a batch). Closing, that bounds the last pass: calls
        # that keep arriving (a daemon thread) go to the outbox with what close() finds left, rather
        # than hold the exit for as long as they come (up to ATEXIT_CLOSE_TIMEOUT: past a container's
        # stop grace period).
        if n and due and not self._drain(n):
            if forced or self._buffer_len() > self.max_buffer:
                self._spill_buffer()
            self._mark_flushes_done(gen)
            return
        # The database took the buffer (or is due a retry): empty the outbox into it.
        scan = now >= self._next_orphan_scan and not self._closing  # closing: see _replay_outboxes
        if self._replay_pending() or scan:
            self._replay_outboxes(scan=scan)
            if self._failing and (forced or self._buffer_len() > self.max_buffer):
                self._spill_buffer()
        self._mark_flushes_done(gen)

    def _buffer_len(self) -> int:
        with self._lock:
            return len(self._buffer)

    def _mark_flushes_done(self, gen: int | None = None) -> None:
        with self._cond:
            if gen is None:
                gen = self._flush_gen
            if gen > self._flush_done:
                self._flush_done = gen
            self._cond.notify_all()

    # ------------------------------------------------------------------ database

    def _get_engine(self) -> Engine:
        if self._engine is None:
            engine = self._factory()
            if not isinstance(engine, Engine):
                raise TypeError(f"the engine factory returned {type(engine).__name__}, not an Engine")
            self._engine = engine
            self._db_name = safe_url(engine.url)
            if not self._key_known:
                self._outbox.key = database_key(engine.url)
                self._key_known = True
        return self._engine

    def _drain(self, limit: int | None = None) -> bool:
        """Write the buffer in batches: its first `limit` records, and any full batch. False (records kept) if the database failed."""
        while True:
            with self._lock:
                if not self._buffer:
                    self._first_pending_at = None
                    return True
                if limit is not None and limit <= 0 and (self._closing or len(self._buffer) < self.batch_size):
                    return True  # full batches still go (not when closing); a partial one of late arrivals waits
                take = min(len(self._buffer), self.batch_size)
                batch = [self._buffer.popleft() for _ in range(take)]
                self._inflight = batch
                self._first_pending_at = self._clock() if self._buffer else None
            if limit is not None:
                limit -= take
            batch = self._prepare(batch)
            with self._lock:
                self._inflight = batch
            ok = self._store(batch)
            with self._cond:
                self._inflight = []
                if ok:
                    self._settled += len(batch)
                    self._cond.notify_all()
                elif self._closed:
                    return False  # close() kept this batch in the outbox already, when this write hung
                else:
                    self._buffer.extendleft(reversed(batch))
                    if self._first_pending_at is None:
                        self._first_pending_at = self._clock()
            if not ok:
                return False

    def _prepare(self, items: list[Any]) -> list[CallRecord]:
        """Records for the submitted items: a Pending item (a finished call) is parsed and priced here,
        in the writer thread, so that work stays off the app's call. One that fails is logged and settled."""
        failed = 0
        holes = False
        for i, item in enumerate(items):
            if isinstance(item, CallRecord):
                continue
            if item is None:  # a call that failed in an earlier pass over this list (see close())
                holes = True
                continue
            try:
                # In place: each call (and what parsing it made) is freed as soon as its record exists,
                # rather than with the batch. Kept to the batch's end, a few thousand objects outlived
                # the collector's young generation and made it sweep the whole heap every few
                # thousand calls (7 us a call, in the writer thread, measured over 20,000 calls).
                items[i] = item.to_record()
            except Exception as exc:
                items[i] = None
                failed += 1
                self._log_once("prepare", logging.ERROR, "costtrack: could not build a record for a call: %s", _first_line(exc))
        records: list[CallRecord] = [item for item in items if item is not None] if failed or holes else items
        if failed:
            self.stats["unrecordable"] += failed
            with self._cond:
                self._settled += failed
                self._cond.notify_all()
        return records

    def _store(self, batch: Sequence[CallRecord], own: bool = True) -> bool:
        """Insert `batch`; True once it is stored (or set aside as rejected)."""
        with self.store_lock:
            return self._store_counted(batch, own)

    def _store_counted(self, batch: Sequence[CallRecord], own: bool) -> bool:
        self.stats["attempts"] += 1
        self._io_since = self._clock()
        self._io_wall = time.monotonic()
        self._in_io = True  # blocked on the database, not starved: no caller should wait for this pass
        try:
            with self._db_lock:
                engine = self._get_engine()
                ensure_schema(engine)
                try:
                    inserted = insert_records(engine, batch)
                except Exception as exc:
                    if not _record_error(exc):
                        raise
                    inserted = self._store_one_by_one(engine, batch, own)
        except Exception as exc:
            self._db_failed(exc)
            return False
        finally:
            self._in_io = False
        self.stats["stored"] += len(batch)
        self.stats["inserted"] += inserted
        self.stats["batches"] += 1
        self._db_ok()
        hook = self.on_records
        if hook is not None:
            try:
                hook(list(batch))
            except Exception as exc:
                self._log_once("on_records", logging.ERROR, "costtrack: the on_records hook failed: %s", _first_line(exc), exc_info=True)
        return True

    def _store_one_by_one(self, engine: Engine, batch: Sequence[CallRecord], own: bool = True) -> int:
        inserted = 0
        rejected: list[CallRecord] = []
        reason = ""
        for record in batch:
            for attempt in fallbacks(record):
                try:
                    inserted += insert_records(engine, [attempt])
                    break
                except Exception as exc:
                    if not _record_error(exc):
                        raise
                    reason = _first_line(exc)
            else:
                rejected.append(record)
        if rejected:
            self.stats["rejected"] += len(rejected)
            if own:  # this writer's own records (spilled and replayed too), not an outbox another process left
                self._refused += len(rejected)
            try:
                path = self._outbox.reject(rejected)
                where = f"kept in {path}"
            except (OSError, ValueError, RecursionError) as exc:  # not even a sanitised copy could be written
                where = f"and could not be kept ({_first_line(exc)})"
                self.stats["lost"] += len(rejected)
            log.error("costtrack: the database refused %d record(s) (%s); %s", len(rejected), reason, where)
        return inserted

    def _db_failed(self, exc: BaseException) -> None:
        self.stats["failures"] += 1
        self._backoff = self.backoff_initial if not self._failing else min(self._backoff * 2, self.backoff_max)
        self._failing = True
        self._next_retry = self._clock() + self._backoff
        if self._engine is not None:
            forget_schema(self._engine)
            if self._owns_engine:
                # A fresh engine (and pool) for the next attempt.
                with contextlib.suppress(Exception):
                    self._engine.dispose()
                self._engine = None
        self._log_once(
            "db-down",
            logging.WARNING,
            "costtrack: cannot write to %s (%s); records are kept in memory and in the outbox "
            "at %s, and will be written when it is back",
            self._db_name,
            _first_line(exc),
            self.outbox_dir,
        )

    def _db_ok(self) -> None:
        if self._failing:
            self._failing = False
            self._backoff = 0.0
            self._next_orphan_scan = 0.0
            if "db-down" in self._logged:
                self._logged.discard("db-down")
                log.warning("costtrack: %s is writable again", self._db_name)

    # ------------------------------------------------------------------ outbox

    def _replay_pending(self) -> bool:
        """Outbox files this writer should write to the database."""
        return self._outbox.count > 0 or bool(self._held)

    def _outbox_pending(self) -> bool:
        """Some of this writer's records are (or may be) only in the outbox."""
        return self._replay_pending() or self._own_unreadable

    def _spill_buffer(self) -> None:
        with self._lock:
            records = list(self._buffer)
            self._buffer.clear()
            self._first_pending_at = None
        if records:
            self._spill(records)

    def _spill(self, records: list[Any], final: bool = False) -> None:
        """Move records (taken from the head of the buffer) to the outbox, durably."""
        records = self._prepare(records)
        self._io_since = self._clock()
        self._io_wall = time.monotonic()
        self._in_io = True
        try:
            self._outbox.append(records)
        except Exception as exc:
            self._outbox_failed(records, exc, final)
            return
        finally:
            self._in_io = False
        self.stats["spilled"] += len(records)
        with self._cond:
            self._settled += len(records)
            self._cond.notify_all()

    def _outbox_failed(self, records: list[CallRecord], exc: BaseException, final: bool) -> None:
        if final:
            self.stats["lost"] += len(records)
            log.error(
                "costtrack: %d record(s) could be written neither to %s nor to the outbox at %s (%s); they are lost",
                len(records), self._db_name, self.outbox_dir, _first_line(exc),
            )
            return
        # Keep them in memory, up to max_buffer; beyond that, drop the oldest, loudly.
        with self._cond:
            self._buffer.extendleft(reversed(records))
            excess = len(self._buffer) - self.max_buffer
            dropped = 0
            while excess > 0 and self._buffer:
                self._buffer.popleft()
                excess -= 1
                dropped += 1
            if dropped:
                self._settled += dropped
                self.stats["lost"] += dropped
            if self._buffer and self._first_pending_at is None:
                self._first_pending_at = self._clock()
            self._cond.notify_all()
        self._log_once(
            "outbox-down",
            logging.ERROR,
            "costtrack: cannot write the outbox at %s (%s) while %s is unavailable; %d record(s) kept in memory",
            self.outbox_dir, _first_line(exc), self._db_name, len(records) - dropped,
        )
        if dropped:
            log.error("costtrack: dropped %d record(s): memory buffer full (max_buffer=%d) and no outbox", dropped, self.max_buffer)

    def _replay_outboxes(self, scan: bool) -> None:
        """With the database up: write this process's outbox, then files of dead processes."""
        own = self._outbox.take_own()
        if own is not None:
            fd, path = own
            self._held.append((fd, path, 0))
        if scan and self._key_known:
            self._next_orphan_scan = self._clock() + ORPHAN_SCAN_INTERVAL
            try:
                for fd, path in self._outbox.claim_orphans():
                    self._held.append((fd, path, 1))
            except Exception as exc:
                self._log_once("orphans", logging.ERROR, "costtrack: cannot read the outbox at %s: %s", self.outbox_dir, _first_line(exc))
        chunk = max(self.batch_size, 5000)
        while self._held:
            fd, path, orphan = self._held[0]
            total = bad = 0
            left = False
            try:
                for records, unreadable in iter_outbox(fd, chunk):
                    if orphan and self._closing:
                        # Closing: another process's file is left (unlocked, whole) for a process with time for it;
                        # replayed through, it held an exit past a container's stop grace period (300,000 records: 9 s).
                        left = True
                        break
                    bad += unreadable
                    if records and not self._store(records, own=not orphan):
                        return  # keep the file (and its lock) for the next attempt
                    total += len(records)
            except OSError as exc:
                # Unreadable file: let go of it (it stays on disk for a later scan).
                self._log_once("outbox-read", logging.ERROR, "costtrack: cannot read outbox file %s: %s", path, _first_line(exc))
                with contextlib.suppress(OSError):
                    os.close(fd)
                self._held.pop(0)
                if not orphan:
                    self._own_unreadable = True
                continue
            if left:
                self.stats["replayed"] += total  # what was written again is harmless: ids are kept once
                with contextlib.suppress(OSError):
                    os.close(fd)
                self._held.pop(0)
                continue
            if bad:
                log.error("costtrack: %d unreadable line(s) in outbox file %s were skipped (a process died mid-write?)", bad, path)
            self.stats["replayed"] += total
            if orphan and total:
                log.info("costtrack: wrote %d record(s) left in the outbox by another process (%s)", total, path.name)
            with contextlib.suppress(OSError):
                os.unlink(path)
            with contextlib.suppress(OSError):
                os.close(fd)
            self._held.pop(0)
            with self._cond:
                self._cond.notify_all()

    def _submit_after_close(self, record: CallRecord | Pending) -> None:
        self._log_once("after-close", logging.WARNING, "costtrack: a record was submitted after the writer was closed; it goes to the outbox at %s", self.outbox_dir)
        try:
            if not isinstance(record, CallRecord):
                record = record.to_record()  # a finished call, not built yet: the outbox stores records
            self._outbox.write_closed([record])
        except Exception as exc:
            self.stats["lost"] += 1
            log.error("costtrack: 1 record submitted after close could not be written to the outbox (%s); it is lost", _first_line(exc))

    # ------------------------------------------------------------------ misc

    def _log_once(self, key: str, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        if key in self._logged:
            log.debug(msg, *args)
            return
        self._logged.add(key)
        log.log(level, msg, *args, exc_info=exc_info)

    def _reset_after_fork(self) -> None:
        """In a forked child: the parent owns what was buffered; start afresh, lazily."""
        if self._pid == os.getpid():
            return
        for fd, _path, _orphan in self._held:  # the parent's claims stay the parent's
            with contextlib.suppress(OSError):
                os.close(fd)
        self._init_runtime_state()
        self._outbox.forget_after_fork()
        if self._engine is not None:
            if self._owns_engine:
                self._engine.dispose(close=False)
        _LIVE.add(self)


