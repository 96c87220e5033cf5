"""The background writer on real SQLite and Postgres databases: batching, concurrency,
outages (the outbox), replays, and exit. Time is a fake clock; nothing sleeps."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from costtrack.errors import DatabaseURLError
from costtrack.records import CallRecord
from costtrack.store.database import database_key, make_engine
from costtrack.store.outbox import Outbox
from costtrack.store.sql import count_records, iter_records
from costtrack.store.writer import Writer


def stored(url: str) -> list[CallRecord]:
    engine = make_engine(url)
    try:
        from costtrack.store.database import ensure_schema

        ensure_schema(engine)
        return list(iter_records(engine))
    finally:
        engine.dispose()


def outbox_lines(directory: Path, prefix: str = "") -> int:
    if not directory.exists():
        return 0
    return sum(
        len(p.read_text().splitlines())
        for p in directory.glob(f"{prefix}*.jsonl")
        if not p.name.startswith("rejected-") or prefix.startswith("rejected-")
    )


def wait_for(predicate, timeout: float = 30.0) -> None:
    """Wait for the writer thread to get some work done (not for time to pass)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


@pytest.fixture
def writers():
    made: list[Writer] = []

    def make(*args, **kwargs) -> Writer:
        w = Writer(*args, **kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close(timeout=30)


# --------------------------------------------------------------------------- healthy database


def test_batches_and_flush_returns_once_stored(database_url, writers, make_record, outbox_dir, fake_clock) -> None:
    w = writers(database_url, batch_size=1000, flush_interval=3600, outbox_dir=outbox_dir, clock=fake_clock)
    recs = [make_record() for _ in range(2500)]
    for r in recs:
        w.submit(r)
    assert w.flush() is True
    # Right after flush() returns, another connection sees every record.
    assert {r.id for r in stored(database_url)} == {r.id for r in recs}
    assert w.stats["batches"] == 3 and w.stats["stored"] == 2500
    assert w.pending == 0
    assert outbox_lines(outbox_dir) == 0
    # Nothing left to wait for: even a flush that may not wait says so (it said False: review finding).
    assert w.flush(timeout=0) is True


def test_full_batches_are_written_without_a_flush(database_url, writers, make_record, outbox_dir, fake_clock) -> None:
    w = writers(database_url, batch_size=100, flush_interval=3600, outbox_dir=outbox_dir, clock=fake_clock)
    for _ in range(250):
        w.submit(make_record())
    wait_for(lambda: w.stats["stored"] >= 200)  # no flush(), and the clock stands still
    assert w.pending == 250 - w.stats["stored"]


def test_partial_batch_is_written_after_flush_interval(database_url, writers, make_record, outbox_dir, fake_clock) -> None:
    w = writers(database_url, batch_size=1000, flush_interval=5.0, outbox_dir=outbox_dir, clock=fake_clock)
    for _ in range(10):
        w.submit(make_record())
    fake_clock.advance(4.9)
    w._wake.set()
    assert w.stats["stored"] == 0
    fake_clock.advance(0.2)
    w._wake.set()
    wait_for(lambda: w.stats["stored"] == 10)


def test_calls_queued_while_a_batch_is_written_wait_for_the_next_pass(database_url, writers, make_record, outbox_dir,
                                                                      fake_clock) -> None:  # fmt: skip
    # A slow caller (streams) queues a call or two during each write; writing those at once
    # cost a transaction per one or two records. They wait for their own flush_interval instead.
    w = writers(database_url, batch_size=1000, flush_interval=5.0, outbox_dir=outbox_dir, clock=fake_clock)
    late = [make_record() for _ in range(3)]
    passes: list[int] = []
    during: list[int] = []  # the writer's pass that wrote the first batch

    def arrive_during_the_write(batch: list[CallRecord]) -> None:
        passes.append(len(batch))
        if len(passes) == 1:
            during.append(w._passes)
            for record in late:
                w.submit(record)

    w.on_records = arrive_during_the_write
    for _ in range(10):
        w.submit(make_record())
    fake_clock.advance(5.1)
    w._wake.set()
    wait_for(lambda: bool(during) and w._passes > during[0])  # that pass is over
    assert passes == [10] and w.pending == 3
    fake_clock.advance(5.1)
    w._wake.set()
    wait_for(lambda: w.stats["stored"] == 13)
    assert passes == [10, 3] and w.flush() is True


def test_the_store_lock_is_held_while_a_batch_is_inserted_and_counted(database_url, writers, make_record, outbox_dir) -> None:
    """Budgets read the database holding it, so that no batch commits uncounted meanwhile."""
    w = writers(database_url, outbox_dir=outbox_dir)
    held: list[bool] = []
    w.on_records = lambda batch: held.append(w.store_lock.locked())
    w.submit(make_record())
    assert w.flush() and held == [True] and not w.store_lock.locked()


def test_eight_threads_lose_nothing(database_url, writers, make_record, outbox_dir) -> None:
    w = writers(database_url, outbox_dir=outbox_dir)
    recs = [make_record(cost_usd=(i % 97) * 0.0001 + 1e-7) for i in range(4000)]

    def worker(chunk: list[CallRecord]) -> None:
        for r in chunk:
            w.submit(r)

    threads = [threading.Thread(target=worker, args=(recs[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert w.flush() is True
    got = stored(database_url)
    assert len(got) == 4000 and len({r.id for r in got}) == 4000
    assert sum(Decimal(repr(r.cost_usd)) for r in got) == sum(Decimal(repr(r.cost_usd)) for r in recs)
    engine = make_engine(database_url)
    try:
        from sqlalchemy import func, select

        from costtrack.store.schema import records

        with engine.connect() as conn:
            n, tokens = conn.execute(select(func.count(), func.sum(records.c.tokens_input))).one()
    finally:
        engine.dispose()
    assert (n, tokens) == (4000, sum(r.tokens_input for r in recs))


class _Slow:
    """A Pending call whose record is built only once `gate` opens: a writer thread that has fallen behind."""

    def __init__(self, record: CallRecord, gate: threading.Event) -> None:
        self.record, self.gate = record, gate

    def to_record(self) -> CallRecord:
        self.gate.wait(30)
        return self.record


def test_submit_waits_for_a_writer_that_fell_behind(database_url, writers, make_record, outbox_dir, fake_clock) -> None:
    # A caller that never waits on I/O can starve the writer thread of the GIL: past
    # max_backlog records, submit() waits until the writer is down to one batch.
    w = writers(database_url, batch_size=10, max_backlog=25, backlog_wait=60, outbox_dir=outbox_dir, clock=fake_clock)
    recs = [make_record() for _ in range(300)]
    highest = 0
    for r in recs:
        w.submit(r)
        highest = max(highest, len(w._buffer))
    assert highest <= 25  # the backlog never stayed above max_backlog
    assert w.stats["backlog_waits"] >= 1 and w.stats["backlog_timeouts"] == 0
    assert w.flush() is True
    assert {r.id for r in stored(database_url)} == {r.id for r in recs}


def test_submit_waits_at_most_backlog_wait(database_url, writers, make_record, outbox_dir, fake_clock) -> None:
    gate = threading.Event()
    w = writers(database_url, batch_size=5, max_backlog=10, backlog_wait=0.001, outbox_dir=outbox_dir, clock=fake_clock)
    recs = [make_record() for _ in range(40)]
    for r in recs[:5]:
        w.submit(_Slow(r, gate))  # the writer thread takes this batch and is stuck on it
    wait_for(lambda: len(w._buffer) == 0)
    for r in recs[5:]:
        w.submit(r)  # returns although the writer cannot catch up
    assert w.stats["backlog_timeouts"] >= 1
    gate.set()
    assert w.flush() is True
    assert {r.id for r in stored(database_url)} == {r.id for r in recs}


def _hang_inserts(w: Writer) -> threading.Event:
    """Make the writer thread's database calls block until the returned gate is set (a database that hangs)."""
    from sqlalchemy import event

    gate = threading.Event()
    assert w._engine is not None

    @event.listens_for(w._engine, "before_cursor_execute")
    def hang(*args: object) -> None:
        if threading.current_thread() is w._thread:
            gate.wait()

    return gate


def test_a_hung_database_does_not_make_the_app_wait(database_url, writers, make_record, outbox_dir, fake_clock) -> None:
    # The writer is blocked in the database, not starved of the GIL: callers waiting would not help it.
    w = writers(database_url, batch_size=5, max_backlog=10, backlog_wait=60, outbox_dir=outbox_dir, clock=fake_clock)
    gate = _hang_inserts(w)
    recs = [make_record() for _ in range(200)]
    for r in recs[:5]:
        w.submit(r)  # a full batch: the thread takes it and hangs in the database
    wait_for(lambda: w._in_io)
    fake_clock.advance(2.0)  # stuck there for longer than a batch ever takes
    for r in recs[5:]:
        w.submit(r)  # 195 more, far past max_backlog: none waits
    assert w.stats["backlog_waits"] == 0 and w.stats["backlog_timeouts"] == 0
    gate.set()
    assert w.flush() is True
    assert {r.id for r in stored(database_url)} == {r.id for r in recs}


def test_a_hung_database_holds_at_most_max_buffer_records_before_callers_wait(database_url, writers, make_record,
                                                                               outbox_dir, fake_clock) -> None:  # fmt: skip
    w = writers(database_url, batch_size=5, max_backlog=10, max_buffer=50, backlog_wait=0.001, outbox_dir=outbox_dir,
                clock=fake_clock)  # fmt: skip
    gate = _hang_inserts(w)
    recs = [make_record() for _ in range(80)]
    for r in recs[:5]:
        w.submit(r)
    wait_for(lambda: w._in_io)
    fake_clock.advance(2.0)
    for r in recs[5:55]:
        w.submit(r)
    assert w.stats["backlog_timeouts"] == 0
    for r in recs[55:]:
        w.submit(r)  # past max_buffer: each caller waits (at most backlog_wait) for the writer
    assert w.stats["backlog_timeouts"] >= 1
    gate.set()
    assert w.flush() is True
    assert {r.id for r in stored(database_url)} == {r.id for r in recs}


def _woken_but_busy(w: Writer, make_record, fake_clock, n: int) -> tuple[Writer, threading.Event, list[CallRecord]]:
    """A writer whose thread is held at a gate in one pass while a later submit() has woken it, 10 ms ago."""
    gate = threading.Event()
    recs = [make_record() for _ in range(n)]
    w.submit(_Slow(recs[0], gate))
    w.submit(_Slow(recs[1], gate))  # a full batch: the thread takes it and is held at the gate
    wait_for(lambda: len(w._buffer) == 0)
    w.submit(recs[2])  # wakes the thread, which cannot run yet
    fake_clock.advance(0.01)
    return w, gate, recs


def test_a_woken_writer_that_has_not_run_gets_a_hand_off(database_url, writers, make_record, outbox_dir, fake_clock) -> None:
    # The thread is woken but has not started its pass after handoff_after (starved of the GIL
    # by a busy caller): the next submit() waits, releasing the GIL, until that pass is done.
    w, gate, recs = _woken_but_busy(writers(database_url, batch_size=2, handoff_after=0.002, backlog_wait=60,
                                            outbox_dir=outbox_dir, clock=fake_clock), make_record, fake_clock, 5)  # fmt: skip

    def open_gate_once_the_caller_waits() -> None:
        wait_for(lambda: len(w._cond._waiters) > 0)
        gate.set()

    opener = threading.Thread(target=open_gate_once_the_caller_waits)
    opener.start()
    w.submit(recs[3])  # the hand-off: waits for the pass
    opener.join()
    assert w.stats["handoffs"] == 1 and w.stats["handoff_timeouts"] == 0
    w.submit(recs[4])
    assert w.flush() is True
    assert {r.id for r in stored(database_url)} == {r.id for r in recs}


def test_a_hand_off_that_times_out_is_not_repeated(database_url, writers, make_record, outbox_dir, fake_clock) -> None:
    # A pass that does not end (a database that hangs) costs one caller backlog_wait, once.
    w, gate, recs = _woken_but_busy(writers(database_url, batch_size=2, handoff_after=0.002, backlog_wait=0.001,
                                            outbox_dir=outbox_dir, clock=fake_clock), make_record, fake_clock, 12)  # fmt: skip
    for r in recs[3:]:
        w.submit(r)
    assert w.stats["handoff_timeouts"] == 1 and w.stats["handoffs"] == 0
    gate.set()
    assert w.flush() is True
    assert {r.id for r in stored(database_url)} == {r.id for r in recs}


def test_no_hand_off_while_the_writer_waits_on_the_database(database_url, writers, make_record, outbox_dir, fake_clock) -> None:
    # A thread blocked in a database call is not starved of the GIL: callers go on at once.
    gate = threading.Event()

    def slow_engine():
        gate.wait(30)
        return make_engine(database_url)

    w = writers(slow_engine, batch_size=2, handoff_after=0.002, backlog_wait=60, outbox_dir=outbox_dir, clock=fake_clock)
    recs = [make_record() for _ in range(10)]
    w.submit(recs[0])
    w.submit(recs[1])  # a full batch: the thread goes to the database and waits there
    wait_for(lambda: w._in_io)
    w.submit(recs[2])
    fake_clock.advance(0.01)
    for r in recs[3:]:
        w.submit(r)  # would wait up to 60 s each if it handed off
    assert w.stats["handoffs"] == 0 and w.stats["handoff_timeouts"] == 0
    gate.set()
    assert w.flush() is True
    assert {r.id for r in stored(database_url)} == {r.id for r in recs}


def test_submit_does_not_wait_while_the_database_is_down(blocked_database, writers, make_record, outbox_dir, fake_clock) -> None:
    w = writers(blocked_database.url, batch_size=5, max_backlog=10, backlog_wait=60, outbox_dir=outbox_dir, clock=fake_clock)
    w.submit(make_record())
    w.flush()  # the first attempt fails: the writer is backing off
    started = time.monotonic()
    for _ in range(50):
        w.submit(make_record())
    assert time.monotonic() - started < 30  # not 60 s per submit: nothing to wait for
    assert w.stats["backlog_waits"] == 0
    blocked_database.unblock()
    fake_clock.advance(3600)
    assert w.flush() is True
    assert len(stored(blocked_database.url)) == 51


def _process_writes(url: str, n: int, tag: str, outbox: str, barrier) -> None:
    from costtrack.records import CallRecord
    from costtrack.store.writer import Writer

    w = Writer(url, batch_size=100, outbox_dir=outbox)
    barrier.wait(timeout=120)
    for i in range(n):
        w.submit(CallRecord(provider="p", operation="chat", endpoint=f"/{tag}", tokens_input=i, cost_usd=0.25))
    deadline = time.monotonic() + 120
    while not w.flush() and time.monotonic() < deadline:  # the outbox counts too, see below
        time.sleep(0.05)
    w.close()


def _calls_without_flush(url: str, n: int, outbox: str) -> None:
    import costtrack
    from costtrack.simulator import Simulator, openai_client

    tracker = costtrack.Tracker(url, outbox_dir=outbox, budgets=[])
    client = tracker.wrap(openai_client(Simulator()))
    for _ in range(n):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    # No flush: the child ends here (fork and forkserver children leave through os._exit).


def _calls_then_a_late_thread(url: str, outbox: str) -> None:
    import threading

    import costtrack
    from costtrack.simulator import Simulator, openai_client

    tracker = costtrack.Tracker(url, outbox_dir=outbox, budgets=[])
    client = tracker.wrap(openai_client(Simulator()))

    def call() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    call()

    def later() -> None:
        for _ in range(5):
            call()

    threading.Thread(target=later).start()  # an ordinary thread still calling after the target returns


def _pool_task(args: tuple[str, str]) -> int:
    _calls_without_flush(args[0], 5, args[1])
    return 5


@pytest.mark.parametrize("method", ["fork", "forkserver", "pool"])
def test_multiprocessing_children_that_end_without_flushing_lose_nothing(sqlite_url, outbox_dir, method) -> None:
    if method == "pool":
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert sum(pool.map(_pool_task, [(sqlite_url, str(outbox_dir))] * 6)) == 30
            pool.close()
            pool.join()  # workers end normally (a `with` block alone would terminate them: SIGTERM)
        expected = 30
    else:
        ctx = multiprocessing.get_context(method)
        procs = [ctx.Process(target=_calls_without_flush, args=(sqlite_url, 40, str(outbox_dir))) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
            assert p.exitcode == 0
        expected = 80
    engine = make_engine(sqlite_url)
    try:
        assert count_records(engine) == expected
    finally:
        engine.dispose()


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_childs_threads_still_calling_after_its_target_are_recorded(sqlite_url, outbox_dir, method) -> None:
    ctx = multiprocessing.get_context(method)
    child = ctx.Process(target=_calls_then_a_late_thread, args=(sqlite_url, str(outbox_dir)))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    engine = make_engine(sqlite_url)
    try:
        assert count_records(engine) == 6
    finally:
        engine.dispose()


def test_four_processes_lose_nothing(database_url, outbox_dir) -> None:
    """Four processes, each with its own Writer, write one database (a new file, for SQLite)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [
        ctx.Process(target=_process_writes, args=(database_url, 1000, f"p{i}", str(outbox_dir), barrier))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * 4
    got = stored(database_url)
    assert len(got) == 4000 and len({r.id for r in got}) == 4000
    assert sorted({r.endpoint for r in got}) == ["/p0", "/p1", "/p2", "/p3"]
    assert sum(r.cost_usd for r in got) == 1000.0
    assert outbox_lines(outbox_dir) == 0


def test_submit_returns_before_anything_is_written(database_url, writers, make_record, outbox_dir, fake_clock) -> None:
    # submit() only queues: the app's call never waits on the database (timings: benchmarks/bench_wrap.py).
    w = writers(database_url, batch_size=10_000, flush_interval=3600, outbox_dir=outbox_dir, clock=fake_clock)
    for _ in range(1000):
        w.submit(make_record())
    assert w.stats["attempts"] == 0 and w.pending == 1000
    assert w.flush()
    assert w.stats["stored"] == 1000 and w.pending == 0


def test_bad_url_fails_at_construction() -> None:
    with pytest.raises(DatabaseURLError):
        Writer("mysql://x@y/z")


def test_engine_and_factory_targets(database_url, writers, make_record, outbox_dir) -> None:
    engine = make_engine(database_url)
    try:
        w1 = writers(engine, outbox_dir=outbox_dir)
        w1.submit(make_record())
        assert w1.flush()
        w1.close()
        assert count_records(engine) == 1  # a given engine is left usable
        w2 = writers(lambda: make_engine(database_url), outbox_dir=outbox_dir)
        w2.submit(make_record())
        assert w2.flush()
        assert count_records(engine) == 2
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- outages


def test_database_down_then_back(blocked_database, writers, make_record, outbox_dir, fake_clock, caplog) -> None:
    """Unreachable database: the app is unaffected, records go to the outbox, then all land once."""
    w = writers(blocked_database.url, outbox_dir=outbox_dir, clock=fake_clock)
    recs = [make_record() for _ in range(300)]
    with caplog.at_level(logging.WARNING, logger="costtrack"):
        for r in recs[:200]:
            w.submit(r)  # never raises
        assert w.flush() is False
        for r in recs[200:]:
            w.submit(r)
        assert w.flush() is False  # backing off: straight to the outbox, no new attempt
    assert outbox_lines(outbox_dir) == 300
    assert w.stats["attempts"] == 1
    warnings = [r for r in caplog.records if r.name == "costtrack" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot write to" in warnings[0].getMessage()

    blocked_database.unblock()
    fake_clock.advance(0.5)
    assert w.flush() is True
    got = stored(blocked_database.url)
    assert sorted(r.id for r in got) == sorted(r.id for r in recs)
    assert outbox_lines(outbox_dir) == 0


def test_backoff_is_exponential_and_capped(blocked_database, writers, make_record, outbox_dir, fake_clock) -> None:
    w = writers(blocked_database.url, outbox_dir=outbox_dir, clock=fake_clock, backoff_initial=0.5, backoff_max=4.0)
    w.submit(make_record())
    delays = []
    for _ in range(6):
        assert w.flush() is False
        attempts = w.stats["attempts"]
        delays.append(w._backoff)
        fake_clock.advance(w._backoff - 0.01)
        assert w.flush() is False
        assert w.stats["attempts"] == attempts  # not yet
        fake_clock.advance(0.01)
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    blocked_database.unblock()
    assert w.flush() is True
    assert len(stored(blocked_database.url)) == 1


def test_max_buffer_overflow_spills_to_the_outbox(blocked_database, writers, make_record, outbox_dir, fake_clock) -> None:
    w = writers(blocked_database.url, outbox_dir=outbox_dir, clock=fake_clock, max_buffer=100, batch_size=50)
    recs = [make_record() for _ in range(1000)]
    for r in recs:
        w.submit(r)
    wait_for(lambda: w.stats["spilled"] >= 900)  # without any flush()
    assert w.pending <= 100 + 50
    assert outbox_lines(outbox_dir) + w.pending == 1000
    blocked_database.unblock()
    fake_clock.advance(60)
    assert w.flush() is True
    got = stored(blocked_database.url)
    assert len(got) == 1000 and {r.id for r in got} == {r.id for r in recs}


def test_postgres_restart_mid_run(postgres_url, tcp_proxy, writers, make_record, outbox_dir, fake_clock) -> None:
    """Connections cut while the writer holds them: nothing lost, nothing doubled."""
    from sqlalchemy.engine import make_url

    u = make_url(postgres_url)
    proxy = tcp_proxy(u.host, u.port or 5432).start()
    url = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    w = writers(url, outbox_dir=outbox_dir, clock=fake_clock)
    first = [make_record() for _ in range(100)]
    for r in first:
        w.submit(r)
    assert w.flush() is True
    proxy.stop()
    second = [make_record() for _ in range(100)]
    for r in second:
        w.submit(r)
    assert w.flush() is False
    proxy.start()
    fake_clock.advance(1)
    assert w.flush() is True
    assert sorted(r.id for r in stored(postgres_url)) == sorted(r.id for r in first + second)


def test_outbox_unwritable_too(blocked_database, writers, make_record, tmp_path, fake_clock, caplog) -> None:
    """Neither database nor outbox: records wait in memory, errors say how many; nothing is lost."""
    (tmp_path / "not-a-dir").write_text("x")
    bad_outbox = tmp_path / "not-a-dir" / "outbox"
    w = writers(blocked_database.url, outbox_dir=bad_outbox, clock=fake_clock)
    recs = [make_record() for _ in range(20)]
    with caplog.at_level(logging.WARNING, logger="costtrack"):
        for r in recs:
            w.submit(r)
        assert w.flush() is False
        assert w.flush() is False
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "20 record(s) kept in memory" in errors[0]
    assert w.pending == 20
    blocked_database.unblock()
    fake_clock.advance(1)
    assert w.flush() is True
    assert len(stored(blocked_database.url)) == 20


def test_records_lost_at_close_are_counted(blocked_database, make_record, tmp_path, fake_clock, caplog) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    w = Writer(blocked_database.url, outbox_dir=tmp_path / "not-a-dir" / "o", clock=fake_clock)
    for _ in range(7):
        w.submit(make_record())
    with caplog.at_level(logging.ERROR, logger="costtrack"):
        assert w.close(timeout=30) is False
    assert "7 record(s) could be written neither" in caplog.text


def _spill_and_die(url: str, outbox: str, n: int) -> None:
    from costtrack.records import CallRecord
    from costtrack.store.writer import Writer

    w = Writer(url, outbox_dir=outbox)
    for i in range(n):
        w.submit(CallRecord(provider="p", operation="chat", endpoint="/dead", tokens_input=i))
    assert w.flush() is False  # database down: all in the outbox, fsync'd
    os._exit(0)  # die without closing anything


def test_outbox_of_a_dead_process_is_replayed(blocked_database, writers, make_record, outbox_dir) -> None:
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_spill_and_die, args=(blocked_database.url, str(outbox_dir), 50))
    p.start()
    p.join(timeout=120)
    assert p.exitcode == 0
    assert outbox_lines(outbox_dir) == 50
    blocked_database.unblock()
    w = writers(blocked_database.url, outbox_dir=outbox_dir)
    mine = make_record()
    w.submit(mine)
    assert w.flush() is True
    got = stored(blocked_database.url)
    assert len(got) == 51 and sum(r.endpoint == "/dead" for r in got) == 50
    assert outbox_lines(outbox_dir) == 0
    assert w.stats["replayed"] == 50


def test_replaying_twice_stores_once(database_url, writers, make_record, outbox_dir) -> None:
    """A process that died after writing its outbox to the database but before deleting it."""
    engine = make_engine(database_url)
    recs = [make_record() for _ in range(30)]
    try:
        box = Outbox(outbox_dir, database_key(engine.url))
        box.append(recs)
        box.close()  # as if its process died: the lock goes with it
        w = writers(database_url, outbox_dir=outbox_dir)
        w.submit(recs[0])  # already "stored" by the dead process too
        assert w.flush() is True
        box = Outbox(outbox_dir, database_key(engine.url))
        box.append(recs)
        box.close()
        w2 = writers(database_url, outbox_dir=outbox_dir)
        assert w2.flush() is True
        assert count_records(engine) == 30
    finally:
        engine.dispose()


def test_a_tag_value_json_serialisers_refuse_does_not_hold_up_the_rest(database_url, writers, make_record,
                                                                       outbox_dir) -> None:
    """Bytes that are not UTF-8 and a lone surrogate: pydantic-core refuses both; every record is still stored."""
    w = writers(database_url, outbox_dir=outbox_dir)
    odd = [make_record(tags={"digest": b"\x9f\x00"}), make_record(tags={"parts": ("\ud800",)})]
    plain = [make_record() for _ in range(50)]
    for r in [odd[0], *plain, odd[1]]:
        w.submit(r)
    assert w.flush() is True
    got = {r.id: r for r in stored(database_url)}
    assert set(got) == {r.id for r in odd + plain}
    assert w.stats["rejected"] == 0 and w.stats["lost"] == 0 and outbox_lines(outbox_dir, "rejected-") == 0
    assert isinstance(got[odd[0].id].tags["digest"], str) and len(got[odd[1].id].tags["parts"]) == 1


def engine_name(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def test_one_odd_record_never_holds_up_the_batch(database_url, writers, make_record, outbox_dir) -> None:
    """Durability review: an endpoint too long for Postgres' index (a program limit, raised as OperationalError) and
    tags nested 2,000 deep (RecursionError) were taken for a database outage: no record of the batch was stored, the
    outbox refused them all, and each later process failed on the same file. NaN tags were stored as no JSON."""
    w = writers(database_url, outbox_dir=outbox_dir)
    deep: dict = {}
    inner = deep
    for _ in range(2000):
        inner["d"] = {}
        inner = inner["d"]
    long_endpoint = make_record(endpoint="/api/" + os.urandom(2000).hex())  # incompressible: too long for the index
    nested, nan = make_record(tags={"deep": deep}), make_record(tags={"score": float("nan"), "top": float("inf")})
    good = [make_record() for _ in range(20)]
    for r in [*good[:10], long_endpoint, nested, nan, *good[10:]]:
        w.submit(r)
    w.flush()
    got = {r.id: r for r in stored(database_url)}
    assert {r.id for r in [*good, nested, nan]} <= set(got)
    assert got[nested.id].tags == {"costtrack.tags_dropped": True}  # the call kept, its tags not
    assert got[nan.id].tags == {"score": "NaN", "top": "Infinity"}  # JSON, which every report reads
    assert (long_endpoint.id in got) == (engine_name(database_url) == "sqlite")  # Postgres: set aside, alone
    assert w.stats["lost"] == 0 and w.stats["failures"] == 0


def test_the_outbox_writes_what_the_database_would(outbox_dir, make_record) -> None:
    """Durability review: one tag pydantic cannot serialise (a numpy integer) lost a whole spill at exit; the database
    stores it as its text."""
    import numpy

    box = Outbox(outbox_dir, "k")
    box.append([make_record(tags={"n": numpy.int64(3), "o": object()}), make_record(tags={"x": 1, "nan": float("nan")})])
    box.close()
    [path] = outbox_dir.glob("*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["tags"]["n"] for line in lines[:1]] == ["3"] and lines[1]["tags"] == {"x": 1, "nan": "NaN"}  # not null


def test_records_the_database_refuses_are_kept_aside(database_url, writers, make_record, outbox_dir, caplog) -> None:
    w = writers(database_url, outbox_dir=outbox_dir)
    good = [make_record() for _ in range(9)]
    poison = make_record(tokens_input=2**70)  # fits no integer column
    nul = make_record(response_body="before\x00after")  # Postgres text cannot hold NUL
    with caplog.at_level(logging.ERROR, logger="costtrack"):
        for r in [*good[:5], poison, nul, *good[5:]]:
            w.submit(r)
        assert w.flush() is False  # one is not in the database (it said True: review finding)
    got = {r.id: r for r in stored(database_url)}
    assert set(got) == {r.id for r in [*good, nul]}
    assert got[nul.id].response_body in ("before\x00after", "before\ufffdafter")
    rejected = list(outbox_dir.glob("rejected-*.jsonl"))
    assert len(rejected) == 1
    assert json.loads(rejected[0].read_text())["id"] == poison.id
    assert "refused 1 record(s)" in caplog.text



def test_a_record_refused_from_another_process_outbox_leaves_flush_true(database_url, writers, make_record,
                                                                         outbox_dir) -> None:  # fmt: skip
    """flush() says whether this writer's records are in the database: one refused from the outbox a dead process left
    kept it False for good (review finding), though everything submitted here was stored."""
    engine = make_engine(database_url)
    try:
        box = Outbox(outbox_dir, database_key(engine.url))
        box.append([make_record(), make_record(tokens_input=2**70)])  # the second fits no integer column
        box.close()  # as if its process died
    finally:
        engine.dispose()
    w = writers(database_url, outbox_dir=outbox_dir)
    w.submit(make_record())
    assert w.flush() is True
    assert w.stats["rejected"] == 1 and len(stored(database_url)) == 2

def test_submit_after_close_goes_to_the_outbox(database_url, make_record, outbox_dir, writers) -> None:
    w = Writer(database_url, outbox_dir=outbox_dir)
    w.submit(make_record())
    assert w.close() is True
    late = make_record()
    w.submit(late)  # e.g. from another atexit hook: not lost
    assert outbox_lines(outbox_dir) == 1
    w2 = writers(database_url, outbox_dir=outbox_dir)
    assert w2.flush() is True
    assert late.id in {r.id for r in stored(database_url)}


def test_submit_never_raises(writers, outbox_dir, caplog) -> None:
    w = writers("sqlite://", outbox_dir=outbox_dir)
    with caplog.at_level(logging.ERROR, logger="costtrack"):
        w.submit("not a record")  # type: ignore[arg-type]
        w.submit(None)  # type: ignore[arg-type]
    assert caplog.text.count("not a CallRecord") == 1  # logged once


def test_anything_with_a_to_record_is_taken_even_set_on_the_instance(database_url, writers, make_record, outbox_dir) -> None:
    from types import SimpleNamespace

    w = writers(database_url, outbox_dir=outbox_dir)
    record = make_record()
    w.submit(SimpleNamespace(to_record=lambda: record))
    assert w.flush() is True and w.stats["stored"] == 1


# --------------------------------------------------------------------------- exit and fork


def test_interpreter_exit_flushes(database_url, outbox_dir) -> None:
    script = textwrap.dedent(
        f"""
        from costtrack.records import CallRecord
        from costtrack.store.writer import Writer
        w = Writer({database_url!r}, outbox_dir={str(outbox_dir)!r}, flush_interval=3600)
        for i in range(300):
            w.submit(CallRecord(provider="p", operation="chat", endpoint="/exit", tokens_input=i))
        # no flush(), no close(): the interpreter exits with records queued
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    got = stored(database_url)
    assert len(got) == 300 and sum(r.tokens_input for r in got) == sum(range(300))
    assert outbox_lines(outbox_dir) == 0


def _forked_child_writes(w: Writer, n: int) -> None:
    for i in range(n):
        w.submit(CallRecord(provider="p", operation="chat", endpoint="/child", tokens_input=i))
    os._exit(0 if w.flush() else 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_its_own_records(database_url, writers, make_record, outbox_dir) -> None:
    w = writers(database_url, outbox_dir=outbox_dir, flush_interval=3600)
    parents = [make_record() for _ in range(5)]
    for r in parents:
        w.submit(r)  # still buffered in the parent when it forks
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_forked_child_writes, args=(w, 20))
    p.start()
    p.join(timeout=120)
    assert p.exitcode == 0
    assert w.flush() is True
    got = stored(database_url)
    assert len(got) == 25 and sum(r.endpoint == "/child" for r in got) == 20


def test_a_fork_waits_for_the_writer_to_leave_the_database(sqlite_url, writers, make_record, outbox_dir, monkeypatch) -> None:
    """SQLite is not fork-safe while another thread is inside it: a child forked mid-write inherited its locks held
    and its writer hung in sqlite3.connect for good (7 children of 60 in a review's run). The fork now waits for the
    writer thread's database call to end: the child finds the batch that was being written committed, and writes
    its own."""
    from costtrack.store import writer as writer_module

    real_insert = writer_module.insert_records
    inside, go = threading.Event(), threading.Event()

    def slow_insert(engine, batch):  # the writer thread in a database call when the app forks
        inside.set()
        go.wait(30)
        return real_insert(engine, batch)

    w = writers(sqlite_url, outbox_dir=outbox_dir)
    w.submit(make_record())
    assert w.flush(timeout=60)
    monkeypatch.setattr(writer_module, "insert_records", slow_insert)
    batch = [make_record() for _ in range(5)]
    for r in batch:
        w.submit(r)
    flushing = threading.Thread(target=w.flush, args=(60,))
    flushing.start()
    assert inside.wait(30)
    threading.Timer(0.2, go.set).start()  # the call ends a moment later, while the fork waits for it
    pid = os.fork()
    if pid == 0:  # the child: only os._exit, never back into pytest
        code = 1
        try:
            monkeypatch.undo()
            committed = len(stored(sqlite_url))
            child = Writer(sqlite_url, outbox_dir=outbox_dir)
            child.submit(make_record(endpoint="/child"))
            code = 0 if committed == 6 and child.flush(timeout=30) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    flushing.join(60)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(stored(sqlite_url)) == 7


# --------------------------------------------------------------------------- SQLite specifics


def test_read_only_sqlite_file(sqlite_url, tmp_path, writers, make_record, outbox_dir, fake_clock) -> None:
    """A read-only database (here: opened with mode=ro) is an outage like any other; the same
    file opened read-write later replays the outbox, whatever the URL's spelling."""
    from costtrack.store.database import upgrade

    upgrade(sqlite_url)
    path = tmp_path / "costtrack.db"
    assert database_key(f"sqlite:///file:{path}?mode=ro&uri=true") == database_key(sqlite_url)
    ro = writers(f"sqlite:///file:{path}?mode=ro&uri=true", outbox_dir=outbox_dir, clock=fake_clock)
    recs = [make_record() for _ in range(10)]
    for r in recs:
        ro.submit(r)
    assert ro.flush() is False
    ro.close()
    assert outbox_lines(outbox_dir) == 10
    rw = writers(sqlite_url, outbox_dir=outbox_dir)
    assert rw.flush() is True
    assert {r.id for r in stored(sqlite_url)} == {r.id for r in recs}


def test_sqlite_table_locked_by_another_process(sqlite_url, writers, make_record, outbox_dir, fake_clock, monkeypatch) -> None:
    """Another connection holds the write lock past the busy timeout: wait, spill, retry."""
    import sqlite3

    from costtrack.store import database
    from costtrack.store.database import upgrade

    upgrade(sqlite_url)
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT", 0.05)  # instead of 30 s
    w = writers(sqlite_url, outbox_dir=outbox_dir, clock=fake_clock)
    other = sqlite3.connect(sqlite_url[len("sqlite:///") :], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        recs = [make_record() for _ in range(10)]
        for r in recs:
            w.submit(r)
        assert w.flush() is False
        assert outbox_lines(outbox_dir) == 10
    finally:
        other.execute("ROLLBACK")
        other.close()
    fake_clock.advance(1)
    assert w.flush() is True
    assert len(stored(sqlite_url)) == 10


def _locked(database_url: str):
    """Another session holding the records table: a SQLite write lock, or Postgres' ACCESS EXCLUSIVE (as ALTER
    TABLE, VACUUM FULL or a migration take it). Returns its release."""
    if database_url.startswith("sqlite"):
        import sqlite3

        other = sqlite3.connect(database_url[len("sqlite:///") :], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        other = psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql"))
        other.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")

    def release() -> None:
        other.rollback() if not database_url.startswith("sqlite") else other.execute("ROLLBACK")
        other.close()

    return release


def test_postgres_table_locked_fails_the_write_after_the_lock_timeout(postgres_url, writers, make_record, outbox_dir,
                                                                      fake_clock, monkeypatch) -> None:  # fmt: skip
    """A lock held on the table no longer holds the writer for as long as it lasts (it set no lock_timeout: the
    buffer grew past max_buffer, callers waited, flush() could not spill: review finding): the write fails, as on
    SQLite after its busy timeout, and the records wait in the outbox until the table is free."""
    from costtrack.store import database

    monkeypatch.setattr(database, "POSTGRES_LOCK_TIMEOUT", 0.2)  # instead of 30 s
    w = writers(postgres_url, outbox_dir=outbox_dir, clock=fake_clock)
    release = _locked(postgres_url)
    try:
        recs = [make_record() for _ in range(10)]
        for r in recs:
            w.submit(r)
        assert w.flush(timeout=60) is False
        assert outbox_lines(outbox_dir) == 10
    finally:
        release()
    fake_clock.advance(1)
    assert w.flush(timeout=60) is True
    assert {r.id for r in stored(postgres_url)} == {r.id for r in recs}


def test_close_keeps_what_a_hung_database_call_holds_in_the_outbox(database_url, writers, make_record, outbox_dir,
                                                                    monkeypatch, fake_clock) -> None:  # fmt: skip
    """At exit or configure(), a write hung on a locked table made close() wait out the whole lock or busy timeout
    (30 s) before spilling, past a container's 10 s grace: a SIGKILL then lost every record (review finding). Here
    the lock outlasts any timeout: close() returns while the write still hangs, the records in the outbox."""
    from costtrack.store import database
    from costtrack.store import writer as writer_module

    monkeypatch.setattr(writer_module, "CLOSE_STUCK_AFTER", 0.3)
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT", 3600.0)
    monkeypatch.setattr(database, "POSTGRES_LOCK_TIMEOUT", 3600.0)
    # A frozen injected clock: how long a call has hung is told by real time, whatever clock drives batching.
    w = writers(database_url, outbox_dir=outbox_dir, clock=fake_clock)
    w.submit(make_record())
    assert w.flush(timeout=60)  # the schema exists and the connection is open: the lock below is what hangs
    recs = [make_record() for _ in range(10)]
    release = _locked(database_url)
    try:
        for r in recs:
            w.submit(r)
        closing = threading.Thread(target=w.close)
        closing.start()
        closing.join(60)
        assert not closing.is_alive()  # closed while the lock is still held
        assert outbox_lines(outbox_dir) == 10
    finally:
        release()
    w._thread.join(60)  # the hung write goes on once the lock is gone: the outbox is not written twice
    assert outbox_lines(outbox_dir) == 10
    replay = writers(database_url, outbox_dir=outbox_dir)
    assert replay.flush(timeout=60) is True
    assert len(stored(database_url)) == 11


def test_a_write_that_hung_past_close_and_then_fails_is_not_spilled_twice(sqlite_url, writers, make_record,
                                                                         outbox_dir, monkeypatch) -> None:  # fmt: skip
    """close() kept the hung batch in the outbox; when the write then failed, the thread spilled it again."""
    from sqlalchemy.exc import OperationalError

    from costtrack.store import writer as writer_module

    monkeypatch.setattr(writer_module, "CLOSE_STUCK_AFTER", 0.3)
    real_insert, inside, go = writer_module.insert_records, threading.Event(), threading.Event()

    def hangs_then_fails(engine, batch):
        if len(batch) == 1:
            return real_insert(engine, batch)  # the first record: schema made, connection open
        inside.set()
        go.wait(30)
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(writer_module, "insert_records", hangs_then_fails)
    w = writers(sqlite_url, outbox_dir=outbox_dir)
    w.submit(make_record())
    assert w.flush(timeout=60)
    for _ in range(10):
        w.submit(make_record())
    flushing = threading.Thread(target=w.flush, args=(60,))
    flushing.start()
    assert inside.wait(30)
    assert w.close() is False and outbox_lines(outbox_dir) == 10
    go.set()
    w._thread.join(30)
    flushing.join(30)
    assert outbox_lines(outbox_dir) == 10


def test_a_fork_does_not_wait_for_a_postgres_writer_nor_one_hung_on_a_lock(database_url, writers, make_record,
                                                                           outbox_dir, monkeypatch) -> None:  # fmt: skip
    """Only a SQLite writer inside a write holds a fork up: Postgres' driver keeps no state a child inherits, and a
    writer waiting on a lock (past HUNG_AFTER) is busy-waiting, not writing; a fork waited 5 s for each (review)."""
    from costtrack.store import writer as writer_module

    monkeypatch.setattr(writer_module, "FORK_WAIT", 60.0)
    w = writers(database_url, outbox_dir=outbox_dir)
    w.submit(make_record())
    assert w.flush(timeout=60)
    w._db_lock.acquire()  # as the thread holds it inside a database call
    try:
        if database_url.startswith("sqlite"):
            monkeypatch.setattr(w, "_in_io", True)  # a call that has hung past HUNG_AFTER: waiting on a lock
            monkeypatch.setattr(w, "_io_wall", time.monotonic() - writer_module.HUNG_AFTER - 1)
        forking = threading.Thread(target=writer_module._before_fork)
        forking.start()
        forking.join(30)
        assert not forking.is_alive()  # it went on without waiting FORK_WAIT for the lock
        writer_module._after_fork_in_parent()
    finally:
        w._db_lock.release()


# --------------------------------------------------------------------------- pending items


class _Pending:
    """A finished call as the tracker submits it: becomes a record in the writer thread."""

    def __init__(self, record: CallRecord | None) -> None:
        self.record = record
        self.built_in: str | None = None

    def to_record(self) -> CallRecord:
        self.built_in = threading.current_thread().name
        if self.record is None:
            raise ValueError("unreadable body")
        return self.record


def test_pending_items_are_built_in_the_writer_thread(database_url, writers, make_record, outbox_dir, caplog) -> None:
    w = writers(database_url, outbox_dir=outbox_dir)
    good = [_Pending(make_record()) for _ in range(10)]
    bad = _Pending(None)
    for item in [*good[:5], bad, *good[5:]]:
        w.submit(item)
    with caplog.at_level(logging.ERROR, logger="costtrack"):
        assert w.flush(timeout=30) is True  # the unbuildable one is settled, not waited for
    assert {r.id for r in stored(database_url)} == {p.record.id for p in good}
    assert {p.built_in for p in good} == {bad.built_in} and bad.built_in != threading.current_thread().name
    assert w.stats["unrecordable"] == 1
    assert sum("could not build a record" in m for m in caplog.messages) == 1


def test_each_pending_item_is_let_go_once_its_record_is_built(database_url, writers, make_record, outbox_dir) -> None:
    # Calls held to the end of their batch outlived the collector's young generations: a batch's worth of
    # objects reached the oldest one and made the collector sweep the whole heap every few thousand calls.
    import weakref

    alive: list[weakref.ref[_Pending]] = []
    seen: list[int] = []  # when each item is built: how many items are still referenced

    class _Counted(_Pending):
        def to_record(self) -> CallRecord:
            seen.append(sum(ref() is not None for ref in alive))
            return super().to_record()

    w = writers(database_url, batch_size=50, flush_interval=3600, outbox_dir=outbox_dir)
    items = [_Counted(make_record()) for _ in range(20)]
    alive.extend(weakref.ref(item) for item in items)
    with w._lock:  # queued all at once, so one pass builds them as one batch
        w._buffer.extend(items)
        w._submitted += len(items)
    del items
    assert w.flush(timeout=30) is True
    assert seen == list(range(20, 0, -1))  # the ones built before are gone: only this one and those after remain
    assert len(stored(database_url)) == 20


def test_a_postgres_insert_that_never_ends_fails_and_the_records_wait_in_the_outbox(fresh_postgres_url, writers,
                                                                                     make_record, outbox_dir,
                                                                                     monkeypatch, fake_clock) -> None:  # fmt: skip
    """Durability review: nothing bounded a statement, so a Postgres that stopped answering mid-insert held the writer,
    and flush() with it, for good. Now the insert fails after POSTGRES_STATEMENT_TIMEOUT, as an outage: the records go
    to the outbox on flush and are written once the database answers again."""
    from costtrack.store import database
    from costtrack.store.database import ensure_schema

    engine = make_engine(fresh_postgres_url)
    ensure_schema(engine)
    with engine.begin() as conn:  # an insert that hangs: the server is there, the statement never ends
        conn.exec_driver_sql("CREATE FUNCTION hang() RETURNS trigger LANGUAGE plpgsql AS "
                             "'BEGIN PERFORM pg_sleep(3600); RETURN NEW; END'")  # fmt: skip
        conn.exec_driver_sql("CREATE TRIGGER hang BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION hang()")
    monkeypatch.setattr(database, "POSTGRES_STATEMENT_TIMEOUT", 0.2)
    w = writers(fresh_postgres_url, outbox_dir=outbox_dir, clock=fake_clock)
    records = [make_record() for _ in range(5)]
    for r in records:
        w.submit(r)
    assert w.flush(timeout=60) is False  # not in the database: in the outbox
    assert w.stats["failures"] >= 1 and w.stats["spilled"] == 5
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER hang ON records")
    fake_clock.advance(120)  # past the retry's backoff
    assert w.flush(timeout=60) is True
    assert {r.id for r in stored(fresh_postgres_url)} == {r.id for r in records}
    engine.dispose()


def test_close_writes_what_was_queued_and_keeps_later_arrivals_in_the_outbox(database_url, writers, make_record,
                                                                             outbox_dir) -> None:  # fmt: skip
    """Durability review: closing drained every record, those still arriving too (a daemon thread calling), so an exit
    lasted as long as they came, up to ATEXIT_CLOSE_TIMEOUT (30 s), past a container's stop grace period (10 s)."""
    w = writers(database_url, batch_size=10, outbox_dir=outbox_dir)
    arrivals = 0

    def more_while_closing(batch: list[CallRecord]) -> None:
        nonlocal arrivals
        if w._closing and arrivals < 200:  # each batch stored brings ten more calls
            for _ in range(10):
                w.submit(make_record())
            arrivals += 10

    w.on_records = more_while_closing
    for _ in range(30):
        w.submit(make_record())
    assert w.close(timeout=60) is False  # not all in the database: the late ones in the outbox
    assert len(stored(database_url)) == 30 and arrivals == 30  # one pass over what was queued, three batches
    assert outbox_lines(outbox_dir) == arrivals and w.stats["lost"] == 0


def test_inserts_work_on_an_engine_that_prepares_every_statement(postgres_url, writers, make_record, outbox_dir) -> None:
    """Last review: two SET LOCAL in one string failed on psycopg's prepare_threshold=0 (every record to the outbox)."""
    from costtrack.store.database import ensure_schema

    engine = make_engine(postgres_url, connect_args={"prepare_threshold": 0})
    ensure_schema(engine)
    w = writers(engine, outbox_dir=outbox_dir)
    records = [make_record() for _ in range(3)]
    for r in records:
        w.submit(r)
    assert w.flush(timeout=60) is True and len(stored(postgres_url)) == 3
    engine.dispose()


def test_closing_stops_replaying_another_process_outbox(database_url, writers, make_record, outbox_dir) -> None:
    """Last review: an exit waited for a dead process's outbox to be replayed whole (300,000 records: 9.4 s), past a
    container's stop grace period, and a SIGKILL then lost this process's own queued records. Closing stops at the
    next chunk and leaves the file, whole and unlocked, to a later process."""
    engine = make_engine(database_url)
    try:
        box = Outbox(outbox_dir, database_key(engine.url))
        left = [make_record() for _ in range(12_000)]  # three chunks of replay (5,000 a chunk)
        box.append(left)
        box.close()  # as if its process died
    finally:
        engine.dispose()
    w = writers(database_url, outbox_dir=outbox_dir)

    def close_begins(batch: list[CallRecord]) -> None:
        w._closing = True  # as close() sets it, while the first chunk is written

    w.on_records = close_begins
    w.submit(make_record())  # its first pass claims the file and begins the replay
    w.close(timeout=60)
    assert count_records(make_engine(database_url)) < 12_001 and outbox_lines(outbox_dir) == 12_000
    later = writers(database_url, outbox_dir=outbox_dir)
    assert later.flush(timeout=120) is True
    assert count_records(make_engine(database_url)) == 12_001
