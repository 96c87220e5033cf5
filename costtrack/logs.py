"""The "costtrack" logger, and logging each internal failure once instead of on every call."""

from __future__ import annotations

import logging
import threading

from .forks import renews_in_child

__all__ = ["log", "log_once", "reset_once"]

log = logging.getLogger("costtrack")

_seen: set[str] = set()
_lock = threading.Lock()


@renews_in_child
def _renew_lock() -> None:
    global _lock
    _lock = threading.Lock()


def log_once(key: str, message: str, *args: object, level: int = logging.WARNING, exc_info: bool = False) -> None:
    """Log `message` the first time `key` is seen in this process; later repeats are silent."""
    with _lock:
        if key in _seen:
            return
        _seen.add(key)
    log.log(level, message, *args, exc_info=exc_info)


def reset_once() -> None:
    """Forget which messages were logged (for tests)."""
    with _lock:
        _seen.clear()
