"""Formulas shown with their operands: each operand given enough decimals that the shown operands give the shown result.

A document that writes ``$5.4368 x 30 / 29.84 = $5.4669`` invites the reader to check it,
and 5.4368 x 30 / 29.84 is 5.4660: the days were 29.835. `places` finds, from the
decimals an operand is usually shown with, the fewest extra ones that make the formula,
worked on the operands as printed, read as its result on the exact values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..format import fixed, pct, pp, usd_places

__all__ = ["MOST_EXTRA", "as_shown", "least_places", "places", "rate_change", "rate_move", "usd_start"]

#: The most decimals added to the operands' usual ones, all together (then each gets that many).
MOST_EXTRA = 8


def as_shown(value: float, decimals: int) -> float:
    """`value` as it reads with `decimals` decimals (format.fixed, as the documents show it)."""
    return float(fixed(value, decimals))


def least_places(value: float) -> int:
    """The fewest decimals that show a nonzero `value` as nonzero (0.4 → 1, 0.04 → 2, 3.7 → 0)."""
    decimals = 0
    while value and not as_shown(value, decimals) and decimals < 15:
        decimals += 1
    return decimals


def usd_start(value: float) -> int:
    """The decimals `usd` shows `value` with: where a dollar operand starts."""
    return usd_places(value)


def _spreads(n: int, total: int) -> list[tuple[int, ...]]:
    """The ways to add `total` decimals over `n` operands, the first operands first."""
    if n == 1:
        return [(total,)]
    return [(first, *rest) for first in range(total, -1, -1) for rest in _spreads(n - 1, total - first)]


def places(operands: Sequence[float], start: Sequence[int],
           formula: Callable[[Sequence[float]], Sequence[float]],
           show: Callable[[float], str] | Sequence[Callable[[float], str]],
           tied: Sequence[Sequence[int]] | None = None) -> tuple[int, ...]:  # fmt: skip
    """Decimals for each operand (from `start`) with which `formula` on the shown operands reads as on the exact ones.

    `formula` maps the operands to one or more results; `show` formats a result (one function, or one per result).
    `tied`: groups of operand indexes shown with the same decimals (the cells of one column); each other
    operand is a group of its own. The fewest extra decimals win, given to the first groups first.
    """
    shows = [show] * len(formula(list(operands))) if callable(show) else list(show)
    listed = {i for group in tied or () for i in group}
    groups = [list(g) for g in tied or () if g] + [[i] for i in range(len(operands)) if i not in listed]
    groups.sort(key=min)
    base = [max(start[i] for i in g) for g in groups]

    def read(values: Sequence[float]) -> list[str] | None:
        try:
            return [s(v) for s, v in zip(shows, formula(values))]
        except ZeroDivisionError:  # a divisor shown with too few decimals reads as 0: more are needed
            return None

    def spread(extra: Sequence[int]) -> tuple[int, ...]:
        chosen = list(start)
        for g, b, e in zip(groups, base, extra):
            for i in g:
                chosen[i] = b + e
        return tuple(chosen)

    target = read(list(operands))
    for total in range(MOST_EXTRA + 1):
        for extra in _spreads(len(groups), total):
            chosen = spread(extra)
            if read([as_shown(v, d) for v, d in zip(operands, chosen)]) == target:
                return chosen
    return spread([MOST_EXTRA] * len(groups))


def rate_change(before: float | None, after: float | None, least: int = 1) -> tuple[int, str]:
    """Decimals (of a percentage, at least `least`) with which before → after and their difference in points agree.

    Returns (decimals, the difference in percentage points at those decimals): 2.146% → 1.677% reads
    2.15% → 1.68%, -0.47 pp (at one decimal, 2.1% → 1.7% would not give -0.5 pp). A difference that
    is not zero never reads as 0 pp.
    """
    if before is None or after is None:
        return least, pp(None)
    for d in range(least, least + MOST_EXTRA + 1):
        change = pp(after - before, d)
        shown = pp(as_shown(after * 100, d) / 100 - as_shown(before * 100, d) / 100, d)
        zero = change == pp(0.0, d)
        if shown == change and (after == before or not zero):
            return d, change
    return least + MOST_EXTRA, pp(after - before, least + MOST_EXTRA)


def rate_move(before: float | None, after: float | None) -> str:
    """A rate's baseline → target with the change in percentage points: '2.15% → 1.68% (-0.47 pp)'."""
    if before is None or after is None:
        return f"{pct(before)} → {pct(after)}"
    decimals, change = rate_change(before, after)
    return f"{pct(before, decimals)} → {pct(after, decimals)} ({change})"
