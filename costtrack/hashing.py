"""Canonical request hashing: what an answer depends on, independent of key order and volatile fields."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from math import isfinite
from operator import itemgetter
from typing import Any

import orjson
import xxhash

__all__ = ["VOLATILE_KEYS", "answer_fields", "canonical", "digest", "request_hash"]

# hashlib releases the GIL for inputs of 2048 bytes or more. In the writer thread, beside
# a busy app thread, each release costs a wait of up to a switch interval (5 ms) to get
# it back, so hashing a thousand prompts one after another stalled for seconds. Feeding
# the hash in smaller pieces keeps the GIL: same digest, no convoy.
_GIL_SAFE_PIECE = 2047
# xxhash releases it above 64 KiB.
_XXH_GIL_SAFE_PIECE = 65536
_FLOAT_EXACT = 2**53
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS

#: Request fields that do not change the answer: left out of request hashes and cache keys.
VOLATILE_KEYS = frozenset(
    {
        "stream", "stream_options", "user", "metadata", "store", "service_tier", "safety_identifier",
        "prompt_cache_key", "prompt_cache_retention",
    }
)  # fmt: skip


def canonical(value: Any, *, finite: bool = False) -> bytes:
    """An unambiguous, order-independent encoding of a JSON value: JSON with dict keys sorted.

    orjson writes it (a 2.5 KB chat request in 0.4 us, where walking it in Python took
    3 us). Other types are written as their str(); what orjson refuses (ints beyond 64
    bits, lone surrogates, nesting past 254 levels) is written by a Python encoder whose
    output starts with a NUL, which JSON text never does, so the two never meet; so is a value
    holding NaN or an infinity, which orjson would write as null. `finite`: the caller knows `value` holds
    no NaN or infinity (it was parsed from strict JSON, see fastjson.loads_finite): that check is skipped.
    """
    try:
        data = orjson.dumps(value, default=str, option=_OPTIONS)
    except TypeError:
        data = None
    # orjson writes NaN and +-Infinity as null: such a body (one the provider refuses) must not hash as one with null.
    if data is None or (not finite and data.rfind(b"null") >= 0 and _has_non_finite(value)):
        out = ["\x00"]
        _encode(value, out)
        return "".join(out).encode("utf-8", "surrogatepass")
    return data


def _has_non_finite(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return not isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if kind is list or kind is tuple:
        return any(_has_non_finite(item) for item in value)
    return False


def answer_fields(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The request fields an answer depends on: the body without VOLATILE_KEYS, an integral float parameter as the int it equals.

    temperature=1 and temperature=1.0 ask the same. Only top-level parameters (temperature,
    top_p, the penalties...) are looked at: a nested 1.0 against 1 (in a tool's schema) makes
    two hashes, which only ever misses a pair, and finding floats at every depth cost 1 us a call.
    """
    if type(body) is dict and VOLATILE_KEYS.isdisjoint(body) and float not in map(type, body.values()):
        return body  # the usual case, checked in C
    return {k: _int_if_integral(v) if type(v) is float else v for k, v in body.items() if k not in VOLATILE_KEYS}


def _int_if_integral(value: float) -> float | int:
    return int(value) if value.is_integer() and -_FLOAT_EXACT < value < _FLOAT_EXACT else value


def _encode(value: Any, out: list[str]) -> None:
    """The fallback encoding, as text pieces: strings length-prefixed (no escaping), numbers tagged."""
    append = out.append
    kind = type(value)
    if kind is str:
        append(f"s{len(value)}:")
        append(value)
    elif isinstance(value, Mapping):
        append(f"d{len(value)}:")
        for name, item in sorted(((str(key), item) for key, item in value.items()), key=itemgetter(0)):
            append(f"k{len(name)}:{name}")
            _encode(item, out)
    elif kind is list or kind is tuple:
        append(f"l{len(value)}:")
        for item in value:
            _encode(item, out)
    elif value is None:
        append("n")
    elif value is True:
        append("T")
    elif value is False:
        append("F")
    elif kind is int:
        append(f"i{value};")
    elif kind is float:
        append(f"f{value!r};")
    else:
        _encode(str(value), out)


def request_hash(provider: str, operation: str, body: Mapping[str, Any], *, finite: bool = False) -> str:
    """The record's request_hash: provider, operation and the canonical body, streamed or not alike.

    XXH3-128 rather than SHA-256: the hash only pairs a record with its duplicates in reports, where
    nobody gains from forging a collision, and it costs 0.2 us on a 2.5 KB request against 2.6.
    Cache keys, which a crafted request could poison, stay SHA-256 (`digest`). `finite`: see `canonical`.
    """
    data = f"costtrack-request-v3\x00{provider}\x00{operation}\x00".encode() + canonical(answer_fields(body), finite=finite)
    if len(data) <= _XXH_GIL_SAFE_PIECE:
        return xxhash.xxh3_128_hexdigest(data)
    return _fed(xxhash.xxh3_128(), data, _XXH_GIL_SAFE_PIECE)


def digest(data: bytes) -> str:
    """128-bit SHA-256 hex digest of `data`, computed without releasing the GIL.

    SHA-256 rather than BLAKE2: OpenSSL runs it on the CPU's SHA instructions, where
    CPython's BLAKE2 is portable C at half the speed.
    """
    if len(data) <= _GIL_SAFE_PIECE:
        return hashlib.sha256(data).hexdigest()[:32]
    return _fed(hashlib.sha256(), data, _GIL_SAFE_PIECE)[:32]


def _fed(hasher: Any, data: bytes, piece: int) -> str:
    """`hasher`'s hex digest of `data`, fed in pieces short enough that it keeps the GIL."""
    view = memoryview(data)
    for start in range(0, len(data), piece):
        hasher.update(view[start : start + piece])
    return str(hasher.hexdigest())
