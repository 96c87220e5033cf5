"""SDK clients answered by a simulator; each SDK is imported only inside its constructor, so the simulator needs none."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx2

from .handler import Simulator

if TYPE_CHECKING:  # pragma: no cover
    import anthropic
    import openai


def _transport(sim: Simulator | None, *, use_async: bool) -> tuple[Simulator, httpx2.MockTransport]:
    sim = sim if sim is not None else Simulator()
    return sim, httpx2.MockTransport(sim.handle_async if use_async else sim)


def openai_client(sim: Simulator | None = None, **kw: Any) -> openai.OpenAI:
    """An ``openai.OpenAI`` answered by ``sim`` (a new Simulator if None); ``max_retries`` defaults to 0."""
    import openai

    sim, transport = _transport(sim, use_async=False)
    kw.setdefault("api_key", "sk-simulator")
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(http_client=httpx2.Client(transport=transport), **kw)


def async_openai_client(sim: Simulator | None = None, **kw: Any) -> openai.AsyncOpenAI:
    """An ``openai.AsyncOpenAI`` answered by ``sim``; ``max_retries`` defaults to 0."""
    import openai

    sim, transport = _transport(sim, use_async=True)
    kw.setdefault("api_key", "sk-simulator")
    kw.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(http_client=httpx2.AsyncClient(transport=transport), **kw)


def anthropic_client(sim: Simulator | None = None, **kw: Any) -> anthropic.Anthropic:
    """An ``anthropic.Anthropic`` answered by ``sim``; ``max_retries`` defaults to 0."""
    import anthropic

    sim, transport = _transport(sim, use_async=False)
    kw.setdefault("api_key", "sk-ant-simulator")
    kw.setdefault("max_retries", 0)
    return anthropic.Anthropic(http_client=httpx2.Client(transport=transport), **kw)


def async_anthropic_client(sim: Simulator | None = None, **kw: Any) -> anthropic.AsyncAnthropic:
    """An ``anthropic.AsyncAnthropic`` answered by ``sim``; ``max_retries`` defaults to 0."""
    import anthropic

    sim, transport = _transport(sim, use_async=True)
    kw.setdefault("api_key", "sk-ant-simulator")
    kw.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(http_client=httpx2.AsyncClient(transport=transport), **kw)
