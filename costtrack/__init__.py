"""costtrack: record the tokens, exact cost and latency of every OpenAI and Anthropic call.

    import costtrack
    client = costtrack.wrap(OpenAI(), endpoint="/api/summarize")
"""

from __future__ import annotations

from .batching import (
    BatchFailedError,
    BatchItemError,
    BatchJobError,
    BatchResults,
    BatchTimeoutError,
    EmbeddingBatcher,
    arun_batch,
    gather_limited,
    run_batch,
)
from .budgets import Budget, BudgetExceeded
from .cache import MemoryCache, RedisCache
from .call_context import context
from .errors import ConfigError, CosttrackError, DatabaseURLError, PricesFileError
from .fallback import CheapFirst
from .records import CallRecord
from .routing import ABTest, Decision, DevProd, Privacy, Router, RouteRequest, Tiered, route
from .tracker import Tracker, aflush, configure, default_tracker, flush
from .usage import Usage
from .wrap import wrap

__all__ = [
    "ABTest",
    "BatchFailedError",
    "BatchItemError",
    "BatchJobError",
    "BatchResults",
    "BatchTimeoutError",
    "Budget",
    "BudgetExceeded",
    "CallRecord",
    "CheapFirst",
    "ConfigError",
    "CosttrackError",
    "DatabaseURLError",
    "Decision",
    "DevProd",
    "EmbeddingBatcher",
    "MemoryCache",
    "PricesFileError",
    "Privacy",
    "RedisCache",
    "RouteRequest",
    "Router",
    "Tiered",
    "Tracker",
    "Usage",
    "aflush",
    "arun_batch",
    "configure",
    "context",
    "default_tracker",
    "flush",
    "gather_limited",
    "route",
    "run_batch",
    "wrap",
]

__version__ = "0.1.0"
