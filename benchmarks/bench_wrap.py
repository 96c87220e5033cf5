"""Added per-call cost of costtrack.wrap over the bare SDK (mock transport), wall and CPU time.

    python benchmarks/bench_wrap.py [--calls 4000] [--warmup 5000] [--database-url sqlite:///bench.db] [--in-memory] [--chunks 20]

Bare and wrapped calls alternate one by one (in random order within each pair), so
the drift of a shared machine, which moves a call's time by tens of percent within
seconds, hits both alike. Wall time is the median per call on the calling thread.
CPU time counts every thread: the calling thread's CPU per call (median, bare and
wrapped), plus what the background writer thread spent per record (parsing, pricing,
hashing, inserting). The writer works in batches, so its figure is a median too: of
each batch's CPU per record (read when the writer reports the batch stored), which is
what the ratio uses, the same statistic as the calls'; the mean over the whole run is
printed beside it, and the process's total CPU beside the sum of all parts, so
nothing can hide in another thread or in the choice of statistic.

The mock serves each side what the API would, read the way a network transport hands it
on (a stream one event per read; a stream carries its usage chunk, and "usage":null in
every other chunk, only when the request asks, as the wrapped one does). --in-memory serves
whole bodies already in memory instead, as a cache or a test does.

Timing starts after --warmup wrapped calls (5,000): a fresh database file's first few thousand
records cost the writer page faults (most likely SQLite's page cache filling with new pages), a cost
of the file's first minutes that an app running for a while no longer pays; `--warmup 200` shows it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import costtrack

CHAT_BODY = json.dumps(
    {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1763900000, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "A short answer."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 812, "completion_tokens": 40, "total_tokens": 852,
                  "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
    }
).encode()


def _stream_body(usage: bool, chunks: int = 20) -> bytes:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18"}
    if usage:  # asked for usage, the API puts "usage": null in every other chunk
        base["usage"] = None
    events = [{**base, "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]} for i in range(chunks)]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        events.append({**base, "choices": [], "usage": {"prompt_tokens": 812, "completion_tokens": 20, "total_tokens": 832}})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


#: A chat stream as the API sends it when asked for usage (stream_options.include_usage), and when not.
STREAM_BODY = _stream_body(usage=True)
STREAM_BODY_NO_USAGE = _stream_body(usage=False)


class NetworkBody(httpx2.SyncByteStream):
    """A body as a network transport hands it on: in pieces, read when the SDK reads (not in memory up front)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield from self._pieces


def _events(body: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in body.split(b"\n\n") if event]


_STREAM_BODIES = {True: STREAM_BODY, False: STREAM_BODY_NO_USAGE}  # by whether the request asks for usage
_STREAM_PIECES = {asks: _events(body) for asks, body in _STREAM_BODIES.items()}


def _asks_usage(request: httpx2.Request) -> bool:
    return b'"include_usage":true' in request.content


def handler(request: httpx2.Request) -> httpx2.Response:
    """The API's answers, as a network transport gives them: a JSON body in one piece with its length, a stream
    one event per piece with no length (the API flushes each chunk as it is generated). Like the real API, a
    stream carries its usage chunk only when the request asks for it (the bare call does not; the wrapped one
    does, and costtrack hides the chunk from the app), so each side is served what it would be."""
    if b'"stream":true' in request.content:
        pieces = _STREAM_PIECES[_asks_usage(request)]
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=NetworkBody(pieces))
    headers = {"content-type": "application/json", "content-length": str(len(CHAT_BODY))}
    return httpx2.Response(200, headers=headers, stream=NetworkBody([CHAT_BODY]))


def in_memory_handler(request: httpx2.Request) -> httpx2.Response:
    """The same answers as whole bodies already in memory (httpx2.Response(content=...)), as a cache or a test gives them."""
    if b'"stream":true' in request.content:
        body = _STREAM_BODIES[_asks_usage(request)]
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    return httpx2.Response(200, headers={"content-type": "application/json"}, content=CHAT_BODY)


MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Summarise: " + "lorem ipsum " * 200}]


def one_call(client: openai.OpenAI, stream: bool) -> None:
    if stream:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass
    else:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


class WriterBatches:
    """CPU per record of each batch the writer stores, from its thread's clock and its `stored` count."""

    def __init__(self, tracker: costtrack.Tracker) -> None:
        self._tracker = tracker
        self.per_record: list[float] = []
        self._cpu, self._stored = _writer_cpu(tracker), tracker.writer.stats["stored"]

    def look(self) -> None:
        """Between two calls: if batches were stored since the last look, note their CPU per record."""
        stored = self._tracker.writer.stats["stored"]
        if stored != self._stored:
            cpu = _writer_cpu(self._tracker)
            self.per_record.append((cpu - self._cpu) / (stored - self._stored))
            self._cpu, self._stored = cpu, stored


def _pair(bare: openai.OpenAI, wrapped: openai.OpenAI, stream: bool, rng: random.Random,
          out: dict[str, list[float]]) -> None:  # fmt: skip
    """One bare and one wrapped call, in random order: wall and calling-thread CPU of each."""
    for name in ("bare", "wrapped") if rng.random() < 0.5 else ("wrapped", "bare"):
        client = bare if name == "bare" else wrapped
        t0, c0 = time.perf_counter(), time.thread_time()
        one_call(client, stream)
        c1, t1 = time.thread_time(), time.perf_counter()
        out[name + "_wall"].append(t1 - t0)
        out[name + "_cpu"].append(c1 - c0)


def _writer_cpu(tracker: costtrack.Tracker) -> float:
    """CPU seconds the tracker's writer thread has used so far."""
    thread = tracker.writer._thread
    assert thread is not None and thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="calls per variant (default 4000)")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--seed", type=int, default=1, help="seed of the call order (default 1)")
    parser.add_argument("--in-memory", action="store_true",
                        help="serve whole bodies already in memory (as a cache or a test does) instead of network-read ones")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=5000,
                        help="wrapped calls before the timed ones (default 5000; at least 200): a database file's first few thousand "
                             "records cost the writer page faults an app that has run for a while no longer pays; 200 times a fresh "
                             "file's first calls")  # fmt: skip
    parser.add_argument("--chunks", type=int, default=20,
                        help="content chunks of a stream (default 20): run 2 and 60 to split a stream's cost into per stream and per chunk")  # fmt: skip
    args = parser.parse_args()
    if args.chunks != 20:
        for asks in (True, False):
            _STREAM_BODIES[asks] = _stream_body(asks, args.chunks)
            _STREAM_PIECES[asks] = _events(_STREAM_BODIES[asks])

    tmp = tempfile.mkdtemp()
    tracker = costtrack.Tracker(args.database_url or f"sqlite:///{tmp}/bench.db", budgets=[])
    serve = in_memory_handler if args.in_memory else handler
    bare = openai.OpenAI(api_key="sk-bench", http_client=httpx2.Client(transport=httpx2.MockTransport(serve)), max_retries=0)
    wrapped = tracker.wrap(bare)
    rng = random.Random(args.seed)
    for stream in (False, True):
        for client, warmup in ((bare, 200), (wrapped, max(args.warmup, 200))):  # imports, price cache, writer, database
            for _ in range(warmup):
                one_call(client, stream)
        tracker.flush()
        out: dict[str, list[float]] = {k: [] for k in ("bare_wall", "wrapped_wall", "bare_cpu", "wrapped_cpu")}
        process0, writer0 = time.process_time(), _writer_cpu(tracker)
        batches = WriterBatches(tracker)
        for _ in range(args.calls):
            _pair(bare, wrapped, stream, rng, out)
            batches.look()
        tracker.flush()
        batches.look()
        process = time.process_time() - process0
        writer = _writer_cpu(tracker) - writer0
        kind = "streaming" if stream else "non-streaming"
        bw, ww = statistics.median(out["bare_wall"]) * 1e6, statistics.median(out["wrapped_wall"]) * 1e6
        bc, wc = statistics.median(out["bare_cpu"]) * 1e6, statistics.median(out["wrapped_cpu"]) * 1e6
        wr = statistics.median(batches.per_record) * 1e6
        mean = writer / args.calls * 1e6
        print(f"{kind:>14} wall: bare {bw:7.1f} us  wrapped {ww:7.1f} us  added {ww - bw:6.1f} us  ratio {ww / bw:.3f}")
        print(f"{kind:>14}  cpu: bare {bc:7.1f} us  wrapped {wc + wr:7.1f} us  added {wc + wr - bc:6.1f} us  "
              f"ratio {(wc + wr) / bc:.3f}  (calling thread +{wc - bc:.1f} us, writer thread {wr:.1f} us per record: "
              f"median of {len(batches.per_record)} batches; mean {mean:.1f}, ratio with it {(wc + mean) / bc:.3f})")  # fmt: skip
        parts = sum(out["bare_cpu"]) + sum(out["wrapped_cpu"]) + writer
        print(f"{'':>14}       process CPU {process:.3f} s = calls and writer {parts:.3f} s + other {process - parts:+.3f} s")
    tracker.close()


if __name__ == "__main__":
    main()
