"""BudgetMonitor: running totals per budget, threshold alerts that fire once, and the hard limit.

    costtrack.configure(budget=costtrack.Budget(monthly_usd=50, thresholds=(0.5, 0.8, 1.0), on_alert=notify))
    costtrack.configure(budgets=[costtrack.Budget(monthly_usd=10, endpoint="/api/chat"),
                                 costtrack.Budget(monthly_usd=5, user="u42", hard_limit=True)])

How spend is known without a query per call. Each Tracker with budgets has a
:class:`BudgetMonitor` that keeps, per budget and period, in memory:

- ``db``: the scope's spend in the database at the last refresh (every process's
  records), re-read by a background thread every ``refresh_interval`` seconds;
- ``pending``: this process's records already priced but not yet stored (they are
  built in the writer thread, see :class:`Settling`);
- ``after``: this process's records stored since the last refresh;
- ``reserved``: estimates of this process's hard-limited calls in flight.

Month-to-date = db + pending + after. The writer's ``on_records`` hook moves a
record from pending to after once its batch is committed; a refresh re-reads the
database and, once the result is in, drops from ``after`` what it now includes (so
the spend does not dip while the query runs). A refresh reads holding the writer's
``store_lock`` (held while a batch is inserted and counted), so no batch commits
uncounted meanwhile: a batch committed but not yet counted would be read and counted
again. Only a store that holds the lock over a second (a database that hangs) makes a
refresh read without it, retried when a batch is stored meanwhile, and can leave a batch
counted twice, for at most one refresh interval; none is missed. Each budget also keeps its current
period's month-to-date (``now_spend``, recomputed wherever those change) and its
``reserved`` entry at hand, for the hard limit's check.

Alerts: when a threshold is reached in memory, the alert thread re-checks the
spend against the database (after flushing this process's records), then INSERTs
(budget key, period start, threshold) into ``budget_alerts``, whose primary key
makes it succeed in exactly one process, ever; that process sends the alert. So
each threshold fires once per budget per period, across processes and restarts.

Hard limit: before a call in the scope of a ``hard_limit=True`` budget is sent,
its cost is estimated (:func:`estimate_tokens`, priced as :func:`estimate_cost`),
and month-to-date + the estimates of calls in flight + this estimate must stay
within the budget, or :class:`BudgetExceeded` is raised and nothing is sent. This
runs on the app's thread before every such call, in a few microseconds: the request
is parsed once into ``Call.body`` (jiter),
per-token prices are cached per model and day, the scope test per
(endpoint, user), and no database is read (``benchmarks/bench_budgets.py``). The
check and the reservation of the estimate happen under one lock, so concurrent calls
of one process cannot slip past together; a reservation counts in the period it was
made in, and is replaced by the recorded cost once the call's record is built. Across processes, what other processes
spent reaches this one at the next refresh (sooner near the limit: within 90% of
the budget every such call wakes the refresher, at most every
``near_limit_refresh`` seconds), and their calls in flight are not seen at all: a
fleet can pass a hard limit by what it spends in about one refresh interval. The
first hard-limited call of a process waits for one read of the database, so a
restart does not start from zero (an async client's in a worker thread: see ``prepare``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from ..alerts import SINK_TIMEOUT, Alert, AlertDispatcher, LoggingSink, Sink, env_sinks
from ..errors import ConfigError
from ..forks import renew_locks_in_child
from ..logs import log_once
from ..periods import as_utc
from ..usage import Usage

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ..calls import Call
    from ..records import CallRecord
    from ..tracker import Tracker

from .budget import Budget, one_line, period_bounds, threshold_label
from .config import budgets_from_env, make_monitor
from .estimate import DEFAULT_MAX_OUTPUT_TOKENS, chat_tokens, estimate_tokens
from .refusal import refusal
from .spend import EPS, project, query_top, query_totals
from .state import BudgetStatus, Reservation, Settling, State, release

# budgets_from_env, make_monitor and BudgetStatus lived here: importing them from this module still works.
__all__ = ["BudgetMonitor", "BudgetStatus", "budgets_from_env", "make_monitor"]

_REFRESH_ATTEMPTS = 4
_STORE_WAIT = 1.0  # seconds a refresh waits for a batch being stored (a database that hangs) before it reads anyway
_NEVER = datetime.min.replace(tzinfo=timezone.utc)
_PROJECTED = "projected"
_REDELIVER_MAX = 3600.0  # seconds: the longest wait before an undelivered alert is tried again

log = logging.getLogger("costtrack")


class _Undelivered(NamedTuple):
    """An alert some sinks never took (see BudgetMonitor._undelivered)."""

    sinks: tuple[Sink, ...]
    due: datetime
    wait: float
    holds_claim: bool


class BudgetMonitor:
    """The budgets of one Tracker: running totals, reservations, refreshes, alerts (see the module docs).

    Options (``costtrack.configure(budget_options={...})`` or ``Tracker(budget_options=...)``):
    `refresh_interval` seconds between database refreshes (5); `near_limit_refresh` the
    shortest gap between refreshes that calls near a hard limit ask for (0.25);
    `alert_retries` (3), `alert_backoff` (1 s, doubling) and `alert_sleep` for failing
    sinks; `alert_timeout` seconds one attempt of a sink may take before it counts as failed (30);
    `alert_redeliver` seconds before an alert a sink never took is sent to it again
    (60, doubling up to an hour); `default_max_output_tokens` for requests without a max (4096).
    """

    def __init__(
        self,
        tracker: Tracker,
        budgets: Sequence[Budget],
        *,
        refresh_interval: float = 5.0,
        near_limit_refresh: float = 0.25,
        alert_retries: int = 3,
        alert_backoff: float = 1.0,
        alert_sleep: Callable[[float], Any] = time.sleep,
        alert_redeliver: float = 60.0,
        alert_timeout: float | None = SINK_TIMEOUT,
        default_max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
        confirm_flush_timeout: float = 5.0,
    ) -> None:
        if refresh_interval <= 0 or near_limit_refresh < 0:
            raise ConfigError("budget refresh_interval must be positive (seconds)")
        if alert_redeliver < 0:
            raise ConfigError("budget alert_redeliver must not be negative (seconds)")
        self.tracker = tracker
        self.budgets: tuple[Budget, ...] = tuple(budgets)
        keys = [b.key for b in self.budgets]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ConfigError(f"two budgets have the same key {duplicates[0]!r}: give them distinct name=...")
        extra = env_sinks()
        # Every state's current period contains [_since, _until): a call in it needs no period check per budget.
        self._since = self._until = _NEVER
        self._states = [
            State(b, tuple(b.sinks or (LoggingSink(),)) + tuple(s for s in extra if s not in b.sinks), self._periods_moved)
            for b in self.budgets
        ]
        #: The states of hard-limited budgets (checked before each call).
        self.hard: tuple[State, ...] = tuple(s for s in self._states if s.budget.hard_limit)
        self._hard_scoped = any(s.budget.scope for s in self.hard)  # else every call is in every hard budget's scope
        self._hard_by_model = any(s.budget.model is not None for s in self.hard)
        self._hard_by_tag = any(s.budget.tag is not None for s in self.hard)
        self._scopes: dict[str, dict[str | None, tuple[State, ...]]] = {}  # endpoint -> user -> hard states in scope
        self.refresh_interval = refresh_interval
        self.near_limit_refresh = near_limit_refresh
        self.default_max_output_tokens = default_max_output_tokens
        self.confirm_flush_timeout = confirm_flush_timeout
        self.dispatcher = AlertDispatcher(
            retries=alert_retries, backoff=alert_backoff, sleep=alert_sleep, sink_timeout=alert_timeout
        )
        self.alert_redeliver = alert_redeliver
        # Alerts some sink never took, by (budget key, period start, label): the sinks still owed it, when to
        # try again (tracker time), the wait after that (doubling, at most an hour), and whether this process
        # still holds the alert's claim in the database (its row could not be released). Sent when the sinks
        # are back, never lost; only the sinks that missed it get it again.
        self._undelivered: dict[tuple[str, datetime, str], _Undelivered] = {}
        # Alerts claimed in the database whose delivery is under way: released if close() cannot wait for it.
        self._sending: dict[tuple[str, datetime, str], tuple[State, datetime, str]] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._initial_lock = threading.Lock()
        renew_locks_in_child(self)
        self._reservations: dict[int, Reservation] = {}
        self._day_rates: dict[Any, tuple[Any, ...]] = {}  # model -> _rates_for_day() (of one provider)
        self._pending: dict[str, list[tuple[State, datetime, float]]] = {}
        self._stored_seq = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._initial_done = False
        self._table_missing = False
        self._fired_by = f"{socket.gethostname()}:{os.getpid()}"

    # ------------------------------------------------------------------ the app's thread

    def _renew_locks(self) -> None:
        self._lock, self._refresh_lock = threading.Lock(), threading.Lock()
        self._start_lock, self._initial_lock = threading.Lock(), threading.Lock()

    def before_send(self, call: Call) -> None:
        """Check and reserve a call's estimate against the hard-limited budgets in its scope.

        Raises BudgetExceeded (nothing is sent) when the spend so far + the estimates of
        calls in flight + this call's estimate would pass one of them. This runs on the
        app's thread before every call, so its common path is written out in one function:
        the scope test is cached per (endpoint, user), the request is parsed once into
        ``Call.body`` (jiter), per-token prices are cached per model and day, and the check
        and the reservation are one pass under the lock over each budget's running figures.
        """
        if self._thread is None:
            self._start()
        matching: Sequence[State] = self.hard
        if self._hard_scoped:
            ctx = call.context
            endpoint = ctx.endpoint or call.endpoint or call.operation
            user = ctx.user
            if type(endpoint) is not str or (user is not None and type(user) is not str):
                # As the record will have them (a user id given as a number never met its budget's "42").
                endpoint, user = str(endpoint), None if user is None else str(user)
            if self._hard_by_tag:
                matching = [s for s in matching if s.budget.matches_context(endpoint, user, ctx.tags)]
            else:
                users = self._scopes.get(endpoint)
                found = users.get(user) if users is not None else None
                matching = found if found is not None else self._scope_for(endpoint, user)
            if not matching:
                return
        if not self._initial_done:
            self._initial_refresh()  # once: what earlier runs and other processes spent
        # The estimate: _estimate(), with its common case written out here (one function call less per call
        # on the app's thread): a chat request, for a model whose per-token rates are cached.
        model: Any = None
        body: Any = call.body if call.operation == "chat.completions" else None
        cached = None
        if type(body) is dict:
            model = body.get("model")
            if type(model) is str:
                cached = self._day_rates.get(model)
        if (cached is not None and cached[2] is not None and cached[5] == call.provider
                and cached[0] <= call.timestamp < cached[1]):
            try:
                tokens_in, tokens_out = chat_tokens(body, self.default_max_output_tokens)
                amount = tokens_in * cached[2] + tokens_out * cached[3]
            except Exception:  # noqa: BLE001 - a malformed body: _estimate logs it and counts $0
                model, amount = self._estimate(call, body)
        else:
            model, amount = self._estimate(call, body)
        if self._hard_by_model:
            matching = [s for s in matching if s.budget.matches_requested(model)]
            if not matching:
                return
        # Check and reserve, atomically for this process.
        now = call.timestamp
        held: list[list[float]] = []
        wake = False
        lock = self._lock
        lock.acquire()
        try:
            if not self._since <= now < self._until:
                self._roll_all(now)
            for s in matching:
                entry = s.now_reserved
                total = s.now_spend + entry[0] + amount
                if total > s.near:  # within 10% of the limit (far from it, one comparison)
                    if total > s.limit:
                        for taken in held:  # take back what this call reserved in the budgets before this one
                            release(taken, amount)
                        denied = (s, s.start, s.now_spend, entry[0])
                        break
                    wake = True
                entry[0] += amount
                entry[1] += 1.0
                held.append(entry)
            else:
                self._reservations[id(call)] = (call, amount, held)
                denied = None
        finally:
            lock.release()
        if wake:
            self._wake.set()  # near a limit: let the refresher read what other processes spent, now
        if denied is not None:
            raise refusal(call, amount, *denied)  # type: ignore[arg-type]

    def _scope_for(self, endpoint: str, user: str | None) -> tuple[State, ...]:
        """The hard-limited budgets whose endpoint and user scope take this call (no tag scopes), cached."""
        found = tuple(s for s in self.hard if s.budget.matches_context(endpoint, user, {}))
        users = self._scopes.get(endpoint)
        if users is None or len(users) >= 4096:  # many users: start over rather than grow
            if len(self._scopes) >= 4096:
                self._scopes.clear()
            users = self._scopes[endpoint] = {}
        users[user] = found
        return found

    def _roll_all(self, now: datetime) -> None:
        """Move every budget to the period of `now` and note the span they all hold (holds the lock)."""
        for s in self._states:
            s.roll(now)
        self._since = max(s.start for s in self._states)  # type: ignore[type-var]
        self._until = min(s.end for s in self._states)  # type: ignore[type-var]

    def _periods_moved(self) -> None:
        self._until = _NEVER  # the next call looks at every budget's period again

    def estimate(self, call: Call) -> float:
        """The call's estimated cost in USD (0 when its model has no known price), as the hard limit reserves it."""
        return self._estimate(call)[1]

    def _estimate(self, call: Call, body: Any = None) -> tuple[str | None, float]:
        """(model asked for, estimated cost in USD): :func:`estimate_tokens` of the request, priced in
        floats from rates cached per model and day.

        The request is parsed into ``Call.body`` (jiter, 4-5x faster than json.loads on a chat request,
        see costtrack/fastjson.py), shared with the transport until the call ends.
        """
        model: Any = None
        try:
            if type(body) is not dict:
                body = call.body
            operation = call.operation
            if operation == "chat.completions":
                tokens_in, tokens_out = chat_tokens(body, self.default_max_output_tokens)
            else:
                tokens_in, tokens_out = estimate_tokens(operation, body, default_max_output=self.default_max_output_tokens)
            model = body.get("model")
            if type(model) is not str:
                model = None
            at = call.timestamp
            cached = self._day_rates.get(model)
            if cached is None or cached[5] != call.provider or not cached[0] <= at < cached[1]:
                cached = self._day_rates[model] = self._rates_for_day(call.provider, model, at)
            if cached[2] is not None:
                return model, tokens_in * cached[2] + tokens_out * cached[3]
            rates = cached[4]
            if rates is None:
                log_once(f"budgets.unpriced:{model}",
                         "costtrack: model %r has no known price: its calls cannot be estimated against hard-limited "
                         "budgets (counted as $0 until recorded)", model)  # fmt: skip
                return model, 0.0
            # Long-context tiers: the exact path.
            return model, float(self.tracker.pricebook.cost_of(rates, Usage(input=tokens_in, output=tokens_out)))
        except Exception:  # noqa: BLE001 - an estimate never fails the call: logged, counted as $0
            log_once("budgets.estimate", "costtrack: could not estimate a call's cost for its budget; counted as $0", exc_info=True)
            return model, 0.0

    def _rates_for_day(self, provider: str, model: Any, at: datetime) -> tuple[Any, ...]:
        """(day start, day end, USD per input token, per output token, Rates, provider) for the UTC day of
        `at`; the per-token floats are None when the model is unpriced or has long-context tiers."""
        day, next_day = period_bounds("day", at)
        rates = self.tracker.pricebook.rates(provider, model, at) if isinstance(model, str) and model else None
        if rates is None or rates.per_hour is not None:
            return (day, next_day, None, None, None, provider)
        if rates.tiers:
            return (day, next_day, None, None, rates, provider)
        return (day, next_day, float(rates.input) / 1e6, float(rates.output) / 1e6, rates, provider)

    def settling(self, call: Call) -> Settling:
        """What the tracker queues for a finished call: building its record settles its reservation."""
        return Settling(call, self)

    def take_reservation(self, call: Call) -> Reservation | None:
        """A call's reservation, taken (once: None after)."""
        reservations = self._reservations
        return reservations.pop(id(call), None) if reservations else None

    def release(self, call: Call) -> None:
        """Give back a call's reservation without a record (a redirect hop, sent on as another request). Never raises."""
        reservation = self.take_reservation(call)
        if reservation is not None:
            self.record_built(None, reservation)

    # ------------------------------------------------------------------ the writer's thread

    def record_built(self, record: CallRecord | None, reservation: Reservation | None = None) -> None:
        """A record was priced (not yet stored): count it, release its call's reservation. Never raises."""
        try:
            if self._thread is None:
                self._start()
            cost = record.cost_usd if record is not None else None
            matched = [s for s in self._states if s.budget.matches_record(record)] if cost and record is not None else []
            jobs: list[tuple[State, datetime, datetime, str, float | None]] = []
            with self._lock:
                if reservation is not None:
                    amount = reservation[1]
                    for entry in reservation[2]:
                        release(entry, amount)
                if matched:
                    assert record is not None and cost is not None
                    entries = []
                    for s in matched:
                        start = s.start_for(record.timestamp)
                        s.pending[start] = s.pending.get(start, 0.0) + cost
                        s.sync()
                        entries.append((s, start, cost))
                        if start == s.start:
                            self._check(s, jobs)
                    self._pending[record.id] = entries
            self._submit(jobs)
        except Exception:  # noqa: BLE001 - counting never breaks the writer
            log_once("budgets.record", "costtrack: could not count a record against its budgets", exc_info=True)

    def record_stored(self, records: list[CallRecord]) -> None:
        """The writer's on_records hook: these records are now in the database. Never raises."""
        try:
            jobs: list[tuple[State, datetime, datetime, str, float | None]] = []
            with self._lock:
                self._stored_seq += 1
                for record in records:
                    entries = self._pending.pop(record.id, None)
                    if entries is not None:
                        for s, start, cost in entries:
                            s.pending[start] = s.pending.get(start, 0.0) - cost
                            s.after[start] = s.after.get(start, 0.0) + cost
                        continue
                    cost = record.cost_usd
                    if not cost:
                        continue
                    # Not counted yet (e.g. replayed from another process's outbox): new spend.
                    for s in self._states:
                        if s.budget.matches_record(record):
                            start = s.start_for(record.timestamp)
                            s.after[start] = s.after.get(start, 0.0) + cost
                            s.sync()
                            if start == s.start:
                                self._check(s, jobs)
            self._submit(jobs)
        except Exception:  # noqa: BLE001 - counting never breaks the writer
            log_once("budgets.stored", "costtrack: could not count stored records against their budgets", exc_info=True)

    # ------------------------------------------------------------------ refreshing from the database

    def _engine(self) -> Engine:
        return self.tracker._read_engine()

    def refresh(self) -> bool:
        """Re-read every budget's spend from the database, then check thresholds and projections.

        Returns False (and keeps the previous figures) when the database cannot be read.
        """
        with self._refresh_lock:
            try:
                engine = self._engine()
            except Exception as exc:  # noqa: BLE001 - the database being down must not stop the refresher
                log_once("budgets.refresh", "costtrack: cannot read budget spend from the database (%s); using what this process knows", one_line(exc))
                return False
            now = as_utc(self.tracker.now())
            states = self._states
            # A batch the writer has committed but not yet counted (its hook runs after the commit) would be in the
            # query's result and then counted again: the query runs between two of the writer's stores, holding
            # them off (a store takes milliseconds; one that hangs is not waited for past _STORE_WAIT).
            writer = self.tracker._writer  # none yet: nothing is being stored
            store_lock = getattr(writer, "store_lock", None)
            starts: list[datetime] | None = None
            for attempt in range(_REFRESH_ATTEMPTS):
                held = store_lock is not None and store_lock.acquire(timeout=_STORE_WAIT)
                try:
                    starts = self._read_spend(engine, now, held or attempt == _REFRESH_ATTEMPTS - 1)
                except Exception as exc:  # noqa: BLE001 - the database being down must not stop the refresher
                    log_once("budgets.refresh", "costtrack: cannot read budget spend from the database (%s); using what this process knows", one_line(exc))
                    return False
                finally:
                    if held:
                        store_lock.release()  # type: ignore[union-attr]
                if starts is not None:
                    break
            assert starts is not None
            for s, start in zip(states, starts):
                if s.loaded != start:
                    self._load_fired(engine, s, start)
            jobs: list[tuple[State, datetime, datetime, str, float | None]] = []
            self._redeliver_due(now)
            with self._lock:
                for s in states:
                    if s.retry:
                        s.fired -= s.retry
                        for start, label in s.retry:
                            # A past period's threshold alert is sent again as it was (its figures are final);
                            # the current period's are found again by _check. A past projection is moot.
                            if start != s.start and label != _PROJECTED:
                                t = next((t for t in s.budget.thresholds if threshold_label(t) == label), None)
                                if t is not None:
                                    jobs.append((s, start, period_bounds(s.budget.period, start)[1], label, t))
                        s.retry.clear()
                    if s.start is not None:
                        self._check(s, jobs, now=now)
            self._submit(jobs)
            return True

    def _read_spend(self, engine: Engine, now: datetime, final: bool) -> list[datetime] | None:
        """One read of every budget's spend; its periods' starts, or None when a batch was stored while it ran (read
        again) unless `final` (the writer's stores held off, or the last attempt: the result is kept)."""
        states = self._states
        with self._lock:
            seq = self._stored_seq
            starts = [s.roll(now) for s in states]
            # Stored before this point = committed before the query below: it will include them.
            # They stay counted in `after` until the result replaces them (no dip while it runs).
            stored = [s.after.get(start, 0.0) for s, start in zip(states, starts)]
        results = [query_totals(engine, s.budget, start, s.end, now) for s, start in zip(states, starts)]  # type: ignore[arg-type]
        with self._lock:
            # A batch stored while the query ran may or may not be in its result: ask again. A last attempt with the
            # writer's stores not held off keeps the result (such a batch counted twice until the next refresh).
            if self._stored_seq != seq and not final:
                return None
            mono = time.monotonic()
            for s, start, amount, r in zip(states, starts, stored, results):
                left = s.after.get(start, 0.0) - amount
                if left > EPS or left < -EPS:
                    s.after[start] = left
                else:
                    s.after.pop(start, None)
                s.db_start, s.db_spend, s.db_window, s.db_first = start, r.spend, r.window_spend, r.window_first
                s.refreshed = mono
                s.sync()
        return starts

    @property
    def ready(self) -> bool:
        """The refresher runs and the first read of the database is done: before_send reads nothing."""
        return self._initial_done and self._thread is not None

    def prepare(self) -> None:
        """Start the refresher and make the first read of the database (what before_send does on its first call), so an
        async client can do them in a worker thread rather than on its event loop."""
        if self._thread is None:
            self._start()
        self._initial_refresh()

    def _initial_refresh(self) -> None:
        with self._initial_lock:
            if not self._initial_done:
                self.refresh()  # a failure is logged: the in-memory totals are used meanwhile
                self._initial_done = True

    def _load_fired(self, engine: Engine, s: State, start: datetime) -> None:
        from sqlalchemy import select

        from ..store.schema import budget_alerts as t

        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(t.c.threshold).where(t.c.budget_key == s.budget.key, t.c.period_start == start)
                ).scalars().all()
        except Exception as exc:  # noqa: BLE001 - reported; read again at the next refresh
            self._alerts_table_problem(engine, exc)
            return
        with self._lock:
            s.fired.update((start, label) for label in rows)
            s.loaded = start

    def _alerts_table_problem(self, engine: Engine, exc: BaseException) -> None:
        try:
            from sqlalchemy import inspect

            missing = not inspect(engine).has_table("budget_alerts")
        except Exception:  # noqa: BLE001 - unknown: reported as a failure, not a missing table
            missing = False
        if missing:
            self._table_missing = True
            log_once("budgets.table", "costtrack: the database has no budget_alerts table: run `costtrack db upgrade`; "
                     "until then each process sends its own budget alerts (once per process)")  # fmt: skip
        else:
            log_once("budgets.alerts-db", "costtrack: cannot read or write budget alert state (%s)", one_line(exc))

    # ------------------------------------------------------------------ thresholds and alerts

    def _check(self, s: State, jobs: list[Any], now: datetime | None = None) -> None:
        """Queue alerts for thresholds (and, with `now`, the projection) newly reached. Holds the lock."""
        start = s.start
        spend = s.spend(start)  # type: ignore[arg-type]
        amount = s.amount
        fired = s.fired
        for t in s.budget.thresholds:
            if spend + EPS >= t * amount:
                key = (start, threshold_label(t))
                if key not in fired:
                    fired.add(key)  # type: ignore[arg-type]
                    jobs.append((s, start, s.end, key[1], t))
        if now is not None and s.budget.projection and s.end is not None:
            local = s.pending.get(start, 0.0) + s.after.get(start, 0.0)  # type: ignore[arg-type]
            window = (s.db_window if s.db_start == start else 0.0) + local
            projected = project(spend, window, s.db_first, now, s.budget.period, s.end)
            s.projected = projected
            key = (start, _PROJECTED)
            if projected > amount + EPS and spend < amount and key not in fired:
                fired.add(key)  # type: ignore[arg-type]
                jobs.append((s, start, s.end, _PROJECTED, None))

    def _submit(self, jobs: list[tuple[State, datetime, datetime, str, float | None]]) -> None:
        for s, start, end, label, threshold in jobs:
            self.dispatcher.submit(lambda s=s, start=start, end=end, label=label, t=threshold: self._fire(s, start, end, label, t))

    def _unfire(self, s: State, start: datetime, label: str) -> None:
        """Not sent after all: check it again after the next successful refresh (not at every record,
        which while the database is down would queue a job per call)."""
        with self._lock:
            s.retry.add((start, label))

    def _fire(self, s: State, start: datetime, end: datetime, label: str, threshold: float | None) -> None:
        """In the alert thread: confirm against the database, claim the alert, and send it if this process won."""
        b = s.budget
        try:
            self.tracker.flush(timeout=self.confirm_flush_timeout)
            engine = self._engine()
            now = as_utc(self.tracker.now())
            totals = query_totals(engine, b, start, end, now)
        except Exception as exc:  # noqa: BLE001 - the alert is tried again
            self._unfire(s, start, label)  # tried again at the next refresh
            log_once(f"budgets.confirm:{b.key}", "costtrack: cannot check budget %r against the database (%s); "
                     "its alert will be tried again", b.key, one_line(exc))  # fmt: skip
            return
        with self._lock:
            local = max(s.pending.get(start, 0.0), 0.0)
        spend = totals.spend + local
        projected = project(spend, totals.window_spend + local, totals.window_first, now, b.period, end)
        if threshold is not None and spend + EPS < threshold * s.amount:
            self._unfire(s, start, label)  # counted twice in memory for a moment: not reached yet
            return
        if threshold is None and not (projected > s.amount + EPS and spend < s.amount):
            self._unfire(s, start, label)
            return
        key = (b.key, start, label)
        with self._lock:
            owed = self._undelivered.get(key)
        if owed is not None and owed.due > now:
            return  # queued twice while it was being sent (a refresh saw the old due time): its next try is set
        claimed = True if owed is not None and owed.holds_claim else self._claim(engine, s, start, label, spend, now)
        if claimed is None:
            self._unfire(s, start, label)
            return
        if not claimed:
            with self._lock:
                self._undelivered.pop(key, None)
            return  # another process (or an earlier run) sent it
        try:
            top_endpoints = query_top(engine, b, start, end, "endpoint")
            top_models = query_top(engine, b, start, end, "model")
        except Exception:  # noqa: BLE001 - the alert goes out without its top lists
            top_endpoints, top_models = [], []
        alert = Alert(
            budget=b.key, budget_usd=s.amount, period=b.period, period_start=start, period_end=end, scope=b.scope,
            kind="threshold" if threshold is not None else "projected", threshold=threshold,
            month_to_date_usd=spend, projected_month_end_usd=projected, percent_used=spend / s.amount * 100.0,
            top_endpoints=top_endpoints, top_models=top_models, hard_limit=b.hard_limit, at=now,
        )  # fmt: skip
        sinks = s.sinks if owed is None else owed.sinks
        with self._lock:
            self._sending[key] = (s, start, label)
        try:
            failed = self.dispatcher.deliver_each(alert, sinks)
        finally:
            with self._lock:
                self._sending.pop(key, None)
        if not failed:
            with self._lock:
                self._undelivered.pop(key, None)
            return
        # Released, so that this process or another (after a restart, say) claims and sends it again.
        released = self._release(engine, s, start, label)
        wait = self.alert_redeliver if owed is None else min(owed.wait * 2, _REDELIVER_MAX)
        with self._lock:
            self._undelivered[key] = _Undelivered(tuple(failed), now + timedelta(seconds=wait), wait, not released)
        log.warning("costtrack: budget %r's %s alert reached %d of %d sinks; it is sent to the others again in %gs",
                    b.key, label, len(sinks) - len(failed), len(sinks), wait)  # fmt: skip

    def _redeliver_due(self, now: datetime) -> None:
        """Queue again (at this refresh) the undelivered alerts whose wait is over, past periods' included."""
        if not self._undelivered:
            return
        with self._lock:
            for s in self._states:
                for key in [k for k in self._undelivered if k[0] == s.budget.key]:
                    # A past period's too: an alert missed just before the month ended is still news to the sink.
                    if self._undelivered[key].due <= now:
                        s.retry.add((key[1], key[2]))

    def _release(self, engine: Engine, s: State, start: datetime, label: str) -> bool:
        """Delete this process's claim on an alert it could not deliver; False if the database refused."""
        from sqlalchemy import delete

        from ..store.schema import budget_alerts as t

        if self._table_missing:
            return True
        stmt = delete(t).where(t.c.budget_key == s.budget.key, t.c.period_start == start, t.c.threshold == label,
                               t.c.fired_by == self._fired_by)  # fmt: skip
        try:
            with engine.begin() as conn:
                conn.execute(stmt)
        except Exception as exc:  # noqa: BLE001 - the claim is kept: this process sends the alert again itself
            self._alerts_table_problem(engine, exc)
            return self._table_missing
        return True

    def _claim(self, engine: Engine, s: State, start: datetime, label: str, spend: float, now: datetime) -> bool | None:
        """INSERT the alert's row: True if this process inserted it (and sends the alert), False if it was
        there already, None if the database failed (tried again later)."""
        from ..store.schema import budget_alerts as t

        if self._table_missing:
            return True  # no shared state to claim from: this process's own once-only set decides
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        values = {"budget_key": s.budget.key, "period_start": start, "threshold": label, "fired_at": now,
                  "spend_usd": spend, "budget_usd": s.amount, "fired_by": self._fired_by}  # fmt: skip
        keys = ["budget_key", "period_start", "threshold"]
        stmt = insert(t).values(**values).on_conflict_do_nothing(index_elements=keys).returning(t.c.threshold)
        try:
            with engine.begin() as conn:
                # A row back: this INSERT created it (rowcount is not reliable across drivers).
                return conn.execute(stmt).first() is not None
        except Exception as exc:  # noqa: BLE001 - reported; None: tried again later
            self._alerts_table_problem(engine, exc)
            return True if self._table_missing else None

    # ------------------------------------------------------------------ introspection and lifecycle

    def status(self, now: datetime | None = None) -> list[BudgetStatus]:
        """Each budget's current period as this process sees it (no database access)."""
        now = as_utc(now or self.tracker.now())
        out = []
        with self._lock:
            for s in self._states:
                start = s.roll(now)
                spend = s.spend(start)
                status = BudgetStatus(
                    budget=s.budget, period_start=start, period_end=s.end, spend_usd=spend,  # type: ignore[arg-type]
                    reserved_usd=s.reserved_usd(start), projected_usd=s.projected,
                    percent_used=spend / s.amount * 100.0,
                    thresholds_crossed=tuple(t for t in s.budget.thresholds if spend + EPS >= t * s.amount),
                    fired=tuple(sorted(label for st, label in s.fired if st == start)),
                )  # fmt: skip
                out.append(status)
        return out

    def check(self, timeout: float | None = 30.0) -> list[BudgetStatus]:
        """Flush this process's records, refresh from the database, and wait for the alerts that follow."""
        self.tracker.flush(timeout)
        self.refresh()
        self.dispatcher.flush(timeout)
        return self.status()

    def flush_alerts(self, timeout: float | None = 30.0) -> bool:
        """Wait until the alerts queued so far are handled (sent, or given up on)."""
        return self.dispatcher.flush(timeout)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            thread = threading.Thread(target=self._run, name="costtrack-budgets", daemon=True)
            self._thread = thread
        thread.start()

    def _run(self) -> None:
        stop, wake = self._stop, self._wake
        while not stop.is_set():
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - logged; the refresher keeps running
                log_once("budgets.thread", "costtrack: internal error while refreshing budgets", exc_info=True)
            wake.wait(self.refresh_interval)
            wake.clear()
            if stop.wait(self.near_limit_refresh):  # calls near a hard limit wake it, at most this often
                return

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the refresher and send the alerts queued; both start again on the next use."""
        with self._start_lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self._wake.clear()
        if not self.dispatcher.close(timeout):
            # An alert still being delivered (a sink retrying) keeps its claim once this process is gone, and no later
            # run would send it: released, so the next one does (this one's attempt may still deliver it too).
            with self._lock:
                sending = list(self._sending.values())
            for s, start, label in sending:
                try:
                    self._release(self._engine(), s, start, label)
                except Exception as exc:  # noqa: BLE001 - closing goes on
                    log_once("budgets.release", "costtrack: could not release an alert's claim at close: %s", one_line(exc))
