"""Canonical request hashing: what an answer depends on, independent of key order and volatile fields."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["VOLATILE_KEYS", "digest", "encode_json", "request_hash"]

# hashlib releases the GIL for inputs of 2048 bytes or more. In the writer thread, beside
# a busy app thread, each release costs a wait of up to a switch interval (5 ms) to get
# it back, so hashing a thousand prompts one after another stalled for seconds. Feeding
# the hash in smaller pieces keeps the GIL: same digest, no convoy.
_GIL_SAFE_PIECE = 2047

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
    return digest(out)


def digest(parts: list[bytes]) -> str:
    """blake2b-128 hex digest of the concatenated parts, computed without releasing the GIL."""
    data = memoryview(b"".join(parts))
    hasher = hashlib.blake2b(digest_size=16)
    for start in range(0, len(data), _GIL_SAFE_PIECE):
        hasher.update(data[start : start + _GIL_SAFE_PIECE])
    return hasher.hexdigest()
