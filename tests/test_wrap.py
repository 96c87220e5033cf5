"""wrap(): the same client class, nothing global patched, endpoint/user/tags from arguments and context."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import anthropic
import openai
import pytest

import costtrack
from costtrack.wrap import detect_provider
from helpers import Recorder, anthropic_client, openai_client, serve

CHAT = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    "make, cls",
    [
        (lambda: openai_client(Recorder(serve("openai_chat.json"))), openai.OpenAI),
        (lambda: openai_client(Recorder(serve("openai_chat.json")), is_async=True), openai.AsyncOpenAI),
        (lambda: anthropic_client(Recorder(serve("anthropic_message.json"))), anthropic.Anthropic),
        (lambda: anthropic_client(Recorder(serve("anthropic_message.json")), is_async=True), anthropic.AsyncAnthropic),
    ],
)
def test_wrap_returns_the_same_class(tracker, make, cls):
    original = make()
    wrapped = tracker.wrap(original)
    assert type(wrapped) is cls and wrapped is not original
    assert wrapped.base_url == original.base_url and wrapped.max_retries == original.max_retries


def test_original_client_is_untouched(tracker, records):
    original = openai_client(Recorder(serve("openai_chat.json")))
    http_before = original._client
    tracker.wrap(original)
    original.chat.completions.create(**CHAT)
    assert original._client is http_before
    assert records() == []


def test_wrap_rejects_other_objects(tracker):
    with pytest.raises(TypeError, match="openai or anthropic SDK client"):
        tracker.wrap(object())


@pytest.mark.parametrize(
    "base_url, provider",
    [
        ("https://api.openai.com/v1", "openai"),
        ("http://localhost:11434/v1", "ollama"),
        ("http://127.0.0.1:8000/v1", "vllm"),
        ("http://localhost:8080/v1", "llamacpp"),
        ("https://gateway.example.com/v1", "openai-compatible"),
        ("https://myres.openai.azure.com/openai", "azure"),
    ],
)
def test_provider_from_base_url(base_url, provider):
    assert detect_provider("openai", base_url) == provider


def test_local_server_records_its_provider(tracker, records):
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json")), base_url="http://localhost:11434/v1"))
    client.chat.completions.create(**CHAT)
    assert records()[0].provider == "ollama"


def test_endpoint_user_and_tags(tracker, records):
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"))), endpoint="/api/summarize", tags={"team": "a"})
    client.chat.completions.create(**CHAT)
    with costtrack.context(endpoint="/api/analyze", user="u1", tags={"run": "baseline"}):
        with costtrack.context(tags={"step": 2}):
            client.chat.completions.create(**CHAT)
    first, second = sorted(records(), key=lambda r: r.timestamp)
    assert (first.endpoint, first.user, first.tags) == ("/api/summarize", None, {"team": "a"})
    assert (second.endpoint, second.user) == ("/api/analyze", "u1")
    assert second.tags == {"team": "a", "run": "baseline", "step": 2}


async def test_context_follows_asyncio_tasks(tracker, records):
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json")), is_async=True))

    async def feature(name: str) -> None:
        with costtrack.context(endpoint=name, user=name):
            await asyncio.sleep(0)
            await client.chat.completions.create(**CHAT)

    await asyncio.gather(*(feature(f"/f{i}") for i in range(20)))
    assert sorted((r.endpoint, r.user) for r in records()) == sorted((f"/f{i}", f"/f{i}") for i in range(20))


def test_context_follows_threads_started_with_copy_context(tracker, records):
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"))))
    with costtrack.context(endpoint="/threaded"):
        ctx = contextvars.copy_context()
    worker = threading.Thread(target=ctx.run, args=(client.chat.completions.create,), kwargs=CHAT)
    worker.start()
    worker.join()
    assert [r.endpoint for r in records()] == ["/threaded"]
