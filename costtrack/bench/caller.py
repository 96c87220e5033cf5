"""One request sent and timed: the Sample it gives, its usage read from the SDK's answer or stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx2

from ..usage import Usage
from .transport import ANSWERED, error_kind, error_text

if TYPE_CHECKING:
    from .targets import Target


class Sample:
    """One request as the client saw it (seconds, from perf_counter)."""

    __slots__ = ("answered_by", "error", "error_text", "latency", "model", "tokens_estimated", "ttft", "usage")

    def __init__(self) -> None:
        self.latency = 0.0
        self.ttft: float | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.error: str | None = None  # its kind (ERROR_KINDS)
        self.error_text: str | None = None  # what it said, on one line
        self.answered_by: str | None = None
        self.tokens_estimated = False


def _openai_usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input=int(getattr(usage, "prompt_tokens", 0) or 0),
        output=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_input=int(getattr(prompt_details, "cached_tokens", 0) or 0),
        reasoning=int(getattr(completion_details, "reasoning_tokens", 0) or 0),
    )


def _anthropic_usage(usage: Any, output: int | None = None) -> Usage | None:
    if usage is None:
        return None
    read = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
    write = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
    return Usage(
        input=int(getattr(usage, "input_tokens", 0) or 0) + read + write,
        output=int(getattr(usage, "output_tokens", 0) or 0) if output is None else output,
        cached_input=read,
        cache_write=write,
    )


def _token_parameter(target: Target) -> str:
    # OpenAI's newer models refuse max_tokens; local servers know max_tokens best.
    return "max_completion_tokens" if (httpx2.URL(target.base_url).host or "") == "api.openai.com" else "max_tokens"


class Caller:
    """Sends one prompt to one (wrapped) client and times it; never raises but CancelledError."""

    def __init__(self, client: Any, target: Target, prompts: Sequence[str], max_tokens: int, stream: bool,
                 clock: Callable[[], float]) -> None:  # fmt: skip
        self.client = client
        self.sdk = target.sdk
        self.clock = clock
        self.stream = stream
        if target.sdk == "anthropic":
            base = {"model": target.model, "max_tokens": max_tokens}
            self.create = client.messages.create
        else:
            base = {"model": target.model, _token_parameter(target): max_tokens}
            if stream:
                base["stream_options"] = {"include_usage": True}
            self.create = client.chat.completions.create
        if stream:
            base["stream"] = True
        self.requests = [{**base, "messages": [{"role": "user", "content": p}]} for p in prompts]

    async def __call__(self, index: int) -> Sample:
        sample = Sample()
        slot: list[str | None] = [None]
        ANSWERED.set(slot)
        kwargs = self.requests[index % len(self.requests)]
        clock = self.clock
        start = clock()
        try:
            if self.sdk == "anthropic":
                await self._anthropic(sample, kwargs, start)
            else:
                await self._openai(sample, kwargs, start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is a sample's error, counted by kind
            sample.error = error_kind(exc)
            sample.error_text = error_text(exc)
        sample.latency = clock() - start
        sample.answered_by = slot[0]
        return sample

    async def _openai(self, sample: Sample, kwargs: dict[str, Any], start: float) -> None:
        if not self.stream:
            response = await self.create(**kwargs)
            sample.model = response.model
            sample.usage = _openai_usage(response.usage)
            return
        stream = await self.create(**kwargs)
        chunks = 0
        usage = None
        model = None
        clock = self.clock
        async for chunk in stream:
            choices = chunk.choices
            if choices:
                delta = choices[0].delta
                if delta is not None and (delta.content or delta.tool_calls or getattr(delta, "reasoning_content", None)):
                    chunks += 1
                    if sample.ttft is None:
                        sample.ttft = clock() - start
            if chunk.usage is not None:
                usage = chunk.usage
            model = chunk.model or model
        sample.model = model
        sample.usage = _openai_usage(usage)
        if sample.usage is None and chunks:
            sample.usage = Usage(output=chunks)  # a server that ignores include_usage: one token a chunk
            sample.tokens_estimated = True

    async def _anthropic(self, sample: Sample, kwargs: dict[str, Any], start: float) -> None:
        if not self.stream:
            response = await self.create(**kwargs)
            sample.model = response.model
            sample.usage = _anthropic_usage(response.usage)
            return
        stream = await self.create(**kwargs)
        start_usage = None
        output: int | None = None
        clock = self.clock
        async for event in stream:
            kind = event.type
            if kind == "content_block_delta":
                if sample.ttft is None:
                    sample.ttft = clock() - start
            elif kind == "message_start":
                start_usage = event.message.usage
                sample.model = event.message.model
            elif kind == "message_delta":
                output = event.usage.output_tokens
        sample.usage = _anthropic_usage(start_usage, output)
