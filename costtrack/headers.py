"""Header lookups on the app's thread (cache directive, retry count, content type): one pass over httpx2's header list."""

from __future__ import annotations

from typing import Any

__all__ = ["has_header", "header_value"]


def header_value(headers: Any, name: bytes) -> bytes | None:
    """The first value of header `name` (lower-case bytes), or None.

    httpx2.Headers keeps (raw key, lower-cased key, value) triples; its own lookups
    lower-case, encode and decode per call, at three to four times the cost of this
    scan. Anything without that list is looked up through its public mapping API.
    """
    items = getattr(headers, "_list", None)
    if type(items) is not list:
        value = headers.get(name.decode("latin-1"))
        return None if value is None else str(value).encode("latin-1")
    for item in items:
        if item[1] == name:
            return item[2]  # type: ignore[no-any-return]
    return None


def has_header(headers: Any, name: bytes) -> bool:
    """Whether header `name` (lower-case bytes) is present."""
    return header_value(headers, name) is not None
