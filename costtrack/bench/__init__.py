"""Benchmark LLM endpoints side by side: latency, time to first token, throughput, errors, cost, startup.

The course's "API vs self-hosted" lab, measured rather than assumed: the same
prompts go to each target (OpenAI, Ollama, vLLM, llama.cpp server, any
OpenAI-compatible gateway, or Anthropic) at each concurrency level, through the
async SDK clients wrapped by costtrack, so every request is also a record
(endpoint ``bench:NAME``, tags ``bench_run``, ``concurrency``, ``bench_target``)
that ``costtrack stats``, ``report`` and ``calc --from-db`` read back.

    from costtrack.bench import Bench, Target

    bench = Bench(
        [Target("api", "https://api.openai.com/v1", "gpt-4o-mini", api_key=key),
         Target("local", "http://localhost:11434/v1", "llama3.1:8b")],
        tracker=costtrack.Tracker("sqlite:///bench.db"), requests=50, concurrency=(1, 4, 16),
    )
    bench.wait_ready(["local"])       # cold start: until GET /models answers
    report = bench.run()              # Ctrl-C: the partial report, records flushed
    print(report.as_dict())

What is measured, per target and concurrency level (``requests`` requests, at most
``concurrency`` in flight, an asyncio semaphore over one fresh ``httpx2.AsyncClient``
whose connection pool holds ``concurrency`` connections):

- latency: from sending the request to the end of the answer (a stream read to its
  end), client side, successful requests only; p50/p95/p99, nearest rank (the
  definition `costtrack stats` uses: always an observed value);
- TTFT (streams only): to the first chunk carrying content;
- output tokens per second per request: output tokens / latency, the median over
  successful requests; ``tokens_per_s`` and ``requests_per_s`` overall: output
  tokens and successful requests over the level's wall time;
- errors by type: ``rate_limit`` (429), ``timeout``, ``5xx`` (529 overloaded
  included), ``connection``, ``4xx``, ``other``. The SDKs' own retries are off
  (``max_retries=0``) so each error is seen, not hidden behind a retry;
- cost per successful request (and per 1K) from the price catalog or prices file,
  at the model the server answered with; for a self-hosted model priced per hour
  (``per_hour`` in the prices file) the hour's price over the measured throughput,
  ``per_hour / 3600 / requests_per_s``: what a request costs on a machine kept as
  busy as this level kept it;
- the client's own CPU time per request (the event-loop thread, where the SDK,
  costtrack's transport and this module run), and a warning when it reaches 80%
  of one core: then the client, not the target, limits the figures.

Failure injection (``Injection``, ``--inject``) happens in the client, in an
httpx2 transport *below* costtrack's, so an injected 429 or timeout is recorded
exactly as a real one would be. A `fallback` chain runs the targets through a
``costtrack.CheapFirst`` chain (the first target first, the next on a retryable
failure) to show how the chain degrades when one side does.
"""

from .chart import save_chart
from .readiness import probe_models, wait_ready
from .results import FailedTarget
from .runner import Bench, BenchReport, LevelResult, percentile
from .targets import (
    DEFAULT_PROMPT,
    ERROR_KINDS,
    BenchError,
    Injection,
    Target,
    load_prompts,
    parse_concurrency,
    parse_duration,
    parse_inject,
    parse_targets,
)
from .transport import error_kind

__all__ = [
    "DEFAULT_PROMPT",
    "ERROR_KINDS",
    "Bench",
    "BenchError",
    "BenchReport",
    "FailedTarget",
    "Injection",
    "LevelResult",
    "Target",
    "error_kind",
    "load_prompts",
    "parse_concurrency",
    "parse_duration",
    "parse_inject",
    "parse_targets",
    "percentile",
    "probe_models",
    "save_chart",
    "wait_ready",
]
