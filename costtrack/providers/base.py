"""What every provider parser offers: usage from a JSON body, and a reader for its event stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..usage import Usage

__all__ = ["BodyParser", "StreamReader", "count_of", "detail_count", "first_of", "none_of", "operation_for_path"]

# Path suffix → operation, per API family; anything else passes through untouched.
_OPERATIONS = {
    # A compaction pass of a conversation (responses.compact) is billed and answers with a Responses API usage.
    "openai": {"/chat/completions": "chat.completions", "/responses": "responses", "/responses/compact": "responses",
               "/embeddings": "embeddings"},
    "anthropic": {"/messages": "messages"},
}


def operation_for_path(path: str, api: str | None = None) -> str | None:
    """The instrumented operation a request path belongs to (of API family `api` when given), or None.

    Per family: an OpenAI path that ends in /messages (the Assistants API's threads) is not Anthropic's.
    """
    families = _OPERATIONS.values() if api is None else (_OPERATIONS.get(api, {}),)
    for operations in families:
        for suffix, operation in operations.items():
            if path.endswith(suffix):
                return operation
    return None


def first_of(block: bytes, pos: int, needles: tuple[bytes, ...]) -> int:
    """The lowest index at or after `pos` where one of `needles` occurs, or -1."""
    found = [i for i in (block.find(needle, pos) for needle in needles) if i >= 0]
    return min(found) if found else -1


def none_of(data: bytes, needles: tuple[bytes, ...]) -> bool:
    """Whether none of `needles` occurs in `data`."""
    # A backward search (on SSE text CPython's costs half its forward one), by rpartition rather than rfind, which
    # before Python 3.13 parses its arguments from a tuple (see ChatStreamReader.pass_on).
    for needle in needles:
        if data.rpartition(needle)[1]:
            return False
    return True


#: Past any real count (a call of 2**53 tokens): an absurd one is unreadable rather than a record the database refuses.
MAX_COUNT = 2**53


def detail_count(value: Any) -> int | None:
    """A count a server may leave out or null (0 then): a non-negative whole number, else None: unreadable."""
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return value
    return 0 if value is None else count_of(value)


def count_of(value: Any) -> int | None:
    """A token count a server must send: a non-negative whole number (100000.0, as some compatible servers write it,
    too), else None: unreadable, so the call's cost is unknown rather than priced on part of its tokens."""
    if type(value) is int:
        return value if 0 <= value <= MAX_COUNT else None
    if type(value) is float and value.is_integer() and 0 <= value <= MAX_COUNT:
        return int(value)
    return None


class StreamReader(Protocol):
    """Reads a provider's event stream as it passes, one event at a time."""

    model: str | None
    usage: Usage | None
    #: The service tier the answer says it was served at, as the provider names it (None: not said).
    service_tier: str | None
    done: bool
    failed: str | None
    #: Bytes to drop from every event handed on to the app (None: nothing), found while reading.
    strip: bytes | None
    #: Before content, for a chunk of whole events: the bytes to hand on when its bytes alone show it opens the
    #: content (the caller stamps the first token), else None; None for a reader that reads every such event.
    starts: Callable[[bytes], bytes | None] | None

    def feed(self, event: str | None, data: bytes) -> tuple[bool, bool]:
        """Read one event; return (carries content, hide it from the caller)."""
        ...

    @property
    def steady(self) -> bool:
        """True once ordinary events have nothing more to tell: only those `next_marker` finds may change anything."""
        ...

    def next_marker(self, block: bytes, pos: int) -> int:
        """Where, from `pos`, the next bytes that might still matter to a steady reader are (-1: none)."""
        ...

    def pass_on(self, data: bytes) -> bytes | None:
        """Whole events `data` as handed on (less `strip`, b"" when hidden) when a steady reader can take them
        without reading them event by event: nothing in them might still matter (next_marker finds nothing), or
        what does the reader can note from the bytes alone; None: read them event by event."""
        ...


class BodyParser(Protocol):
    """Reads usage from a provider's JSON body and makes stream readers."""

    def usage(self, body: dict[str, Any]) -> Usage | None:
        """Usage of a whole (non-streamed) response body, or None when absent or malformed."""
        ...

    def stream_reader(self, hide_usage_chunk: bool) -> StreamReader:
        """A new reader for one streamed response."""
        ...
