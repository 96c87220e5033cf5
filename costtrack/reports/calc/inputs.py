"""What the calculator is given: the workload, the API model's rates, the hardware, its throughput, the scenario."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from ...errors import ConfigError
from ...pricing import Rates
from .amounts import ZERO, dec
from .constants import DAYS_PER_MONTH, DEFAULT_PEAK_FACTOR

__all__ = ["ApiPrice", "Hardware", "Scenario", "Throughput", "Workload"]


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
    batch_share: float = 0.0  # share of requests sent through the Batch API (at its rates: mostly half)

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
    if value == math.inf:  # finite inputs whose product overflows (1e308 requests a day x 1e308 tokens)
        raise ConfigError(f"{name.replace('_', ' ')} is too large to compute with: give amounts of a realistic size")
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
    #: The Batch API's (input, cached input, output) rates where the catalog has a Batch table for the model (OpenAI's
    #: bills some models' cached input at the standard cached rate); None: half of each rate.
    batch: tuple[Decimal, Decimal, Decimal] | None = None

    @classmethod
    def from_rates(cls, model: str, rates: Rates, *, provider: str | None = None, input_tokens: float | None = None,
                   batch: Rates | None = None) -> ApiPrice:  # fmt: skip
        """From catalog Rates (and the model's Batch rates, `batch`, where it has a table): the long-context tier a
        request of `input_tokens` reaches, fallbacks applied."""
        if rates.per_hour is not None:
            raise ConfigError(f"{model} is priced per hour (${rates.per_hour}/h), not per token: it is not an API model")
        eff = effective_rates(rates, input_tokens)
        batched = None
        if batch is not None and batch.per_hour is None:
            b = effective_rates(batch, input_tokens)
            batched = (b["input"], b["cached_input"], b["output"])
        return cls(model=model, input=eff["input"], output=eff["output"], cached_input=eff["cached_input"],
                   provider=provider, source=rates.source, batch=batched)  # fmt: skip


def effective_rates(rates: Rates, input_tokens: float | None) -> dict[str, Decimal]:
    """`rates` of the long-context tier a request of `input_tokens` reaches, fallbacks applied."""
    if input_tokens is not None and rates.tiers:
        rates = rates.for_input(int(input_tokens))
    return rates.effective()


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
                rent = dec(self.rent_per_hour) * dec(hours_per_day) * DAYS_PER_MONTH
            else:
                rent = dec(self.rent_per_month or 0)
            return {"rent": rent, "maintenance": dec(self.maintenance_per_month)}
        depreciation = dec(self.hardware_cost) / (dec(self.lifespan_years) * 12) if self.hardware_cost else ZERO
        kwh = dec(self.power_watts) / 1000 * dec(hours_per_day) * DAYS_PER_MONTH
        return {
            "depreciation": depreciation,
            "power": kwh * dec(self.electricity_per_kwh),
            "maintenance": dec(self.maintenance_per_month),
        }

    def monthly(self, hours_per_day: float) -> Decimal:
        """One GPU's monthly cost at `hours_per_day` of use."""
        return sum(self.monthly_breakdown(hours_per_day).values(), ZERO)

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
