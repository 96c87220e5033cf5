"""The thresholds the audit's detectors judge a group by, and the words of simple tasks in endpoint names."""

from __future__ import annotations

import re

__all__ = [
    "LOW_CACHED_SHARE",
    "MIN_CALLS",
    "PROMPT_CACHE_LIFETIME_S",
    "SHORT_OUTPUT_TOKENS",
    "SIMPLE_TASK_OUTPUT_TOKENS",
    "SIMPLE_TASK_WORDS",
    "VERBOSE_OUTPUT_TOKENS",
    "VERBOSE_RATIO",
    "endpoint_words",
]

#: Mean output at or under which an endpoint's answers count as short (a label, a few fields, a sentence).
SHORT_OUTPUT_TOKENS = 50
#: Mean output above which the answers of an endpoint named like a short-answer task (SIMPLE_TASK_WORDS) count as long.
SIMPLE_TASK_OUTPUT_TOKENS = 50
#: Mean output and output/input ratio from which any endpoint's answers count as verbose.
VERBOSE_OUTPUT_TOKENS = 200
VERBOSE_RATIO = 1.0
#: Fewest served calls a group needs before a detector draws a conclusion from it.
MIN_CALLS = 10
#: Below this cached share of input an endpoint counts as not using the provider's prompt cache.
LOW_CACHED_SHARE = 0.5
#: How long a provider keeps a prompt prefix warm by default (OpenAI: 5-10 minutes; Anthropic: 5 minutes).
PROMPT_CACHE_LIFETIME_S = 300.0
#: Endpoint name words of short-answer tasks: a label, a score, a route or a few extracted fields, which a small
#: model does well (course: "Simple: classification, extraction, formatting").
SIMPLE_TASK_WORDS = frozenset({
    "classify", "classification", "classifier", "label", "labels", "labeling", "labelling", "tag", "tagging",
    "categorize", "categorise", "category", "categories", "intent", "sentiment", "detect", "detection",
    "moderate", "moderation", "extract", "extraction", "route", "router", "routing", "triage", "score", "scoring",
})  # fmt: skip


def endpoint_words(endpoint: str) -> set[str]:
    """The lowercase words of an endpoint's name."""
    return {w for w in re.split(r"[^a-z0-9]+", endpoint.lower()) if w}
