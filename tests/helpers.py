"""Test helpers: SDK clients over a fixture-serving MockTransport, and reading back stored records."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2

FIXTURES = Path(__file__).parent / "fixtures"

Handler = Callable[[httpx2.Request], httpx2.Response]


def fixture(name: str) -> bytes:
    """The bytes of a recorded-looking body under tests/fixtures/."""
    return (FIXTURES / name).read_bytes()


def serve(name: str, status: int = 200) -> httpx2.Response:
    """A response with a fixture body; .sse files are served as event streams."""
    content_type = "text/event-stream" if name.endswith(".sse") else "application/json"
    return httpx2.Response(status, headers={"content-type": content_type}, content=fixture(name))


class Recorder:
    """A MockTransport handler that serves fixed responses and keeps every request it saw."""

    def __init__(self, *responses: httpx2.Response | Callable[[httpx2.Request], httpx2.Response] | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx2.Request] = []
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        self.bodies.append(json.loads(request.content) if request.content else {})
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(item, Exception):
            raise item
        if callable(item):
            return item(request)
        # A fresh copy each time so the same response can be served repeatedly.
        return httpx2.Response(item.status_code, headers=item.headers, content=item.content)


def openai_client(handler: Handler, *, is_async: bool = False, max_retries: int = 0, **kw: Any) -> Any:
    """A real openai client whose HTTP transport is `handler`."""
    import openai

    transport = httpx2.MockTransport(handler)
    if is_async:
        return openai.AsyncOpenAI(api_key="sk-test", http_client=httpx2.AsyncClient(transport=transport), max_retries=max_retries, **kw)
    return openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=transport), max_retries=max_retries, **kw)


def anthropic_client(handler: Handler, *, is_async: bool = False, max_retries: int = 0, **kw: Any) -> Any:
    """A real anthropic client whose HTTP transport is `handler`."""
    import anthropic

    transport = httpx2.MockTransport(handler)
    if is_async:
        return anthropic.AsyncAnthropic(api_key="sk-ant-test", http_client=httpx2.AsyncClient(transport=transport), max_retries=max_retries, **kw)
    return anthropic.Anthropic(api_key="sk-ant-test", http_client=httpx2.Client(transport=transport), max_retries=max_retries, **kw)


MTOK = Decimal(1_000_000)


def rates(provider: str, model: str, at: datetime) -> dict[str, Decimal]:
    """The catalog's effective rates (USD per 1M tokens) of a model at a time, for computing expected costs."""
    from costtrack.pricing import PriceBook

    return PriceBook().rates(provider, model, at).effective()


def price(r: dict[str, Decimal], tin: int, tout: int, cached: int = 0) -> float:
    """A call's cost from `rates()`: uncached and cached input, and output, computed apart from the library."""
    return float(((tin - cached) * r["input"] + cached * r["cached_input"] + tout * r["output"]) / MTOK)


def nearest_rank(values: list[float], p: float) -> float:
    """The p-th percentile by nearest rank (an observed value), the definition reports use."""
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


def batch_chat(i: int) -> dict:
    """The i-th request body of the batch tests: a one-line ticket summary."""
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Summarise ticket number {i} in one line."}]}


def live_chat(body: dict) -> Any:
    """What a live (non-batch) call answers for the same body, from a fresh simulator."""
    from costtrack.simulator import Simulator, openai_client

    return openai_client(Simulator()).chat.completions.create(**body)
