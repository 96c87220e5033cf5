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
_FLOAT_EXACT = 2**53

#: Request fields that do not change the answer: left out of request hashes and cache keys.
VOLATILE_KEYS = frozenset(
    {
        "stream", "stream_options", "user", "metadata", "store", "service_tier", "safety_identifier",
        "prompt_cache_key", "prompt_cache_retention",
    }
)  # fmt: skip


def encode_json(value: Any, out: list[str]) -> None:
    """Append an unambiguous, order-independent encoding of a JSON value (dict keys sorted) as text pieces.

    Strings are length-prefixed (no escaping to do), numbers are tagged so "1", 1
    and true differ, and an integral float is the int it equals (1.0 == 1). Pieces
    are str, encoded once by `digest`: formatting bytes per piece costs twice as much.
    """
    append = out.append
    kind = type(value)
    if kind is str:
        append(f"s{len(value)}:")
        append(value)
    elif kind is dict:
        append(f"d{len(value)}:")
        for key in sorted(value):
            item = value[key]
            name = key if type(key) is str else str(key)
            append(f"k{len(name)}:{name}")
            if type(item) is str:  # the common case, inline
                append(f"s{len(item)}:")
                append(item)
            else:
                encode_json(item, out)
    elif kind is list or kind is tuple:
        append(f"l{len(value)}:")
        for item in value:
            encode_json(item, out)
    elif value is None:
        append("n")
    elif value is True:
        append("T")
    elif value is False:
        append("F")
    elif kind is int:
        append(f"i{value};")
    elif kind is float:
        if value.is_integer() and -_FLOAT_EXACT < value < _FLOAT_EXACT:
            append(f"i{int(value)};")  # temperature=1 and temperature=1.0 ask the same
        else:
            append(f"f{value!r};")
    else:
        encode_json(str(value), out)


def request_hash(provider: str, operation: str, body: Mapping[str, Any]) -> str:
    """The record's request_hash: provider, operation and the canonical body, streamed or not alike."""
    out = [f"costtrack-request-v2\x00{provider}\x00{operation}\x00"]
    if type(body) is not dict or not VOLATILE_KEYS.isdisjoint(body):
        body = {k: v for k, v in body.items() if k not in VOLATILE_KEYS}
    encode_json(body, out)
    return digest(out)


def digest(parts: list[str]) -> str:
    """128-bit SHA-256 hex digest of the pieces' UTF-8, computed without releasing the GIL.

    SHA-256 rather than BLAKE2: OpenSSL runs it on the CPU's SHA instructions, where
    CPython's BLAKE2 is portable C at half the speed. Lone surrogates are kept
    (surrogatepass), so every Python string hashes.
    """
    data = "".join(parts).encode("utf-8", "surrogatepass")
    if len(data) <= _GIL_SAFE_PIECE:
        return hashlib.sha256(data).hexdigest()[:32]
    hasher = hashlib.sha256()
    view = memoryview(data)
    for start in range(0, len(data), _GIL_SAFE_PIECE):
        hasher.update(view[start : start + _GIL_SAFE_PIECE])
    return hasher.hexdigest()[:32]
