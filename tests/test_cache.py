"""Response cache: real SDK clients over the simulator, the memory cache and a real Redis.

Every test taking `make_cache` runs against both caches; the Redis ones use a
namespace of their own (deleted afterwards) and skip when Redis is not reachable
at $COSTTRACK_TEST_REDIS_URL (default 127.0.0.1:6379), or fail with
COSTTRACK_REQUIRE_SERVICES=1. Time is a FakeClock injected into the caches.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anthropic
import httpx2
import openai
import pytest
from conftest import FakeClock, free_port, require_service
from typer.testing import CliRunner

import costtrack
from costtrack.cache import (
    CACHE_HEADER,
    STORED_HEADERS,
    Cache,
    CachedResponse,
    CacheError,
    MemoryCache,
    RedisCache,
    cache_key,
)
from costtrack.logs import reset_once
from costtrack.simulator import Simulator, anthropic_client, async_openai_client, openai_client

REDIS_URL = os.environ.get("COSTTRACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parents[1]

CHAT: dict[str, Any] = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "What is the capital of France?"}])
MESSAGES: dict[str, Any] = dict(
    model="claude-haiku-4-5", max_tokens=200, system="Be brief.", messages=[{"role": "user", "content": "Hello there"}]
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def tracker(sqlite_url: str, outbox_dir: Any) -> Iterator[costtrack.Tracker]:
    """A Tracker on SQLite only: the cache does not depend on the store backend."""
    t = costtrack.Tracker(sqlite_url, outbox_dir=outbox_dir)
    yield t
    t.close()


@pytest.fixture
def records(tracker: costtrack.Tracker) -> Callable[..., list[costtrack.CallRecord]]:
    return tracker.records


def redis_available() -> None:
    parts = urlsplit(REDIS_URL)
    require_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)


@pytest.fixture(params=["memory", "redis"])
def cache_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        redis_available()
    return request.param


@pytest.fixture
def make_cache(cache_kind: str, fake_clock: FakeClock) -> Iterator[Callable[..., Cache]]:
    """`make_cache(**options)`: a cache of the parametrised kind on the fake clock (Redis: a fresh namespace)."""
    made: list[Cache] = []
    namespace = f"t{uuid.uuid4().hex[:12]}"

    def make(**options: Any) -> Cache:
        options.setdefault("timer", fake_clock)
        options.setdefault("ttl", 60)
        if cache_kind == "memory":
            cache: Cache = MemoryCache(**options)
        else:
            options.setdefault("namespace", namespace)
            cache = RedisCache(REDIS_URL, **options)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        if isinstance(cache, RedisCache):
            cache.clear(cache.namespace)
            cache.close()


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=7)


def wrapped(tracker: costtrack.Tracker, client: Any, cache: Cache | None) -> Any:
    return costtrack.wrap(client, tracker=tracker, cache=cache)


def dumps(items: Any) -> list[dict[str, Any]]:
    return [item.model_dump() for item in items]


# --------------------------------------------------------------------------- hit, miss, expiry


def test_hit_returns_the_same_object_sends_nothing_and_records_what_it_saved(tracker, records, make_cache, sim):
    client = wrapped(tracker, openai_client(sim), make_cache())
    first = client.chat.completions.create(**CHAT)
    second = client.chat.completions.create(**CHAT)
    assert type(second) is type(first) and second.model_dump() == first.model_dump()
    assert len(sim.requests) == 1  # the hit sent nothing
    miss, hit = records()
    assert (miss.cache_hit, hit.cache_hit) == (False, True)
    assert miss.cost_usd is not None and miss.cost_usd > 0
    assert hit.cost_usd == 0 and hit.cost_saved_usd == pytest.approx(miss.cost_usd, rel=1e-12)
    assert (hit.tokens_input, hit.tokens_output, hit.model) == (miss.tokens_input, miss.tokens_output, miss.model)
    assert hit.status == "ok" and hit.latency_ms is not None and hit.request_hash == miss.request_hash


def test_a_responses_hit_never_hands_on_another_callers_echoed_fields(tracker, make_cache, sim):
    """The Responses API repeats store, metadata and user in its answer: requests differing in them are not one entry."""
    client = wrapped(tracker, openai_client(sim), make_cache())
    ask = {"model": "gpt-4o-mini", "input": "hi"}
    first = client.responses.create(**ask, store=False, metadata={"job": "A"}, user="alice")
    second = client.responses.create(**ask, store=True, metadata={"job": "B"}, user="bob")
    assert (second.store, second.metadata, second.user) == (True, {"job": "B"}, "bob") and second.id != first.id
    again = client.responses.create(**ask, store=True, metadata={"job": "B"}, user="bob")
    assert again.model_dump() == second.model_dump()  # the same request is still a hit
    assert len(sim.requests) == 2
    # Chat answers repeat none of them: a user tag does not split its entries.
    client.chat.completions.create(**CHAT, user="alice")
    client.chat.completions.create(**CHAT, user="bob")
    assert len(sim.requests) == 3


def test_raw_response_of_a_hit_says_so(tracker, make_cache, sim):
    client = wrapped(tracker, openai_client(sim), make_cache())
    live = client.chat.completions.with_raw_response.create(**CHAT)
    replayed = client.chat.completions.with_raw_response.create(**CHAT)
    assert CACHE_HEADER not in live.headers and replayed.headers[CACHE_HEADER] == "hit"
    assert replayed.headers["x-request-id"] == live.headers["x-request-id"]
    assert replayed.parse().model_dump() == live.parse().model_dump()


def test_entries_expire_after_ttl(tracker, make_cache, sim, fake_clock):
    client = wrapped(tracker, openai_client(sim), make_cache(ttl=60))
    client.chat.completions.create(**CHAT)
    fake_clock.advance(59)
    client.chat.completions.create(**CHAT)
    assert len(sim.requests) == 1
    fake_clock.advance(2)
    client.chat.completions.create(**CHAT)
    assert len(sim.requests) == 2


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.embeddings.create(model="text-embedding-3-small", input="hello"), id="embeddings"),
        pytest.param(lambda c: c.responses.create(model="gpt-4o", input="hi"), id="responses"),
    ],
)
def test_other_openai_operations_hit(tracker, records, make_cache, sim, call):
    client = wrapped(tracker, openai_client(sim), make_cache())
    assert call(client).model_dump() == call(client).model_dump()
    assert len(sim.requests) == 1
    miss, hit = records()
    assert hit.cache_hit and hit.cost_saved_usd == pytest.approx(miss.cost_usd)


def test_anthropic_message_hits(tracker, records, make_cache, sim):
    client = wrapped(tracker, anthropic_client(sim), make_cache())
    first = client.messages.create(**MESSAGES)
    second = client.messages.create(**MESSAGES)
    assert isinstance(second, anthropic.types.Message) and second.model_dump() == first.model_dump()
    assert len(sim.requests) == 1
    miss, hit = records()
    assert hit.cache_hit and hit.cost_usd == 0 and hit.cost_saved_usd == pytest.approx(miss.cost_usd)


async def test_async_client_hits(tracker, records, make_cache, sim):
    client = wrapped(tracker, async_openai_client(sim), make_cache())
    first = await client.chat.completions.create(**CHAT)
    second = await client.chat.completions.create(**CHAT)
    assert second.model_dump() == first.model_dump()
    live = [c.model_dump() async for c in await client.chat.completions.create(**CHAT, stream=True)]
    replayed = [c.model_dump() async for c in await client.chat.completions.create(**CHAT, stream=True)]
    assert replayed == live and all(c["choices"] for c in replayed)
    assert len(sim.requests) == 2
    assert await tracker.aflush()
    assert [r.cache_hit for r in records()] == [False, True, False, True]


# --------------------------------------------------------------------------- streams


def test_openai_stream_replays_the_same_chunks_with_the_usage_chunk_hidden(tracker, records, make_cache, sim):
    client = wrapped(tracker, openai_client(sim), make_cache())
    live = dumps(client.chat.completions.create(**CHAT, stream=True))
    stream = client.chat.completions.create(**CHAT, stream=True)
    assert isinstance(stream, openai.Stream)
    replayed = dumps(stream)
    assert replayed == live and all(chunk["choices"] for chunk in replayed)  # no usage-only chunk
    assert len(sim.requests) == 1
    miss, hit = records()
    assert miss.tokens_output > 0 and hit.cache_hit and hit.cost_usd == 0
    assert hit.cost_saved_usd == pytest.approx(miss.cost_usd) and hit.tokens_output == miss.tokens_output


def test_stream_options_do_not_change_the_key(tracker, make_cache, sim):
    """The key comes from the app's body; costtrack's injected include_usage is not part of it."""
    client = wrapped(tracker, openai_client(sim), make_cache())
    hidden = dumps(client.chat.completions.create(**CHAT, stream=True))
    asked = dumps(client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True}))
    assert len(sim.requests) == 1
    # Same stored bytes; the caller who asked for usage gets the usage chunk, the other did not.
    assert asked[:-1] == hidden and asked[-1]["choices"] == [] and asked[-1]["usage"]["completion_tokens"] > 0


def test_a_stream_with_usage_turned_off_replays_without_the_usage_chunk(tracker, make_cache, sim):
    # Same key as a plain stream, whose stored bytes hold the usage chunk costtrack asked for.
    client = wrapped(tracker, openai_client(sim), make_cache())
    plain = dumps(client.chat.completions.create(**CHAT, stream=True))
    off = dumps(client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": False}))
    assert len(sim.requests) == 1
    assert off == plain and all(chunk["choices"] for chunk in off)


def test_the_query_string_and_organization_are_part_of_the_key(tracker, make_cache, sim):
    cache = make_cache()
    client = wrapped(tracker, openai_client(sim), cache)
    client.chat.completions.create(**CHAT)
    client.chat.completions.create(**CHAT, extra_query={"api-version": "2025-01-01"})
    client.chat.completions.create(**CHAT, extra_headers={"OpenAI-Organization": "org-other"})
    client.chat.completions.create(**CHAT, extra_query={"api-version": "2025-01-01"})  # the second one's entry
    assert len(sim.requests) == 3


@pytest.mark.parametrize("api", ["anthropic", "responses"])
def test_event_streams_replay_as_streams(tracker, records, make_cache, sim, api):
    if api == "anthropic":
        client = wrapped(tracker, anthropic_client(sim), make_cache())

        def run() -> list[dict[str, Any]]:
            return dumps(client.messages.create(**MESSAGES, stream=True))
    else:
        client = wrapped(tracker, openai_client(sim), make_cache())

        def run() -> list[dict[str, Any]]:
            return dumps(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))

    live, replayed = run(), run()
    assert replayed == live and len(replayed) > 3
    assert len(sim.requests) == 1
    miss, hit = records()
    assert hit.cache_hit and hit.cost_saved_usd == pytest.approx(miss.cost_usd)


def test_stream_and_plain_requests_are_cached_apart(tracker, make_cache, sim):
    client = wrapped(tracker, openai_client(sim), make_cache())
    client.chat.completions.create(**CHAT)
    chunks = list(client.chat.completions.create(**CHAT, stream=True))
    assert len(sim.requests) == 2 and chunks[0].object == "chat.completion.chunk"


def test_a_cut_stream_is_not_stored(tracker, make_cache, sim):
    client = wrapped(tracker, openai_client(sim), make_cache())
    sim.script("cut")
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(**CHAT, stream=True))
    list(client.chat.completions.create(**CHAT, stream=True))
    assert len(sim.requests) == 2
    list(client.chat.completions.create(**CHAT, stream=True))
    assert len(sim.requests) == 2


def test_an_abandoned_stream_is_not_stored(tracker, make_cache, sim):
    client = wrapped(tracker, anthropic_client(sim), make_cache())
    stream = client.messages.create(**MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    list(client.messages.create(**MESSAGES, stream=True))
    assert len(sim.requests) == 2


# --------------------------------------------------------------------------- what the key depends on

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"messages": [{"role": "user", "content": "What is the capital of Italy?"}]}, id="messages"),
        pytest.param({"model": "gpt-4o"}, id="model"),
        pytest.param({"temperature": 0.5}, id="temperature"),
        pytest.param({"top_p": 0.5}, id="top_p"),
        pytest.param({"max_tokens": 7}, id="max_tokens"),
        pytest.param({"max_completion_tokens": 7}, id="max_completion_tokens"),
        pytest.param({"tools": [TOOL]}, id="tools"),
        pytest.param({"response_format": {"type": "json_object"}}, id="response_format-json"),
        pytest.param({"response_format": SCHEMA}, id="response_format-schema"),
        pytest.param({"seed": 42}, id="seed"),
        pytest.param({"n": 2}, id="n"),
        # The answer names the tier it was served at, and store=True asks OpenAI to keep the completion (with its
        # metadata): a hit handed a priority caller a flex answer, and left a store=True caller's completion unstored.
        pytest.param({"service_tier": "flex"}, id="service_tier"),
        pytest.param({"store": True}, id="store"),
        pytest.param({"metadata": {"run": "b"}, "store": True}, id="metadata"),
    ],
)
def test_openai_parameters_that_change_the_key(tracker, make_cache, sim, changed):
    client = wrapped(tracker, openai_client(sim), make_cache())
    client.chat.completions.create(**{**CHAT, "temperature": 0})
    client.chat.completions.create(**{**CHAT, "temperature": 0, **changed})
    assert len(sim.requests) == 2


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"system": "Be verbose."}, id="system"),
        pytest.param({"max_tokens": 50}, id="max_tokens"),
        pytest.param({"stop_sequences": ["END"]}, id="stop_sequences"),
        pytest.param({"tools": [{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}]}, id="tools"),
        pytest.param({"model": "claude-opus-4-5"}, id="model"),
        pytest.param({"service_tier": "standard_only"}, id="service_tier"),  # the answer names the tier served
    ],
)
def test_anthropic_parameters_that_change_the_key(tracker, make_cache, sim, changed):
    client = wrapped(tracker, anthropic_client(sim), make_cache())
    client.messages.create(**MESSAGES)
    client.messages.create(**{**MESSAGES, **changed})
    assert len(sim.requests) == 2


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param({"messages": [{"content": "What is the capital of France?", "role": "user"}]}, id="key-order"),
        pytest.param({"user": "someone-else"}, id="user"),
        pytest.param({"temperature": 1.0}, id="temperature-1-vs-1.0"),
        pytest.param({"stream": False}, id="stream-false"),
        pytest.param({"store": False, "metadata": {"run": "b"}}, id="store-false-is-not-stored"),
    ],
)
def test_parameters_that_do_not_change_the_key(tracker, make_cache, sim, variant):
    client = wrapped(tracker, openai_client(sim), make_cache())
    client.chat.completions.create(**CHAT, temperature=1, user="u1")
    client.chat.completions.create(**{**CHAT, "temperature": 1, "user": "u1", **variant})
    assert len(sim.requests) == 1


def test_beta_headers_change_the_key(tracker, make_cache, sim):
    client = wrapped(tracker, anthropic_client(sim), make_cache())
    client.messages.create(**MESSAGES)
    client.messages.create(**MESSAGES, extra_headers={"anthropic-beta": "some-feature-2025-01-01"})
    client.messages.create(**MESSAGES, extra_headers={"Anthropic-Beta": "some-feature-2025-01-01"})
    assert len(sim.requests) == 2


def test_key_depends_on_provider_target_and_beta_headers():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    base = cache_key("openai", "chat.completions", body, target="api.openai.com:/v1/chat/completions")
    assert base == cache_key("openai", "chat.completions", dict(reversed(list(body.items()))),
                             target="api.openai.com:/v1/chat/completions")  # fmt: skip
    assert base != cache_key("ollama", "chat.completions", body, target="api.openai.com:/v1/chat/completions")
    assert base != cache_key("openai", "chat.completions", body, target="other.example:/v1/chat/completions")
    assert base != cache_key("openai", "chat.completions", body, target="api.openai.com:/v1/chat/completions",
                             headers={"anthropic-beta": "x"})  # fmt: skip
    assert base == cache_key("openai", "chat.completions", body, target="api.openai.com:/v1/chat/completions",
                             headers={"authorization": "Bearer sk-1"})  # fmt: skip
    # Types are distinct: "1" is not 1, true is not 1, [] is not {}.
    keys = {cache_key("p", "o", {"x": v}) for v in ("1", 1, True, [], {}, None, 1.5)}
    assert len(keys) == 7


def test_api_keys_never_reach_the_store(tracker, make_cache, sim):
    cache = make_cache()
    client = wrapped(tracker, openai_client(sim, api_key="sk-secret-123"), cache)
    client.chat.completions.create(**CHAT)
    [stored] = _stored_values(cache)
    assert b"sk-secret-123" not in stored.to_bytes()
    assert {k for k, _ in stored.headers} <= STORED_HEADERS and "authorization" not in STORED_HEADERS


def _stored_values(cache: Cache) -> list[CachedResponse]:
    if isinstance(cache, MemoryCache):
        return list(cache._data.values())
    client = cache.client
    return [CachedResponse.from_bytes(client.get(k)) for k in client.scan_iter(match=f"{cache.prefix}:{cache.namespace}:*")]


# --------------------------------------------------------------------------- errors, bypass, policy


def test_errors_are_never_cached(tracker, records, make_cache, sim):
    client = wrapped(tracker, openai_client(sim), make_cache())
    sim.script(500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**CHAT)
    ok = client.chat.completions.create(**CHAT)  # went to the provider
    assert len(sim.requests) == 2
    assert client.chat.completions.create(**CHAT).model_dump() == ok.model_dump()
    assert len(sim.requests) == 2
    assert [(r.status, r.cache_hit) for r in records()] == [("error", False), ("ok", False), ("ok", True)]


def test_an_error_object_in_a_200_body_is_an_error_never_cached(tracker, records, make_cache, sim):
    """A gateway's 200 carrying {"error": ...} was replayed for the whole TTL and recorded ok (review finding)."""
    sent: list[httpx2.Request] = []

    def gateway(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        if len(sent) == 1:
            return httpx2.Response(200, json={"error": {"message": "upstream failed", "type": "server_error"}})
        return sim(request)

    bare = openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=httpx2.MockTransport(gateway)), max_retries=0)
    client = wrapped(tracker, bare, make_cache())
    broken = client.chat.completions.create(**CHAT)
    assert broken.choices is None  # what the bare SDK hands on
    answer = client.chat.completions.create(**CHAT)  # went to the provider
    assert answer.choices and len(sent) == 2
    assert client.chat.completions.create(**CHAT).model_dump() == answer.model_dump() and len(sent) == 2
    first, second, hit = records()
    assert (first.status, first.error_type, first.cost_usd) == ("error", "server_error", None)
    assert (second.status, second.cache_hit, hit.cache_hit) == ("ok", False, True)


def _event_stream(chunks: list[dict[str, Any]]) -> httpx2.Response:
    """A chat stream of these chunks, then [DONE], as a server sends it."""
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)


def _local_server(answer: httpx2.Response, sent: list[httpx2.Request]) -> openai.OpenAI:
    def server(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return answer

    return openai.OpenAI(base_url="http://localhost:11434/v1", api_key="x", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(server)))  # fmt: skip


def test_an_answer_without_usage_is_cached_its_saving_unknown(tracker, records, make_cache):
    """A local server that sends no usage still gets its repeated requests answered from the cache (a hit then saves an
    unknown amount): it lost its cache for a while (review finding)."""
    body = {"id": "x", "object": "chat.completion", "created": 1, "model": "llama3.1:8b",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]}  # fmt: skip
    sent: list[httpx2.Request] = []
    client = wrapped(tracker, _local_server(httpx2.Response(200, json=body), sent), make_cache())
    for _ in range(3):
        assert client.chat.completions.create(model="llama3.1:8b", messages=[{"role": "user", "content": "hi"}]).choices
    assert len(sent) == 1
    assert [(r.cache_hit, r.cost_saved_usd) for r in records()] == [(False, None), (True, None), (True, None)]


@pytest.mark.parametrize(
    "body",
    [{"object": "error", "message": "model not found"}, {"detail": "Not Found"}, {}, {"id": "x", "choices": []},
     {"id": "r", "object": "response", "status": "queued", "error": None, "output": [], "usage": None},
     {"id": "r", "object": "response", "status": "failed", "error": None, "output": [], "usage": None}],
    ids=["object-error", "detail", "empty", "no-choices", "queued", "failed"],
)  # fmt: skip
def test_a_200_that_is_not_an_answer_is_never_cached(tracker, make_cache, body):
    """Without the usage rule these were replayed for the whole TTL (review finding)."""
    sent: list[httpx2.Request] = []
    client = wrapped(tracker, _local_server(httpx2.Response(200, json=body), sent), make_cache())
    for _ in range(2):
        client.chat.completions.create(model="llama3.1:8b", messages=[{"role": "user", "content": "hi"}])
    assert len(sent) == 2


def _ask_twice(tracker: Any, cache: Any, answer: Any, stream: bool) -> list[httpx2.Request]:
    """The same chat request twice through a wrapped client served `answer` by a local server; the requests it got."""
    sent: list[httpx2.Request] = []
    client = wrapped(tracker, _local_server(answer, sent), cache)
    for _ in range(2):
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=stream)
        if stream:
            list(reply)
    return sent


@pytest.mark.parametrize("error", [None, "", False, 0, [], {}], ids=["null", "empty-str", "false", "zero", "list", "dict"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_falsy_error_member_is_no_error(tracker, records, make_cache, error, stream):
    """The SDKs raise only on a truthy `error`: an answer carrying `"error": false` is an answer, recorded ok and cached
    (for a while such chunks failed the stream; review finding)."""
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    if stream:
        chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "error": error,
                   "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]},
                  {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "error": error,
                   "choices": [], "usage": usage}]  # fmt: skip
        answer = _event_stream(chunks)
    else:
        answer = httpx2.Response(200, json={"id": "x", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                                            "status": "success", "error": error, "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]})  # fmt: skip
    sent = _ask_twice(tracker, make_cache(), answer, stream)
    assert len(sent) == 1
    assert [(r.status, r.cache_hit) for r in records()] == [("ok", False), ("ok", True)]


@pytest.mark.parametrize("with_usage", [True, False])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_error_inside_a_choice_is_an_error_never_cached(tracker, records, make_cache, with_usage, stream):
    """A router's 200 whose choice says finish_reason "error" (OpenRouter): an empty answer, replayed for the TTL and
    recorded ok (review findings)."""
    usage = {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}
    choice = {"index": 0, "finish_reason": "error", "error": {"code": 502, "message": "Upstream error"}}
    if stream:
        chunks = [{"id": "gen", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                   "choices": [{**choice, "delta": {"content": ""}}]}]  # fmt: skip
        if with_usage:
            chunks.append({"id": "gen", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                           "choices": [], "usage": usage})  # fmt: skip
        answer = _event_stream(chunks)
    else:
        whole: dict[str, Any] = {"id": "gen", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                                 "choices": [{**choice, "message": {"role": "assistant", "content": ""}}]}  # fmt: skip
        if with_usage:
            whole["usage"] = usage
        answer = httpx2.Response(200, json=whole)
    sent = _ask_twice(tracker, make_cache(), answer, stream)
    assert len(sent) == 2
    assert [(r.status, r.error_type) for r in records()] == [("error", "upstream_502")] * 2


def test_a_responses_answer_without_a_status_is_cached(tracker, make_cache):
    """openai types Response.status as optional: a compatible server's answer without one is an answer."""
    body = {"id": "r", "object": "response", "created_at": 1, "model": "gpt-4o-mini", "output": [
        {"type": "message", "id": "m", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Hi", "annotations": []}]}],
        "usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}}  # fmt: skip
    sent: list[httpx2.Request] = []
    client = wrapped(tracker, _local_server(httpx2.Response(200, json=body), sent), make_cache())
    for _ in range(2):
        assert client.responses.create(model="gpt-4o-mini", input="hi").output_text == "Hi"
    assert len(sent) == 1


@pytest.mark.parametrize(
    "events",
    [[b'{"error":"CUDA out of memory","error_type":"generation"}'], []],
    ids=["error-string-chunk", "empty"],
)
def test_a_stream_that_is_not_an_answer_is_never_cached(tracker, records, make_cache, events):
    body = b"".join(b"data: " + e + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    sent: list[httpx2.Request] = []
    answer = httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    client = wrapped(tracker, _local_server(answer, sent), make_cache())
    for _ in range(2):
        try:
            list(client.chat.completions.create(model="llama3.1:8b", messages=[{"role": "user", "content": "hi"}], stream=True))
        except openai.APIError:
            pass  # the SDK raises on an error chunk, as the bare SDK does
    assert len(sent) == 2
    if events:
        assert [r.status for r in records()] == ["error", "error"]  # it was recorded ok


def test_stream_options_that_shape_the_events_change_the_key(tracker, make_cache, sim):
    """include_obfuscation adds a field to each event: a caller must not get another's choice (review finding)."""
    client = wrapped(tracker, openai_client(sim), make_cache())
    list(client.chat.completions.create(**CHAT, stream=True, stream_options={"include_obfuscation": False}))
    list(client.chat.completions.create(**CHAT, stream=True))
    list(client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True}))
    assert len(sim.requests) == 2  # one for each choice of obfuscation; the last call is the second's hit
    assert cache_key("openai", "chat.completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}) == (
        cache_key("openai", "chat.completions", {**CHAT, "stream": True}))  # fmt: skip


def test_malformed_bodies_are_not_cached(tracker, make_cache, sim):
    client = wrapped(tracker, openai_client(sim), make_cache())
    sim.script("malformed")
    with pytest.raises(json.JSONDecodeError):  # what the bare SDK raises on a body that is not JSON
        client.chat.completions.create(**CHAT)
    client.chat.completions.create(**CHAT)
    assert len(sim.requests) == 2


def test_bypass_by_context_skips_the_lookup_and_refreshes_the_entry(tracker, records, make_cache, sim):
    client = wrapped(tracker, openai_client(sim), make_cache())
    first = client.chat.completions.create(**CHAT)
    with costtrack.context(bypass_cache=True):
        fresh = client.chat.completions.create(**CHAT)
    assert len(sim.requests) == 2 and fresh.id != first.id
    assert client.chat.completions.create(**CHAT).id == fresh.id  # the bypassed answer refreshed the entry
    assert len(sim.requests) == 2
    assert [r.cache_hit for r in records()] == [False, False, True]


def test_bypass_by_header_and_the_header_never_reaches_the_provider(tracker, make_cache, sim):
    client = wrapped(tracker, openai_client(sim), make_cache())
    client.chat.completions.create(**CHAT)
    client.chat.completions.create(**CHAT, extra_headers={"x-costtrack-cache": "bypass"})
    assert len(sim.requests) == 2
    assert CACHE_HEADER not in sim.requests[-1].headers
    assert sim.requests[-1].headers["authorization"] == "Bearer sk-simulator"  # everything else intact


def test_header_off_neither_reads_nor_writes(tracker, make_cache, sim):
    client = wrapped(tracker, openai_client(sim), make_cache())
    client.chat.completions.create(**CHAT, extra_headers={"X-Costtrack-Cache": "off"})
    client.chat.completions.create(**CHAT)
    assert len(sim.requests) == 2
    client.chat.completions.create(**CHAT, extra_headers={"x-costtrack-cache": "off"})
    assert len(sim.requests) == 3 and CACHE_HEADER not in sim.requests[-1].headers


def test_header_is_stripped_without_a_cache_too(tracker, sim):
    client = wrapped(tracker, anthropic_client(sim), None)
    client.messages.create(**MESSAGES, extra_headers={"x-costtrack-cache": "bypass"})
    assert CACHE_HEADER not in sim.requests[-1].headers


def test_cacheable_policy(tracker, make_cache, sim):
    client = wrapped(tracker, openai_client(sim), make_cache(cacheable=lambda body: body.get("temperature", 1) == 0))
    for _ in range(2):
        client.chat.completions.create(**CHAT, temperature=0)
    assert len(sim.requests) == 1
    for _ in range(2):
        client.chat.completions.create(**CHAT, temperature=0.7)
    assert len(sim.requests) == 3


def test_a_policy_that_raises_means_not_cached(tracker, make_cache, sim, caplog):
    reset_once()

    def broken(body: dict[str, Any]) -> bool:
        raise KeyError("oops")

    client = wrapped(tracker, openai_client(sim), make_cache(cacheable=broken))
    client.chat.completions.create(**CHAT)
    client.chat.completions.create(**CHAT)
    assert len(sim.requests) == 2
    assert sum("cacheable() policy raised" in r.getMessage() for r in caplog.records) == 1



def test_an_async_cacheable_policy_is_refused(tracker, make_cache, sim, caplog, recwarn):
    """Its coroutine, never awaited, passed for True: every request was cached, whatever it would have said."""
    reset_once()

    async def cacheable(body: dict[str, Any]) -> bool:
        return False

    with pytest.raises(CacheError, match="cacheable must be a plain function"):
        make_cache(cacheable=cacheable)
    client = wrapped(tracker, openai_client(sim), make_cache(cacheable=lambda body: cacheable(body)))
    client.chat.completions.create(**CHAT)
    client.chat.completions.create(**CHAT)
    assert len(sim.requests) == 2  # not cached
    assert sum("cacheable() policy raised" in r.getMessage() for r in caplog.records) == 1
    assert not [w for w in recwarn if "never awaited" in str(w.message)]

# --------------------------------------------------------------------------- namespaces, clear


def test_namespaces_and_clear(tracker, make_cache, sim, cache_kind):
    ns = f"n{uuid.uuid4().hex[:10]}"
    v1 = make_cache(namespace=f"{ns}-v1")
    client = wrapped(tracker, openai_client(sim), v1)
    client.chat.completions.create(**CHAT)
    # A new namespace starts afresh.
    v2 = make_cache(namespace=f"{ns}-v2")
    wrapped(tracker, openai_client(sim), v2).chat.completions.create(**CHAT)
    assert len(sim.requests) == 2
    assert v1.clear(f"{ns}-other") == 0
    client.chat.completions.create(**CHAT)
    assert len(sim.requests) == 2  # still a hit
    assert v1.clear(f"{ns}-v1") == 1
    client.chat.completions.create(**CHAT)
    assert len(sim.requests) == 3
    assert len(_stored_values(v2)) == 1  # v1's clear left v2 alone


def test_invalid_settings_are_one_clear_error():
    with pytest.raises(CacheError, match="namespace"):
        MemoryCache(namespace="a:b*")
    with pytest.raises(CacheError, match="ttl"):
        MemoryCache(ttl=0)
    with pytest.raises(CacheError, match="maxsize"):
        MemoryCache(maxsize=0)
    with pytest.raises(CacheError, match="Redis URL"):
        RedisCache("http://localhost:6379")


def test_memory_cache_is_bounded(tracker, sim, fake_clock):
    cache = MemoryCache(ttl=60, maxsize=2, timer=fake_clock)
    client = wrapped(tracker, openai_client(sim), cache)
    for i in range(3):
        client.chat.completions.create(**CHAT, seed=i)
    assert cache.stats()["size"] == 2
    client.chat.completions.create(**CHAT, seed=0)  # the least recently used was evicted
    assert len(sim.requests) == 4
    client.chat.completions.create(**CHAT, seed=2)
    assert len(sim.requests) == 4


def test_memory_cache_under_threads(tracker, sim):
    cache = MemoryCache(ttl=60)
    client = wrapped(tracker, openai_client(sim), cache)
    client.chat.completions.create(**CHAT)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(20):
                client.chat.completions.create(**CHAT, seed=j % 5)
                client.chat.completions.create(**CHAT)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = cache.stats()
    assert stats["hits"] + stats["misses"] == 1 + 8 * 40 and stats["hits"] >= 8 * 40 - 8 * 5


def test_compressed_responses_are_stored_decoded(tracker, records, make_cache):
    body = json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }).encode()  # fmt: skip
    requests: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return httpx2.Response(200, headers={"content-type": "application/json", "content-encoding": "gzip"},
                               content=gzip.compress(body))  # fmt: skip

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = wrapped(tracker, openai.OpenAI(api_key="sk-t", http_client=http, max_retries=0), make_cache())
    first = client.chat.completions.create(**CHAT)
    second = client.chat.completions.create(**CHAT)
    assert second.model_dump() == first.model_dump() and len(requests) == 1
    assert records()[1].cost_saved_usd == pytest.approx(records()[0].cost_usd)


# --------------------------------------------------------------------------- Redis: shared, down, slow


def test_two_processes_share_the_redis_cache(tracker, records, tmp_path, fake_clock):
    redis_available()
    namespace = f"t{uuid.uuid4().hex[:12]}"
    script = textwrap.dedent(
        f"""
        import json, costtrack
        from costtrack.simulator import Simulator, openai_client
        sim = Simulator(seed=7)
        tracker = costtrack.Tracker("sqlite:///{tmp_path}/child.db")
        cache = costtrack.cache.RedisCache({REDIS_URL!r}, namespace={namespace!r}, ttl=60)
        client = costtrack.wrap(openai_client(sim), tracker=tracker, cache=cache)
        result = client.chat.completions.create(**{CHAT!r})
        tracker.close()
        print(json.dumps({{"requests": len(sim.requests), "result": result.model_dump()}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["requests"] == 1
    sim = Simulator(seed=7)
    cache = RedisCache(REDIS_URL, namespace=namespace, ttl=60)
    try:
        result = wrapped(tracker, openai_client(sim), cache).chat.completions.create(**CHAT)
        assert len(sim.requests) == 0 and result.model_dump() == child["result"]
        [hit] = records()
        assert hit.cache_hit and hit.cost_usd == 0 and hit.cost_saved_usd > 0
    finally:
        cache.clear(namespace)
        cache.close()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "costtrack" and r.levelno == logging.WARNING]


def test_redis_down_calls_go_to_the_provider_with_one_warning(tracker, records, sim, fake_clock, caplog):
    reset_once()
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl=60, timer=fake_clock, retry_after=10)
    client = wrapped(tracker, openai_client(sim), cache)
    results = [client.chat.completions.create(**CHAT) for _ in range(3)]
    assert len(sim.requests) == 3 and all(r.choices[0].message.content for r in results)
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "unreachable" in warnings[0] and "tried again" in warnings[0]
    assert cache.stats()["errors"] == 1  # the breaker is open: Redis not tried again for 10 s
    fake_clock.advance(11)
    client.chat.completions.create(**CHAT)
    assert cache.stats()["errors"] == 2 and len(_warnings(caplog)) == 1
    assert [r.cache_hit for r in records()] == [False] * 4


def test_redis_keeps_one_async_client_per_event_loop(tracker, sim, fake_clock, monkeypatch):
    """Threads that each run their own loop share one RedisCache: each loop gets one client, kept, not one per switch."""
    redis_available()
    import redis.asyncio

    made: list[object] = []
    real = redis.asyncio.Redis.from_url.__func__

    def counted(cls, *args, **kwargs):  # the real constructor, counted
        made.append(cls)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(redis.asyncio.Redis, "from_url", classmethod(counted))
    # A roomy timeout: three threads connecting at once on two cores must not trip the breaker mid-test.
    cache = RedisCache(REDIS_URL, ttl=60, timer=fake_clock, namespace=f"t{uuid.uuid4().hex[:12]}", timeout=5.0)
    loops = 3

    def worker() -> None:
        client = wrapped(tracker, async_openai_client(sim), cache)
        loop = asyncio.new_event_loop()
        try:
            for _ in range(20):
                loop.run_until_complete(client.chat.completions.create(**CHAT))
                time.sleep(0.001)  # let the other threads' loops interleave with this one
            loop.run_until_complete(cache.aclose())
        finally:
            loop.close()

    try:
        threads = [threading.Thread(target=worker) for _ in range(loops)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # One client a loop (rebuilt at each switch between loops, they were dozens, and their reconnects timed out).
        assert len(made) == loops
        assert len(sim.requests) <= loops  # the loops' first calls may race to fill the entry; the rest are hits
    finally:
        cache.clear(cache.namespace)
        cache.close()


def test_redis_closes_a_loops_client_when_asyncio_run_ends(tracker, sim, fake_clock):
    """Each asyncio.run left its loop's client, and one Redis connection, open for good (the client's connections
    kept the loop, the weak map's key, alive): 20 runs, 20 connections (review finding). The loop's shutdown closes it."""
    redis_available()
    import redis

    name = f"ct{uuid.uuid4().hex[:12]}"
    cache = RedisCache(REDIS_URL, ttl=60, timer=fake_clock, namespace=name, timeout=5.0, client_name=name)
    admin = redis.Redis.from_url(REDIS_URL)

    async def one_call() -> None:
        await wrapped(tracker, async_openai_client(sim), cache).chat.completions.create(**CHAT)
        assert sum(c["name"] == name for c in admin.client_list()) == 1  # the loop's client, in use

    try:
        for _ in range(5):
            asyncio.run(one_call())
            assert len(cache._async) == 0
            assert sum(c["name"] == name for c in admin.client_list()) == 0
        assert len(sim.requests) == 1  # the runs still share the cache: the later four are hits
    finally:
        cache.clear(cache.namespace)
        cache.close()
        admin.close()


async def test_redis_down_async(tracker, sim, fake_clock, caplog):
    reset_once()
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl=60, timer=fake_clock)
    client = wrapped(tracker, async_openai_client(sim), cache)
    for _ in range(2):
        await client.chat.completions.create(**CHAT)
    assert len(sim.requests) == 2 and len(_warnings(caplog)) == 1


def test_slow_redis_times_out_quickly(tracker, sim, fake_clock, caplog):
    """A server that accepts connections but never answers: the 50 ms socket timeout applies."""
    reset_once()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # never accepted: the kernel completes the handshake, nothing ever replies
        port = server.getsockname()[1]
        cache = RedisCache(f"redis://127.0.0.1:{port}/0", ttl=60, timer=fake_clock, timeout=0.05)
        client = wrapped(tracker, openai_client(sim), cache)
        started = time.perf_counter()
        client.chat.completions.create(**CHAT)
        client.chat.completions.create(**CHAT)
        elapsed = time.perf_counter() - started
    assert len(sim.requests) == 2 and elapsed < 1.0
    assert len(_warnings(caplog)) == 1 and "TimeoutError" in _warnings(caplog)[0]


def test_redis_recovers_after_the_cooldown(tracker, sim, fake_clock):
    redis_available()
    namespace = f"t{uuid.uuid4().hex[:12]}"
    cache = RedisCache(REDIS_URL, namespace=namespace, ttl=60, timer=fake_clock, retry_after=5)
    try:
        cache._breaker.failure()  # as if Redis had just failed
        client = wrapped(tracker, openai_client(sim), cache)
        client.chat.completions.create(**CHAT)  # not stored: the breaker is open
        fake_clock.advance(6)
        client.chat.completions.create(**CHAT)  # Redis tried again: a miss, stored
        client.chat.completions.create(**CHAT)  # a hit
        assert len(sim.requests) == 2
    finally:
        cache.clear(namespace)
        cache.close()


def test_redis_values_are_bytes_with_a_native_expiry():
    redis_available()
    namespace = f"t{uuid.uuid4().hex[:12]}"
    cache = RedisCache(REDIS_URL, namespace=namespace, ttl=30)
    try:
        key = cache.key("openai", "chat.completions", {"model": "m"})
        cache.set(key, CachedResponse(200, (("content-type", "application/json"),), b'{"a":1}'))
        raw = cache.client.get(f"costtrack:cache:{key}")
        assert isinstance(raw, bytes) and raw.endswith(b'{"a":1}')
        assert 0 < cache.client.pttl(f"costtrack:cache:{key}") <= 30_000
        assert cache.get(key) == CachedResponse(200, (("content-type", "application/json"),), b'{"a":1}',
                                                expires=CachedResponse.from_bytes(raw).expires)  # fmt: skip
        cache.client.set(f"costtrack:cache:{key}", b"garbage")
        assert cache.get(key) is None  # unreadable values are misses, not errors
    finally:
        cache.clear(namespace)
        cache.close()


# --------------------------------------------------------------------------- CLI


def test_cli_clear(tracker, sim):
    redis_available()
    from costtrack.cli.cache import app

    ns = f"t{uuid.uuid4().hex[:12]}"
    keep = f"{ns}-keep"
    caches = [RedisCache(REDIS_URL, namespace=n, ttl=60) for n in (ns, keep)]
    try:
        for cache in caches:
            wrapped(tracker, openai_client(sim), cache).chat.completions.create(**CHAT)
        runner = CliRunner()
        result = runner.invoke(app, ["clear", "--namespace", ns, "--redis-url", REDIS_URL])
        assert result.exit_code == 0, result.output
        assert "deleted 1" in result.output and ns in result.output
        assert len(_stored_values(caches[0])) == 0 and len(_stored_values(caches[1])) == 1
    finally:
        for cache in caches:
            cache.clear(cache.namespace)
            cache.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["clear", "--namespace", "bad:ns"], "invalid cache namespace"),
        (["clear", "--redis-url", "http://x"], "not a Redis URL"),
        (["clear", "--redis-url", "redis://127.0.0.1:1/0"], "could not clear"),
    ],
)
def test_cli_clear_errors_are_one_line_and_exit_2(args, message):
    from costtrack.cli.cache import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("costtrack: error:") and message in lines[0]


def test_cli_redis_url_from_the_environment(monkeypatch):
    from costtrack.cli.cache import app

    monkeypatch.setenv("COSTTRACK_REDIS_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(app, ["clear"])
    assert result.exit_code == 2 and "127.0.0.1:1" in result.output


def test_every_cache_has_aclear_close_and_aclose(make_cache, cache_kind):
    """A memory cache had no close()/aclose() (code closing any cache failed on it), and no cache had aclear()."""
    cache = make_cache()
    cache.set("k", CachedResponse(200, (("content-type", "application/json"),), b"{}"))

    async def main() -> int:
        cleared = await cache.aclear()
        await cache.aclose()
        return cleared

    assert asyncio.run(main()) >= 1 and cache.get("k") is None
    cache.close()


def test_a_redis_url_with_a_trailing_slash_names_its_database() -> None:
    """redis://host:6379/15/ is database 15 to redis-py; a first check refused it as "15/" (diff review). A database
    that is no number is refused: redis-py used database 0 for it."""
    assert RedisCache("redis://127.0.0.1:6379/15/").url.endswith("/15/")
    with pytest.raises(CacheError, match="is not a number"):
        RedisCache("redis://127.0.0.1:6379/3abc")
