"""Canonical JSON text and digests of values: the stable inputs of the simulator's seeds and hashes."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def digest(*parts: object) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.digest()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
