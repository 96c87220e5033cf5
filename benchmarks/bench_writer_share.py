"""How much of the GIL the background writer gets beside a CPU-bound caller (a tight loop of wrapped calls).

    python benchmarks/bench_writer_share.py [--calls 30000] [--stream-share 0.2]

Prints the calls/s of the loop, the writer's backlog at the end, and for the writer's two
steps (building records, inserting them) the wall time against the thread's own CPU time.
A step whose wall time is many times its CPU time is waiting for the GIL. Before the
hand-off in store/writer.py (a caller waits while the thread it woke runs one pass), the
record-building step showed wall/CPU ~50 here and the writer's queue grew without bound.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import costtrack
from costtrack.store import writer as writer_module

from bench_wrap import handler, one_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30_000)
    parser.add_argument("--stream-share", type=float, default=0.2)
    args = parser.parse_args()
    tracker = costtrack.Tracker(f"sqlite:///{tempfile.mkdtemp()}/share.db")
    client = tracker.wrap(
        openai.OpenAI(api_key="sk-bench", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)
    )
    every = max(int(1 / args.stream_share), 1) if args.stream_share > 0 else 0
    for i in range(2000):
        one_call(client, bool(every) and i % every == 0)
    tracker.flush()

    spent = {"prepare": [0.0, 0.0, 0], "store": [0.0, 0.0, 0]}
    prepare, store = writer_module.Writer._prepare, writer_module.Writer._store

    def timed(name, fn):
        def wrapper(self, items):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(self, items)
            finally:
                spent[name][0] += time.perf_counter() - wall
                spent[name][1] += time.thread_time() - cpu
                spent[name][2] += len(items)

        return wrapper

    writer_module.Writer._prepare = timed("prepare", prepare)  # type: ignore[method-assign]
    writer_module.Writer._store = timed("store", store)  # type: ignore[method-assign]
    started = time.perf_counter()
    for i in range(args.calls):
        one_call(client, bool(every) and i % every == 0)
    elapsed = time.perf_counter() - started
    print(f"{args.calls:,} wrapped calls at {args.calls / elapsed:,.0f} calls/s; writer backlog {tracker.writer.pending:,}")
    for name, (wall, cpu, items) in spent.items():
        per = 1e6 / max(items, 1)
        print(f"writer {name:>7}: {items:>7,} records, wall {wall:6.2f} s ({wall * per:8.1f} us/record), "
              f"thread CPU {cpu:5.2f} s ({cpu * per:6.1f} us/record), wall/CPU {wall / max(cpu, 1e-9):6.1f}")
    tracker.close()


if __name__ == "__main__":
    main()
