"""The calculator's fixed figures: days in a month, the Batch API discount, defaults, the `--compare` models."""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "API_MODELS",
    "BATCH_DISCOUNT",
    "DAYS_PER_MONTH",
    "DEFAULT_PEAK_FACTOR",
    "DEFAULT_VOLUMES_PER_DAY",
    "DEFAULT_VOLUMES_TOKENS",
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
