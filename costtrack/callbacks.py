"""The app's callbacks (a fallback's judge, a routing classifier, a cache policy): which are async, and refusing those
that must decide synchronously."""

from __future__ import annotations

import inspect
from typing import Any

from .errors import ConfigError

__all__ = ["is_async_function", "plain_answer", "require_plain"]


def is_async_function(fn: Any) -> bool:
    """Whether `fn` is an `async def` function, or an object whose `__call__` is one."""
    return inspect.iscoroutinefunction(fn) or (callable(fn) and inspect.iscoroutinefunction(type(fn).__call__))


def require_plain(fn: Any, what: str) -> None:
    """Raise ConfigError when `fn` is async where costtrack must have its answer at once (its coroutine, never
    awaited, is truthy: a Privacy check that is async sent every request to the local model)."""
    if is_async_function(fn):
        raise ConfigError(f"{what} must be a plain function, not an async one: it decides before the request is sent")


def plain_answer(value: Any, what: str) -> Any:
    """A callback's answer, or ConfigError when it is an awaitable (a lambda calling an async function)."""
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: closed so that Python does not warn of it
        raise ConfigError(f"{what} returned an awaitable; it must be a plain function")
    return value
