"""Parsing the command-line flags of a what-if: durations and model swaps."""

from __future__ import annotations

import re

from ...errors import ConfigError
from .scenarios import Swap

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, what: str = "--cache-ttl") -> float:
    """`90s`, `30m`, `1h`, `7d`, or plain seconds → seconds (more than 0)."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{what} {text!r} is not a duration: use e.g. 30m, 1h, 24h or 7d")
    seconds = float(match.group(1)) * _SECONDS[match.group(2) or "s"]
    if seconds <= 0:
        raise ConfigError(f"{what} must be more than 0")
    return seconds


def parse_swap(text: str) -> Swap:
    """`gpt-4o=gpt-4o-mini` → Swap('gpt-4o', 'gpt-4o-mini')."""
    source, sep, target = text.partition("=")
    if not sep or not source.strip() or not target.strip() or "=" in target:
        raise ConfigError(f"--swap {text!r} is not a swap: write FROM=TO, e.g. gpt-4o=gpt-4o-mini")
    if source.strip() == target.strip():
        raise ConfigError(f"--swap {text!r} swaps a model for itself")
    return Swap(source.strip(), target.strip())
