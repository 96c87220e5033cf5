"""Running a bench: per target and concurrency level, samples in, a report out."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import httpx2

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..pricing import PriceBook
    from ..tracker import Tracker

from .caller import Caller, Sample
from .percentiles import ms_percentiles, percentile
from .readiness import wait_ready
from .results import BenchReport, LevelResult, errors_text, failure_hint, new_run_id
from .targets import DEFAULT_PROMPT, ERROR_KINDS, NO_KEY, SDKS, Target
from .transport import BenchTransport, TargetState
from .warmup import NullWriter, canned_answer

# BenchReport, LevelResult and percentile lived here: importing them from this module still works.
__all__ = ["Bench", "BenchReport", "LevelResult", "percentile"]

#: Bounds of a run: requests per target and level, and a level's calls in flight (open sockets, one per call).
MAX_REQUESTS = 1_000_000
MAX_CONCURRENCY = 10_000


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
        if requests > MAX_REQUESTS:  # 1e20 was taken, and the run never ended
            raise ConfigError(f"--requests {requests:,} is more than a benchmark needs: give at most {MAX_REQUESTS:,}")
        if not concurrency or any(c < 1 for c in concurrency):
            raise ConfigError("--concurrency levels must be positive")
        if max(concurrency) > MAX_CONCURRENCY:
            raise ConfigError(f"--concurrency {max(concurrency):,} is more than one process can hold open: give at most "
                              f"{MAX_CONCURRENCY:,}")  # fmt: skip
        if max_tokens < 1:
            raise ConfigError("--max-tokens must be at least 1")
        if not timeout > 0 or math.isinf(timeout):  # NaN too: it passed, and every request then failed
            raise ConfigError("--timeout must be a positive number of seconds")
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
            except Exception:  # noqa: BLE001 - warming up only: the measured requests report what fails
                pass
        scratch = Tracker(pricebook=self.tracker.pricebook, writer=NullWriter())  # type: ignore[arg-type]
        for target in {t.sdk: t for t in self.targets}.values():
            http = httpx2.AsyncClient(transport=httpx2.MockTransport(canned_answer))
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
                    await Caller(client, target, ["prime"], 8, stream, self.clock)(0)
            except Exception:  # noqa: BLE001 - warming up only: the measured requests report what fails
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
        except Exception:  # noqa: BLE001
            pass  # the writer reports it (and keeps records in the outbox)

    # -- one level

    def _client(self, target: Target, level: int, state: TargetState) -> tuple[Any, Any]:
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
        states = {t.name: TargetState(t) for t in chain}
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
        call = Caller(wrapped, chain[0], self.prompts, self.max_tokens, self.stream, self.clock)
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
                except Exception:  # noqa: BLE001 - the level was measured: a pool that fails to close changes nothing
                    pass
            result = self._summarize(chain, label, level, samples, wall, cpu, states, interrupted)
            self.results.append(result)
            self.warnings.extend(note for note in result.notes if note not in self.warnings)

    # -- summarising

    def _summarize(self, chain: Sequence[Target], label: str, level: int, samples: list[Sample], wall: float,
                   cpu: float, states: Mapping[str, TargetState], interrupted: bool) -> LevelResult:  # fmt: skip
        is_chain = len(chain) > 1
        ok = [s for s in samples if s.error is None]
        errors = dict.fromkeys(ERROR_KINDS, 0)
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
        # With no answer there is nothing the client could have slowed down: requests that all failed fast (a
        # refused connection) keep the loop busy for a few milliseconds of wall time, which says nothing about it.
        if cpu_share is not None and cpu_share >= self.cpu_warn_share and n and ok:
            notes.append(
                f"{label} at concurrency {level}: the client's event loop was busy {cpu_share:.0%} of the time "
                f"({cpu / n * 1000:.2f} ms CPU a request): the client, not the target, may limit these figures; "
                "lower the concurrency or run the bench on a bigger machine"
            )
        if n and sum(errors.values()) == n:
            hint = failure_hint(errors, self.stream)
            notes.append(f"{label} at concurrency {level}: every request failed ({errors_text(errors)})"
                         + (f": {hint}" if hint else ""))  # fmt: skip
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
            latency_ms=ms_percentiles(latencies), ttft_ms=ms_percentiles(ttfts),
            output_tokens_per_s=_round(percentile(rates, 50)), requests_per_s=_round(rps),
            tokens_per_s=_round(out_tokens / wall) if wall > 0 else None, wall_s=round(wall, 6),
            input_tokens=in_tokens, output_tokens=out_tokens,
            cost_per_request_usd=None if per_request is None else round(per_request, 12),
            cost_per_1k_requests_usd=None if per_request is None else round(per_request * 1000, 9),
            cost_basis=basis, client_cpu_ms_per_request=round(cpu / n * 1000, 4) if n else None,
            client_cpu_share=None if cpu_share is None else round(cpu_share, 4), stream=self.stream,
            interrupted=interrupted, injected=injected, inject_spec=spec, chain=[t.name for t in chain] if is_chain else None,
            attempts=attempts, answered_by=answered, tokens_estimated=estimated,
            first_error=next((s.error_text for s in samples if s.error is not None), None), notes=notes,
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
