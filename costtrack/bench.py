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

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import math
import os
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2

from .errors import ConfigError, CosttrackError
from .usage import Usage

if TYPE_CHECKING:
    from .pricing import PriceBook
    from .tracker import Tracker

__all__ = [
    "Bench",
    "BenchError",
    "BenchReport",
    "DEFAULT_PROMPT",
    "ERROR_KINDS",
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

#: Error types counted per level, in display order.
ERROR_KINDS = ("rate_limit", "timeout", "5xx", "connection", "4xx", "other")

#: The prompt used when none is given: the lab's document summarisation, on a short document.
DEFAULT_PROMPT = (
    "Summarize the following document in three sentences.\n\n"
    "Teams adding AI features choose between calling a hosted model API and serving an open model on their own "
    "hardware. The API needs no infrastructure, scales instantly and offers the strongest models, but every "
    "request pays per token and crosses the network. A self-hosted model keeps data in house and costs the same "
    "whether it serves ten requests or ten thousand, but it needs GPUs, takes time to start, and its latency "
    "depends on how busy it is. The right choice depends on volume, latency targets, privacy and the team's "
    "operational capacity, so it should be measured rather than assumed."
)

SDKS = ("openai", "anthropic")
NO_KEY = "sk-no-key-required"
_DEFAULT_KEY_ENV = {"api.openai.com": "OPENAI_API_KEY", "api.anthropic.com": "ANTHROPIC_API_KEY"}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class BenchError(CosttrackError):
    """The benchmark could not go on (a target never became ready, answered with a refusal, ...)."""


# --------------------------------------------------------------------------- targets and parsing


@dataclass(frozen=True)
class Injection:
    """Faults injected in the client for one target (``--inject NAME=SPEC``).

    SPEC is comma-separated ``key:value`` items:

    - ``latency:200ms``: added before every request is sent (``ms``, ``s``, or seconds);
    - ``error-rate:0.1`` (or ``10%``): that share of requests answered 500 (``error-status``);
    - ``error-every:5``: every 5th request answered 500 (exact counts);
    - ``error-status:503``: the status of injected errors (default 500);
    - ``rate-limit-after:20``: requests after the first 20 answered 429;
    - ``timeout-rate:0.05``: that share raise a read timeout (after the latency);
    - ``connection-error-rate:0.05``: that share fail to connect;
    - ``seed:7``: the seed of the random draws (default 0: reproducible runs).

    Requests are counted from 1 per target and concurrency level (each level has a
    fresh client); rates are drawn once per request in the order requests are sent.
    """

    latency_s: float = 0.0
    error_rate: float = 0.0
    error_every: int | None = None
    error_status: int = 500
    rate_limit_after: int | None = None
    timeout_rate: float = 0.0
    connection_error_rate: float = 0.0
    seed: int = 0
    spec: str = ""

    @property
    def draws(self) -> bool:
        return bool(self.error_rate or self.timeout_rate or self.connection_error_rate)

    def fault(self, n: int, rng: random.Random | None) -> str | int | None:
        """What request `n` (1-based) meets: None, "timeout", "connection", or an HTTP status."""
        draw = rng.random() if rng is not None and self.draws else 1.0
        if self.rate_limit_after is not None and n > self.rate_limit_after:
            return 429
        if self.error_every and n % self.error_every == 0:
            return self.error_status
        if draw < self.timeout_rate:
            return "timeout"
        if draw < self.timeout_rate + self.connection_error_rate:
            return "connection"
        if draw < self.timeout_rate + self.connection_error_rate + self.error_rate:
            return self.error_status
        return None


@dataclass(frozen=True)
class Target:
    """One endpoint to measure.

    `base_url` is what the SDK takes: ``…/v1`` for OpenAI-compatible servers, the
    host for Anthropic (``https://api.anthropic.com``). `provider` overrides the
    provider recorded and priced (detected from the URL otherwise: ``openai``,
    ``ollama``, ``vllm``, ``llamacpp``, ``openai-compatible``, ``anthropic``).
    """

    name: str
    base_url: str
    model: str
    sdk: str = "openai"
    api_key: str | None = None
    provider: str | None = None
    inject: Injection | None = None

    @property
    def recorded_provider(self) -> str:
        """The provider its records carry (and its prices are looked up under)."""
        if self.provider:
            return self.provider
        from .wrap import detect_provider

        return detect_provider(self.sdk, self.base_url)

    @property
    def models_url(self) -> str:
        """Where its model list is (the readiness probe)."""
        base = self.base_url.rstrip("/")
        return f"{base}/v1/models" if self.sdk == "anthropic" else f"{base}/models"

    @property
    def is_loopback(self) -> bool:
        return (httpx2.URL(self.base_url).host or "") in _LOOPBACK


def _pairs(values: Iterable[str], option: str) -> list[tuple[str, str]]:
    """NAME=VALUE items of a repeatable option."""
    out = []
    for raw in values:
        name, sep, value = raw.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ConfigError(f"{option} {raw!r} is not NAME=VALUE (e.g. {option} local=...)")
        out.append((name, value))
    return out


def _check_url(name: str, url: str) -> str:
    try:
        parsed = httpx2.URL(url)
    except Exception:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"--target {name}={url}: not an http(s) URL with a host; e.g. {name}=http://localhost:11434/v1 "
            f"or {name}=anthropic:https://api.anthropic.com"
        )
    return url.rstrip("/")


def parse_target_spec(name: str, spec: str) -> tuple[str, str]:
    """(sdk, base_url) of ``[openai:|anthropic:]URL``."""
    sdk = "openai"
    for candidate in SDKS:
        if spec.lower().startswith(candidate + ":"):
            sdk, spec = candidate, spec[len(candidate) + 1 :]
            break
    return sdk, _check_url(name, spec.strip())


def parse_targets(
    targets: Sequence[str],
    models: Sequence[str],
    *,
    api_key_envs: Sequence[str] = (),
    providers: Sequence[str] = (),
    injects: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> list[Target]:
    """Targets from the command line's ``--target``, ``--model``, ``--api-key-env``, ``--provider``, ``--inject``.

    API keys: ``--api-key-env NAME=VAR`` reads $VAR (which must be set); without it
    a target on api.openai.com reads $OPENAI_API_KEY and one on api.anthropic.com
    $ANTHROPIC_API_KEY, and any other target gets a placeholder key (local
    servers ignore it; your real key is never sent to a server you did not name it for).
    """
    env = os.environ if environ is None else environ
    if not targets:
        raise ConfigError(
            "no targets: give at least one --target NAME=URL with its --model NAME=MODEL, "
            "e.g. --target local=http://localhost:11434/v1 --model local=llama3.1:8b"
        )
    specs: dict[str, tuple[str, str]] = {}
    for name, spec in _pairs(targets, "--target"):
        if not _NAME.match(name):
            raise ConfigError(f"--target {name!r}: a target name is letters, digits, '_', '.', ':' or '-'")
        if name in specs:
            raise ConfigError(f"--target {name!r} is given twice: give each target a distinct name")
        specs[name] = parse_target_spec(name, spec)

    def per_target(values: Sequence[str], option: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in _pairs(values, option):
            if name not in specs:
                known = ", ".join(specs)
                raise ConfigError(f"{option} {name}=...: there is no target named {name!r} (targets: {known})")
            if name in out:
                raise ConfigError(f"{option} is given twice for {name!r}")
            out[name] = value
        return out

    model_of = per_target(models, "--model")
    key_env = per_target(api_key_envs, "--api-key-env")
    provider_of = per_target(providers, "--provider")
    inject_of = {name: parse_inject(value, name) for name, value in per_target(injects, "--inject").items()}
    out = []
    for name, (sdk, url) in specs.items():
        model = model_of.get(name)
        if not model:
            raise ConfigError(f"target {name!r} has no model: add --model {name}=MODEL")
        var = key_env.get(name)
        if var is not None:
            key = env.get(var)
            if not key:
                raise ConfigError(f"--api-key-env {name}={var}: ${var} is not set")
        else:
            default_var = _DEFAULT_KEY_ENV.get(httpx2.URL(url).host or "")
            key = env.get(default_var) if default_var else NO_KEY
            if not key:
                raise ConfigError(f"target {name!r} ({url}) needs an API key: set ${default_var} or give --api-key-env {name}=VAR")
        out.append(Target(name, url, model, sdk=sdk, api_key=key, provider=provider_of.get(name), inject=inject_of.get(name)))
    return out


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$", re.IGNORECASE)


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds from ``200ms``, ``1.5s`` or ``1.5``."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{what} {text!r} is not a duration: use e.g. 200ms, 1.5s or 1.5 (seconds)")
    value = float(match.group(1))
    return value / 1000 if (match.group(2) or "").lower() == "ms" else value


def _rate(text: str, what: str) -> float:
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{what} {text!r} is not a share: use a number between 0 and 1, or a percentage like 10%")
    return value


def _count(text: str, what: str, minimum: int = 0) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{what} {text!r} must be a whole number >= {minimum}")
    return value


_INJECT_KEYS = ("latency", "error-rate", "error-every", "error-status", "rate-limit-after", "timeout-rate",
                "connection-error-rate", "seed")  # fmt: skip


def parse_inject(spec: str, name: str = "NAME") -> Injection:
    """An Injection from ``latency:200ms,error-rate:0.1,rate-limit-after:20`` (see Injection)."""
    values: dict[str, Any] = {}
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"--inject {name}=: empty; e.g. --inject {name}=latency:200ms,error-rate:0.1")
    for item in items:
        key, sep, value = item.partition(":")
        key, value = key.strip().lower(), value.strip()
        where = f"--inject {name}={spec}: {key}"
        if not sep or not value:
            raise ConfigError(f"--inject {name}={spec}: {item!r} is not key:value (e.g. latency:200ms, error-rate:0.1)")
        if key in values:
            raise ConfigError(f"--inject {name}={spec}: {key} is given twice")
        if key == "latency":
            values[key] = parse_duration(value, where)
        elif key in ("error-rate", "timeout-rate", "connection-error-rate"):
            values[key] = _rate(value, where)
        elif key in ("error-every",):
            values[key] = _count(value, where, 1)
        elif key == "rate-limit-after":
            values[key] = _count(value, where, 0)
        elif key == "seed":
            values[key] = _count(value, where, 0)
        elif key == "error-status":
            status = _count(value, where, 400)
            if status > 599:
                raise ConfigError(f"{where} {value!r} must be an HTTP error status (400-599)")
            values[key] = status
        else:
            raise ConfigError(f"--inject {name}={spec}: unknown key {key!r}; use {', '.join(_INJECT_KEYS)}")
    total = values.get("error-rate", 0) + values.get("timeout-rate", 0) + values.get("connection-error-rate", 0)
    if total > 1.0:
        raise ConfigError(f"--inject {name}={spec}: error-rate + timeout-rate + connection-error-rate exceed 1")
    return Injection(
        latency_s=values.get("latency", 0.0), error_rate=values.get("error-rate", 0.0),
        error_every=values.get("error-every"), error_status=values.get("error-status", 500),
        rate_limit_after=values.get("rate-limit-after"), timeout_rate=values.get("timeout-rate", 0.0),
        connection_error_rate=values.get("connection-error-rate", 0.0), seed=values.get("seed", 0), spec=spec,
    )  # fmt: skip


def parse_concurrency(text: str) -> tuple[int, ...]:
    """Levels from ``1,4,16`` (positive, distinct, in the order given)."""
    levels: list[int] = []
    for part in text.split(","):
        level = _count(part, "--concurrency level", 1) if part.strip() else 0
        if level < 1:
            raise ConfigError(f"--concurrency {text!r}: give positive whole numbers separated by commas, e.g. 1,4,16")
        if level in levels:
            raise ConfigError(f"--concurrency {text!r}: {level} is listed twice")
        levels.append(level)
    return tuple(levels)


def load_prompts(prompt: str | None = None, prompt_file: str | os.PathLike[str] | None = None,
                 docs: str | os.PathLike[str] | None = None) -> list[str]:  # fmt: skip
    """The prompts to send, in turn: one text, a file's text, or one summarisation prompt per document of a directory.

    A directory's ``*.txt`` and ``*.md`` files (recursively, in name order) each
    become "Summarize the following document in three sentences." and the document.
    """
    given = [x for x in (prompt, prompt_file, docs) if x is not None]
    if len(given) > 1:
        raise ConfigError("give one of --prompt, --prompt-file and --docs")
    if prompt is not None:
        if not prompt.strip():
            raise ConfigError("--prompt is empty")
        return [prompt]
    if prompt_file is not None:
        path = Path(prompt_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--prompt-file {path}: cannot be read as UTF-8 text ({exc.__class__.__name__})") from None
        if not text.strip():
            raise ConfigError(f"--prompt-file {path} is empty")
        return [text]
    if docs is not None:
        root = Path(docs)
        if not root.is_dir():
            raise ConfigError(f"--docs {root} is not a directory of .txt/.md documents")
        out = []
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".md")):
            try:
                text = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                raise ConfigError(f"--docs: {path} cannot be read as UTF-8 text") from None
            if text:
                out.append(f"Summarize the following document in three sentences.\n\n{text}")
        if not out:
            raise ConfigError(f"--docs {root} holds no non-empty .txt or .md file")
        return out
    return [DEFAULT_PROMPT]


# --------------------------------------------------------------------------- readiness (cold start)


class _ModelsProbe:
    """GET a target's model list; True once it answers 2xx."""

    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self._clients: dict[bool, httpx2.Client] = {}

    def __call__(self, target: Target) -> bool:
        return probe_models(target, client=self._client(not target.is_loopback))

    def _client(self, trust_env: bool) -> httpx2.Client:
        client = self._clients.get(trust_env)
        if client is None:
            client = self._clients[trust_env] = httpx2.Client(timeout=self.timeout, trust_env=trust_env)
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def probe_models(target: Target, *, client: httpx2.Client | None = None, timeout: float = 2.0) -> bool:
    """Whether `target` answers GET …/models with 2xx now (False: not listening, or not ready yet).

    401/403 mean the server is up but refuses the key: BenchError, as waiting would not help.
    """
    headers = {"authorization": f"Bearer {target.api_key or NO_KEY}"}
    if target.sdk == "anthropic":
        headers = {"x-api-key": target.api_key or NO_KEY, "anthropic-version": "2023-06-01"}
    own = client is None
    http = client or httpx2.Client(timeout=timeout, trust_env=not target.is_loopback)
    try:
        response = http.get(target.models_url, headers=headers)
    except httpx2.TransportError:
        return False
    finally:
        if own:
            http.close()
    if response.status_code in (401, 403):
        raise BenchError(
            f"{target.name} answered GET {target.models_url} with {response.status_code}: it refuses the API key; "
            f"check --api-key-env {target.name}=VAR"
        )
    return 200 <= response.status_code < 300


def wait_ready(
    targets: Sequence[Target],
    *,
    start: float | None = None,
    timeout: float = 300.0,
    interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    probe: Callable[[Target], bool] | None = None,
) -> dict[str, float]:
    """Seconds from `start` (default: now) until each target answers its model list (the cold-start experiment).

    Every target not yet ready is probed in turn, then `sleep(interval)`, until all
    answer; a target still silent `timeout` seconds after `start` is a BenchError.
    The result's resolution is `interval` plus one probe. `clock`, `sleep` and
    `probe` (``probe(target) -> bool``) are injectable for tests.
    """
    begin = clock() if start is None else start
    own_probe = _ModelsProbe() if probe is None else None
    check = probe if probe is not None else own_probe
    assert check is not None
    pending = list(targets)
    ready: dict[str, float] = {}
    try:
        while True:
            for target in list(pending):
                if check(target):
                    ready[target.name] = max(clock() - begin, 0.0)
                    pending.remove(target)
            if not pending:
                return ready
            if clock() - begin >= timeout:
                names = ", ".join(f"{t.name} ({t.models_url})" for t in pending)
                raise BenchError(f"{names} did not answer GET /models within {timeout:g} s; is it running? (--ready-timeout)")
            sleep(interval)
    finally:
        if own_probe is not None:
            own_probe.close()


# --------------------------------------------------------------------------- the client-side transport


_ANSWERED: contextvars.ContextVar[list[str | None] | None] = contextvars.ContextVar("costtrack_bench_answered", default=None)
INJECTED_HEADER = "x-costtrack-injected"


def _error_body(sdk: str, status: int) -> bytes:
    import json

    message = f"costtrack bench: injected {status}"
    if sdk == "anthropic":
        kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error" if status >= 500 else "invalid_request_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    elif status == 429:
        body = {"error": {"message": message, "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
    else:
        body = {"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error",
                          "param": None, "code": None}}  # fmt: skip
    return json.dumps(body).encode()


class _TargetState:
    """What one target's transports share during a level: request count, injected faults, the fault draws."""

    def __init__(self, target: Target, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.target = target
        self.injection = target.inject
        self.rng = random.Random(target.inject.seed) if target.inject is not None else None
        self.sleep = sleep
        self.requests = 0
        self.injected: dict[str, int] = {}


class BenchTransport(httpx2.AsyncBaseTransport):
    """Counts a target's requests, injects its faults, and notes which target answered (for fallback chains).

    It sits under costtrack's transport (the SDK's client → costtrack → this →
    the connection pool), so injected latency is part of the measured time and an
    injected error is recorded like a real one. Only POSTs (completions) are counted
    and injected into; model listings pass through.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport, state: _TargetState) -> None:
        self._inner = inner
        self._state = state

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        state = self._state
        if request.method != "POST":
            return await self._inner.handle_async_request(request)
        state.requests += 1
        injection = state.injection
        if injection is not None:
            fault = injection.fault(state.requests, state.rng)
            if injection.latency_s > 0:
                await state.sleep(injection.latency_s)
            if fault is not None:
                kind = fault if isinstance(fault, str) else _status_kind(fault)
                state.injected[kind] = state.injected.get(kind, 0) + 1
                if fault == "timeout":
                    raise httpx2.ReadTimeout("costtrack bench: injected timeout", request=request)
                if fault == "connection":
                    raise httpx2.ConnectError("costtrack bench: injected connection error", request=request)
                assert isinstance(fault, int)
                headers = {"content-type": "application/json", INJECTED_HEADER: kind}
                if fault == 429:
                    headers["retry-after-ms"] = "1000"
                return httpx2.Response(fault, headers=headers, content=_error_body(state.target.sdk, fault), request=request)
        response = await self._inner.handle_async_request(request)
        if response.status_code < 400:
            slot = _ANSWERED.get()
            if slot is not None:
                slot[0] = state.target.name
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _status_kind(status: int) -> str:
    if status == 429:
        return "rate_limit"
    if status == 408:
        return "timeout"
    return "5xx" if status >= 500 else "4xx"


def error_kind(exc: BaseException) -> str:
    """The error type an exception counts as: one of ERROR_KINDS."""
    from .fallback import failure_reason

    reason = failure_reason(exc)
    if reason == "timeout":
        return "timeout"
    if reason == "connection_error":
        return "connection"
    if reason == "rate_limit_exceeded":
        return "rate_limit"
    if reason in ("server_error", "overloaded_error"):
        return "5xx"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return "4xx"
    return "other"


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
            from .tracker import default_tracker

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
        from .tracker import Tracker

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
            from .store.database import ensure_schema, make_engine, resolve_url

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
            from .fallback import CheapFirst

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


# --------------------------------------------------------------------------- chart


def save_chart(report: BenchReport, path: str | os.PathLike[str]) -> Path:
    """A PNG of latency p50/p95/p99 (and TTFT p50) and requests/s per target and concurrency (needs matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("--chart needs matplotlib: pip install matplotlib") from None
    rows = sorted(report.results, key=lambda r: (r.concurrency, [x.target for x in report.results].index(r.target)))
    labels = [f"{r.target}\nc={r.concurrency}" for r in rows]
    fig = Figure(figsize=(max(6.0, 1.3 * len(rows) + 3), 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    width = 0.2
    xs = list(range(len(rows)))
    for i, (key, name) in enumerate((("p50", "latency p50"), ("p95", "latency p95"), ("p99", "latency p99"))):
        values = [r.latency_ms.get(key) or 0.0 for r in rows]
        top.bar([x + (i - 1.5) * width for x in xs], values, width, label=name)
    top.bar([x + 1.5 * width for x in xs], [r.ttft_ms.get("p50") or 0.0 for r in rows], width, label="TTFT p50")
    top.set_ylabel("ms")
    top.set_title(f"costtrack bench {report.run_id}: latency")
    top.legend(loc="upper left", fontsize="small")
    top.grid(axis="y", alpha=0.3)
    bottom.bar(xs, [r.requests_per_s or 0.0 for r in rows], 0.5, color="tab:green")
    bottom.set_ylabel("requests/s")
    bottom.set_xticks(xs, labels, fontsize="small")
    bottom.grid(axis="y", alpha=0.3)
    out = Path(path)
    fig.savefig(out, format="png", dpi=110)
    return out


def with_injection(target: Target, injection: Injection | None) -> Target:
    """A copy of `target` with faults injected (or none)."""
    return replace(target, inject=injection)
