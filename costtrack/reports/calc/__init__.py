"""API vs self-hosted: monthly cost of a workload on both, GPUs for its peak, breakeven volume, a recommendation.

Pure computation on dataclasses (money in Decimal, floats only in the results),
plus two SQL aggregates that read a workload and a measured GPU throughput
from the `records` table for `costtrack calc --from-db`.

The model, as in the course material, with its errors fixed and its gap filled:

- A month is 30 days.
- API: each request costs its uncached input, cached input (at the cached
  rate) and output tokens at the catalog's rates; the `batch_share` of
  requests go through the Batch API at the model's Batch rates (else 50%).
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

from .amounts import parse_amount
from .compute import (
    api_monthly,
    breakeven_scale,
    calculate,
    compare,
    gpus_needed,
    local_cost,
)
from .constants import (
    API_MODELS,
    BATCH_DISCOUNT,
    DAYS_PER_MONTH,
    DEFAULT_PEAK_FACTOR,
    DEFAULT_VOLUMES_PER_DAY,
    DEFAULT_VOLUMES_TOKENS,
)
from .inputs import ApiPrice, Hardware, Scenario, Throughput, Workload
from .outputs import CalcResult, CloudCost, CompareRow, LocalCost, VolumeRow
from .profiles import HardwareCatalog, load_hardware
from .records import BENCH_PREFIX, BenchThroughput, DbWorkload, bench_throughput, workload_from_db

__all__ = [
    "API_MODELS",
    "BATCH_DISCOUNT",
    "BENCH_PREFIX",
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
