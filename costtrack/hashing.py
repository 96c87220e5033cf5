"""Canonical request hashing: what an answer depends on, independent of key order and volatile fields."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["VOLATILE_KEYS", "encode_json", "request_hash"]

#: Request fields that do not change the answer: left out of request hashes and cache keys.
VOLATILE_KEYS = frozenset(
    {
        "stream", "stream_options", "user", "metadata", "store", "service_tier", "safety_identifier",
        "prompt_cache_key", "prompt_cache_retention",
    }
)  # fmt: skip


def encode_json(value: Any, out: list[bytes]) -> None:
    """Append an unambiguous, order-independent encoding of a JSON value (dict keys sorted).

    Strings are length-prefixed UTF-8 (no escaping to do), numbers are tagged so
    "1", 1 and true differ, and an integral float is the int it equals (1.0 == 1).
    """
    append = out.append
    kind = type(value)
    if kind is str:
        data = value.encode("utf-8", "surrogatepass")
        append(b"s%d:" % len(data))
        append(data)
    elif kind is dict:
        append(b"d%d:" % len(value))
        for key in sorted(value):
            item = value[key]
            data = key.encode("utf-8", "surrogatepass") if type(key) is str else str(key).encode()
            append(b"k%d:" % len(data))
            append(data)
            item_kind = type(item)
            if item_kind is str:  # the common case, inline
                data = item.encode("utf-8", "surrogatepass")
                append(b"s%d:" % len(data))
                append(data)
            else:
                encode_json(item, out)
    elif kind is list or kind is tuple:
        append(b"l%d:" % len(value))
        for item in value:
            encode_json(item, out)
    elif value is None:
        append(b"n")
    elif value is True:
        append(b"T")
    elif value is False:
        append(b"F")
    elif kind is int:
        append(b"i%d;" % value)
    elif kind is float:
        if value.is_integer() and -(2**53) < value < 2**53:
            append(b"i%d;" % int(value))  # temperature=1 and temperature=1.0 ask the same
        else:
            append(b"f%b;" % repr(value).encode())
    else:
        encode_json(str(value), out)


def request_hash(provider: str, operation: str, body: Mapping[str, Any]) -> str:
    """The record's request_hash: provider, operation and the canonical body, streamed or not alike."""
    out = [f"costtrack-request-v1\x00{provider}\x00{operation}\x00".encode()]
    encode_json({k: v for k, v in body.items() if k not in VOLATILE_KEYS}, out)
    return hashlib.blake2b(b"".join(out), digest_size=16).hexdigest()
