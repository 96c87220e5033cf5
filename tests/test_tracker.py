"""Tracker: nothing lost under threads and asyncio, flush, configure, and the process default."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from decimal import Decimal

import pytest

import costtrack
from costtrack.errors import DatabaseURLError
from costtrack.simulator import Simulator

from helpers import Recorder, openai_client, serve

CHAT = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
# openai_chat.json: 2048 input (1536 cached), 120 output on gpt-4o-mini.
ONE_CALL = (Decimal(512) * Decimal("0.15") + Decimal(1536) * Decimal("0.075") + Decimal(120) * Decimal("0.60")) / 10**6


def test_threads_lose_nothing(tracker, records):
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"))))

    def worker() -> None:
        for _ in range(500):
            client.chat.completions.create(**CHAT)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recs = records()
    assert len(recs) == 4000 and len({r.id for r in recs}) == 4000
    assert sum(r.tokens_input for r in recs) == 4000 * 2048
    assert sum(Decimal(repr(r.cost_usd)) for r in recs) == 4000 * ONE_CALL


async def test_asyncio_loses_nothing(tracker, records):
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json")), is_async=True))
    await asyncio.gather(*(client.chat.completions.create(**CHAT) for _ in range(500)))
    assert await tracker.aflush()
    recs = records()
    assert len(recs) == 500
    assert sum(Decimal(repr(r.cost_usd)) for r in recs) == 500 * ONE_CALL


def test_simulated_traffic_totals_match_the_sdk_objects(tracker, records):
    sim = Simulator(seed=3)
    client = tracker.wrap(openai_client(sim))
    seen = [client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"q{i} " * (i + 1)}])
            for i in range(50)]  # fmt: skip
    recs = records()
    assert sum(r.tokens_input for r in recs) == sum(c.usage.prompt_tokens for c in seen)
    assert sum(r.tokens_output for r in recs) == sum(c.usage.completion_tokens for c in seen)


def test_configure_changes_only_the_settings_it_names(tmp_path, monkeypatch):
    """A second configure() keeps the database and content setting of the first; budgets replace budget."""
    from costtrack import tracker as tracker_module
    from costtrack.budgets import Budget

    monkeypatch.setattr(tracker_module, "_default", None)
    url = f"sqlite:///{tmp_path}/kept.db"
    first = costtrack.configure(database_url=url, store_content=True, budget=Budget(monthly_usd=50))
    second = costtrack.configure(budgets=[Budget(monthly_usd=5, user="u42", hard_limit=True)])
    try:
        assert second.database_url == first.database_url == url and second.store_content is True
        assert second.budget_monitor is not None and [b.key for b in second.budget_monitor.budgets] == ["month:5:user=u42"]
        third = costtrack.configure(budgets=[])
        assert third.database_url == url and third.budget_monitor is None
        with pytest.raises(costtrack.DatabaseURLError):
            costtrack.configure(database_url="not a url")
        assert costtrack.default_tracker() is third  # a bad setting changes nothing
    finally:
        costtrack.default_tracker().close()


def test_configure_sets_the_process_default(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/default.db"
    tracker = costtrack.configure(database_url=url)
    try:
        client = costtrack.wrap(openai_client(Recorder(serve("openai_chat.json"))), endpoint="/api/x")
        client.chat.completions.create(**CHAT)
        assert costtrack.flush()
        assert costtrack.default_tracker() is tracker
        assert [r.endpoint for r in tracker.records()] == ["/api/x"]
    finally:
        tracker.close()


def test_records_queued_at_exit_are_written(tmp_path):
    url = f"sqlite:///{tmp_path}/exit.db"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        import costtrack
        from helpers import Recorder, openai_client, serve
        costtrack.configure(database_url={url!r})
        client = costtrack.wrap(openai_client(Recorder(serve("openai_chat.json"))))
        for _ in range(300):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        # no flush(): the interpreter exits with records still queued
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert len(costtrack.Tracker(url).records()) == 300


@pytest.mark.parametrize("before_exit", [10, 0])
def test_calls_made_after_costtracks_exit_hooks_go_to_the_outbox(tmp_path, before_exit):
    """An exit hook of the app's that runs after costtrack's (registered before costtrack was imported), or a
    daemon thread still calling: its records went to a new writer nothing closed, lost without a word (review
    finding). They go to the outbox, which the next writer for the database replays."""
    from costtrack.store.writer import Writer

    url, outbox = f"sqlite:///{tmp_path}/late.db", tmp_path / "outbox"
    script = textwrap.dedent(
        f"""
        import atexit, sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from helpers import Recorder, openai_client, serve
        def late_calls():
            for _ in range(3):
                client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "bye"}}])
        atexit.register(late_calls)  # before costtrack's own hooks: it runs after them
        import costtrack
        costtrack.configure(database_url={url!r}, outbox_dir={str(outbox)!r})
        client = costtrack.wrap(openai_client(Recorder(serve("openai_chat.json"))))
        for _ in range({before_exit}):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=120, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "submitted after the writer was closed" in done.stderr  # said, not silent
    assert len(costtrack.Tracker(url).records()) == before_exit
    writer = Writer(url, outbox_dir=outbox)
    assert writer.flush(timeout=60) and writer.close()
    assert len(costtrack.Tracker(url).records()) == before_exit + 3


def test_a_stand_in_writer_is_closed_at_exit_with_its_own_close(tmp_path, caplog):
    """`costtrack bench` warms up through a tracker whose writer stores nothing: at exit it was closed with a timeout
    its close() does not take, and every bench run ended in a traceback (review finding)."""
    from costtrack.bench.warmup import NullWriter

    class Bare:  # the Tracker(writer=...) protocol: submit, flush, close() without arguments
        closed = False

        def submit(self, record) -> None:
            pass

        def flush(self, timeout=None) -> bool:
            return True

        def close(self) -> None:
            Bare.closed = True

    for writer in (NullWriter(), Bare()):
        costtrack.Tracker(f"sqlite:///{tmp_path}/unused.db", writer=writer, budgets=[])._close_at_exit()
    assert Bare.closed and "could not flush" not in caplog.text


def test_sigterm_turned_into_an_exit_as_the_readme_shows_writes_queued_records(tmp_path):
    url = f"sqlite:///{tmp_path}/term.db"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        import costtrack
        from helpers import Recorder, openai_client, serve
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # the README's two lines
        costtrack.configure(database_url={url!r})
        client = costtrack.wrap(openai_client(Recorder(serve("openai_chat.json"))))
        for _ in range(300):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        os.kill(os.getpid(), signal.SIGTERM)  # what docker stop sends
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert done.returncode == 128 + 15
    assert len(costtrack.Tracker(url).records()) == 300


def test_a_subclass_that_defines_now_still_records_its_calls(tmp_path) -> None:
    # The clock is the `now=` argument; a subclass method of that name must not stop calls being recorded.
    from datetime import datetime, timezone

    import costtrack

    from helpers import Recorder, openai_client, serve

    class Custom(costtrack.Tracker):
        def now(self) -> datetime:  # type: ignore[override]
            return datetime.now(timezone.utc)

    tracker = Custom(f"sqlite:///{tmp_path}/t.db", budgets=[])
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"))))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    [record] = tracker.records()
    assert record.tokens_input > 0 and record.timestamp.tzinfo is not None
    tracker.close()


def test_records_are_written_within_a_second_and_sooner_under_a_hard_limit(tmp_path, outbox_dir) -> None:
    from costtrack.store.writer import FLUSH_INTERVAL
    from costtrack.tracker import HARD_LIMIT_FLUSH_INTERVAL

    url = f"sqlite:///{tmp_path / 'c.db'}"
    hard = costtrack.Budget(monthly_usd=10, hard_limit=True, on_alert=lambda alert: None)
    soft = costtrack.Budget(monthly_usd=10, on_alert=lambda alert: None)
    cases = [({"budgets": []}, FLUSH_INTERVAL), ({"budget": soft}, FLUSH_INTERVAL), ({"budget": hard}, HARD_LIMIT_FLUSH_INTERVAL),
             ({"budget": hard, "flush_interval": 0.5}, 0.5), ({"budgets": [], "flush_interval": 3.0}, 3.0)]  # fmt: skip
    for options, expected in cases:
        tracker = costtrack.Tracker(url, outbox_dir=outbox_dir, **options)
        try:
            assert tracker.writer.flush_interval == expected, options
        finally:
            tracker.close()
    assert (FLUSH_INTERVAL, HARD_LIMIT_FLUSH_INTERVAL) == (1.0, 0.2)


def test_a_bad_database_url_given_in_code_raises_at_once(tmp_path):
    with pytest.raises(DatabaseURLError, match="mysql"):
        costtrack.Tracker("mysql://app@db/costs")
    with pytest.raises(DatabaseURLError):
        costtrack.configure(database_url="not a url")


def test_a_bad_database_url_from_the_environment_never_reaches_the_app(monkeypatch, caplog, outbox_dir):
    from costtrack.logs import reset_once

    reset_once()
    monkeypatch.setenv("COSTTRACK_DATABASE_URL", "mysql://app@db/costs")
    with caplog.at_level("ERROR", logger="costtrack"):
        tracker = costtrack.Tracker(outbox_dir=outbox_dir)
        client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"), serve("openai_chat.json"))))
        answers = [client.chat.completions.create(**CHAT) for _ in range(2)]
    assert [a.usage.prompt_tokens for a in answers] == [2048, 2048]
    assert "mysql" in tracker.unusable
    assert tracker.flush() is False  # the calls were not stored: flush says so
    assert len([r for r in caplog.records if "not recorded" in r.getMessage()]) == 1


def test_a_malformed_prices_file_from_the_environment_records_calls_unpriced(tmp_path, monkeypatch, caplog):
    """It dropped every call (one log line about "a request", the error deep in its traceback), costtrack.flush()
    raised it, and no table was made (review finding): the calls are kept, unpriced, and it is said once why."""
    from costtrack import tracker as tracker_module
    from costtrack.errors import PricesFileError
    from costtrack.logs import reset_once

    reset_once()
    bad = tmp_path / "prices.toml"
    bad.write_text('[models."gpt-4o-mini"]\ninput = "2.5"\noutput = 1\n')
    monkeypatch.setenv("COSTTRACK_PRICES_FILE", str(bad))
    monkeypatch.setenv("COSTTRACK_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setattr(tracker_module, "_default", None)  # the process default, made from the environment
    try:
        with caplog.at_level("WARNING", logger="costtrack"):
            client = costtrack.wrap(openai_client(Recorder(*[serve("openai_chat.json") for _ in range(3)])))
            answers = [client.chat.completions.create(**CHAT) for _ in range(3)]
            assert costtrack.flush() is True
        assert [a.usage.prompt_tokens for a in answers] == [2048] * 3
        stored = costtrack.default_tracker().records()
        assert len(stored) == 3 and {(r.cost_usd, r.price_source) for r in stored} == {(None, None)}
        assert {r.tokens_input for r in stored} == {2048}  # kept for `costtrack reprice` once the file is fixed
        said = [r.getMessage() for r in caplog.records if "COSTTRACK_PRICES_FILE" in r.getMessage()]
        assert len(said) == 1 and "must be a number" in said[0] and "costtrack reprice" in said[0]
    finally:
        costtrack.default_tracker().close()
    with pytest.raises(PricesFileError, match="must be a number"):  # given in code: at once
        costtrack.Tracker(f"sqlite:///{tmp_path}/given.db", prices_file=bad)
    # A tracker the app makes itself hears of the environment's file at once too: its hard limits would otherwise
    # estimate every call at $0 and refuse none (review finding).
    with pytest.raises(PricesFileError, match="must be a number"):
        costtrack.Tracker(f"sqlite:///{tmp_path}/made.db", budget=costtrack.Budget(monthly_usd=1, hard_limit=True))
    from costtrack.cli import run

    assert run(["demo", "--calls", "5", "--database-url", f"sqlite:///{tmp_path}/demo.db"]) == 2  # the CLI: one line


def test_a_bad_database_url_from_the_environment_turns_budgets_off_too(monkeypatch, outbox_dir):
    # Budgets count what the database holds; a hard limit must not pile up reservations that never settle.
    monkeypatch.setenv("COSTTRACK_DATABASE_URL", "mysql://app@db/costs")
    tracker = costtrack.Tracker(outbox_dir=outbox_dir, budget=costtrack.Budget(monthly_usd=0.0001, hard_limit=True))
    assert tracker.budget_monitor is None
    client = tracker.wrap(openai_client(Recorder(*[serve("openai_chat.json") for _ in range(5)])))
    assert len([client.chat.completions.create(**CHAT) for _ in range(5)]) == 5


def test_a_tracker_closes_at_the_end_of_a_with_block(tmp_path, outbox_dir, make_record) -> None:
    """`with Tracker(...)` and `async with` close it, its records written (it supported neither)."""
    import sqlite3

    url = f"sqlite:///{tmp_path}/t.db"
    with costtrack.Tracker(url, outbox_dir=outbox_dir) as tracker:
        tracker.add(make_record())
    assert tracker._writer is None  # closed

    async def main() -> costtrack.Tracker:
        async with costtrack.Tracker(url, outbox_dir=outbox_dir) as atracker:
            atracker.add(make_record())
        return atracker

    assert asyncio.run(main())._writer is None
    assert sqlite3.connect(f"{tmp_path}/t.db").execute("select count(*) from records").fetchone() == (2,)


def test_aflush_and_aclose_work_under_trio_too(tmp_path, outbox_dir) -> None:
    """They waited with asyncio.to_thread: under trio, 'no running event loop' (review finding)."""
    trio = pytest.importorskip("trio")
    from costtrack.simulator import Simulator, async_openai_client

    url = f"sqlite:///{tmp_path}/t.db"

    async def main() -> int:
        async with costtrack.Tracker(url, outbox_dir=outbox_dir) as tracker:
            client = tracker.wrap(async_openai_client(Simulator()))
            await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            assert await tracker.aflush()
            return len(tracker.records())

    assert trio.run(main) == 1


async def test_the_module_level_aflush_waits_off_the_loop(tmp_path) -> None:
    from costtrack.simulator import Simulator, async_openai_client

    tracker = costtrack.configure(database_url=f"sqlite:///{tmp_path}/d.db")
    try:
        client = costtrack.wrap(async_openai_client(Simulator()))
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert await costtrack.aflush()
        assert len(tracker.records()) == 1
    finally:
        await tracker.aclose()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="os.fork is POSIX-only")
def test_a_child_forked_while_another_thread_held_a_lock_records_and_exits(tmp_path):
    """A fork while the writer thread priced a record (or an app thread built the writer) left that lock held in the
    child for good: its first call or its exit hung, and its records never reached the database (review finding).
    Here the parent holds every such lock at the fork, as those threads would have."""
    url = f"sqlite:///{tmp_path}/fork.db"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        import costtrack
        from costtrack import logs, pricing, tracker as tracker_module
        from costtrack.store import database
        from helpers import Recorder, openai_client, serve
        tracker = costtrack.configure(database_url={url!r})
        client = costtrack.wrap(openai_client(Recorder(serve("openai_chat.json"))))
        ask = dict(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        client.chat.completions.create(**ask)
        assert costtrack.flush()
        locks = [tracker.pricebook._lock, tracker._lock, pricing._catalog_lock, pricing._default_lock,
                 tracker_module._default_lock, logs._lock, database._lock, database._ALEMBIC_LOCK]
        for lock in locks:
            lock.acquire()
        pid = os.fork()
        if pid == 0:
            client.chat.completions.create(**ask)
            sys.exit(0)  # its record is written at exit
        for lock in locks:
            lock.release()
        deadline = time.monotonic() + 60
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                sys.exit("the child hung")
            time.sleep(0.05)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert len(costtrack.Tracker(url).records()) == 2


def test_a_call_recorded_by_a_finalizer_while_the_writer_is_made_does_not_deadlock(tmp_path, outbox_dir, make_record):
    """Durability review: making the writer ran the garbage collector, which collected a dropped stream whose record
    went through Tracker.writer again, on the same thread, and deadlocked on its lock inside the app's SDK call."""
    import gc

    tracker = costtrack.Tracker(f"sqlite:///{tmp_path / 'gc.db'}", outbox_dir=outbox_dir)
    dropped = make_record(endpoint="/dropped-stream")

    def record_while_the_writer_is_made(phase: str, info: dict) -> None:
        frame = sys._getframe()
        while frame is not None and not (frame.f_code.co_name == "__init__" and frame.f_code.co_filename.endswith(
                "writer.py") and tracker._writer is None):  # fmt: skip
            frame = frame.f_back
        if phase == "start" and frame is not None and not done:
            done.append(True)
            tracker.add(dropped)  # what a dropped stream's finalizer does, on this thread

    done: list[bool] = []
    threshold = gc.get_threshold()
    gc.callbacks.append(record_while_the_writer_is_made)
    gc.set_threshold(1)  # a collection at the first allocations of Writer()
    try:
        worker = threading.Thread(target=tracker.add, args=(make_record(endpoint="/first"),), daemon=True)
        worker.start()
        worker.join(30)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(record_while_the_writer_is_made)
    assert not worker.is_alive() and done
    assert sorted(r.endpoint for r in tracker.records()) == ["/dropped-stream", "/first"]
    tracker.close()


@pytest.mark.parametrize("plain_calls", [0, 3])
def test_streams_left_open_at_exit_are_recorded(tmp_path, plain_calls):
    """Durability review: streams the app still held unread at exit were recorded only while the interpreter tore down,
    where no record could be made any more (0 of 20 stored; with other calls first, 10 of 30)."""
    url = f"sqlite:///{tmp_path}/open.db"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        import costtrack
        from helpers import Recorder, openai_client, serve
        costtrack.configure(database_url={url!r})
        chat = costtrack.wrap(openai_client(Recorder(serve("openai_chat.json"))))
        for _ in range({plain_calls}):
            chat.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        import httpx2
        from helpers import fixture

        class Events(httpx2.SyncByteStream):  # read an event at a time, as from the network
            def __iter__(self):
                for event in fixture("openai_chat_stream.sse").split(b"\\n\\n"):
                    if event.strip():
                        yield event + b"\\n\\n"

        respond = lambda request: httpx2.Response(200, headers={{"content-type": "text/event-stream"}}, stream=Events())
        streams = costtrack.wrap(openai_client(Recorder(respond)))
        held = []
        for _ in range(5):
            stream = streams.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}],
                                                     stream=True)
            next(iter(stream))
            held.append(stream)  # still open, unread, when the interpreter exits
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    stored = costtrack.Tracker(url).records()
    assert sorted(r.status for r in stored) == ["incomplete"] * 5 + ["ok"] * plain_calls


def _fork_child_call() -> None:
    import httpx2

    from helpers import fixture

    client = costtrack.wrap(openai_client(Recorder(lambda request: httpx2.Response(200, content=fixture("openai_chat.json"),
                                                                                   headers={"content-type": "application/json"}))))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_a_fork_child_does_not_record_its_parents_open_streams(tmp_path, outbox_dir, monkeypatch) -> None:
    """Last review: a multiprocessing fork child made while the parent read a stream recorded that stream too, at its
    own exit, under a new id (3 records became 5 with two children)."""
    monkeypatch.setenv("COSTTRACK_OUTBOX_DIR", str(outbox_dir))
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    tracker = costtrack.configure(database_url=url)
    try:
        _parent_stream_and_child_call(url)
    finally:
        tracker.close()


def _parent_stream_and_child_call(url: str) -> None:
    import multiprocessing

    import httpx2

    from helpers import fixture

    class Events(httpx2.SyncByteStream):
        def __iter__(self):  # type: ignore[no-untyped-def]
            for event in fixture("openai_chat_stream.sse").split(b"\n\n"):
                if event.strip():
                    yield event + b"\n\n"

    streams = costtrack.wrap(openai_client(Recorder(lambda request: httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, stream=Events()))))  # fmt: skip
    stream = streams.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True)
    next(iter(stream))  # open, part read, in the parent
    child = multiprocessing.get_context("fork").Process(target=_fork_child_call)
    child.start()
    child.join(60)
    assert child.exitcode == 0
    stream.close()
    assert costtrack.flush()
    assert sorted(r.status for r in costtrack.Tracker(url).records()) == ["incomplete", "ok"]  # the parent's, the child's


def test_a_call_recorded_by_a_finalizer_while_the_read_engine_is_made_does_not_deadlock(tmp_path, outbox_dir,
                                                                                        make_record) -> None:  # fmt: skip
    """Last review: the engine for reads (budgets' refresh, records()) was made under the tracker's lock too, where a
    dropped stream's finalizer recording its call took that lock again on the same thread."""
    import gc

    tracker = costtrack.Tracker(f"sqlite:///{tmp_path / 'gc.db'}", outbox_dir=outbox_dir)
    dropped = make_record(endpoint="/dropped-stream")
    done: list[bool] = []

    def record_while_the_engine_is_made(phase: str, info: dict) -> None:
        names = []
        frame = sys._getframe()
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        making = "make_engine" in names and "_read_engine" in names[names.index("make_engine"):]
        if phase == "start" and making and tracker._engine is None and not done:
            done.append(True)
            tracker.add(dropped)  # what a dropped stream's finalizer does, on this thread

    threshold = gc.get_threshold()
    gc.callbacks.append(record_while_the_engine_is_made)
    gc.set_threshold(1)
    try:
        worker = threading.Thread(target=tracker._read_engine, daemon=True)
        worker.start()
        worker.join(30)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(record_while_the_engine_is_made)
    assert not worker.is_alive() and done
    assert [r.endpoint for r in tracker.records()] == ["/dropped-stream"]
    tracker.close()
