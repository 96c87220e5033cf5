"""How much data the results need before they print percentage changes."""

from __future__ import annotations

__all__ = ["MIN_REQUESTS"]


#: Fewest requests a selection needs before percentage changes are printed.
MIN_REQUESTS = 30
