"""Added per-call cost of costtrack.wrap over the bare SDK (mock transport), wall and CPU time.

    python benchmarks/bench_wrap.py [--calls 4000] [--database-url sqlite:///bench.db]

Bare and wrapped calls are interleaved in rounds so drift on the machine hits
both alike. Wall time is the median per call on the calling thread; CPU time is
the process CPU time (every thread: background pricing and writing included)
divided by the calls, the writer flushed inside the wrapped rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import costtrack  # noqa: E402

CHAT_BODY = json.dumps(
    {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1763900000, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "A short answer."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 812, "completion_tokens": 40, "total_tokens": 852,
                  "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
    }  # fmt: skip
).encode()


def _stream_body() -> bytes:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18"}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]} for i in range(20)]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**base, "choices": [], "usage": {"prompt_tokens": 812, "completion_tokens": 20, "total_tokens": 832}})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


STREAM_BODY = _stream_body()


def handler(request: httpx2.Request) -> httpx2.Response:
    if b'"stream":true' in request.content:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=STREAM_BODY)
    return httpx2.Response(200, headers={"content-type": "application/json"}, content=CHAT_BODY)


MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Summarise: " + "lorem ipsum " * 200}]


def one_call(client: openai.OpenAI, stream: bool) -> None:
    if stream:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass
    else:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def measure(client: openai.OpenAI, stream: bool, calls: int, tracker: costtrack.Tracker | None) -> tuple[list[float], float]:
    walls: list[float] = []
    cpu0 = time.process_time()
    for _ in range(calls):
        t0 = time.perf_counter()
        one_call(client, stream)
        walls.append(time.perf_counter() - t0)
    if tracker is not None:
        tracker.flush()
    return walls, (time.process_time() - cpu0) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="calls per variant (default 4000)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp()
    tracker = costtrack.Tracker(args.database_url or f"sqlite:///{tmp}/bench.db")
    bare = openai.OpenAI(api_key="sk-bench", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)
    wrapped = tracker.wrap(bare)
    per_round = max(args.calls // args.rounds, 1)
    for stream in (False, True):
        for client in (bare, wrapped):  # warm up imports, price cache, writer thread
            for _ in range(200):
                one_call(client, stream)
        tracker.flush()
        bare_wall: list[float] = []
        wrapped_wall: list[float] = []
        bare_cpu: list[float] = []
        wrapped_cpu: list[float] = []
        for _ in range(args.rounds):
            walls, cpu = measure(bare, stream, per_round, None)
            bare_wall += walls
            bare_cpu.append(cpu)
            walls, cpu = measure(wrapped, stream, per_round, tracker)
            wrapped_wall += walls
            wrapped_cpu.append(cpu)
        bw, ww = statistics.median(bare_wall) * 1e6, statistics.median(wrapped_wall) * 1e6
        bc, wc = statistics.median(bare_cpu) * 1e6, statistics.median(wrapped_cpu) * 1e6
        kind = "streaming" if stream else "non-streaming"
        print(f"{kind:>14} wall: bare {bw:7.1f} us  wrapped {ww:7.1f} us  added {ww - bw:6.1f} us  ratio {ww / bw:.3f}")
        print(f"{kind:>14}  cpu: bare {bc:7.1f} us  wrapped {wc:7.1f} us  added {wc - bc:6.1f} us  ratio {wc / bc:.3f}")
    tracker.close()


if __name__ == "__main__":
    main()
