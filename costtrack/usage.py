"""Usage: the token counts of one call, in costtrack's provider-neutral semantics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BATCH_ID_TAG", "BATCH_TAG", "EXTRA_TAGS", "MAX_EXTRA_COUNT", "TIER_TAG", "UNREADABLE_TAG", "Usage", "batched",
    "billed_extras", "extras_from_tags", "served_tier",
]  # fmt: skip


# Not frozen: every record makes one, and a frozen dataclass's __init__ (object.__setattr__ per field)
# costs 2.5 times a plain one's (0.88 against 0.35 us). A value all the same: hashable, never changed.
@dataclass(slots=True, unsafe_hash=True)
class Usage:
    """Token counts of one call.

    The semantics are the record's, the same for every provider:

    - ``input``: every input token the provider processed, cache reads and
      cache writes included (OpenAI ``prompt_tokens``; Anthropic
      ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``).
    - ``cached_input``: the part of ``input`` read from the provider's prompt cache.
    - ``cache_write``: the part of ``input`` written to the prompt cache, of which
      ``cache_write_1h`` were 1-hour writes (the rest are 5-minute writes).
    - ``output``: every output token billed, reasoning included.
    - ``reasoning``: the part of ``output`` spent on reasoning.
    - ``audio_input`` / ``audio_output``: the parts of ``input`` / ``output`` that are audio
      (OpenAI's ``audio_tokens`` details), billed at the audio rates where a model has them.
    - ``web_searches``: server-side web searches the call ran (Anthropic's
      ``server_tool_use.web_search_requests``, OpenAI's ``tool_usage.web_search.num_requests``),
      billed per search on top of the tokens.
    """

    # The parsers build a Usage positionally, in this order: keep it.
    input: int = 0
    output: int = 0
    cached_input: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0
    audio_input: int = 0
    audio_output: int = 0
    web_searches: int = 0
    #: A count the provider sent could not be read (null, fractional, negative): the others are kept, and the call's
    #: cost is unknown rather than priced on part of its tokens.
    unreadable: bool = False

    @property
    def uncached_input(self) -> int:
        """Input tokens billed at the plain input rate."""
        return max(self.input - self.cached_input - self.cache_write, 0)

    @property
    def cache_write_5m(self) -> int:
        """Cache-write tokens billed at the 5-minute write rate."""
        return max(self.cache_write - self.cache_write_1h, 0)


#: The record tags that keep what Usage bills apart and the record has no column for, by Usage field. Prefixed, so
#: that an app's own tag of the same name (`web_searches`) is neither billed nor overwritten.
EXTRA_TAGS = {
    "audio_input": "costtrack.audio_input_tokens",
    "audio_output": "costtrack.audio_output_tokens",
    "web_searches": "costtrack.web_searches",
}


def billed_extras(usage: Usage) -> dict[str, int]:
    """The tags that keep `usage`'s audio tokens and web searches (those not zero) for re-pricing."""
    return {tag: getattr(usage, field) for field, tag in EXTRA_TAGS.items() if getattr(usage, field)}


#: Counts in tags at or above this are none: the reports read them in SQL as a bigint of 18 digits at most.
MAX_EXTRA_COUNT = 10**18


def extras_from_tags(tags: Mapping[str, Any]) -> dict[str, int]:
    """Usage fields read back from a record's tags (see billed_extras); a value that is not a count is left out."""
    out: dict[str, int] = {}
    for field, tag in EXTRA_TAGS.items():
        value = tags.get(tag)
        if type(value) is int and 0 < value < MAX_EXTRA_COUNT:
            out[field] = value
    return out


#: The tag of a record whose usage had a count costtrack could not read (its cost is unknown; reprice keeps it so).
UNREADABLE_TAG = "costtrack.usage_unreadable"
#: The tags that keep how a call was billed, for re-pricing: sent through a Batch API (and which batch), served at a
#: service tier. Prefixed, as EXTRA_TAGS: an app's own `batch` or `service_tier` tag is neither read as one nor
#: overwritten (`costtrack reprice` re-priced a call its app tagged service_tier=priority at the priority rates).
BATCH_TAG = "costtrack.batch"
BATCH_ID_TAG = "costtrack.batch_id"
TIER_TAG = "costtrack.service_tier"
#: What records made before those tags had: read only where the record shows costtrack wrote them (a price_source
#: that says so; on a batch result unpriced then, the `batch_id` costtrack.batching wrote beside it).
LEGACY_BATCH_TAG = "batch"
LEGACY_BATCH_ID_TAG = "batch_id"
#: How the providers' batch ids begin (OpenAI's `batch_...`, Anthropic's `msgbatch_...`): what costtrack.batching wrote
#: in an older record's `batch_id` tag, told so from an app's own (`nightly-7`).
LEGACY_BATCH_ID_PREFIXES = ("batch_", "msgbatch_")
LEGACY_TIER_TAG = "service_tier"
#: What a price_source ends with when the call was priced as a Batch API call (at half the standard rates, or at
#: the catalog's Batch rates).
BATCH_SOURCE_ENDINGS = (" (batch 50%)", " (batch)")


def batched(tags: Mapping[str, Any], price_source: str | None) -> bool:
    """Whether a stored call was sent through a Batch API, as its tags say (an older record's unprefixed `batch`
    tag counts when its price_source shows it was priced so, or, unpriced then, beside the `batch_id` costtrack.batching
    wrote with it)."""
    if tags.get(BATCH_TAG) is True:
        return True
    if tags.get(LEGACY_BATCH_TAG) is not True:
        return False
    if price_source is None:  # unpriced when stored: costtrack.batching wrote the provider's batch id beside it
        batch_id = tags.get(LEGACY_BATCH_ID_TAG)
        return isinstance(batch_id, str) and batch_id.startswith(LEGACY_BATCH_ID_PREFIXES)
    return price_source.endswith(BATCH_SOURCE_ENDINGS)


def served_tier(tags: Mapping[str, Any], price_source: str | None) -> str | None:
    """The service tier a stored call was served at (None: standard), as its tags say (an older record's unprefixed
    `service_tier` tag counts when its price_source ends with that tier)."""
    tier = tags.get(TIER_TAG)
    if isinstance(tier, str):
        return tier
    tier = tags.get(LEGACY_TIER_TAG)
    # Only where the price shows it: on a record unpriced when stored, an app's own tag is the same text.
    if isinstance(tier, str) and price_source is not None and price_source.endswith(f"({tier})"):
        return tier
    return None

