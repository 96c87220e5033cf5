"""Running a bench: per target and concurrency level, samples in, a report out."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import httpx2

from ..errors import ConfigError
from ..usage import Usage

if TYPE_CHECKING:
    from ..pricing import PriceBook
    from ..tracker import Tracker

from .readiness import wait_ready
from .targets import DEFAULT_PROMPT, ERROR_KINDS, NO_KEY, SDKS, Target
from .transport import _ANSWERED, BenchTransport, _TargetState, error_kind

# --------------------------------------------------------------------------- measuring


class Sample:
    """One request as the client saw it (seconds, from perf_counter)."""

    __slots__ = ("latency", "ttft", "usage", "model", "error", "answered_by", "tokens_estimated")

    def __init__(self) -> None:
        self.latency = 0.0
        self.ttft: float | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.error: str | None = None
        self.answered_by: str | None = None
        self.tokens_estimated = False


def _openai_usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input=int(getattr(usage, "prompt_tokens", 0) or 0),
        output=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_input=int(getattr(prompt_details, "cached_tokens", 0) or 0),
        reasoning=int(getattr(completion_details, "reasoning_tokens", 0) or 0),
    )


def _anthropic_usage(usage: Any, output: int | None = None) -> Usage | None:
    if usage is None:
        return None
    read = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
    write = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
    return Usage(
        input=int(getattr(usage, "input_tokens", 0) or 0) + read + write,
        output=int(getattr(usage, "output_tokens", 0) or 0) if output is None else output,
        cached_input=read,
        cache_write=write,
    )


def _token_parameter(target: Target) -> str:
    # OpenAI's newer models refuse max_tokens; local servers know max_tokens best.
    return "max_completion_tokens" if (httpx2.URL(target.base_url).host or "") == "api.openai.com" else "max_tokens"


class _Caller:
    """Sends one prompt to one (wrapped) client and times it; never raises but CancelledError."""

    def __init__(self, client: Any, target: Target, prompts: Sequence[str], max_tokens: int, stream: bool,
                 clock: Callable[[], float]) -> None:  # fmt: skip
        self.client = client
        self.sdk = target.sdk
        self.clock = clock
        self.stream = stream
        if target.sdk == "anthropic":
            base = {"model": target.model, "max_tokens": max_tokens}
            self.create = client.messages.create
        else:
            base = {"model": target.model, _token_parameter(target): max_tokens}
            if stream:
                base["stream_options"] = {"include_usage": True}
            self.create = client.chat.completions.create
        if stream:
            base["stream"] = True
        self.requests = [{**base, "messages": [{"role": "user", "content": p}]} for p in prompts]

    async def __call__(self, index: int) -> Sample:
        sample = Sample()
        slot: list[str | None] = [None]
        _ANSWERED.set(slot)
        kwargs = self.requests[index % len(self.requests)]
        clock = self.clock
        start = clock()
        try:
            if self.sdk == "anthropic":
                await self._anthropic(sample, kwargs, start)
            else:
                await self._openai(sample, kwargs, start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            sample.error = error_kind(exc)
        sample.latency = clock() - start
        sample.answered_by = slot[0]
        return sample

    async def _openai(self, sample: Sample, kwargs: dict[str, Any], start: float) -> None:
        if not self.stream:
            response = await self.create(**kwargs)
            sample.model = response.model
            sample.usage = _openai_usage(response.usage)
            return
        stream = await self.create(**kwargs)
        chunks = 0
        usage = None
        model = None
        clock = self.clock
        async for chunk in stream:
            choices = chunk.choices
            if choices:
                delta = choices[0].delta
                if delta is not None and (delta.content or delta.tool_calls or getattr(delta, "reasoning_content", None)):
                    chunks += 1
                    if sample.ttft is None:
                        sample.ttft = clock() - start
            if chunk.usage is not None:
                usage = chunk.usage
            model = chunk.model or model
        sample.model = model
        sample.usage = _openai_usage(usage)
        if sample.usage is None and chunks:
            sample.usage = Usage(output=chunks)  # a server that ignores include_usage: one token a chunk
            sample.tokens_estimated = True

    async def _anthropic(self, sample: Sample, kwargs: dict[str, Any], start: float) -> None:
        if not self.stream:
            response = await self.create(**kwargs)
            sample.model = response.model
            sample.usage = _anthropic_usage(response.usage)
            return
        stream = await self.create(**kwargs)
        start_usage = None
        output: int | None = None
        clock = self.clock
        async for event in stream:
            kind = event.type
            if kind == "content_block_delta":
                if sample.ttft is None:
                    sample.ttft = clock() - start
            elif kind == "message_start":
                start_usage = event.message.usage
                sample.model = event.message.model
            elif kind == "message_delta":
                output = event.usage.output_tokens
        sample.usage = _anthropic_usage(start_usage, output)


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank p-th percentile (the smallest value with at least p% of values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(p / 100.0 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]


def _ms_percentiles(values: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for p in (50, 95, 99):
        value = percentile(ordered, p)
        out[f"p{p}"] = None if value is None else round(value * 1000.0, 3)
    return out


@dataclass
class LevelResult:
    """The figures of one target (or fallback chain) at one concurrency level."""

    target: str
    model: str
    provider: str
    sdk: str
    concurrency: int
    planned: int
    requests: int  # sent and finished (fewer than planned when interrupted)
    ok: int
    errors: dict[str, int]
    latency_ms: dict[str, float | None]
    ttft_ms: dict[str, float | None]
    output_tokens_per_s: float | None
    requests_per_s: float | None
    tokens_per_s: float | None
    wall_s: float
    input_tokens: int
    output_tokens: int
    cost_per_request_usd: float | None
    cost_per_1k_requests_usd: float | None
    cost_basis: str | None
    client_cpu_ms_per_request: float | None
    client_cpu_share: float | None
    stream: bool
    interrupted: bool = False
    injected: dict[str, int] | None = None
    inject_spec: str | None = None
    chain: list[str] | None = None
    attempts: dict[str, int] | None = None
    answered_by: dict[str, int] | None = None
    tokens_estimated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "target": self.target, "model": self.model, "provider": self.provider, "sdk": self.sdk,
            "concurrency": self.concurrency, "planned": self.planned, "requests": self.requests, "ok": self.ok,
            "errors": dict(self.errors), "latency_ms": dict(self.latency_ms), "ttft_ms": dict(self.ttft_ms),
            "output_tokens_per_s": self.output_tokens_per_s, "requests_per_s": self.requests_per_s,
            "tokens_per_s": self.tokens_per_s, "wall_s": self.wall_s, "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens, "cost_per_request_usd": self.cost_per_request_usd,
            "cost_per_1k_requests_usd": self.cost_per_1k_requests_usd, "cost_basis": self.cost_basis,
            "client_cpu_ms_per_request": self.client_cpu_ms_per_request, "client_cpu_share": self.client_cpu_share,
            "stream": self.stream, "interrupted": self.interrupted, "tokens_estimated": self.tokens_estimated,
        }  # fmt: skip
        if self.injected is not None:
            data["injected"] = dict(self.injected)
            data["inject"] = self.inject_spec
        if self.chain is not None:
            data["chain"] = list(self.chain)
            data["attempts"] = dict(self.attempts or {})
            data["answered_by"] = dict(self.answered_by or {})
        return data


@dataclass
class BenchReport:
    """Everything a run measured (so far, when it was interrupted)."""

    run_id: str
    started_at: datetime
    results: list[LevelResult]
    startup_s: dict[str, float]
    warnings: list[str]
    interrupted: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "interrupted": self.interrupted,
            "results": [r.as_dict() for r in self.results],
            "startup_s": dict(self.startup_s),
            "warnings": list(self.warnings),
        }


def new_run_id(now: datetime | None = None) -> str:
    """A run id: UTC time and a random suffix, e.g. 20261123T193100-a1b2."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


class Bench:
    """A benchmark over `targets` (see the module docstring).

    Args:
        targets: the endpoints, each measured on its own, one after the other.
        tracker: where every request is recorded (default: the process default tracker).
        requests: requests per target and concurrency level.
        concurrency: the levels, e.g. (1, 4, 16).
        prompts: sent in turn (default: DEFAULT_PROMPT).
        max_tokens: the answer's cap (``max_completion_tokens`` on api.openai.com).
        stream: stream answers (needed for TTFT).
        timeout: seconds per request (the SDK's timeout).
        fallback: target names for a CheapFirst chain, cheapest first, measured after the targets.
        on_progress: ``on_progress(label)`` after each finished request (label: a target name or the chain's "a>b").
        cpu_warn_share: warn when the client's event-loop thread is busy this share of the wall time.
        clock, cpu_clock: the wall clock and the loop thread's CPU clock (injectable).
        prime: before measuring, warm the client up without the network (see `_prime`), so the
            first measured request does not pay for imports, the price catalog or the database schema.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        tracker: Tracker | None = None,
        requests: int = 50,
        concurrency: Sequence[int] = (1,),
        prompts: Sequence[str] | None = None,
        max_tokens: int = 200,
        stream: bool = True,
        timeout: float = 60.0,
        fallback: Sequence[str] | None = None,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        on_progress: Callable[[str], None] | None = None,
        cpu_warn_share: float = 0.8,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.thread_time,
        prime: bool = True,
    ) -> None:
        if not targets:
            raise ConfigError("no targets to benchmark")
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ConfigError("two targets have the same name")
        for target in targets:
            if target.sdk not in SDKS:
                raise ConfigError(f"target {target.name!r}: sdk must be 'openai' or 'anthropic', not {target.sdk!r}")
            if importlib.util.find_spec(target.sdk) is None:
                raise ConfigError(f"target {target.name!r} needs the {target.sdk} SDK: pip install 'costtrack[{target.sdk}]'")
        if requests < 1:
            raise ConfigError("--requests must be at least 1")
        if not concurrency or any(c < 1 for c in concurrency):
            raise ConfigError("--concurrency levels must be positive")
        if max_tokens < 1:
            raise ConfigError("--max-tokens must be at least 1")
        if timeout <= 0:
            raise ConfigError("--timeout must be positive")
        self.targets = list(targets)
        self.by_name = {t.name: t for t in self.targets}
        self.chain: list[Target] | None = None
        if fallback is not None:
            self.chain = self._check_chain(fallback)
        if tracker is None:
            from ..tracker import default_tracker

            tracker = default_tracker()
        self.tracker = tracker
        self.requests = requests
        self.concurrency = tuple(concurrency)
        self.prompts = list(prompts) if prompts else [DEFAULT_PROMPT]
        self.max_tokens = max_tokens
        self.stream = stream
        self.timeout = timeout
        self.started_at = datetime.now(timezone.utc)
        self.run_id = run_id or new_run_id(self.started_at)
        self.tags = dict(tags or {})
        self.on_progress = on_progress
        self.cpu_warn_share = cpu_warn_share
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.prime = prime
        self.results: list[LevelResult] = []
        self.startup_s: dict[str, float] = {}
        self.warnings: list[str] = []
        self.interrupted = False
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _check_chain(self, names: Sequence[str]) -> list[Target]:
        names = [n.strip() for n in names if n.strip()]
        if len(names) < 2:
            raise ConfigError("--fallback needs at least two target names, cheapest first, e.g. --fallback local,api")
        chain = []
        for name in names:
            if name not in self.by_name:
                raise ConfigError(f"--fallback: there is no target named {name!r} (targets: {', '.join(self.by_name)})")
            if self.by_name[name] in chain:
                raise ConfigError(f"--fallback: {name!r} is listed twice")
            chain.append(self.by_name[name])
        if len({t.sdk for t in chain}) > 1:
            raise ConfigError("--fallback: every target of a chain must use the same SDK (all openai, or all anthropic)")
        return chain

    # -- labels and plan

    @property
    def labels(self) -> list[str]:
        """What progress is reported for: each target, then the chain."""
        out = [t.name for t in self.targets]
        if self.chain is not None:
            out.append(">".join(t.name for t in self.chain))
        return out

    def planned(self, label: str) -> int:
        """Requests planned for a label over all levels."""
        return self.requests * len(self.concurrency)

    # -- readiness

    def wait_ready(self, names: Sequence[str], **options: Any) -> dict[str, float]:
        """`wait_ready()` for the named targets; the result is kept in the report's `startup_s`."""
        targets = []
        for name in names:
            if name not in self.by_name:
                raise ConfigError(f"--wait-ready {name}: there is no target named {name!r} (targets: {', '.join(self.by_name)})")
            targets.append(self.by_name[name])
        ready = wait_ready(targets, **options)
        self.startup_s.update(ready)
        return ready

    # -- running

    def run(self) -> BenchReport:
        """Measure every target at every level; on Ctrl-C (or `stop()`), stop and return what was measured.

        Records are flushed before returning either way.
        """
        try:
            asyncio.run(self.arun())
        except (KeyboardInterrupt, asyncio.CancelledError):
            self.interrupted = True
        finally:
            self.tracker.flush()
        return self.report()

    def stop(self) -> None:
        """Stop a running benchmark from any thread (or a progress callback): in-flight requests are cancelled."""
        self.interrupted = True
        task, loop = self._task, self._loop
        if task is not None and loop is not None and not task.done():
            loop.call_soon_threadsafe(task.cancel)

    async def arun(self) -> BenchReport:
        """`run()` for async code; a cancellation keeps the partial results and is re-raised."""
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        try:
            if self.prime:
                await self._prime()
            for target in self.targets:
                for level in self.concurrency:
                    await self._level([target], level)
            if self.chain is not None:
                for level in self.concurrency:
                    await self._level(self.chain, level)
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.interrupted = True
            raise
        finally:
            self._task = None
        return self.report()

    def report(self) -> BenchReport:
        """What was measured so far."""
        return BenchReport(self.run_id, self.started_at, list(self.results), dict(self.startup_s),
                           list(self.warnings), self.interrupted)  # fmt: skip

    # -- warming up (the client must not be what is measured)

    async def _prime(self) -> None:
        """Pay the client's one-time costs before the clock runs, without sending anything anywhere.

        The database schema is checked (and a new SQLite file migrated) in a worker
        thread; each target's model is resolved in the price catalog; one plain and one
        streamed call per SDK go through a wrapped client over an in-memory transport,
        recorded nowhere, so the SDK's lazy imports and costtrack's recording path are warm.
        """
        from ..tracker import Tracker

        await asyncio.to_thread(self._prepare_database)
        now = datetime.now(timezone.utc)
        for target in self.targets:
            try:
                self.tracker.pricebook.rates(target.recorded_provider, target.model, now)
            except Exception:
                pass
        scratch = Tracker(pricebook=self.tracker.pricebook, writer=_NullWriter())  # type: ignore[arg-type]
        for target in {t.sdk: t for t in self.targets}.values():
            http = httpx2.AsyncClient(transport=httpx2.MockTransport(_canned_answer))
            options = {"base_url": target.base_url, "api_key": "sk-prime", "max_retries": 0, "http_client": http}
            try:
                if target.sdk == "anthropic":
                    from anthropic import AsyncAnthropic

                    raw: Any = AsyncAnthropic(**options)
                else:
                    from openai import AsyncOpenAI

                    raw = AsyncOpenAI(**options)
                client = scratch.wrap(raw, endpoint="bench:prime", provider=target.provider)
                for stream in (False, True):
                    await _Caller(client, target, ["prime"], 8, stream, self.clock)(0)
            except Exception:
                pass
            finally:
                await http.aclose()

    def _prepare_database(self) -> None:
        url = getattr(self.tracker, "database_url", None)
        if getattr(self.tracker, "_writer", None) is not None:
            return  # already writing: its schema is known
        try:
            from ..store.database import ensure_schema, make_engine, resolve_url

            engine = make_engine(resolve_url(url))
            try:
                ensure_schema(engine)
            finally:
                engine.dispose()
        except Exception:
            pass  # the writer reports it (and keeps records in the outbox)

    # -- one level

    def _client(self, target: Target, level: int, state: _TargetState) -> tuple[Any, Any]:
        """(raw SDK client, its httpx2 client): a fresh pool of `level` connections, faults below costtrack."""
        limits = httpx2.Limits(max_connections=level, max_keepalive_connections=level)
        http = httpx2.AsyncClient(limits=limits, timeout=httpx2.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                                  trust_env=not target.is_loopback)  # fmt: skip
        http._transport = BenchTransport(http._transport, state)
        http._mounts = {p: None if t is None else BenchTransport(t, state) for p, t in http._mounts.items()}
        options = {"base_url": target.base_url, "api_key": target.api_key or NO_KEY, "max_retries": 0,
                   "timeout": self.timeout, "http_client": http}  # fmt: skip
        if target.sdk == "anthropic":
            from anthropic import AsyncAnthropic

            client: Any = AsyncAnthropic(**options)
        else:
            from openai import AsyncOpenAI

            client = AsyncOpenAI(**options)
        return client, http

    def _tags(self, label: str, level: int, extra: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.tags, "bench_run": self.run_id, "concurrency": level, "bench_target": label, **extra}

    async def _level(self, chain: Sequence[Target], level: int) -> None:
        is_chain = len(chain) > 1
        label = ">".join(t.name for t in chain) if is_chain else chain[0].name
        endpoint = f"bench:{label}"
        states = {t.name: _TargetState(t) for t in chain}
        https: list[Any] = []
        clients: list[Any] = []
        for target in chain:
            extra = {"bench_inject": target.inject.spec} if target.inject is not None else {}
            if is_chain:
                extra["bench_fallback"] = label
            raw, http = self._client(target, level, states[target.name])
            https.append(http)
            clients.append((target, raw, self._tags(label, level, extra)))
        if is_chain:
            from ..fallback import CheapFirst

            others = [
                (self.tracker.wrap(raw, endpoint=endpoint, tags=tags, provider=target.provider), target.model)
                for target, raw, tags in clients[1:]
            ]
            first, raw, tags = clients[0]
            policy = CheapFirst([first.model, *others])
            wrapped = self.tracker.wrap(raw, endpoint=endpoint, tags=tags, provider=first.provider, fallback=policy)
        else:
            first, raw, tags = clients[0]
            wrapped = self.tracker.wrap(raw, endpoint=endpoint, tags=tags, provider=first.provider)
        call = _Caller(wrapped, chain[0], self.prompts, self.max_tokens, self.stream, self.clock)
        samples: list[Sample] = []
        progress = self.on_progress
        semaphore = asyncio.Semaphore(level)

        async def one(index: int) -> None:
            async with semaphore:
                sample = await call(index)
            samples.append(sample)
            if progress is not None:
                progress(label)

        interrupted = False
        cpu0 = self.cpu_clock()
        t0 = self.clock()
        tasks = [asyncio.ensure_future(one(i)) for i in range(self.requests)]
        try:
            await asyncio.gather(*tasks)
        except (asyncio.CancelledError, KeyboardInterrupt):  # stop(), or Ctrl-C
            interrupted = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            wall = self.clock() - t0
            cpu = self.cpu_clock() - cpu0
            for http in https:
                try:
                    await http.aclose()
                except Exception:
                    pass
            result = self._summarize(chain, label, level, samples, wall, cpu, states, interrupted)
            self.results.append(result)
            self.warnings.extend(note for note in result.notes if note not in self.warnings)

    # -- summarising

    def _summarize(self, chain: Sequence[Target], label: str, level: int, samples: list[Sample], wall: float,
                   cpu: float, states: Mapping[str, _TargetState], interrupted: bool) -> LevelResult:  # fmt: skip
        is_chain = len(chain) > 1
        ok = [s for s in samples if s.error is None]
        errors = {kind: 0 for kind in ERROR_KINDS}
        for s in samples:
            if s.error is not None:
                errors[s.error] = errors.get(s.error, 0) + 1
        latencies = [s.latency for s in ok]
        ttfts = [s.ttft for s in ok if s.ttft is not None]
        rates = [s.usage.output / s.latency for s in ok if s.usage is not None and s.usage.output and s.latency > 0]
        out_tokens = sum(s.usage.output for s in ok if s.usage is not None)
        in_tokens = sum(s.usage.input for s in ok if s.usage is not None)
        rps = len(ok) / wall if wall > 0 else None
        notes: list[str] = []
        cost, basis = self._cost(chain, ok, wall, notes, label)
        per_request = cost / len(ok) if cost is not None and ok else None
        n = len(samples)
        cpu_share = cpu / wall if wall > 0 else None
        if cpu_share is not None and cpu_share >= self.cpu_warn_share and n:
            notes.append(
                f"{label} at concurrency {level}: the client's event loop was busy {cpu_share:.0%} of the time "
                f"({cpu / n * 1000:.2f} ms CPU a request): the client, not the target, may limit these figures; "
                "lower the concurrency or run the bench on a bigger machine"
            )
        if n and sum(errors.values()) == n:
            hint = ""
            if errors.get("4xx"):
                hint = ": check the model name and the API key" + (
                    ", and whether the server takes stream_options (try --no-stream)" if self.stream else "")
            elif errors.get("connection"):
                hint = ": is it running? (--wait-ready waits for it)"
            notes.append(f"{label} at concurrency {level}: every request failed ({_errors_text(errors)}){hint}")
        estimated = any(s.tokens_estimated for s in ok)
        if estimated:
            notes.append(f"{label}: the server sent no usage in its stream; output tokens counted one per chunk")
        injected = None
        spec = None
        injections = [st for st in states.values() if st.injection is not None]
        if injections:
            injected = {}
            for st in injections:
                for kind, count in st.injected.items():
                    injected[kind] = injected.get(kind, 0) + count
            spec = "; ".join(f"{st.target.name}={st.injection.spec}" for st in injections if st.injection is not None)
        answered: dict[str, int] | None = None
        attempts: dict[str, int] | None = None
        if is_chain:
            answered = {t.name: 0 for t in chain}
            for s in ok:
                if s.answered_by in answered:
                    answered[s.answered_by] += 1
            attempts = {name: st.requests for name, st in states.items()}
        models = [t.model for t in chain]
        return LevelResult(
            target=label, model=">".join(models), provider=">".join(t.recorded_provider for t in chain),
            sdk=chain[0].sdk, concurrency=level, planned=self.requests, requests=n, ok=len(ok), errors=errors,
            latency_ms=_ms_percentiles(latencies), ttft_ms=_ms_percentiles(ttfts),
            output_tokens_per_s=_round(percentile(rates, 50)), requests_per_s=_round(rps),
            tokens_per_s=_round(out_tokens / wall) if wall > 0 else None, wall_s=round(wall, 6),
            input_tokens=in_tokens, output_tokens=out_tokens,
            cost_per_request_usd=None if per_request is None else round(per_request, 12),
            cost_per_1k_requests_usd=None if per_request is None else round(per_request * 1000, 9),
            cost_basis=basis, client_cpu_ms_per_request=round(cpu / n * 1000, 4) if n else None,
            client_cpu_share=None if cpu_share is None else round(cpu_share, 4), stream=self.stream,
            interrupted=interrupted, injected=injected, inject_spec=spec, chain=[t.name for t in chain] if is_chain else None,
            attempts=attempts, answered_by=answered, tokens_estimated=estimated, notes=notes,
        )  # fmt: skip

    def _cost(self, chain: Sequence[Target], ok: list[Sample], wall: float, notes: list[str],
              label: str) -> tuple[float | None, str | None]:  # fmt: skip
        """The level's total cost of its successful answers: catalog prices, plus per-hour machines over the wall time."""
        if not ok:
            return None, None
        book: PriceBook = self.tracker.pricebook
        now = datetime.now(timezone.utc)
        by_name = {t.name: t for t in chain}
        total = 0.0
        bases: set[str] = set()
        per_hour_added: set[str] = set()
        for s in ok:
            target = by_name.get(s.answered_by or "", chain[0])
            provider = target.recorded_provider
            model = s.model or target.model
            rates = book.rates(provider, model, now)
            if rates is None and model != target.model:
                model = target.model
                rates = book.rates(provider, model, now)
            if rates is None:
                notes.append(
                    f"{label}: no price for {model!r} ({provider}): cost unknown; give it a price (or per_hour) "
                    "in a prices file (--prices-file)"
                )
                return None, None
            if rates.per_hour is not None:
                if target.name not in per_hour_added:
                    per_hour_added.add(target.name)
                    total += float(rates.per_hour) * wall / 3600.0
                bases.add("per_hour")
                continue
            if s.usage is None:
                notes.append(f"{label}: an answer carried no usage: its cost is unknown")
                return None, None
            price = book.cost(provider, model, s.usage, now)
            if price.cost_usd is None:
                return None, None
            total += price.cost_usd
            bases.add("catalog")
        return total, ("mixed" if len(bases) > 1 else next(iter(bases), None))


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _errors_text(errors: Mapping[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in errors.items() if count) or "none"


class _NullWriter:
    """A writer that stores nothing (for warming up)."""

    def submit(self, record: Any) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass


def _canned_answer(request: httpx2.Request) -> httpx2.Response:
    """A minimal answer in the request's own wire format (for warming up)."""
    import json

    body = json.loads(request.content or b"{}")
    model = str(body.get("model") or "model")
    stream = bool(body.get("stream"))
    if request.url.path.endswith("/messages"):
        usage = {"input_tokens": 3, "output_tokens": 1}
        if not stream:
            data = {"id": "msg_0", "type": "message", "role": "assistant", "model": model, "stop_reason": "end_turn",
                    "stop_sequence": None, "content": [{"type": "text", "text": "ok"}], "usage": usage}  # fmt: skip
            return httpx2.Response(200, json=data)
        events = [
            ("message_start", {"type": "message_start", "message": {"id": "msg_0", "type": "message", "role": "assistant",
             "model": model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": 1}}),
            ("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        text = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=text.encode())
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    if not stream:
        data = {"id": "c0", "object": "chat.completion", "created": 0, "model": model, "usage": usage,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}  # fmt: skip
        return httpx2.Response(200, json=data)
    head = {"id": "c0", "object": "chat.completion.chunk", "created": 0, "model": model}
    chunks = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**head, "choices": [], "usage": usage},
    ]
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=text.encode())


