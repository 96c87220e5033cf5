"""Locks made anew in a forked child: a lock another thread held at the fork (the writer thread pricing a record, an
app thread building the writer) stays held in the child for good, and the child hung at its first use or at exit."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["renew_locks_in_child", "renews_in_child"]


class _Renewable(Protocol):
    def _renew_locks(self) -> None: ...


_objects: weakref.WeakSet[Any] = weakref.WeakSet()
_functions: list[Callable[[], None]] = []


def renew_locks_in_child(obj: _Renewable) -> None:
    """Have `obj._renew_locks()` called in every forked child while `obj` lives."""
    _objects.add(obj)


def renews_in_child(fn: Callable[[], None]) -> Callable[[], None]:
    """Decorator: call `fn` (which makes a module's locks anew) in every forked child."""
    _functions.append(fn)
    return fn


def _after_fork_in_child() -> None:
    for fn in _functions:
        fn()
    for obj in list(_objects):
        obj._renew_locks()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
