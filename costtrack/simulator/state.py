"""What every part of the simulator shares: its settings, request counter, clock and ids."""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx2

if TYPE_CHECKING:  # pragma: no cover
    from .batches import SimBatch, SimFile
    from .outcomes import Outcome

# 2026-01-01T00:00:00Z: the synthetic clock starts here and ticks a second a request.
_EPOCH = 1_767_225_600


class SimulatorState:
    """The attributes ``Simulator.__init__`` sets, declared here for the mixins that use them."""

    seed: int
    error_rate: float
    prompt_cache: bool
    latency: Callable[[httpx2.Request], float] | None
    sleep: Callable[[float], None] | None
    async_sleep: Callable[[float], Awaitable[None]] | None
    chunk_delay: float
    retry_after: float
    clock: Callable[[], float] | None
    requests: list[httpx2.Request]
    _script: deque[Outcome]
    _lock: threading.RLock
    _counter: int
    _openai_seen: dict[bytes, float]  # cached prefix -> when it expires (the simulator's clock, seconds)
    _anthropic_seen: dict[bytes, tuple[float, float]]  # cached prefix -> (when it expires, its ttl)
    batch_polls: int
    files: dict[str, SimFile]
    batches: dict[str, SimBatch]
    _batch_line_failures: dict[str, int]

    def _next(self) -> int:
        n = self._counter
        self._counter += 1
        return n

    def _now(self, n: int) -> int:
        return int(self.clock()) if self.clock is not None else _EPOCH + n

    def _time(self) -> float:
        """The time now (seconds since the epoch): the clock given, else the synthetic one at this request."""
        return float(self.clock()) if self.clock is not None else float(_EPOCH + self._counter)

    def _id(self, prefix: str, n: int, length: int = 24) -> str:
        token = hashlib.sha256(f"{self.seed}:{prefix}:{n}".encode()).hexdigest()[:length]
        return f"{prefix}{token}"

    def _tool_call_id(self, n: int, i: int) -> str:
        return self._id("call_", n * 16 + i)
