"""Number formatting for people, in one place: dollars, counts, percentages, milliseconds."""

from __future__ import annotations

__all__ = ["usd", "count", "pct", "ms"]


def usd(value: float | None) -> str:
    """Dollars with enough digits for small per-call costs."""
    if value is None:
        return "unpriced"
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.2f}"
    if abs(value) >= 0.01:
        return f"${value:,.4f}"
    return f"${value:.6f}"


def count(value: float | int | None) -> str:
    """A count with thousands separators."""
    return "-" if value is None else f"{value:,.0f}"


def pct(value: float | None) -> str:
    """A share as a percentage."""
    return "-" if value is None else f"{value * 100:.1f}%"


def ms(value: float | None) -> str:
    """Milliseconds."""
    return "-" if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.2f} ms"
