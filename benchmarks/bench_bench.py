"""Is `costtrack bench` measuring the target, or itself? Its requests/s against a bare SDK loop's.

    python benchmarks/bench_bench.py [--requests 2000] [--concurrency 16] [--rounds 5] [--no-stream]

A zero-delay OpenAI-compatible server (tests/servers.py) runs in a separate
process on 127.0.0.1, so the client process has its core to itself. Two clients
then send the same requests at the same concurrency, in interleaved rounds:

- bare: AsyncOpenAI over a fresh httpx2.AsyncClient (a pool of `concurrency`
  connections), an asyncio semaphore, `requests` tasks, no costtrack;
- bench: costtrack.bench.Bench (the engine behind `costtrack bench`) with every
  request recorded into a temporary SQLite database, its own timing, bookkeeping
  and background writer included.

Printed: the median requests/s of each over the rounds, their ratio (the target:
>= 0.70), and the bench's own client CPU per request and event-loop busy share.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import costtrack  # noqa: E402
from costtrack.bench import DEFAULT_PROMPT, Bench, Target  # noqa: E402

from servers import free_port  # noqa: E402


async def bare_round(url: str, requests: int, concurrency: int, stream: bool) -> float:
    """Requests/s of a bare AsyncOpenAI loop (the bench's own request shape, nothing recorded)."""
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    http = httpx2.AsyncClient(limits=limits, timeout=60.0, trust_env=False)
    client = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0, timeout=60.0, http_client=http)
    kwargs: dict = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": DEFAULT_PROMPT}], "max_tokens": 200}
    if stream:
        kwargs.update(stream=True, stream_options={"include_usage": True})
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            if stream:
                async for _ in await client.chat.completions.create(**kwargs):
                    pass
            else:
                await client.chat.completions.create(**kwargs)

    start = time.perf_counter()
    await asyncio.gather(*[one() for _ in range(requests)])
    wall = time.perf_counter() - start
    await http.aclose()
    return requests / wall


def bench_round(url: str, requests: int, concurrency: int, stream: bool, tracker: costtrack.Tracker) -> tuple[float, float, float]:
    """(requests/s, client CPU ms/request, event-loop busy share) of costtrack's bench engine."""
    report = Bench([Target("local", url, "gpt-4o-mini")], tracker=tracker, requests=requests,
                   concurrency=(concurrency,), stream=stream).run()  # fmt: skip
    [result] = report.results
    assert result.ok == requests, result.errors
    return result.requests_per_s or 0.0, result.client_cpu_ms_per_request or 0.0, result.client_cpu_share or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrency (default 16)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--tokens", type=int, default=10, help="output tokens per answer (default 10)")
    parser.add_argument("--no-stream", dest="stream", action="store_false", help="plain answers instead of streams")
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "servers.py"), "--port", str(port), "--tokens", str(args.tokens)],
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "listening on ..."
        url = f"http://127.0.0.1:{port}/v1"
        tracker = costtrack.Tracker(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
        warm = max(args.requests // 10, args.concurrency)
        asyncio.run(bare_round(url, warm, args.concurrency, args.stream))
        bench_round(url, warm, args.concurrency, args.stream, tracker)
        bare: list[float] = []
        ours: list[float] = []
        cpu: list[float] = []
        share: list[float] = []
        for _ in range(args.rounds):
            bare.append(asyncio.run(bare_round(url, args.requests, args.concurrency, args.stream)))
            rps, ms, busy = bench_round(url, args.requests, args.concurrency, args.stream, tracker)
            ours.append(rps)
            cpu.append(ms)
            share.append(busy)
        tracker.close()
    finally:
        server.terminate()
        server.wait(10)
    b, o = statistics.median(bare), statistics.median(ours)
    kind = "streamed" if args.stream else "plain"
    print(f"{kind} answers, {args.tokens} tokens, concurrency {args.concurrency}, {args.requests} requests x {args.rounds} rounds")
    print(f"bare AsyncOpenAI loop : {b:8.1f} requests/s  (rounds: {', '.join(f'{x:.0f}' for x in bare)})")
    print(f"costtrack bench       : {o:8.1f} requests/s  (rounds: {', '.join(f'{x:.0f}' for x in ours)})")
    print(f"ratio                 : {o / b:8.3f}  (target >= 0.70)")
    print(f"bench client CPU      : {statistics.median(cpu):8.3f} ms/request, event loop busy {statistics.median(share):.0%}")


if __name__ == "__main__":
    main()
