"""Amounts: numbers read from text (`10M`, `2,000`) and numbers made exact Decimals."""

from __future__ import annotations

import re
from decimal import Decimal

from ...errors import ConfigError

__all__ = ["ZERO", "dec", "parse_amount"]

ZERO = Decimal(0)


def dec(value: float | Decimal) -> Decimal:
    """A Decimal from a number, without binary noise (0.12 stays 0.12)."""
    return value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)


_AMOUNT = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]+)?|\.[0-9]+)(?:e([+-]?[0-9]+))?\s*([kmbt]?)\s*$", re.IGNORECASE)
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def parse_amount(text: str, what: str) -> float:
    """`10M`, `1.5k`, `2,000`, `1e6`, `250` → a non-negative number; ConfigError otherwise."""
    match = _AMOUNT.match(text)
    if not match or ("," in match.group(1) and not re.fullmatch(r"[0-9]{1,3}(?:,[0-9]{3})*(?:\.[0-9]+)?", match.group(1))):
        stripped = text.strip()
        sign = " must not be negative" if stripped.startswith("-") else " is not a number"
        raise ConfigError(f"{what} {text!r}{sign}: write a number such as 500, 10K, 2.5M or 1B")
    number = Decimal(match.group(1).replace(",", "").replace("_", ""))
    if match.group(2):
        number = number.scaleb(int(match.group(2)))
    return float(number * _SUFFIX[match.group(3).lower()])
