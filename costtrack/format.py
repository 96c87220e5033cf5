"""Formatting for people, in one place: dollars, counts, percentages, milliseconds, Markdown code spans.

The report templates use these same functions as Jinja filters (reports/render.py).
"""

from __future__ import annotations

import math
import re

__all__ = [
    "FORMATS",
    "budget",
    "change",
    "code",
    "count",
    "days",
    "delta",
    "duration",
    "fixed",
    "fmt",
    "ms",
    "number",
    "pct",
    "pp",
    "pvalue",
    "rate",
    "score",
    "usd",
    "usd_places",
    "when",
]


def usd_places(value: float) -> int:
    """The decimals `usd` shows: 2 from $100, 4 from a cent, else 6 or as many as two significant digits need."""
    size = abs(value)
    if size >= 100 or math.isnan(size):
        return 2
    if size >= 0.01:
        return 4
    if size == 0:
        return 6
    return max(6, 1 - math.floor(math.log10(size)))


def usd(value: float | None, places: int | None = None) -> str:
    """Dollars with enough digits for small per-call costs: a nonzero amount never reads as $0.

    `places`: that many decimals instead (a formula's operands shown precisely enough to check it).
    """
    if value is None:
        return "unpriced"
    if value == 0:
        return "$0"
    if places is None:
        places = usd_places(value)
    text = fixed(value, places, ",")
    if float(text.replace(",", "")) == 0:  # rounds to zero at these places: show the first digits that are not
        text = fixed(value, usd_places(value), ",")
    return f"${text}"


def budget(amount: float) -> str:
    """A budget's amount: in cents when it has no smaller part ($50.00), else with the digits it has ($0.001000)."""
    return usd(amount, 2 if round(amount, 2) == amount else None)


def fixed(value: float, places: int, sep: str = "") -> str:
    """`value` with `places` decimals (`sep` "," groups thousands), rounded as Python rounds, once the float noise of a
    sum is rounded away at `places` + 3 decimals: $0.13655 summed by one database as 0.1365499999999991 and by another
    as 0.13655000000000006 read $0.1365 and $0.1366. The formulas' operands are checked as shown this same way."""
    if math.isfinite(value) and abs(value) < 1e15:
        value = float(f"{value:.{places + 3}f}")
    return f"{value:{sep}.{places}f}"


def count(value: float | int | None) -> str:
    """A count with thousands separators (an int exactly: through a float, 2**62 lost its last digits)."""
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.0f}"


def pct(value: float | None, places: int = 1) -> str:
    """A share as a percentage (`places` decimals)."""
    return "-" if value is None else f"{fixed(value * 100, places)}%"


def pp(value: float | None, places: int = 2) -> str:
    """A difference of two rates in percentage points (-0.0047 → -0.47 pp); '-' when it cannot be computed."""
    if value is None:
        return "-"
    text = f"{value * 100:+.{places}f}"
    return f"{text.lstrip('+-') if float(text) == 0 else text} pp"


def ms(value: float | None) -> str:
    """Milliseconds."""
    return "-" if value is None else f"{value:,.0f} ms" if abs(value) >= 10 else f"{value:.2f} ms"


def change(value: float | None) -> str:
    """A relative change (0.25 → +25.0%, -0.5 → -50.0%); '-' when it cannot be computed."""
    if value is None:
        return "-"
    text = f"{value * 100:+,.1f}%"
    return "0.0%" if text in ("+0.0%", "-0.0%") else text


def days(value: float | None) -> str:
    """A number of days (29.9 days, 1 day)."""
    if value is None:
        return "-"
    text = fixed(value, 1, ",").removesuffix(".0")
    return f"{text} day" if text == "1" else f"{text} days"


def duration(seconds: float | None) -> str:
    """A duration in the largest whole unit: 30s, 5m, 1h, 1.5h, 7d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.4g}{unit}"
    return f"{seconds:.4g}s"


def number(value: float | None, digits: int = 2) -> str:
    """A plain number with `digits` decimals and thousands separators."""
    return "-" if value is None else fixed(value, digits, ",")


def rate(value: float | None) -> str:
    """A price in USD per 1M tokens ($2.50, $0.075)."""
    if value is None:
        return "-"
    return f"${value:,.2f}" if value >= 0.1 or value == 0 else f"${value:.4g}"


def score(value: float | None) -> str:
    """A quality score (0.912)."""
    return "-" if value is None else f"{value:.3f}"


def pvalue(value: float | None) -> str:
    """A p-value (0.0342, < 0.0001)."""
    if value is None:
        return "-"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def when(value: object) -> str:
    """A moment in UTC to the minute (2026-11-30 14:05 UTC); a date as is."""
    from datetime import datetime, timezone

    if value is None:
        return "-"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return f"{value:%Y-%m-%d %H:%M} UTC"
    return str(value)


#: Formatter by name, for tables whose columns say how their cells are formatted.
FORMATS = {"usd": usd, "count": count, "pct": pct, "pp": pp, "ms": ms, "change": change, "days": days,
           "duration": duration, "number": number, "rate": rate, "score": score, "pvalue": pvalue,
           "when": when}  # fmt: skip

#: The formats that take a number of decimals (`places`).
_PLACES = {"usd", "pct", "pp", "number"}


def delta(value: float | None, kind: str, places: int | None = None) -> str:
    """A signed difference formatted as `kind` (with `places` decimals when given): -$0.0011, +12 ms, -0.013."""
    if value is None:
        return "-"
    sign = "-" if value < 0 else "+" if value > 0 else ""
    return sign + fmt(abs(value), kind, places)


def fmt(value: object, kind: str | None, places: int | None = None) -> str:
    """`value` formatted as `kind` (a key of FORMATS), with `places` decimals when given (usd, pct, pp, number); text as is."""
    if kind is None or kind == "text":
        return "-" if value is None else str(value)
    if isinstance(value, str):
        return value  # a word in place of a figure ("per hour")
    if places is not None and kind in _PLACES:
        return FORMATS[kind](value, places)  # type: ignore[arg-type,operator,call-arg]
    return FORMATS[kind](value)  # type: ignore[arg-type,operator]


def code(text: str) -> str:
    """`text` as a Markdown code span that shows it as is, backticks included: fenced by one backtick more than its
    longest run of them (a database URL or an endpoint with one broke the span, and the command shown with it)."""
    text = text.replace("\r", " ").replace("\n", " ") or " "  # an empty span is none: a space shows as one
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    # CommonMark drops one space at each end of a span that starts and ends with one (and is not all spaces).
    ends = text[:1] + text[-1:]
    pad = " " if "`" in ends or (ends == "  " and text.strip(" ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"
