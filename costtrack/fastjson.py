"""JSON parsing for request and response bodies: jiter where it can, the standard library where it cannot."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads", "loads_finite"]

try:
    # jiter (maintained by the pydantic team) comes with both SDKs that wrap() takes and parses
    # a body 4-6x faster than json.loads; every record parses one or two bodies.
    from jiter import from_json as _from_json
except ImportError:  # pragma: no cover - an install without either SDK
    _from_json = None


def loads(data: bytes | str) -> Any:
    """Parse JSON like json.loads (raising ValueError when it is not JSON), faster."""
    if _from_json is not None:
        try:
            return _from_json(data.encode() if isinstance(data, str) else data)
        except ValueError:
            pass  # e.g. a lone surrogate escape, which json.loads accepts: let it decide
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse") from None


def loads_finite(data: bytes) -> tuple[Any, bool]:
    """Parse like `loads`; also whether every number is surely finite (False: it may hold NaN or ±Infinity).

    JSON itself has no NaN, but json.loads (and json.dumps, so an SDK's request) accept it: jiter parses
    strictly first, so the usual body is read once and known finite. A literal beyond a float's range (1e400)
    still reads as infinity: no SDK writes one (they write Infinity, or refuse it).
    """
    if _from_json is not None:
        try:
            return _from_json(data, allow_inf_nan=False), True
        except ValueError:
            pass
    return loads(data), False
