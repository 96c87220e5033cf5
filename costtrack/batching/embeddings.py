"""Embedding micro-batching: many single-input embedding calls combined into few requests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any

from ..call_context import context
from ..errors import CosttrackError
from .batch_api import is_async_client

__all__ = ["EmbeddingBatcher"]


class _Slot:
    __slots__ = ("future", "taken", "text")

    def __init__(self, text: Any, future: Any) -> None:
        self.text = text
        self.future = future
        self.taken = False


class EmbeddingBatcher:
    """Combines many single-input embedding calls into few requests of up to `max_batch` inputs.

        batcher = costtrack.EmbeddingBatcher(costtrack.wrap(OpenAI()), model="text-embedding-3-small")
        vector = batcher.embed("some text")            # from many threads at once
        vector = await batcher.aembed("some text")     # with an AsyncOpenAI client, from many tasks

    A request goes out when `max_batch` inputs are waiting, or `max_wait` seconds (by `clock`) after the
    first of them arrived; each caller waits for its own request and gets its own vector (or the request's
    exception). `flush()` / `aflush()` send what is waiting now. Other `embeddings.create` options
    (`dimensions`, `encoding_format`, `user`, ...) are passed as keyword arguments.

    With a wrapped client each combined request is ONE record, its usage covering every input in it, made
    with the context (costtrack.context) of the caller that sent it (the first of the batch, or the one
    that filled it) and tagged `embedding_inputs` (how many inputs it carried). Inputs are not attributed
    separately.
    """

    def __init__(
        self,
        client: Any,
        *,
        model: str,
        max_batch: int = 256,
        max_wait: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        if not 1 <= max_batch <= 2048:
            raise ValueError("max_batch must be between 1 and 2048 (the embeddings API takes at most 2048 inputs)")
        if max_wait < 0:
            raise ValueError("max_wait must not be negative")
        self.client = client
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.clock = clock
        self.options = options
        self.requests = 0  #: combined requests sent so far
        self._is_async = is_async_client(client)
        self._cond = threading.Condition()
        self._pending: list[_Slot] = []
        self._apending: list[_Slot] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def pending(self) -> int:
        """Inputs waiting for their request."""
        with self._cond:
            return len(self._pending) + len(self._apending)

    @staticmethod
    def _check(text: Any) -> None:
        # An empty input would make the provider refuse the whole combined request: refuse it alone, here.
        if not isinstance(text, str) or not text:
            raise ValueError("embed() takes one non-empty string")

    # ------------------------------------------------------------------ sync

    def embed(self, text: str) -> list[float] | str:
        """The embedding of `text` (a base64 str with `encoding_format="base64"`); blocks until the request carrying it
        returns. Thread-safe."""
        if self._is_async:
            raise TypeError("embed() needs a sync client (openai.OpenAI); use `await aembed()` with AsyncOpenAI")
        self._check(text)
        slot = _Slot(text, concurrent.futures.Future())
        batch: list[_Slot] | None = None
        with self._cond:
            self._pending.append(slot)
            if len(self._pending) >= self.max_batch:
                batch = self._take()
            elif len(self._pending) == 1:
                # The first input of a batch waits for it to fill, then sends what has come.
                deadline = self.clock() + self.max_wait
                while not slot.taken:
                    remaining = deadline - self.clock()
                    if remaining <= 0:
                        batch = self._take()
                        break
                    self._cond.wait(min(remaining, self.max_wait) or None)
        if batch:
            self._send(batch)
        return slot.future.result()  # type: ignore[no-any-return]

    def flush(self) -> int:
        """Send the inputs waiting now (from this thread); return how many there were."""
        with self._cond:
            batch = self._take() if self._pending else []
        if batch:
            self._send(batch)
        return len(batch)

    def _take(self) -> list[_Slot]:
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        for slot in batch:
            slot.taken = True
        self.requests += 1
        self._cond.notify_all()
        return batch

    def _send(self, batch: list[_Slot]) -> None:
        try:
            with context(tags={"embedding_inputs": len(batch)}):
                response = self.client.embeddings.create(model=self.model, input=[s.text for s in batch], **self.options)
            vectors = _vectors(response, len(batch))
        except BaseException as exc:
            for slot in batch:
                slot.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for slot, vector in zip(batch, vectors):
            slot.future.set_result(vector)

    # ------------------------------------------------------------------ async

    async def aembed(self, text: str) -> list[float] | str:
        """The embedding of `text` (a base64 str with `encoding_format="base64"`), batched with the other tasks' inputs
        (an AsyncOpenAI client).

        With a sync client it runs `embed` in a worker thread.
        """
        self._check(text)
        if not self._is_async:
            return await asyncio.to_thread(self.embed, text)
        loop = asyncio.get_running_loop()
        slot = _Slot(text, loop.create_future())
        with self._cond:
            self._apending.append(slot)
            full = len(self._apending) >= self.max_batch
            first = len(self._apending) == 1
            batch = self._atake() if full else None
        if batch:
            self._spawn(self._asend(batch))
        elif first:
            self._spawn(self._atimer(slot))
        return await slot.future  # type: ignore[no-any-return]

    async def aflush(self) -> int:
        """Send the inputs waiting now; return how many there were."""
        with self._cond:
            batch = self._atake() if self._apending else []
        if batch:
            await self._asend(batch)
        return len(batch)

    def _atake(self) -> list[_Slot]:
        batch, self._apending = self._apending[: self.max_batch], self._apending[self.max_batch :]
        for slot in batch:
            slot.taken = True
        self.requests += 1
        return batch

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _atimer(self, slot: _Slot) -> None:
        deadline = self.clock() + self.max_wait
        while not slot.taken:
            remaining = deadline - self.clock()
            if remaining <= 0:
                with self._cond:
                    batch = self._atake() if not slot.taken else None
                if batch:
                    await self._asend(batch)
                return
            await asyncio.sleep(min(remaining, self.max_wait))

    async def _asend(self, batch: list[_Slot]) -> None:
        try:
            with context(tags={"embedding_inputs": len(batch)}):
                response = await self.client.embeddings.create(model=self.model, input=[s.text for s in batch], **self.options)
            vectors = _vectors(response, len(batch))
        except BaseException as exc:
            for slot in batch:
                if not slot.future.done():
                    slot.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for slot, vector in zip(batch, vectors):
            if not slot.future.done():
                slot.future.set_result(vector)


def _vectors(response: Any, count: int) -> list[Any]:
    data = sorted(response.data, key=lambda item: item.index)
    if len(data) != count:
        raise CosttrackError(f"the embeddings response has {len(data)} vectors for {count} inputs")
    return [item.embedding for item in data]
