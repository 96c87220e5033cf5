"""Header lookups on the app's thread (cache directive, retry count, content type): one pass over httpx2's header list."""

from __future__ import annotations

from typing import Any

__all__ = ["RETRY_HEADER", "attempt_number", "has_header", "header_value", "three_header_values", "two_header_values"]


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


def two_header_values(headers: Any, first: bytes, second: bytes) -> tuple[bytes | None, bytes | None]:
    """The first value of each of two headers (lower-case bytes), in one pass over httpx2's list."""
    items = getattr(headers, "_list", None)
    if type(items) is not list:
        return header_value(headers, first), header_value(headers, second)
    found_first = found_second = None
    for item in items:
        key = item[1]
        if key == first:
            if found_first is None:
                found_first = item[2]
        elif key == second and found_second is None:
            found_second = item[2]
    return found_first, found_second


def three_header_values(
    headers: Any, first: bytes, second: bytes, third: bytes
) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The first value of each of three headers (lower-case bytes), in one pass over httpx2's list."""
    items = getattr(headers, "_list", None)
    if type(items) is not list:
        return header_value(headers, first), header_value(headers, second), header_value(headers, third)
    found_first = found_second = found_third = None
    for item in items:
        key = item[1]
        if key == first:
            if found_first is None:
                found_first = item[2]
        elif key == second:
            if found_second is None:
                found_second = item[2]
        elif key == third and found_third is None:
            found_third = item[2]
    return found_first, found_second, found_third


#: The SDKs' retry-count request header: absent or 0 on a first attempt, n on the n-th retry.
RETRY_HEADER = b"x-stainless-retry-count"


def attempt_number(retries: bytes | None) -> int:
    """The attempt a request is, from its retry-count header's value: n + 1 on the SDK's n-th retry, else 1.

    Anything no SDK would send (no digits, or more than nine) counts 1: the call is still recorded.
    """
    if retries is None or not retries.isdigit() or len(retries) > 9:
        return 1
    return int(retries) + 1
