"""What the calculator returns: each side's monthly cost, the volumes table, the comparison and the whole result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .constants import DAYS_PER_MONTH
from .inputs import Scenario

__all__ = ["CalcResult", "CloudCost", "CompareRow", "LocalCost", "VolumeRow"]


@dataclass(frozen=True)
class CloudCost:
    model: str
    monthly_usd: float
    per_1k_usd: float | None  # per 1,000 requests (None: requests unknown)
    per_request_usd: float | None

    def as_dict(self) -> dict[str, Any]:
        """The documented `cloud` object: exactly monthly_usd and per_1k_usd."""
        return {"monthly_usd": self.monthly_usd, "per_1k_usd": self.per_1k_usd}

    def details(self) -> dict[str, Any]:
        return {"model": self.model, "per_request_usd": self.per_request_usd}


@dataclass(frozen=True)
class LocalCost:
    hardware: str
    monthly_usd: float
    per_1k_usd: float | None
    gpus: int
    monthly_per_gpu_usd: float
    breakdown_per_gpu_usd: dict[str, float]
    peak_requests_per_s: float | None
    peak_output_tokens_per_s: float
    capacity_checked: bool  # False: no GPU throughput given, one GPU assumed to suffice

    def as_dict(self) -> dict[str, Any]:
        """The documented `local` object: exactly monthly_usd, per_1k_usd and gpus."""
        return {"monthly_usd": self.monthly_usd, "per_1k_usd": self.per_1k_usd, "gpus": self.gpus}

    def details(self) -> dict[str, Any]:
        return {
            "hardware": self.hardware, "monthly_per_gpu_usd": self.monthly_per_gpu_usd,
            "breakdown_per_gpu_usd": self.breakdown_per_gpu_usd, "peak_requests_per_s": self.peak_requests_per_s,
            "peak_output_tokens_per_s": self.peak_output_tokens_per_s, "capacity_checked": self.capacity_checked,
        }  # fmt: skip


@dataclass(frozen=True)
class VolumeRow:
    """Both sides at one volume: `requests_per_day` (request mode) or `monthly_tokens` (token mode)."""

    requests_per_day: float | None
    requests_per_month: float | None
    monthly_tokens: float
    cloud_monthly_usd: float
    local_monthly_usd: float
    gpus: int
    cheaper: Literal["api", "self-hosted"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_per_day": self.requests_per_day, "requests_per_month": self.requests_per_month,
            "monthly_tokens": self.monthly_tokens, "cloud_monthly_usd": self.cloud_monthly_usd,
            "local_monthly_usd": self.local_monthly_usd, "gpus": self.gpus, "cheaper": self.cheaper,
        }  # fmt: skip


@dataclass(frozen=True)
class CompareRow:
    name: str
    kind: Literal["api", "self-hosted"]
    monthly_usd: float
    per_1k_usd: float | None
    gpus: int | None = None
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "monthly_usd": self.monthly_usd, "per_1k_usd": self.per_1k_usd,
                "gpus": self.gpus, "source": self.source}  # fmt: skip


@dataclass(frozen=True)
class CalcResult:
    scenario: Scenario
    cloud: CloudCost
    local: LocalCost
    breakeven_requests_per_day: float | None
    breakeven_monthly_tokens: float | None
    gpu_capacity_requests_per_day: float | None  # what one GPU serves at the peak factor (None: unknown)
    recommendation: Literal["api", "self-hosted"]
    reasons: list[str]
    volumes: list[VolumeRow]
    compare: list[CompareRow] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The `--json` document: the four documented keys first, then the details."""
        s = self.scenario
        data: dict[str, Any] = {
            "cloud": self.cloud.as_dict(),
            "local": self.local.as_dict(),
            "breakeven_requests_per_day": self.breakeven_requests_per_day,
            "recommendation": self.recommendation,
            "reasons": self.reasons,
            "details": {"cloud": self.cloud.details(), "local": self.local.details()},
            "breakeven_monthly_tokens": self.breakeven_monthly_tokens,
            "gpu_capacity_requests_per_day": self.gpu_capacity_requests_per_day,
            "volumes": [row.as_dict() for row in self.volumes],
            "inputs": {
                "model": s.api.model,
                "provider": s.api.provider,
                "price_source": s.api.source,
                "rates_per_mtok": {"input": float(s.api.input), "cached_input": float(s.api.cached_input),
                                   "output": float(s.api.output)},
                "workload": s.workload.as_dict(),
                "hardware": s.hardware.as_dict(),
                "hours_per_day": s.hours_per_day,
                "peak_factor": s.peak_factor,
                "gpu_throughput": {"requests_per_s": s.throughput.requests_per_s,
                                   "tokens_per_s": s.throughput.tokens_per_s, "source": s.throughput.source or None},
                "private_data": s.private_data,
                "latency_critical": s.latency_critical,
                "days_per_month": DAYS_PER_MONTH,
            },
        }
        if self.compare is not None:
            data["compare"] = [row.as_dict() for row in self.compare]
        return data
