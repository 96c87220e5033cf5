"""Usage: the token counts of one call, in costtrack's provider-neutral semantics."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Usage"]


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
    """

    # The parsers build a Usage positionally, in this order: keep it.
    input: int = 0
    output: int = 0
    cached_input: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0

    @property
    def uncached_input(self) -> int:
        """Input tokens billed at the plain input rate."""
        return max(self.input - self.cached_input - self.cache_write, 0)

    @property
    def cache_write_5m(self) -> int:
        """Cache-write tokens billed at the 5-minute write rate."""
        return max(self.cache_write - self.cache_write_1h, 0)
