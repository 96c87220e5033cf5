"""costtrack: record the tokens, exact cost and latency of every OpenAI and Anthropic call.

    import costtrack
    client = costtrack.wrap(OpenAI(), endpoint="/api/summarize")
"""

from __future__ import annotations

from .call_context import context
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
from .fallback import CheapFirst
from .routing import ABTest, Decision, DevProd, Privacy, RouteRequest, Router, Tiered, route
from .errors import ConfigError, CosttrackError, DatabaseURLError, PricesFileError
from .records import CallRecord
from .tracker import Tracker, configure, default_tracker, flush
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
    "Decision",
    "EmbeddingBatcher",
    "MemoryCache",
    "RedisCache",
    "DevProd",
    "Privacy",
    "RouteRequest",
    "Router",
    "Tiered",
    "route",
    "run_batch",
    "ConfigError",
    "CosttrackError",
    "DatabaseURLError",
    "PricesFileError",
    "Tracker",
    "Usage",
    "arun_batch",
    "configure",
    "context",
    "default_tracker",
    "flush",
    "gather_limited",
    "wrap",
]

__version__ = "0.1.0"
