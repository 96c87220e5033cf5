"""Batching: the OpenAI Batch API at half price, a concurrency-limited gather, and embedding micro-batching."""

from __future__ import annotations

from .batch_api import BATCH_URLS as BATCH_URLS
from .batch_api import CANCEL_WAIT as CANCEL_WAIT
from .batch_api import (
    BatchFailedError,
    BatchItemError,
    BatchJobError,
    BatchResults,
    BatchTimeoutError,
    arun_batch,
    run_batch,
)
from .embeddings import EmbeddingBatcher
from .gather import gather_limited

__all__ = [
    "BatchFailedError",
    "BatchItemError",
    "BatchJobError",
    "BatchResults",
    "BatchTimeoutError",
    "EmbeddingBatcher",
    "arun_batch",
    "gather_limited",
    "run_batch",
]
