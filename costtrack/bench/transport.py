"""The client-side transport below costtrack's: injected failures, and error kinds."""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx2

if TYPE_CHECKING:
    pass

from .targets import Target

ANSWERED: contextvars.ContextVar[list[str | None] | None] = contextvars.ContextVar("costtrack_bench_answered", default=None)
INJECTED_HEADER = "x-costtrack-injected"


def _error_body(sdk: str, status: int) -> bytes:
    import json

    message = f"costtrack bench: injected {status}"
    if sdk == "anthropic":
        kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error" if status >= 500 else "invalid_request_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    elif status == 429:
        body = {"error": {"message": message, "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
    else:
        body = {"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error",
                          "param": None, "code": None}}  # fmt: skip
    return json.dumps(body).encode()


class TargetState:
    """What one target's transports share during a level: request count, injected faults, the fault draws."""

    def __init__(self, target: Target, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.target = target
        self.injection = target.inject
        self.rng = random.Random(target.inject.seed) if target.inject is not None else None
        self.sleep = sleep
        self.requests = 0
        self.injected: dict[str, int] = {}


class BenchTransport(httpx2.AsyncBaseTransport):
    """Counts a target's requests, injects its faults, and notes which target answered (for fallback chains).

    It sits under costtrack's transport (the SDK's client → costtrack → this →
    the connection pool), so injected latency is part of the measured time and an
    injected error is recorded like a real one. Only POSTs (completions) are counted
    and injected into; model listings pass through.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport, state: TargetState) -> None:
        self._inner = inner
        self._state = state

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        state = self._state
        if request.method != "POST":
            return await self._inner.handle_async_request(request)
        state.requests += 1
        injection = state.injection
        if injection is not None:
            fault = injection.fault(state.requests, state.rng)
            if injection.latency_s > 0:
                await state.sleep(injection.latency_s)
            if fault is not None:
                kind = fault if isinstance(fault, str) else _status_kind(fault)
                state.injected[kind] = state.injected.get(kind, 0) + 1
                if fault == "timeout":
                    raise httpx2.ReadTimeout("costtrack bench: injected timeout", request=request)
                if fault == "connection":
                    raise httpx2.ConnectError("costtrack bench: injected connection error", request=request)
                assert isinstance(fault, int)
                headers = {"content-type": "application/json", INJECTED_HEADER: kind}
                if fault == 429:
                    headers["retry-after-ms"] = "1000"
                return httpx2.Response(fault, headers=headers, content=_error_body(state.target.sdk, fault), request=request)
        response = await self._inner.handle_async_request(request)
        if response.status_code < 400:
            slot = ANSWERED.get()
            if slot is not None:
                slot[0] = state.target.name
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _status_kind(status: int) -> str:
    if status == 429:
        return "rate_limit"
    if status == 408:
        return "timeout"
    return "5xx" if status >= 500 else "4xx"


def error_kind(exc: BaseException) -> str:
    """The error type an exception counts as: one of ERROR_KINDS."""
    from ..fallback import failure_reason

    reason = failure_reason(exc)
    if reason == "timeout":
        return "timeout"
    if reason == "connection_error":
        return "connection"
    if reason == "rate_limit_exceeded":
        return "rate_limit"
    if reason in ("server_error", "overloaded_error"):
        return "5xx"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return "4xx"
    return "other"




def error_text(exc: BaseException, limit: int = 200) -> str:
    """One line saying what went wrong: the exception's message, and its root cause's when that says more.

    An SDK's "Connection error." becomes "Connection error. ([Errno 111] Connect call failed ('127.0.0.1', 1))".
    """
    text = str(exc).strip() or type(exc).__name__
    root: BaseException = exc
    seen = {id(exc)}
    while True:
        nxt = root.__cause__ or root.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        root = nxt
    cause = str(root).strip()
    if root is not exc and cause and cause not in text:
        text = f"{text} ({cause})"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
