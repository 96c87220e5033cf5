"""A budget's running totals, its status as reported, and a finished call settling its reservation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .budget import Budget, period_bounds
from .spend import EPS

if TYPE_CHECKING:
    from ..alerts import Sink
    from ..calls import Call
    from ..records import CallRecord
    from .monitor import BudgetMonitor


#: A call's reservation: (the call, kept so its id() cannot be reused meanwhile; the amount reserved;
#: the [amount, calls] entries of each budget's period it was reserved in). A plain tuple: it is made on
#: the app's thread for every call.
Reservation = tuple  # tuple[Call, float, list[list[float]]]


def release(entry: list[float], amount: float) -> None:
    """Take one call's reservation of `amount` back from a period's [amount, calls] (holds the lock)."""
    entry[1] -= 1.0
    entry[0] = entry[0] - amount if entry[1] > 0.0 else 0.0  # the last one out leaves no rounding behind


class State:
    """One budget's running totals (guarded by the monitor's lock)."""

    __slots__ = (
        "after",
        "amount",
        "budget",
        "db_first",
        "db_spend",
        "db_start",
        "db_window",
        "end",
        "fired",
        "limit",
        "loaded",
        "moved",
        "near",
        "now_reserved",
        "now_spend",
        "pending",
        "projected",
        "refreshed",
        "reserved",
        "retry",
        "sinks",
        "start",
    )  # fmt: skip

    def __init__(self, budget: Budget, sinks: tuple[Sink, ...], moved: Callable[[], None] = lambda: None) -> None:
        self.budget = budget
        self.amount = budget.amount_usd
        self.limit = budget.amount_usd + EPS  # a hard limit refuses a call that would pass this
        self.near = 0.9 * budget.amount_usd  # past this, calls ask the refresher for a fresh read
        self.sinks = sinks
        self.moved = moved  # called when the current period changes
        self.start: datetime | None = None
        self.end: datetime | None = None
        self.db_start: datetime | None = None  # the period db_* describe
        self.db_spend = 0.0
        self.db_window = 0.0
        self.db_first: datetime | None = None
        self.refreshed: float | None = None  # time.monotonic() of the last successful refresh
        self.loaded: datetime | None = None  # the period whose fired alerts were read from the database
        self.pending: dict[datetime, float] = {}
        self.after: dict[datetime, float] = {}
        self.reserved: dict[datetime, list[float]] = {}  # period -> [amount, calls]
        # The current period's figures, for the hard limit's check on the app's thread: spend(start),
        # kept up to date by sync() wherever pending, after or db_* change, and reserved[start].
        self.now_spend = 0.0
        self.now_reserved: list[float] = [0.0, 0.0]
        self.fired: set[tuple[datetime, str]] = set()
        self.retry: set[tuple[datetime, str]] = set()  # alerts to check again at the next successful refresh
        self.projected: float | None = None

    def _set_period(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        for table in (self.pending, self.after, self.reserved):
            for key in [k for k in table if k < start - timedelta(days=62)]:
                del table[key]
        self.fired = {f for f in self.fired if f[0] >= start - timedelta(days=62)}
        self.now_reserved = self.reserved.setdefault(start, [0.0, 0.0])
        self.sync()
        self.moved()

    def sync(self) -> None:
        """Recompute `now_spend` after pending, after or db_* changed (holds the lock)."""
        start = self.start
        self.now_spend = 0.0 if start is None else self.spend(start)

    def roll(self, now: datetime) -> datetime:
        """The current period's start, moved to `now`'s period if needed."""
        start = self.start
        if start is None or not (start <= now < self.end):  # type: ignore[operator]
            self._set_period(*period_bounds(self.budget.period, now))
        return self.start  # type: ignore[return-value]

    def start_for(self, at: datetime) -> datetime:
        """The start of the period containing `at` (moving the current period forward only)."""
        start = self.start
        if start is not None and start <= at < self.end:  # type: ignore[operator]
            return start
        new_start, new_end = period_bounds(self.budget.period, at)
        if start is None or new_start > start:
            self._set_period(new_start, new_end)
        return new_start

    def spend(self, start: datetime) -> float:
        local = self.pending.get(start, 0.0) + self.after.get(start, 0.0)
        total = (self.db_spend if self.db_start == start else 0.0) + local
        return max(0.0, total)

    def reserved_usd(self, start: datetime) -> float:
        entry = self.reserved.get(start)
        return entry[0] if entry else 0.0


@dataclass(frozen=True)
class BudgetStatus:
    """A budget's state as this process sees it (database at the last refresh + its own records)."""

    budget: Budget
    period_start: datetime
    period_end: datetime
    spend_usd: float
    reserved_usd: float
    projected_usd: float | None
    percent_used: float
    thresholds_crossed: tuple[float, ...]
    fired: tuple[str, ...]  # alerts known to have fired this period (by any process)


class Settling:
    """A finished Call on its way to the writer: building its record (in the writer thread) settles its
    budget reservation. Made on the app's thread for every call, so it only holds the two."""

    __slots__ = ("call", "monitor")

    def __init__(self, call: Call, monitor: BudgetMonitor) -> None:
        self.call = call
        self.monitor = monitor

    @property
    def reservation(self) -> Reservation | None:
        """The call's reservation, taken from the monitor (once: None after)."""
        return self.monitor.take_reservation(self.call)

    def to_record(self) -> CallRecord:
        reservation = self.reservation
        try:
            record = self.call.to_record()
        except BaseException:
            self.monitor.record_built(None, reservation)
            raise
        self.monitor.record_built(record, reservation)
        return record
