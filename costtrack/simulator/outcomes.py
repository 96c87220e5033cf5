"""Outcomes a request can be scripted to have (an error status, an exception, a cut body…), and the 400 refusal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    kind: str  # ok, status, raise, cut, malformed, html, no_usage
    status: int = 0
    exc: BaseException | type[BaseException] | None = None
    cut_after: int | None = None


_KNOWN_STRINGS = {"ok", "cut", "malformed", "html", "no_usage"}


def parse_outcome(value: Any) -> Outcome:
    if value is None:
        return Outcome("ok")
    if isinstance(value, bool):
        raise TypeError(f"not a simulator outcome: {value!r}")
    if isinstance(value, int):
        if not 400 <= value <= 599:
            raise ValueError(f"a scripted status must be an error status (4xx/5xx), got {value}")
        return Outcome("status", status=value)
    if isinstance(value, BaseException) or (isinstance(value, type) and issubclass(value, BaseException)):
        return Outcome("raise", exc=value)
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "cut" and isinstance(value[1], int):
        return Outcome("cut", cut_after=max(0, value[1]))
    if isinstance(value, str) and value in _KNOWN_STRINGS:
        return Outcome(value)
    raise ValueError(
        f"unknown simulator outcome {value!r}: use an int status, an exception, "
        "'cut', ('cut', n_events), 'malformed', 'html', 'no_usage', 'ok' or None"
    )


class BadRequest(Exception):
    """A request the provider would refuse with a 400."""
