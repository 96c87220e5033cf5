"""Bench targets and the parsing of their command-line specs: names, URLs, models, prompts, injections."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2

from ..errors import ConfigError, CosttrackError

if TYPE_CHECKING:
    pass


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
        from ..wrap import detect_provider

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
    except Exception:  # noqa: BLE001 - any unparsable URL gets the same one-line error below
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"--target {name}={url}: not an http(s) URL with a host; e.g. {name}=http://localhost:11434/v1 "
            f"or {name}=anthropic:https://api.anthropic.com"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        # Sent anyway, every request failed with "unhandled errors in a TaskGroup": say so before any is sent.
        raise ConfigError(f"--target {name}={url}: port {parsed.port} is not a TCP port (1-65535)")
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
        except OSError as exc:
            raise ConfigError(f"--prompt-file {path}: {exc.strerror or exc.__class__.__name__}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"--prompt-file {path}: cannot be read as UTF-8 text; save it as UTF-8") from None
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
