"""Anthropic Messages bodies: input is split three ways, stream output counts are cumulative."""

from __future__ import annotations

from typing import Any

from .. import fastjson
from ..usage import Usage
from .base import count_of, detail_count, first_of, none_of

__all__ = ["PARSERS", "message_usage"]

_CONTENT_EVENTS = frozenset({"content_block_delta"})
# Once content has started, only events with these can still tell the reader something.
_MARKERS = (b"message_start", b"message_delta", b"message_stop", b"error")


def message_usage(usage: Any) -> Usage | None:
    """Usage of a message: total input = input_tokens + cache reads + cache writes."""
    if not isinstance(usage, dict):
        return None
    # input_tokens and output_tokens must be there; the others may be left out or null (0).
    input_, output = count_of(usage.get("input_tokens")), count_of(usage.get("output_tokens"))
    read, write = detail_count(usage.get("cache_read_input_tokens")), detail_count(usage.get("cache_creation_input_tokens"))
    split = usage.get("cache_creation")
    write_1h = detail_count(split.get("ephemeral_1h_input_tokens")) if isinstance(split, dict) else 0
    details = usage.get("output_tokens_details")
    reasoning = detail_count(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    tools = usage.get("server_tool_use")
    searches = detail_count(tools.get("web_search_requests")) if isinstance(tools, dict) else 0
    unreadable = False
    if input_ is None or output is None or read is None or write is None or write_1h is None or reasoning is None or (
        searches is None
    ):
        # A count missing or no whole number ("3000", 2.5): the cost is unknown (read as 0, it was priced on the rest).
        unreadable = True
        input_, output, read, write = input_ or 0, output or 0, read or 0, write or 0
        write_1h, reasoning, searches = write_1h or 0, reasoning or 0, searches or 0
    # In field order (see Usage): a class called with keywords first packs them into a dict, 4k instructions a record.
    return Usage(input_ + read + write, output, read, write, min(write_1h, write), reasoning, 0, 0, searches, unreadable)


class MessageStreamReader:
    """Reads Messages events: `message_start` has the input side, `message_delta` the running totals."""

    __slots__ = ("_raw", "_seen_content", "done", "failed", "model", "usage")

    strip = None  # nothing is hidden from a Messages stream
    starts = None  # every event before content is read

    def __init__(self, hide_usage_chunk: bool = False) -> None:
        self.model: str | None = None
        self.usage: Usage | None = None
        self.done = False
        self.failed: str | None = None
        self._raw: dict[str, Any] = {}
        self._seen_content = False

    @property
    def service_tier(self) -> str | None:
        """The service tier the message's usage names (None: not said); its fast mode (`speed: "fast"`) is `fast`."""
        tier = "fast" if self._raw.get("speed") == "fast" else self._raw.get("service_tier")
        return tier if isinstance(tier, str) else None

    @property
    def steady(self) -> bool:
        """Content has started: ordinary content events have nothing more to tell."""
        return self._seen_content

    def next_marker(self, block: bytes, pos: int) -> int:
        """The next message_start/delta/stop or error event from `pos` (-1: none)."""
        return first_of(block, pos, _MARKERS)

    def pass_on(self, data: bytes) -> bytes | None:
        """Whole events `data`, when they hold no message_start/delta/stop or error event; else None."""
        return data if none_of(data, _MARKERS) else None

    def feed(self, event: str | None, data: bytes) -> tuple[bool, bool]:
        """Read one event; return (carries content, hide it from the caller)."""
        if event in _CONTENT_EVENTS:
            first = not self._seen_content
            self._seen_content = True
            return first, False
        if event not in (None, "message_start", "message_delta", "message_stop", "error"):
            return False, False
        try:
            parsed = fastjson.loads(data)
        except ValueError:
            return False, False
        if not isinstance(parsed, dict):
            return False, False
        kind = parsed.get("type")
        if kind == "message_start" and isinstance(parsed.get("message"), dict):
            message = parsed["message"]
            if isinstance(message.get("model"), str):
                self.model = message["model"]
            self._merge(message.get("usage"))
        elif kind == "message_delta":
            # Every count in message_delta is the running total: replace, never add.
            self._merge(parsed.get("usage"))
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            error = parsed.get("error")
            self.failed = str(error.get("type") if isinstance(error, dict) else "stream_error")
        elif kind == "content_block_delta" and not self._seen_content:
            self._seen_content = True
            return True, False
        return False, False

    def _merge(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._raw.update({key: value for key, value in usage.items() if value is not None})
            self.usage = message_usage(self._raw)


class _Parser:
    def usage(self, body: dict[str, Any]) -> Usage | None:
        """Usage of a whole message body, or None when absent or malformed."""
        return message_usage(body.get("usage"))

    def stream_reader(self, hide_usage_chunk: bool) -> MessageStreamReader:
        """A new reader for one streamed message."""
        return MessageStreamReader()


PARSERS = {"messages": _Parser()}
