"""What a bench measured: one result per target and concurrency level, the report, the run id."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


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
    first_error: str | None = None  # what the first failed request said, on one line
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
            "first_error": self.first_error,
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

    def failed_targets(self) -> list[FailedTarget]:
        """The targets none of whose requests succeeded (see `failed_targets`)."""
        return failed_targets(self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "interrupted": self.interrupted,
            "results": [r.as_dict() for r in self.results],
            "startup_s": dict(self.startup_s),
            "warnings": list(self.warnings),
        }


@dataclass
class FailedTarget:
    """A target (or fallback chain) none of whose requests succeeded, over every level of the run."""

    target: str
    requests: int
    errors: dict[str, int]
    first_error: str | None
    stream: bool


def failed_targets(results: list[LevelResult]) -> list[FailedTarget]:
    """The targets that sent requests and got no answer at all, in the order they ran."""
    by_target: dict[str, list[LevelResult]] = {}
    for r in results:
        by_target.setdefault(r.target, []).append(r)
    failed = []
    for name, rows in by_target.items():
        sent = sum(r.requests for r in rows)
        if not sent or any(r.ok for r in rows):
            continue
        errors: dict[str, int] = {}
        for r in rows:
            for kind, n in r.errors.items():
                errors[kind] = errors.get(kind, 0) + n
        first = next((r.first_error for r in rows if r.first_error), None)
        failed.append(FailedTarget(name, sent, errors, first, rows[0].stream))
    return failed


def failure_hint(errors: dict[str, int], stream: bool) -> str:
    """What to check when every request failed with these errors ("" when the error itself says best)."""
    if errors.get("4xx"):
        return "check the model name and the API key" + (
            ", and whether the server takes stream_options (try --no-stream)" if stream else "")
    if errors.get("connection"):
        return "is it running? (--wait-ready waits for it)"
    if errors.get("timeout"):
        return "raise --timeout, or lower --concurrency"
    if errors.get("rate_limit"):
        return "lower --concurrency or --requests, or check the account's rate limits"
    return ""


def errors_text(errors: dict[str, int]) -> str:
    """`connection 2, timeout 1`: the error kinds that occurred, with their counts."""
    return ", ".join(f"{kind} {count}" for kind, count in errors.items() if count) or "none"


def new_run_id(now: datetime | None = None) -> str:
    """A run id: UTC time and a random suffix, e.g. 20261123T193100-a1b2."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
