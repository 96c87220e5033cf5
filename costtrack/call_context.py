"""Call context: endpoint, user and tags that apply to every call made inside a `with` block."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallContext", "context", "context_var", "current"]


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the app said about the calls it is about to make."""

    endpoint: str | None = None
    user: str | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    bypass_cache: bool = False


_EMPTY = CallContext()
#: The context in force; read directly on the app's thread, where a function call per request costs.
context_var: contextvars.ContextVar[CallContext] = contextvars.ContextVar("costtrack_context", default=_EMPTY)


def current() -> CallContext:
    """The context in force for the running thread or task."""
    return context_var.get()


@contextmanager
def context(
    endpoint: str | None = None,
    *,
    user: str | None = None,
    tags: Mapping[str, Any] | None = None,
    bypass_cache: bool | None = None,
) -> Iterator[CallContext]:
    """Tag the calls made inside the block; nested blocks add to (and override) the outer one.

    The context follows the code through threads started with
    `contextvars.copy_context()` and through asyncio tasks, which copy it on creation.

        with costtrack.context(endpoint="/api/analyze", user="u1", tags={"run": "baseline"}):
            client.chat.completions.create(...)
    """
    outer = context_var.get()
    inner = CallContext(
        endpoint=endpoint if endpoint is not None else outer.endpoint,
        user=user if user is not None else outer.user,
        tags={**outer.tags, **tags} if tags else outer.tags,
        bypass_cache=bypass_cache if bypass_cache is not None else outer.bypass_cache,
    )
    token = context_var.set(inner)
    try:
        yield inner
    finally:
        context_var.reset(token)
