"""API vs self-hosted: monthly cost of a workload on both, GPUs for its peak, breakeven volume, a recommendation.

Pure computation on dataclasses (money in Decimal, floats only in the results),
plus two SQL aggregates that read a workload and a measured GPU throughput
from the `records` table for `costtrack calc --from-db`.

The model, as in the course material, with its errors fixed and its gap filled:

- A month is 30 days.
- API: each request costs its uncached input, cached input (at the cached
  rate) and output tokens at the catalog's rates; the `batch_share` of
  requests go through the Batch API at 50%.
- Self-hosted, per GPU and month: owned hardware is depreciation
  (cost / (years x 12)) + power (kW x hours/day x 30 x $/kWh) + maintenance;
  rented hardware is its monthly rent, or its hourly rent x hours/day x 30.
- Capacity, which the course ignores: the day's requests arrive within
  `hours_per_day`, the peak is `peak_factor` x that average rate, and one
  GPU serves `requests_per_s` (or generates `tokens_per_s` output tokens);
  the peak needs ceil(peak / per-GPU throughput) GPUs, at least one.
- Breakeven: API cost is linear in volume, self-hosted cost is a staircase
  (one more GPU each time capacity runs out). With M the monthly cost of one
  GPU, A the API's monthly cost per unit of volume and C one GPU's capacity
  in the same units, self-hosted <= API first holds at volume M / A, and
  only if M / A <= C: otherwise every GPU saturates before it pays for
  itself and self-hosting never breaks even.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..pricing import Rates

__all__ = [
    "API_MODELS",
    "BATCH_DISCOUNT",
    "DAYS_PER_MONTH",
    "DEFAULT_PEAK_FACTOR",
    "DEFAULT_VOLUMES_PER_DAY",
    "DEFAULT_VOLUMES_TOKENS",
    "ApiPrice",
    "BenchThroughput",
    "CalcResult",
    "CloudCost",
    "CompareRow",
    "DbWorkload",
    "Hardware",
    "HardwareCatalog",
    "LocalCost",
    "Scenario",
    "Throughput",
    "VolumeRow",
    "Workload",
    "api_monthly",
    "bench_throughput",
    "breakeven_scale",
    "calculate",
    "compare",
    "gpus_needed",
    "load_hardware",
    "local_cost",
    "parse_amount",
    "workload_from_db",
]

DAYS_PER_MONTH = 30
BATCH_DISCOUNT = Decimal("0.5")  # Batch API: 50% of the standard rates (OpenAI and Anthropic)
DEFAULT_PEAK_FACTOR = 3.0
DEFAULT_VOLUMES_PER_DAY = (100, 1_000, 10_000, 100_000)
DEFAULT_VOLUMES_TOKENS = (1_000_000, 10_000_000, 100_000_000, 1_000_000_000)  # per month

#: The curated set `--compare` prices by default: current OpenAI and Anthropic models (provider, model).
API_MODELS: tuple[tuple[str, str], ...] = (
    ("openai", "gpt-5"),
    ("openai", "gpt-5-mini"),
    ("openai", "gpt-5-nano"),
    ("openai", "gpt-4.1"),
    ("openai", "gpt-4.1-mini"),
    ("openai", "gpt-4.1-nano"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "o4-mini"),
    ("anthropic", "claude-opus-4-5"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
)

_MTOK = Decimal(1_000_000)
_ZERO = Decimal(0)
_SECONDS_PER_HOUR = 3600


def _dec(value: float | int | Decimal) -> Decimal:
    """A Decimal from a number, without binary noise (0.12 stays 0.12)."""
    return value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)


def _ceil(value: float) -> int:
    """ceil() that ignores float noise: 2.0000000000004 GPUs is 2."""
    return math.ceil(round(value, 9))


# --------------------------------------------------------------------------- amounts

_AMOUNT = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]+)?|\.[0-9]+)(?:e([+-]?[0-9]+))?\s*([kmbt]?)\s*$", re.IGNORECASE)
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def parse_amount(text: str, what: str) -> float:
    """`10M`, `1.5k`, `2,000`, `1e6`, `250` → a non-negative number; ConfigError otherwise."""
    match = _AMOUNT.match(text)
    if not match or ("," in match.group(1) and not re.fullmatch(r"[0-9]{1,3}(?:,[0-9]{3})*(?:\.[0-9]+)?", match.group(1))):
        stripped = text.strip()
        sign = " must not be negative" if stripped.startswith("-") else " is not a number"
        raise ConfigError(f"{what} {text!r}{sign}: write a number such as 500, 10K, 2.5M or 1B")
    number = Decimal(match.group(1).replace(",", "").replace("_", ""))
    if match.group(2):
        number = number.scaleb(int(match.group(2)))
    return float(number * _SUFFIX[match.group(3).lower()])


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Workload:
    """What is served, per day: total input and output tokens, and how many requests (when known).

    The course's calculator gives a token volume only (`monthly tokens` and an
    output share): then `requests_per_day` is None, and figures per request
    and per-request throughput are unavailable.
    """

    input_tokens_per_day: float
    output_tokens_per_day: float
    requests_per_day: float | None = None
    cached_share: float = 0.0  # share of input tokens read from the provider's prompt cache
    batch_share: float = 0.0  # share of requests sent through the Batch API (50% price)

    def __post_init__(self) -> None:
        for name in ("input_tokens_per_day", "output_tokens_per_day"):
            _check_non_negative(getattr(self, name), name)
        if self.requests_per_day is not None:
            _check_non_negative(self.requests_per_day, "requests_per_day")
        for name in ("cached_share", "batch_share"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0):
                raise ConfigError(f"{name} {value!r} must be a share between 0 and 1 (e.g. 0.3 for 30%)")

    @classmethod
    def per_request(cls, requests_per_day: float, input_tokens: float, output_tokens: float, *,
                    cached_share: float = 0.0, batch_share: float = 0.0) -> Workload:  # fmt: skip
        """`requests_per_day` requests of `input_tokens` in and `output_tokens` out each."""
        _check_non_negative(input_tokens, "input_tokens")
        _check_non_negative(output_tokens, "output_tokens")
        _check_non_negative(requests_per_day, "requests_per_day")
        return cls(
            input_tokens_per_day=requests_per_day * input_tokens,
            output_tokens_per_day=requests_per_day * output_tokens,
            requests_per_day=requests_per_day, cached_share=cached_share, batch_share=batch_share,
        )  # fmt: skip

    @classmethod
    def monthly_tokens(cls, total: float, output_share: float, *, requests_per_day: float | None = None,
                       cached_share: float = 0.0, batch_share: float = 0.0) -> Workload:  # fmt: skip
        """The course calculator's input: `total` tokens a month, `output_share` of them output."""
        _check_non_negative(total, "monthly_tokens")
        if not (0.0 <= output_share <= 1.0):
            raise ConfigError(f"output share {output_share!r} must be between 0 and 1 (e.g. 0.3 for 30% output)")
        per_day = total / DAYS_PER_MONTH
        return cls(
            input_tokens_per_day=per_day * (1 - output_share), output_tokens_per_day=per_day * output_share,
            requests_per_day=requests_per_day, cached_share=cached_share, batch_share=batch_share,
        )  # fmt: skip

    @property
    def input_tokens(self) -> float | None:
        """Mean input tokens per request."""
        rpd = self.requests_per_day
        return self.input_tokens_per_day / rpd if rpd else None

    @property
    def output_tokens(self) -> float | None:
        """Mean output tokens per request."""
        rpd = self.requests_per_day
        return self.output_tokens_per_day / rpd if rpd else None

    @property
    def monthly_tokens_total(self) -> float:
        return (self.input_tokens_per_day + self.output_tokens_per_day) * DAYS_PER_MONTH

    def scaled(self, factor: float) -> Workload:
        """The same requests (same sizes, same shares) at `factor` times the volume."""
        return replace(
            self,
            input_tokens_per_day=self.input_tokens_per_day * factor,
            output_tokens_per_day=self.output_tokens_per_day * factor,
            requests_per_day=None if self.requests_per_day is None else self.requests_per_day * factor,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_per_day": self.requests_per_day,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "input_tokens_per_day": self.input_tokens_per_day,
            "output_tokens_per_day": self.output_tokens_per_day,
            "monthly_tokens": self.monthly_tokens_total,
            "cached_share": self.cached_share,
            "batch_share": self.batch_share,
        }


def _check_non_negative(value: float, name: str) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} {value!r} must be a finite number, 0 or more")


@dataclass(frozen=True)
class ApiPrice:
    """An API model's rates, USD per 1M tokens (cached input billed at `cached_input`)."""

    model: str
    input: Decimal
    output: Decimal
    cached_input: Decimal
    provider: str | None = None
    source: str = ""

    @classmethod
    def from_rates(cls, model: str, rates: Rates, *, provider: str | None = None,
                   input_tokens: float | None = None) -> ApiPrice:  # fmt: skip
        """From catalog Rates: the long-context tier a request of `input_tokens` reaches, fallbacks applied."""
        if rates.per_hour is not None:
            raise ConfigError(f"{model} is priced per hour (${rates.per_hour}/h), not per token: it is not an API model")
        if input_tokens is not None and rates.tiers:
            rates = rates.for_input(int(input_tokens))
        eff = rates.effective()
        return cls(model=model, input=eff["input"], output=eff["output"], cached_input=eff["cached_input"],
                   provider=provider, source=rates.source)  # fmt: skip


@dataclass(frozen=True)
class Hardware:
    """A self-hosted GPU: owned (depreciation, power, maintenance) or rented (monthly or hourly rent)."""

    name: str
    label: str = ""
    hardware_cost: float = 0.0
    power_watts: float = 0.0
    lifespan_years: float = 3.0
    maintenance_per_month: float = 0.0
    rent_per_month: float | None = None
    rent_per_hour: float | None = None
    electricity_per_kwh: float = 0.12
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("hardware_cost", "power_watts", "lifespan_years", "maintenance_per_month", "rent_per_month",
                     "rent_per_hour", "electricity_per_kwh"):  # fmt: skip
            value = getattr(self, name)
            if value is not None:
                _check_non_negative(value, f"hardware {self.name!r} {name}")
        if not self.rented and self.hardware_cost and self.lifespan_years <= 0:
            raise ConfigError(f"hardware {self.name!r} lifespan_years must be more than 0")

    @property
    def rented(self) -> bool:
        return self.rent_per_month is not None or self.rent_per_hour is not None

    def monthly_breakdown(self, hours_per_day: float) -> dict[str, Decimal]:
        """One GPU's monthly cost by item (they sum to `monthly`)."""
        if self.rented:
            if self.rent_per_hour is not None:
                rent = _dec(self.rent_per_hour) * _dec(hours_per_day) * DAYS_PER_MONTH
            else:
                rent = _dec(self.rent_per_month or 0)
            return {"rent": rent, "maintenance": _dec(self.maintenance_per_month)}
        depreciation = _dec(self.hardware_cost) / (_dec(self.lifespan_years) * 12) if self.hardware_cost else _ZERO
        kwh = _dec(self.power_watts) / 1000 * _dec(hours_per_day) * DAYS_PER_MONTH
        return {
            "depreciation": depreciation,
            "power": kwh * _dec(self.electricity_per_kwh),
            "maintenance": _dec(self.maintenance_per_month),
        }

    def monthly(self, hours_per_day: float) -> Decimal:
        """One GPU's monthly cost at `hours_per_day` of use."""
        return sum(self.monthly_breakdown(hours_per_day).values(), _ZERO)

    def with_overrides(self, **values: float | None) -> Hardware:
        """A copy with the given numbers changed (None: keep)."""
        changes = {k: v for k, v in values.items() if v is not None}
        return replace(self, **changes, source=self.source + " (overridden)" if changes else self.source)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "label": self.label, "rented": self.rented, "hardware_cost": self.hardware_cost,
            "power_watts": self.power_watts, "lifespan_years": self.lifespan_years,
            "maintenance_per_month": self.maintenance_per_month, "rent_per_month": self.rent_per_month,
            "rent_per_hour": self.rent_per_hour, "electricity_per_kwh": self.electricity_per_kwh,
        }  # fmt: skip


@dataclass(frozen=True)
class Throughput:
    """What one GPU serves: requests per second and/or output tokens generated per second (all streams)."""

    requests_per_s: float | None = None
    tokens_per_s: float | None = None
    source: str = ""  # "flags", "bench:<endpoint> (measured)", ...

    def __post_init__(self) -> None:
        for name in ("requests_per_s", "tokens_per_s"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ConfigError(f"GPU throughput {name} {value!r} must be more than 0")

    @property
    def known(self) -> bool:
        return self.requests_per_s is not None or self.tokens_per_s is not None


@dataclass(frozen=True)
class Scenario:
    """Everything `calculate` needs: the workload, the API model, the hardware and how it is used."""

    workload: Workload
    api: ApiPrice
    hardware: Hardware
    hours_per_day: float = 8.0
    peak_factor: float = DEFAULT_PEAK_FACTOR
    throughput: Throughput = field(default_factory=Throughput)
    private_data: bool = False
    latency_critical: bool = False

    def __post_init__(self) -> None:
        if not (0 < self.hours_per_day <= 24):
            raise ConfigError(f"hours per day {self.hours_per_day!r} must be more than 0 and at most 24")
        if not math.isfinite(self.peak_factor) or self.peak_factor < 1:
            raise ConfigError(f"peak factor {self.peak_factor!r} must be 1 or more (the peak is at least the average)")


# --------------------------------------------------------------------------- outputs


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
                                   "output": float(s.api.output)},  # fmt: skip
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


# --------------------------------------------------------------------------- computation


def api_monthly(workload: Workload, price: ApiPrice) -> Decimal:
    """The API's monthly cost for `workload`: cached input at the cached rate, batch share at 50%."""
    cached = _dec(workload.input_tokens_per_day) * _dec(workload.cached_share)
    uncached = _dec(workload.input_tokens_per_day) - cached
    daily = (uncached * price.input + cached * price.cached_input
             + _dec(workload.output_tokens_per_day) * price.output) / _MTOK  # fmt: skip
    if workload.batch_share:
        daily *= 1 - _dec(workload.batch_share) * BATCH_DISCOUNT
    return daily * DAYS_PER_MONTH


def _peak(workload: Workload, hours_per_day: float, peak_factor: float) -> tuple[float | None, float]:
    """(peak requests/s, peak output tokens/s): the day's load spread over the serving hours, times the peak factor."""
    seconds = hours_per_day * _SECONDS_PER_HOUR
    rps = None if workload.requests_per_day is None else workload.requests_per_day / seconds * peak_factor
    return rps, workload.output_tokens_per_day / seconds * peak_factor


def gpus_needed(workload: Workload, hours_per_day: float, peak_factor: float, throughput: Throughput) -> int:
    """GPUs the peak load needs (at least 1; exactly 1 when the throughput is unknown)."""
    peak_rps, peak_tps = _peak(workload, hours_per_day, peak_factor)
    needed = 1
    if throughput.requests_per_s is not None and peak_rps is not None:
        needed = max(needed, _ceil(peak_rps / throughput.requests_per_s))
    if throughput.tokens_per_s is not None:
        needed = max(needed, _ceil(peak_tps / throughput.tokens_per_s))
    return needed


def _capacity_scale(workload: Workload, hours_per_day: float, peak_factor: float, throughput: Throughput) -> float | None:
    """The volume, as a multiple of `workload`, at which one GPU is exactly saturated (None: unknown or unlimited)."""
    peak_rps, peak_tps = _peak(workload, hours_per_day, peak_factor)
    limits = []
    if throughput.requests_per_s is not None and peak_rps:
        limits.append(throughput.requests_per_s / peak_rps)
    if throughput.tokens_per_s is not None and peak_tps:
        limits.append(throughput.tokens_per_s / peak_tps)
    return min(limits) if limits else None


def local_cost(workload: Workload, hardware: Hardware, hours_per_day: float, peak_factor: float,
               throughput: Throughput) -> LocalCost:  # fmt: skip
    """The self-hosted monthly cost: as many GPUs as the peak needs, each at its monthly cost."""
    gpus = gpus_needed(workload, hours_per_day, peak_factor, throughput)
    breakdown = hardware.monthly_breakdown(hours_per_day)
    per_gpu = sum(breakdown.values(), _ZERO)
    monthly = per_gpu * gpus
    peak_rps, peak_tps = _peak(workload, hours_per_day, peak_factor)
    return LocalCost(
        hardware=hardware.name, monthly_usd=float(monthly), per_1k_usd=_per_1k(monthly, workload), gpus=gpus,
        monthly_per_gpu_usd=float(per_gpu), breakdown_per_gpu_usd={k: float(v) for k, v in breakdown.items()},
        peak_requests_per_s=peak_rps, peak_output_tokens_per_s=peak_tps, capacity_checked=throughput.known,
    )  # fmt: skip


def _per_1k(monthly: Decimal, workload: Workload) -> float | None:
    rpd = workload.requests_per_day
    if not rpd:
        return None
    return float(monthly / (_dec(rpd) * DAYS_PER_MONTH) * 1000)


def breakeven_scale(per_gpu_monthly: Decimal, api_monthly_at_1: Decimal, capacity_scale: float | None) -> float | None:
    """The smallest volume (a multiple of the workload) at which self-hosted costs no more than the API.

    API cost is `api_monthly_at_1` x k; self-hosted is ceil(k / capacity) x `per_gpu_monthly`.
    Within the first GPU's capacity the crossing is at k = M / A; past it every
    further GPU costs M for at most `capacity` more volume, so if one GPU fills
    up before paying for itself (M / A > capacity) no volume ever breaks even.
    """
    if per_gpu_monthly <= 0:
        return 0.0
    if api_monthly_at_1 <= 0:
        return None
    k = per_gpu_monthly / api_monthly_at_1
    if capacity_scale is not None and float(k) > capacity_scale * (1 + 1e-12):
        return None
    return float(k)


def _recommend(s: Scenario, cloud: CloudCost, local: LocalCost, breakeven_rpd: float | None,
               breakeven_tokens: float | None, capacity_rpd: float | None) -> tuple[Literal["api", "self-hosted"], list[str]]:  # fmt: skip
    from ..format import count, usd

    w = s.workload
    volume = (f"{count(w.requests_per_day)} requests/day" if w.requests_per_day is not None
              else f"{count(w.monthly_tokens_total)} tokens/month")  # fmt: skip
    cheaper: Literal["api", "self-hosted"] = "self-hosted" if local.monthly_usd <= cloud.monthly_usd else "api"
    gpus = f"{local.gpus} x {s.hardware.name}"
    if breakeven_rpd is not None:
        at = f"{count(math.ceil(breakeven_rpd))} requests/day"
    elif breakeven_tokens is not None and w.requests_per_day is None:
        at = f"{count(math.ceil(breakeven_tokens))} tokens/month"
    else:
        at = None
    if cheaper == "self-hosted":
        cost = (f"volume: at {volume} self-hosting ({gpus}) costs {usd(local.monthly_usd)}/month against "
                f"{usd(cloud.monthly_usd)}/month on {s.api.model}"
                + (f"; it breaks even from {at}" if at else ""))  # fmt: skip
    elif at is not None:
        cost = (f"volume: at {volume} {s.api.model} costs {usd(cloud.monthly_usd)}/month against "
                f"{usd(local.monthly_usd)}/month self-hosted ({gpus}); self-hosting breaks even from {at}")
    elif local.capacity_checked and capacity_rpd is not None:
        cost = (f"volume: {s.api.model} is cheaper at every volume: one {s.hardware.name} costs "
                f"{usd(local.monthly_per_gpu_usd)}/month but saturates at {count(capacity_rpd)} requests/day, "
                f"before it pays for itself")
    elif local.capacity_checked:
        cost = (f"volume: {s.api.model} is cheaper at every volume: each {s.hardware.name} saturates before "
                f"it pays for itself ({usd(local.monthly_per_gpu_usd)}/month)")
    else:
        cost = f"volume: {s.api.model} costs nothing at {volume}, so self-hosting never pays off"

    reasons: list[str] = []
    recommendation = cheaper
    if s.private_data:
        recommendation = "self-hosted"
        extra = local.monthly_usd - cloud.monthly_usd
        reasons.append(
            "privacy: the data must not leave your infrastructure (--private-data), so self-host"
            + (f" even though it costs {usd(extra)}/month more" if extra > 0 else "")
        )
    if s.latency_critical:
        if recommendation == "api":
            recommendation = "self-hosted"
            extra = local.monthly_usd - cloud.monthly_usd
            reasons.append(
                "latency: self-hosting avoids the network round trip and the provider's queue "
                f"(--latency-critical), for {usd(extra)}/month more"
            )
        else:
            reasons.append("latency: self-hosting also avoids the network round trip and the provider's queue")
    reasons.append(cost)
    if not local.capacity_checked:
        reasons.append(
            "capacity: not checked, one GPU is assumed to carry the peak; give --gpu-requests-per-s or "
            "--gpu-tokens-per-s (or benchmark records with --from-db) to size it"
        )
    elif local.gpus > 1:
        reasons.append(
            f"capacity: the peak ({s.peak_factor:g}x the average over {s.hours_per_day:g} h/day) needs "
            f"{local.gpus} GPUs"
        )
    if recommendation == "self-hosted" and not s.private_data:
        reasons.append("operations: self-hosting adds DevOps time, monitoring and on-call that are not costed here")
    elif recommendation == "api" and cloud.monthly_usd < 500:
        reasons.append(
            f"scale: {usd(cloud.monthly_usd)}/month of API spend is under the $500/month below which "
            "self-hosting's operational overhead is rarely worth it"
        )
    return recommendation, reasons


def calculate(scenario: Scenario, volumes: tuple[float, ...] | None = None,
              compare_rows: list[CompareRow] | None = None) -> CalcResult:  # fmt: skip
    """Both sides' monthly cost, GPUs for the peak, breakeven, recommendation and the volumes table.

    `volumes` are requests/day when the workload knows its requests, else monthly
    tokens (defaults: DEFAULT_VOLUMES_PER_DAY or DEFAULT_VOLUMES_TOKENS).
    """
    s = scenario
    w = s.workload
    monthly_api = api_monthly(w, s.api)
    rpd = w.requests_per_day
    cloud = CloudCost(
        model=s.api.model, monthly_usd=float(monthly_api), per_1k_usd=_per_1k(monthly_api, w),
        per_request_usd=float(monthly_api / (_dec(rpd) * DAYS_PER_MONTH)) if rpd else None,
    )  # fmt: skip
    local = local_cost(w, s.hardware, s.hours_per_day, s.peak_factor, s.throughput)

    # Breakeven, in units of "this workload": defined whenever the workload is not empty.
    capacity = _capacity_scale(w, s.hours_per_day, s.peak_factor, s.throughput)
    per_gpu = s.hardware.monthly(s.hours_per_day)
    k = breakeven_scale(per_gpu, monthly_api, capacity) if (rpd or w.monthly_tokens_total) else None
    breakeven_rpd = None if k is None or rpd is None else k * rpd
    breakeven_tokens = None if k is None else k * w.monthly_tokens_total
    capacity_rpd = None if capacity is None or rpd is None else capacity * rpd

    recommendation, reasons = _recommend(s, cloud, local, breakeven_rpd, breakeven_tokens, capacity_rpd)

    rows: list[VolumeRow] = []
    if rpd is not None:
        base = rpd
        points = volumes if volumes is not None else DEFAULT_VOLUMES_PER_DAY
    else:
        base = w.monthly_tokens_total
        points = volumes if volumes is not None else DEFAULT_VOLUMES_TOKENS
    for point in points:
        if base:
            scaled = w.scaled(point / base)
        elif rpd is not None:  # zero requests/day: nothing to scale, so no per-request shape
            continue
        else:
            continue
        api_m = float(api_monthly(scaled, s.api))
        loc = local_cost(scaled, s.hardware, s.hours_per_day, s.peak_factor, s.throughput)
        rows.append(VolumeRow(
            requests_per_day=scaled.requests_per_day,
            requests_per_month=None if scaled.requests_per_day is None else scaled.requests_per_day * DAYS_PER_MONTH,
            monthly_tokens=scaled.monthly_tokens_total, cloud_monthly_usd=api_m, local_monthly_usd=loc.monthly_usd,
            gpus=loc.gpus, cheaper="self-hosted" if loc.monthly_usd <= api_m else "api",
        ))  # fmt: skip
    return CalcResult(
        scenario=s, cloud=cloud, local=local, breakeven_requests_per_day=breakeven_rpd,
        breakeven_monthly_tokens=breakeven_tokens, gpu_capacity_requests_per_day=capacity_rpd,
        recommendation=recommendation, reasons=reasons, volumes=rows, compare=compare_rows,
    )  # fmt: skip


def compare(workload: Workload, apis: list[ApiPrice], hardware: list[Hardware], *, hours_per_day: float,
            peak_factor: float, throughput: Throughput) -> list[CompareRow]:  # fmt: skip
    """The workload priced on every API model and every hardware profile, cheapest first."""
    rows: list[CompareRow] = []
    for price in apis:
        monthly = api_monthly(workload, price)
        rows.append(CompareRow(name=price.model, kind="api", monthly_usd=float(monthly),
                               per_1k_usd=_per_1k(monthly, workload), source=price.source))  # fmt: skip
    for hw in hardware:
        loc = local_cost(workload, hw, hours_per_day, peak_factor, throughput)
        rows.append(CompareRow(name=hw.name, kind="self-hosted", monthly_usd=loc.monthly_usd,
                               per_1k_usd=loc.per_1k_usd, gpus=loc.gpus, source=hw.label or hw.source))  # fmt: skip
    rows.sort(key=lambda r: (r.monthly_usd, r.kind != "api", r.name))
    return rows


# --------------------------------------------------------------------------- hardware profiles

_HW_KEYS = {"label", "hardware_cost", "power_watts", "lifespan_years", "maintenance_per_month", "rent_per_month",
            "rent_per_hour", "electricity_per_kwh"}  # fmt: skip


@dataclass(frozen=True)
class HardwareCatalog:
    """The hardware profiles, by name, and the default electricity price."""

    profiles: dict[str, Hardware]
    electricity_per_kwh: float
    source: str

    def get(self, name: str) -> Hardware | None:
        return self.profiles.get(name.strip().lower())


def _read_toml(text: str, where: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ConfigError(f"{where}: reading TOML on Python 3.10 needs the 'tomli' package: pip install tomli") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML ({' '.join(str(exc).split())}): fix the syntax") from None


def load_hardware(path: str | Path | None = None) -> HardwareCatalog:
    """The hardware profiles: the ones shipped in costtrack/data/hardware.toml, or those in `path`."""
    if path is None:
        where = "costtrack/data/hardware.toml"
        # Beside the package's modules (importlib.resources trips over some editable installs).
        text = (Path(__file__).resolve().parent.parent / "data" / "hardware.toml").read_text(encoding="utf-8")
    else:
        where = f"hardware file {path}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where} cannot be read ({exc.strerror or exc}): check the path") from None
    data = _read_toml(text, where)
    unknown = sorted(set(data) - {"defaults", "hardware"})
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key {unknown[0]!r}: use [defaults] and [hardware.NAME] tables")
    defaults = data.get("defaults", {})
    electricity = defaults.get("electricity_per_kwh", 0.12)
    if isinstance(electricity, bool) or not isinstance(electricity, (int, float)) or electricity < 0:
        raise ConfigError(f"{where}: [defaults] electricity_per_kwh must be a number of USD, 0 or more")
    profiles: dict[str, Hardware] = {}
    for name, entry in data.get("hardware", {}).items():
        here = f"{where}: [hardware.{name}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{here} must be a table")
        bad = sorted(set(entry) - _HW_KEYS)
        if bad:
            raise ConfigError(f"{here} has unknown key {bad[0]!r}: allowed keys are {', '.join(sorted(_HW_KEYS))}")
        values: dict[str, Any] = {}
        for key, value in entry.items():
            if key == "label":
                values[key] = str(value)
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{here} {key} must be a number, got {value!r}")
            else:
                values[key] = float(value)
        values.setdefault("electricity_per_kwh", float(electricity))
        profiles[name.lower()] = Hardware(name=name.lower(), source=where, **values)
    return HardwareCatalog(profiles=profiles, electricity_per_kwh=float(electricity), source=where)


# --------------------------------------------------------------------------- reading the records (SQL aggregates)


@dataclass(frozen=True)
class DbWorkload:
    """The usage profile of the stored calls: volume, mean sizes, cached share, most-called priced model."""

    calls: int
    first: datetime | None
    last: datetime | None
    days: float
    requests_per_day: float
    input_tokens: float
    output_tokens: float
    cached_share: float
    top_model: str | None
    top_provider: str | None
    mean_latency_ms: float | None

    def workload(self, batch_share: float = 0.0) -> Workload:
        return Workload.per_request(self.requests_per_day, self.input_tokens, self.output_tokens,
                                    cached_share=self.cached_share, batch_share=batch_share)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None, "days": self.days,
            "requests_per_day": self.requests_per_day, "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens, "cached_share": self.cached_share, "top_model": self.top_model,
            "top_provider": self.top_provider, "mean_latency_ms": self.mean_latency_ms,
        }  # fmt: skip


@dataclass(frozen=True)
class BenchThroughput:
    """One benchmark endpoint's measured throughput: calls over the wall time of the run."""

    endpoint: str
    calls: int
    seconds: float
    requests_per_s: float
    tokens_per_s: float | None
    model: str | None

    def throughput(self) -> Throughput:
        """Output tokens/s when the run produced tokens (it carries over to other output sizes), else requests/s."""
        source = f"measured: {self.endpoint} ({self.calls:,} calls in {self.seconds:,.1f} s)"
        if self.tokens_per_s:
            return Throughput(tokens_per_s=self.tokens_per_s, source=source)
        return Throughput(requests_per_s=self.requests_per_s, source=source)

    def as_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "calls": self.calls, "seconds": self.seconds,
                "requests_per_s": self.requests_per_s, "tokens_per_s": self.tokens_per_s, "model": self.model}  # fmt: skip


BENCH_PREFIX = "bench:"


def _served_filter(since: datetime | None, until: datetime | None) -> Any:
    """Calls that reached a model: not errors, not response-cache hits."""
    from sqlalchemy import and_

    from ..store.schema import records
    from .stats import period_filter

    c = records.c
    return and_(period_filter(since, until), c.status != "error", c.cache_hit.is_(False))


def workload_from_db(engine: Any, *, since: datetime | None = None, until: datetime | None = None) -> DbWorkload | None:
    """The usage profile of the stored calls in [since, until), benchmark endpoints excluded (None: no calls).

    Requests/day are the calls over the days they span (at least one day);
    errors and response-cache hits are left out (they cost nothing).
    """
    from sqlalchemy import and_, func, not_, select

    from ..store.schema import records

    c = records.c
    where = and_(_served_filter(since, until), not_(c.endpoint.like(f"{BENCH_PREFIX}%")))
    totals = select(
        func.count().label("calls"),
        func.coalesce(func.sum(c.tokens_input), 0).label("tin"),
        func.coalesce(func.sum(c.tokens_output), 0).label("tout"),
        func.coalesce(func.sum(c.tokens_cached_input), 0).label("tcached"),
        func.min(c.timestamp).label("first"),
        func.max(c.timestamp).label("last"),
        func.avg(c.latency_ms).label("latency"),
    ).where(where)
    top = (
        select(c.provider, c.model, func.count().label("n"))
        .where(where, c.model.is_not(None), c.cost_usd.is_not(None))
        .group_by(c.provider, c.model)
        .order_by(func.count().desc(), c.model)
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(totals).one()
        top_row = conn.execute(top).first()
    calls = int(row.calls)
    if calls == 0:
        return None
    first, last = row.first, row.last
    span_days = (last - first).total_seconds() / 86400 if first is not None and last is not None else 0.0
    days = max(span_days, 1.0)
    tin, tout, tcached = int(row.tin), int(row.tout), int(row.tcached)
    return DbWorkload(
        calls=calls, first=first, last=last, days=days, requests_per_day=calls / days, input_tokens=tin / calls,
        output_tokens=tout / calls, cached_share=min(tcached / tin, 1.0) if tin else 0.0,
        top_model=top_row.model if top_row else None, top_provider=top_row.provider if top_row else None,
        mean_latency_ms=float(row.latency) if row.latency is not None else None,
    )  # fmt: skip


def bench_throughput(engine: Any, *, since: datetime | None = None, until: datetime | None = None) -> list[BenchThroughput]:
    """Measured throughput of each `bench:*` endpoint in [since, until), highest first (tokens/s, then requests/s).

    A run's wall time is from its first call's start to its last call's start,
    plus a mean call's latency (for the last call to finish).
    """
    from sqlalchemy import and_, func, select

    from ..store.schema import records

    c = records.c
    query = (
        select(
            c.endpoint,
            func.count().label("calls"),
            func.coalesce(func.sum(c.tokens_output), 0).label("tout"),
            func.min(c.timestamp).label("first"),
            func.max(c.timestamp).label("last"),
            func.avg(c.latency_ms).label("latency"),
            func.max(c.model).label("model"),
        )
        .where(and_(_served_filter(since, until), c.endpoint.like(f"{BENCH_PREFIX}%")))
        .group_by(c.endpoint)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out: list[BenchThroughput] = []
    for row in rows:
        seconds = (row.last - row.first).total_seconds() + (float(row.latency or 0.0) / 1000)
        if seconds <= 0:
            continue
        calls = int(row.calls)
        tokens = int(row.tout)
        out.append(BenchThroughput(
            endpoint=row.endpoint, calls=calls, seconds=seconds, requests_per_s=calls / seconds,
            tokens_per_s=tokens / seconds if tokens else None, model=row.model,
        ))  # fmt: skip
    out.sort(key=lambda b: (-(b.tokens_per_s or 0.0), -b.requests_per_s, b.endpoint))
    return out
