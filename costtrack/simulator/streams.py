"""Response bodies delivered chunk by chunk, and server-sent-event framing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx2


class SimStream(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A response body delivered chunk by chunk, for sync and async clients alike.

    Single-pass, like a socket: iterating again (the OpenAI async SDK drains a
    body after ``[DONE]``) goes on from where the last iteration stopped.
    ``fail_with`` is raised once the chunks run out (a connection cut mid-body).
    """

    def __init__(
        self,
        chunks: list[bytes],
        *,
        fail_with: BaseException | None = None,
        delay: float = 0.0,
        sleep: Callable[[float], None] | None = None,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._chunks = chunks
        self._pos = 0
        self._fail_with = fail_with
        self._delay = delay
        self._sleep = sleep
        self._async_sleep = async_sleep
        self.closed = False

    def _take(self) -> bytes | None:
        if self.closed or self._pos >= len(self._chunks):
            return None
        chunk = self._chunks[self._pos]
        self._pos += 1
        return chunk

    def _failure(self) -> BaseException | None:
        fail, self._fail_with = self._fail_with, None
        return None if self.closed else fail

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self._take()) is not None:
            if self._pos > 1 and self._delay and self._sleep is not None:
                self._sleep(self._delay)
            yield chunk
        if (fail := self._failure()) is not None:
            raise fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := self._take()) is not None:
            if self._pos > 1 and self._delay:
                if self._async_sleep is not None:
                    await self._async_sleep(self._delay)
                elif self._sleep is not None:
                    self._sleep(self._delay)
            yield chunk
        if (fail := self._failure()) is not None:
            raise fail

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
