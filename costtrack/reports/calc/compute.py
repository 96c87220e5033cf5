"""The computation: API and self-hosted monthly cost, GPUs for the peak, breakeven, `calculate` and `compare`."""

from __future__ import annotations

import math
from decimal import Decimal

from .amounts import ZERO, dec
from .constants import (
    BATCH_DISCOUNT,
    DAYS_PER_MONTH,
    DEFAULT_VOLUMES_PER_DAY,
    DEFAULT_VOLUMES_TOKENS,
)
from .inputs import ApiPrice, Hardware, Scenario, Throughput, Workload
from .outputs import CalcResult, CloudCost, CompareRow, LocalCost, VolumeRow
from .recommend import recommend

__all__ = ["api_monthly", "breakeven_scale", "calculate", "compare", "gpus_needed", "local_cost"]

_MTOK = Decimal(1_000_000)
_SECONDS_PER_HOUR = 3600


def _ceil(value: float) -> int:
    """ceil() that ignores float noise: 2.0000000000004 GPUs is 2."""
    return math.ceil(round(value, 9))


def api_monthly(workload: Workload, price: ApiPrice) -> Decimal:
    """The API's monthly cost for `workload`: cached input at the cached rate, the batch share at the model's Batch
    rates (half of each rate where the catalog has no Batch table)."""
    cached = dec(workload.input_tokens_per_day) * dec(workload.cached_share)
    uncached = dec(workload.input_tokens_per_day) - cached
    output = dec(workload.output_tokens_per_day)
    daily = (uncached * price.input + cached * price.cached_input + output * price.output) / _MTOK
    if workload.batch_share:
        share = dec(workload.batch_share)
        if price.batch is None:
            batched = daily * (1 - BATCH_DISCOUNT)
        else:
            rate_in, rate_cached, rate_out = price.batch
            batched = (uncached * rate_in + cached * rate_cached + output * rate_out) / _MTOK
        daily = daily * (1 - share) + batched * share
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
    per_gpu = sum(breakdown.values(), ZERO)
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
    return float(monthly / (dec(rpd) * DAYS_PER_MONTH) * 1000)


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
        per_request_usd=float(monthly_api / (dec(rpd) * DAYS_PER_MONTH)) if rpd else None,
    )  # fmt: skip
    local = local_cost(w, s.hardware, s.hours_per_day, s.peak_factor, s.throughput)

    # Breakeven, in units of "this workload": defined whenever the workload is not empty.
    capacity = _capacity_scale(w, s.hours_per_day, s.peak_factor, s.throughput)
    per_gpu = s.hardware.monthly(s.hours_per_day)
    k = breakeven_scale(per_gpu, monthly_api, capacity) if (rpd or w.monthly_tokens_total) else None
    breakeven_rpd = None if k is None or rpd is None else k * rpd
    breakeven_tokens = None if k is None else k * w.monthly_tokens_total
    capacity_rpd = None if capacity is None or rpd is None else capacity * rpd

    recommendation, reasons = recommend(s, cloud, local, breakeven_rpd, breakeven_tokens, capacity_rpd)

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
