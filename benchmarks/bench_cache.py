"""Response cache costs: a memory hit, a Redis hit, and the cache key of a 20 KB prompt.

    python benchmarks/bench_cache.py [--calls 4000] [--redis-url redis://127.0.0.1:6379/15]

1. The cache key of a 20 KB prompt.
2. costtrack's time on a hit, step by step, inside the transport (no SDK): reading
   the cache header, making the Call, the key, the lookup, building the replayed
   response, reading it through the transport's reader (the same as for a live
   response of the same bytes), and building the record (pricing included).
   The cache's own part is header + key + lookup + replay; the Call, the read
   and the record are what every wrapped call costs, cached or not.
3. End to end, through the SDK: the bare SDK answered by a MockTransport that
   returns the same bytes at once, a wrapped client without cache (a live call
   over the same mock), and wrapped clients answered from each cache. Calls are
   interleaved in rounds; figures are medians of wall time on the calling thread.

Redis figures are skipped when Redis is not reachable.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The same mock API and request as bench_wrap.py, so the figures compare.
import costtrack
from costtrack.cache import MemoryCache, RedisCache, cache_key

from bench_wrap import CHAT_BODY, MESSAGES, STREAM_BODY, handler, one_call


def per_call(fn: Callable[[], None], calls: int) -> list[float]:
    walls = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return walls


def compare(variants: dict[str, Callable[[], None]], calls: int, rounds: int) -> dict[str, float]:
    """Median µs per call of each variant, interleaved in rounds."""
    for fn in variants.values():
        per_call(fn, 200)  # warm up
    walls: dict[str, list[float]] = {name: [] for name in variants}
    per_round = max(calls // rounds, 1)
    for _ in range(rounds):
        for name, fn in variants.items():
            walls[name] += per_call(fn, per_round)
    return {name: statistics.median(w) * 1e6 for name, w in walls.items()}


def key_figures(repeat: int) -> None:
    text = ("The quick brown fox jumps over the lazy dog; " * 460)[:20_000]
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}],
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    prompt_bytes = len(json.dumps(body).encode())
    target = "api.openai.com:/v1/chat/completions"
    for _ in range(1000):
        cache_key("openai", "chat.completions", body, target=target)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(100):
            cache_key("openai", "chat.completions", body, target=target)
        samples.append((time.perf_counter() - t0) / 100)
    print(f"cache key, 20 KB prompt ({prompt_bytes} B request): {statistics.median(samples) * 1e6:6.1f} us   (budget 30 us)")
    text = "Größe – 数据 – ünïcödé "
    text = (text * (20_000 // len(text.encode()) + 1))[: 20_000 * len(text) // len(text.encode())]
    non_ascii = dict(body, messages=[{"role": "user", "content": text}])
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(100):
            cache_key("openai", "chat.completions", non_ascii, target=target)
        samples.append((time.perf_counter() - t0) / 100)
    size = len(text.encode())
    print(f"cache key, 20 KB non-ASCII prompt ({size} B UTF-8):   {statistics.median(samples) * 1e6:6.1f} us")


def step_figures(cache: Any, label: str, tracker: costtrack.Tracker, repeat: int) -> None:
    """costtrack's time per step of a hit, inside the transport (the SDK is not involved)."""
    from costtrack.transport import Instrument, take_cache_directive

    instrument = Instrument(tracker, provider="openai", api="openai", cache=cache)
    for stream in (False, True):
        body = {"messages": MESSAGES, "model": "gpt-4o-mini", **({"stream": True} if stream else {})}
        headers = {"authorization": "Bearer sk-bench", "content-type": "application/json", "x-stainless-retry-count": "0",
                   "x-stainless-lang": "python", "user-agent": "OpenAI/Python 3", "accept": "application/json"}  # fmt: skip
        request = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions", headers=headers,
                                 content=json.dumps(body).encode())  # fmt: skip
        call = instrument.begin(request)
        assert call is not None
        key, _ = instrument.cache_plan(call, request, None) or ("", False)
        cache.set(key, costtrack.cache.CachedResponse(
            200, (("content-type", "text/event-stream" if stream else "application/json"),),
            STREAM_BODY if stream else CHAT_BODY))  # fmt: skip
        entry = cache.get(key)
        assert entry is not None

        def replay_and_read() -> Any:
            hit = instrument.begin(request)
            hit.finished = True  # not recorded here: timed apart below
            response = instrument.replay(hit, entry, is_async=False)
            for _ in response.stream:
                pass
            return hit

        def live_read() -> None:
            # What a live call costs to read the same bytes (the response object comes from the provider).
            live = instrument.begin(request)
            live.finished = True
            response = instrument.response(live, live_response(), is_async=False)
            for _ in response.stream:
                pass

        def live_response() -> httpx2.Response:
            return httpx2.Response(200, headers=list(entry.headers), content=entry.body)

        def time_of(fn: Callable[[], Any], n: int = 200) -> float:
            samples = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                samples.append((time.perf_counter() - t0) / n)
            return statistics.median(samples) * 1e6

        done = replay_and_read()
        done.ended = done.started + 0.01
        figures = {
            "header": time_of(lambda: take_cache_directive(request)),
            "call": time_of(lambda: instrument.begin(request)),
            "key": time_of(lambda: instrument.cache_plan(call, request, None)),
            "lookup": time_of(lambda: cache.get(key)),
        }
        read = time_of(live_read) - time_of(live_response) - figures["call"]
        figures["replay"] = time_of(replay_and_read) - figures["call"] - read
        figures["read"] = read
        figures["record"] = time_of(lambda: done.record(tracker.pricebook))
        own = figures["header"] + figures["key"] + figures["lookup"] + figures["replay"]
        kind = "streaming" if stream else "non-streaming"
        steps = "  ".join(f"{name} {value:.1f}" for name, value in figures.items())
        print(f"{label} hit, {kind:>13}: {steps}  (us)")
        print(f"{'':>10} the cache's own part (header+key+lookup+replay) {own:6.1f} us; "
              f"all costtrack time on the hit {sum(figures.values()):6.1f} us")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="calls per variant (default 4000)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15", help="Redis for the Redis figures")
    args = parser.parse_args()

    print("== 1. cache key")
    key_figures(repeat=200)

    tmp = tempfile.mkdtemp()
    tracker = costtrack.Tracker(f"sqlite:///{tmp}/bench.db")
    bare = openai.OpenAI(api_key="sk-bench", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)
    memory = MemoryCache(ttl=3600)
    clients: dict[str, Any] = {
        "bare SDK": bare,
        "wrapped, no cache": costtrack.wrap(bare, tracker=tracker),
        "memory hit": costtrack.wrap(bare, tracker=tracker, cache=memory),
    }
    redis_cache: RedisCache | None = RedisCache(args.redis_url, ttl=3600, namespace=f"bench-{uuid.uuid4().hex[:8]}")
    probe = redis_cache.key("bench", "probe", {})
    redis_cache.get(probe)
    if redis_cache.stats()["errors"]:
        print(f"Redis not reachable at {args.redis_url}: Redis figures skipped")
        redis_cache = None
    else:
        clients["redis hit"] = costtrack.wrap(bare, tracker=tracker, cache=redis_cache)

    try:
        print("\n== 2. costtrack's time on a hit, by step (median)")
        step_figures(MemoryCache(ttl=3600), "memory", tracker, repeat=50)
        if redis_cache is not None:
            step_figures(redis_cache, " redis", tracker, repeat=50)
        print("\n== 3. end to end through the SDK")
        for stream in (False, True):
            for client in clients.values():
                one_call(client, stream)  # fill the caches
            variants = {name: (lambda c=client, s=stream: one_call(c, s)) for name, client in clients.items()}
            medians = compare(variants, args.calls, args.rounds)
            tracker.flush()
            base = medians["bare SDK"]
            kind = "streaming" if stream else "non-streaming"
            print(f"{kind}: median wall time per call (costtrack's recording of the call included)")
            for name, value in medians.items():
                added = "" if name == "bare SDK" else f"  added {value - base:6.1f} us"
                print(f"  {name:<18} {value:7.1f} us{added}")
            nocache = medians["wrapped, no cache"]
            for name in ("memory hit", "redis hit"):
                if name in medians:
                    print(f"  {name}: {medians[name] - nocache:+.1f} us vs a wrapped live call over the mock")
        print(f"\nmemory cache {memory.stats()}")
        if redis_cache is not None:
            print(f"redis cache  {redis_cache.stats()}")
    finally:
        if redis_cache is not None:
            redis_cache.clear(redis_cache.namespace)
            redis_cache.close()
        tracker.close()


if __name__ == "__main__":
    main()
