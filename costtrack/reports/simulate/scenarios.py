"""What-if scenarios: a response cache, model swaps and a Batch API share, alone or combined."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from .aggregates import Group


@dataclass(frozen=True)
class Swap:
    """Reprice the calls of model `source` (requested or answered) at `target`'s rates, on `endpoints` (None: all)."""

    source: str
    target: str
    endpoints: frozenset[str] | None = None

    def matches(self, group: Group) -> bool:
        if self.endpoints is not None and group.endpoint not in self.endpoints:
            return False
        src = self.source.lower()
        return group.model_key.lower() == src or group.model.lower() == src

    def label(self) -> str:
        return f"{self.source}={self.target}"


@dataclass(frozen=True)
class Scenario:
    """A what-if: any combination of a response cache, model swaps and a Batch API share."""

    cache_ttl: float | None = None
    swaps: tuple[Swap, ...] = ()
    batch_share: float = 0.0
    batch_endpoints: frozenset[str] | None = None  # None: every endpoint

    def __post_init__(self) -> None:
        if not 0.0 <= self.batch_share <= 1.0:
            raise ConfigError(f"--batch-share {self.batch_share:g} is a share: give a number from 0 to 1 (0.3 for 30%)")
        if self.cache_ttl is not None and self.cache_ttl <= 0:
            raise ConfigError("--cache-ttl must be more than 0")

    @property
    def empty(self) -> bool:
        return not self.cache_ttl and not self.swaps and not self.batch_share

    def describe(self) -> list[str]:
        """The levers in words, for headers and notes."""
        from ...format import duration, pct

        out: list[str] = []
        if self.cache_ttl:
            out.append(f"response cache, TTL {duration(self.cache_ttl)}")
        for swap in self.swaps:
            where = f" on {', '.join(sorted(swap.endpoints))}" if swap.endpoints else ""
            out.append(f"{swap.source} → {swap.target}{where}")
        if self.batch_share:
            scope = "all endpoints" if self.batch_endpoints is None else (
                ", ".join(sorted(self.batch_endpoints)) or "no endpoint")  # fmt: skip
            out.append(f"Batch API for {pct(self.batch_share)} of the calls of {scope}")
        return out
