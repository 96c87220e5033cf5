"""A concurrency-limited gather: await many calls with at most `limit` in flight, results in input order."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from .batch_api import Bar

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["gather_limited"]

T = TypeVar("T")


@overload
async def gather_limited(
    items: Iterable[Awaitable[T] | Callable[[], Awaitable[T]]],
    *,
    limit: int = ...,
    return_exceptions: Literal[False] = ...,
    progress: bool | Console = ...,
    description: str = ...,
) -> list[T]: ...


@overload
async def gather_limited(
    items: Iterable[Awaitable[T] | Callable[[], Awaitable[T]]],
    *,
    limit: int = ...,
    return_exceptions: bool,
    progress: bool | Console = ...,
    description: str = ...,
) -> list[T | Exception]: ...


async def gather_limited(
    items: Iterable[Awaitable[T] | Callable[[], Awaitable[T]]],
    *,
    limit: int = 8,
    return_exceptions: bool = False,
    progress: bool | Console = False,
    description: str = "requests",
) -> list[T] | list[T | Exception]:
    """Await many calls with at most `limit` in flight at once; the results come back in input order.

        answers = await costtrack.gather_limited(
            [lambda q=q: client.chat.completions.create(model="gpt-4o-mini", messages=q) for q in prompts], limit=8)

    Each item is a zero-argument callable returning an awaitable (a factory: nothing starts before its
    turn), or an awaitable (a coroutine object starts when its turn comes). The first exception cancels
    the calls in flight, closes the ones not started and is raised; with `return_exceptions=True` it takes
    the failed call's place in the results instead. `progress=True` shows a rich progress bar on stderr.
    Every call the SDK makes is recorded as usual, with the context (costtrack.context) of the caller.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    pending = list(items)
    results: list[Any] = [None] * len(pending)
    if not pending:
        return results
    queue = iter(enumerate(pending))
    bar = Bar(progress, description, len(pending), time.monotonic)

    async def worker() -> None:
        for index, item in queue:
            awaitable = item() if callable(item) and not inspect.isawaitable(item) else item
            try:
                results[index] = await awaitable  # type: ignore[misc]
            except Exception as exc:
                if not return_exceptions:
                    raise
                results[index] = exc
            finally:
                bar.update(advance=1)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(pending)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for _, item in queue:  # never started: close them so Python does not warn they were never awaited
            if inspect.iscoroutine(item):
                item.close()
        raise
    finally:
        bar.close()
    return results
