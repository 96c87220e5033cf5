"""Garbage-collector work caused by wrapping: collections per generation and thread, and their CPU per call.

    python benchmarks/bench_gc.py [--calls 20000] [--stream]

CPython collects a generation when the objects allocated and not yet freed pass a
threshold; a bare SDK call frees about what it allocates, so it almost never triggers one.
Objects the wrapper keeps alive across calls (finished calls queued for the writer, a
batch being built) do, and those still alive when collected move to older generations
until a full collection sweeps the whole heap (~70 ms in a process holding both SDKs,
SQLAlchemy and pydantic). Benchmarks that report a median hide that sweep; this one counts it.
Runs a bare client, then a wrapped one, `--calls` calls each after a warm-up, and prints,
per thread and generation, the collections and their CPU time per call (gc.callbacks).
"""

from __future__ import annotations

import argparse
import collections
import gc
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import costtrack

from bench_wrap import handler, one_call


class Collections:
    """Collections seen through gc.callbacks: count and thread CPU per (thread, generation)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, int], list[float]] = collections.defaultdict(lambda: [0, 0.0])
        self._started: dict[int, float] = {}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        thread = threading.current_thread()
        if phase == "start":
            self._started[thread.ident or 0] = time.thread_time()
            return
        entry = self.seen["app" if thread is threading.main_thread() else "writer", info["generation"]]
        entry[0] += 1
        entry[1] += time.thread_time() - self._started.pop(thread.ident or 0, time.thread_time())


def measure(client: openai.OpenAI, tracker: costtrack.Tracker, calls: int, stream: bool) -> Collections:
    """Collections during `calls` calls of `client` and the flush of their records."""
    for _ in range(300):
        one_call(client, stream)
    tracker.flush()
    gc.collect()
    counter = Collections()
    gc.callbacks.append(counter)
    try:
        for _ in range(calls):
            one_call(client, stream)
        tracker.flush()
    finally:
        gc.callbacks.remove(counter)
    return counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per client (default 20000)")
    parser.add_argument("--stream", action="store_true", help="streaming chat completions")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp()
    tracker = costtrack.Tracker(f"sqlite:///{tmp}/bench.db", budgets=[])
    bare = openai.OpenAI(api_key="sk-bench", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)
    kind = "streaming" if args.stream else "non-streaming"
    print(f"{kind}, {args.calls} calls each; objects tracked by the collector: {len(gc.get_objects()):,}")
    start = time.perf_counter()
    gc.collect()
    print(f"one full collection of this heap: {(time.perf_counter() - start) * 1e3:.1f} ms")
    for name, client in (("bare", bare), ("wrapped", tracker.wrap(bare))):
        seen = measure(client, tracker, args.calls, args.stream).seen
        total = sum(cpu for _, cpu in seen.values()) / args.calls * 1e6
        print(f"{name:>8}: {total:.2f} us of collection per call")
        for (thread, generation), (count, cpu) in sorted(seen.items()):
            print(f"{'':>10}{thread:>6} thread, generation {generation}: {count:>4} collections, "
                  f"{cpu / args.calls * 1e6:.2f} us per call")  # fmt: skip
    tracker.close()


if __name__ == "__main__":
    main()
