"""Incremental server-sent-events splitting: bytes in, whole events out, unchanged."""

from __future__ import annotations

import re

__all__ = ["EventSplitter", "event_fields", "is_plain", "next_boundary"]

# An event ends at a blank line; servers may use \n, \r\n or \r line endings.
_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class EventSplitter:
    """Split a byte stream into raw SSE event blocks, each with its terminator.

    The blocks are the exact bytes received, so they can be passed on unchanged
    (or dropped) and the consumer downstream parses the same stream.
    """

    __slots__ = ("_buffer", "plain")

    def __init__(self) -> None:
        self._buffer = b""
        #: Whether the last block feed_block() returned is plain (see is_plain): it is a prefix of what was tested.
        self.plain = True

    def feed_block(self, chunk: bytes) -> bytes:
        """Add a chunk; return the events it completed as one block of bytes (possibly empty)."""
        data = self._buffer + chunk if self._buffer else chunk
        self.plain = plain = is_plain(data)
        if plain:
            last = data.rfind(b"\n\n")
            end = last + 2 if last >= 0 else 0
        else:
            end = 0
            for match in _BOUNDARY.finditer(data):
                end = match.end()
        self._buffer = data[end:]
        return data[:end]

    @property
    def idle(self) -> bool:
        """Nothing is buffered: the next chunk starts an event."""
        return not self._buffer

    @property
    def pending(self) -> bytes:
        """Bytes received after the last complete event (kept)."""
        return self._buffer

    def rest(self) -> bytes:
        """Bytes received after the last complete event."""
        rest, self._buffer = self._buffer, b""
        return rest


def is_plain(data: bytes) -> bool:
    """Only a blank line (two LFs) ends events here and no two boundaries touch, so plain byte searches split like the regex."""
    # rfind rather than `in`: on SSE text, where LFs abound, CPython's backward search is twice as fast.
    return b"\r" not in data and data.rfind(b"\n\n\n") < 0


def next_boundary(block: bytes, pos: int, plain: bool) -> int:
    """The end of the event starting at `pos` in a block of complete events."""
    if plain:
        return block.index(b"\n\n", pos) + 2
    match = _BOUNDARY.search(block, pos)
    return len(block) if match is None else match.end()


def event_fields(block: bytes) -> tuple[str | None, bytes]:
    """Return (event name, data) of a raw event block; multi-line data joined with newlines."""
    if block.startswith(b"data: ") and block.count(b"\n") == 2 and block.endswith(b"\n\n"):
        return None, block[6:-2]  # the common case: one data line
    name: str | None = None
    data: list[bytes] = []
    for line in block.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    return name, b"\n".join(data)
