"""RSS growth over many wrapped calls (the writer's buffer must stay bounded).

    python benchmarks/bench_memory.py [--calls 1000000] [--database-url URL]

Prints RSS after a warm-up and then every 10% of the calls, and the growth.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import costtrack

from bench_wrap import handler, one_call


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc), falling back to the peak."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--stream-share", type=float, default=0.2, help="share of streamed calls")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--bare", action="store_true", help="measure the unwrapped SDK client, as a baseline")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    tracker = costtrack.Tracker(args.database_url or f"sqlite:///{tmp}/memory.db")
    client = openai.OpenAI(api_key="sk-bench", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)
    if not args.bare:
        client = tracker.wrap(client)
    every_stream = max(int(1 / args.stream_share), 1) if args.stream_share > 0 else 0
    for i in range(2000):
        one_call(client, bool(every_stream) and i % every_stream == 0)
    tracker.flush()
    start_rss = rss_mb()
    started = time.perf_counter()
    print(f"after warm-up: RSS {start_rss:.1f} MB", flush=True)
    step = max(args.calls // 10, 1)
    for i in range(1, args.calls + 1):
        one_call(client, bool(every_stream) and i % every_stream == 0)
        if i % step == 0:
            print(f"{i:>9,} calls: RSS {rss_mb():.1f} MB (+{rss_mb() - start_rss:.1f}), {i / (time.perf_counter() - started):,.0f} calls/s", flush=True)
    tracker.flush()
    growth = rss_mb() - start_rss
    kind = "bare SDK" if args.bare else "wrapped"
    print(f"RSS growth over {args.calls:,} {kind} calls: {growth:.1f} MB (target for wrapped: < 50 MB)")
    tracker.close()


if __name__ == "__main__":
    main()
