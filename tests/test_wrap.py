"""wrap(): the same client class, nothing global patched, endpoint/user/tags from arguments and context."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import anthropic
import httpx2
import openai
import pytest

import costtrack
from costtrack.logs import reset_once
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


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_wrapped_client_wrapped_again_records_each_call_once(tracker, records, caplog, is_async):
    """A library's wrapped client, wrapped again by the app: one record per call (it was two, doubling the spend),
    with the new wrap's endpoint and tags, and the earlier wrap's tags and cache for what it does not set."""
    reset_once()
    recorder = Recorder(serve("openai_chat.json"))
    cache = costtrack.MemoryCache()
    inner = tracker.wrap(openai_client(recorder, is_async=is_async), endpoint="/lib", tags={"lib": "x", "run": "a"}, cache=cache)
    outer = tracker.wrap(inner, endpoint="/app", tags={"run": "b"})
    for _ in range(2):  # the second is answered by the earlier wrap's cache
        result = outer.chat.completions.create(**CHAT)
        if is_async:
            result = await result
    got = sorted(records(), key=lambda r: r.timestamp)
    assert len(recorder.requests) == 1
    assert [(r.endpoint, r.tags, r.cache_hit) for r in got] == [("/app", {"lib": "x", "run": "b"}, False),
                                                                ("/app", {"lib": "x", "run": "b"}, True)]  # fmt: skip
    assert "already wraps" in caplog.text
    # The library's own client still records its calls, once, as it did.
    result = inner.chat.completions.create(**CHAT)
    if is_async:
        await result
    assert [r.endpoint for r in records()].count("/lib") == 1


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


def test_the_wraps_tags_merge_with_whichever_context_each_call_runs_in(tracker, records):
    """The merge of the wrap's tags with a context is reused while the context stays, and made anew when it changes."""
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"))), tags={"team": "a", "run": "wrap"})
    expected = []
    for i in range(3):
        client.chat.completions.create(**CHAT)
        expected.append({"team": "a", "run": "wrap"})
        with costtrack.context(tags={"run": f"r{i}"}, user=f"u{i}"):
            client.chat.completions.create(**CHAT)
            client.chat.completions.create(**CHAT)
            expected += [{"team": "a", "run": f"r{i}"}] * 2
    got = sorted(records(), key=lambda r: r.timestamp)
    assert [r.tags for r in got] == expected
    assert [r.user for r in got] == [u for i in range(3) for u in (None, f"u{i}", f"u{i}")]


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


# --------------------------------------------------------------------------- every instrumented operation

from pydantic import BaseModel  # noqa: E402

from costtrack import simulator  # noqa: E402

USER = [{"role": "user", "content": "What does a token cost?"}]
CLAUDE = dict(model="claude-haiku-4-5", max_tokens=200, messages=USER)


class Answer(BaseModel):
    answer: str


def _openai_tokens(usage) -> tuple[int, int]:
    if hasattr(usage, "prompt_tokens"):
        return usage.prompt_tokens, getattr(usage, "completion_tokens", 0) or 0
    return usage.input_tokens, usage.output_tokens


def _anthropic_tokens(usage) -> tuple[int, int]:
    read, write = usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0
    return usage.input_tokens + read + write, usage.output_tokens


def _last_usage(chunks) -> tuple[int, int]:
    return _openai_tokens([c for c in chunks if c.usage is not None][-1].usage)


# Each operation, as the app calls it: returns (operation recorded, tokens in and out as the SDK itself reports them).
SYNC_OPERATIONS = {
    "chat": lambda c: ("chat.completions", _openai_tokens(c.chat.completions.create(model="gpt-4o-mini", messages=USER).usage)),
    "chat-stream": lambda c: ("chat.completions", _last_usage(list(c.chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True})))),
    "chat-parse": lambda c: ("chat.completions", _openai_tokens(
        c.chat.completions.parse(model="gpt-4o-mini", messages=USER, response_format=Answer).usage)),
    "responses": lambda c: ("responses", _openai_tokens(c.responses.create(model="gpt-4o-mini", input="Hi").usage)),
    "responses-stream": lambda c: ("responses", _openai_tokens(
        [e for e in c.responses.create(model="gpt-4o-mini", input="Hi", stream=True) if e.type == "response.completed"][0].response.usage)),  # noqa: RUF015 - the list reads the stream to its end
    "responses-stream-helper": lambda c: ("responses", _responses_helper(c)),
    "embeddings": lambda c: ("embeddings", _openai_tokens(c.embeddings.create(model="text-embedding-3-small", input="Hi").usage)),
    "messages": lambda c: ("messages", _anthropic_tokens(c.messages.create(**CLAUDE).usage)),
    "messages-stream": lambda c: ("messages", _anthropic_stream(c.messages.create(**CLAUDE, stream=True))),
    "messages-stream-helper": lambda c: ("messages", _anthropic_helper(c)),
}  # fmt: skip


def _responses_helper(client) -> tuple[int, int]:
    with client.responses.stream(model="gpt-4o-mini", input="Hi") as stream:
        return _openai_tokens(stream.get_final_response().usage)


def _anthropic_stream(events) -> tuple[int, int]:
    events = list(events)
    start = next(e for e in events if e.type == "message_start").message.usage
    delta = [e for e in events if e.type == "message_delta"][-1].usage
    read, write = start.cache_read_input_tokens or 0, start.cache_creation_input_tokens or 0
    return start.input_tokens + read + write, delta.output_tokens  # message_delta counts are running totals


def _anthropic_helper(client) -> tuple[int, int]:
    with client.messages.stream(**CLAUDE) as stream:
        return _anthropic_tokens(stream.get_final_message().usage)


async def _alist(stream) -> list:
    return [item async for item in stream]


async def _aresponses_helper(client) -> tuple[int, int]:
    async with client.responses.stream(model="gpt-4o-mini", input="Hi") as stream:
        return _openai_tokens((await stream.get_final_response()).usage)


async def _aanthropic_helper(client) -> tuple[int, int]:
    async with client.messages.stream(**CLAUDE) as stream:
        return _anthropic_tokens((await stream.get_final_message()).usage)


ASYNC_OPERATIONS = {
    "chat": lambda c: _await(c.chat.completions.create(model="gpt-4o-mini", messages=USER), lambda r: ("chat.completions", _openai_tokens(r.usage))),
    "chat-stream": lambda c: _await(_astream(c.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True})),
                                    lambda chunks: ("chat.completions", _last_usage(chunks))),
    "chat-parse": lambda c: _await(c.chat.completions.parse(model="gpt-4o-mini", messages=USER, response_format=Answer),
                                   lambda r: ("chat.completions", _openai_tokens(r.usage))),
    "responses": lambda c: _await(c.responses.create(model="gpt-4o-mini", input="Hi"), lambda r: ("responses", _openai_tokens(r.usage))),
    "responses-stream": lambda c: _await(_astream(c.responses.create(model="gpt-4o-mini", input="Hi", stream=True)),
                                         lambda es: ("responses", _openai_tokens(next(e for e in es if e.type == "response.completed").response.usage))),
    "responses-stream-helper": lambda c: _await(_aresponses_helper(c), lambda t: ("responses", t)),
    "embeddings": lambda c: _await(c.embeddings.create(model="text-embedding-3-small", input="Hi"), lambda r: ("embeddings", _openai_tokens(r.usage))),
    "messages": lambda c: _await(c.messages.create(**CLAUDE), lambda r: ("messages", _anthropic_tokens(r.usage))),
    "messages-stream": lambda c: _await(_astream(c.messages.create(**CLAUDE, stream=True)), lambda es: ("messages", _anthropic_stream(es))),
    "messages-stream-helper": lambda c: _await(_aanthropic_helper(c), lambda t: ("messages", t)),
}  # fmt: skip


async def _astream(pending) -> list:
    return await _alist(await pending)


async def _await(pending, then):
    return then(await pending)


def _client(name: str, is_async: bool):
    anthropic_api = name.startswith("messages")
    if is_async:
        return simulator.async_anthropic_client() if anthropic_api else simulator.async_openai_client()
    return simulator.anthropic_client() if anthropic_api else simulator.openai_client()


@pytest.mark.parametrize("name", list(SYNC_OPERATIONS))
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_every_instrumented_operation_is_recorded(tracker, records, name, is_async):
    client = tracker.wrap(_client(name, is_async))
    if is_async:
        operation, (tokens_in, tokens_out) = asyncio.run(ASYNC_OPERATIONS[name](client))
    else:
        operation, (tokens_in, tokens_out) = SYNC_OPERATIONS[name](client)
    [rec] = records()
    assert (rec.operation, rec.status, rec.tokens_input, rec.tokens_output) == (operation, "ok", tokens_in, tokens_out)
    assert tokens_in > 0 and rec.cost_usd is not None and rec.cost_usd > 0
    assert rec.latency_ms is not None and rec.model is not None
    if "stream" in name:
        assert rec.ttft_ms is not None and rec.ttft_ms <= rec.latency_ms


COMPACTED = {
    "id": "cmp_1", "created_at": 1763900000, "object": "response.compaction",
    "output": [{"type": "message", "id": "msg_1", "role": "user", "status": "completed",
                "content": [{"type": "input_text", "text": "Summarise the meeting notes."}]}],
    "usage": {"input_tokens": 5000, "input_tokens_details": {"cached_tokens": 1000}, "output_tokens": 800,
              "output_tokens_details": {"reasoning_tokens": 300}, "total_tokens": 5800},
}  # fmt: skip


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_compaction_pass_is_recorded_as_a_responses_call(tracker, records, is_async):
    """responses.compact is billed and answers with a Responses usage (it went unrecorded); its answer names no
    model, so the record has the one asked for, priced at it (gpt-5: $1.25 input, $0.125 cached, $10 output)."""
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=COMPACTED)), is_async=is_async), endpoint="/chat")
    result = client.responses.compact(model="gpt-5", input="a long conversation")
    result = await result if is_async else result
    assert result.usage.input_tokens == 5000
    [rec] = records()
    assert (rec.operation, rec.endpoint, rec.model, rec.status) == ("responses", "/chat", "gpt-5", "ok")
    assert (rec.tokens_input, rec.tokens_cached_input, rec.tokens_output, rec.tokens_reasoning) == (5000, 1000, 800, 300)
    assert rec.cost_usd == pytest.approx((4000 * 1.25 + 1000 * 0.125 + 800 * 10) / 1e6, rel=1e-12)


def test_anthropic_cloud_clients_are_said_to_go_unrecorded(tracker, records, caplog):
    from costtrack.logs import reset_once

    reset_once()
    vertex = anthropic.AnthropicVertex(region="us-east5", project_id="p", access_token="t", base_url="http://vertex.test/v1")
    with caplog.at_level("WARNING", logger="costtrack"):
        wrapped = tracker.wrap(vertex)
    assert type(wrapped) is anthropic.AnthropicVertex
    assert any("AnthropicVertex calls are not recorded" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="costtrack"):
        tracker.wrap(anthropic_client(Recorder(serve("anthropic_message.json"))))
    assert not caplog.records  # the Anthropic API itself is recorded: nothing to say


@pytest.mark.parametrize(
    ("options", "needle"),
    [({"cache": True}, "costtrack.MemoryCache"), ({"cache": "redis://localhost"}, "costtrack.MemoryCache"),
     ({"tags": "run=x"}, "a dict such as")],
)  # fmt: skip
def test_options_that_would_fail_at_every_call_are_refused_at_wrap(options, needle):
    """wrap(cache=True) was taken, then every call logged a traceback and nothing was cached (review finding)."""
    from costtrack.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        costtrack.wrap(openai_client(Recorder(serve("openai_chat.json"))), **options)


@pytest.mark.parametrize("ttl", ["1h", True, 0, -5, float("nan")])
def test_a_cache_ttl_that_is_not_a_positive_number_is_one_clear_error(ttl):
    from costtrack.cache import CacheError

    with pytest.raises(CacheError, match="ttl must be a positive number of seconds"):
        costtrack.MemoryCache(ttl=ttl)


def _open_connections(client) -> int:
    transport = client._client._transport
    return len(getattr(transport, "_inner", transport)._pool.connections)


def test_closing_a_wrapped_client_closes_the_pool_it_alone_holds(tracker):
    """`with costtrack.wrap(OpenAI()) as client:` left its connection open: nothing else held the pool to close it."""
    import gc

    from servers import LLMServer

    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with LLMServer(tokens=3) as server:
        with tracker.wrap(openai.OpenAI(base_url=server.url, api_key="k", max_retries=0)) as client:
            client.chat.completions.create(**ask)
            assert _open_connections(client) == 1
        assert _open_connections(client) == 0  # as the bare client's own `with` leaves it
        # A client the app keeps using keeps its pool: a wrap made per request and collected does not close it
        bare = openai.OpenAI(base_url=server.url, api_key="k", max_retries=0)
        bare.chat.completions.create(**ask)
        for _ in range(3):
            tracker.wrap(bare, endpoint="/per-request").chat.completions.create(**ask)
            gc.collect()
        wrapped = tracker.wrap(bare)
        wrapped.close()
        assert _open_connections(bare) == 1
        bare.chat.completions.create(**ask)
        bare.close()
        wrapped = tracker.wrap(openai.OpenAI(base_url=server.url, api_key="k", max_retries=0))
        wrapped.chat.completions.create(**ask)
        wrapped.close()  # the wrapped one was collected: its pool is the wrapped client's to close
        assert _open_connections(wrapped) == 0
    assert tracker.flush() and len(tracker.records()) == 5  # the wrapped clients' calls


async def test_closing_an_async_wrapped_client_closes_the_pool_it_alone_holds(tracker):
    from servers import LLMServer

    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with LLMServer(tokens=3) as server:
        async with tracker.wrap(openai.AsyncOpenAI(base_url=server.url, api_key="k", max_retries=0)) as client:
            await client.chat.completions.create(**ask)
            assert _open_connections(client) == 1
        assert _open_connections(client) == 0
        bare = openai.AsyncOpenAI(base_url=server.url, api_key="k", max_retries=0)
        await bare.chat.completions.create(**ask)
        await tracker.wrap(bare).close()
        assert _open_connections(bare) == 1
        await bare.close()


def test_closing_one_of_two_wraps_of_a_pool_leaves_it_open_for_the_other(tracker):
    """`wrap(w1).close()`, or one of two wraps of one dropped client, closed the pool under the other's stream
    (APIConnectionError mid-stream: review finding)."""
    from servers import LLMServer

    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with LLMServer(tokens=40, token_delay=0.001) as server:
        w1 = tracker.wrap(openai.OpenAI(base_url=server.url, api_key="k", max_retries=0))
        stream = w1.chat.completions.create(**ask, stream=True)
        next(iter(stream))
        tracker.wrap(w1, endpoint="/again").close()
        assert len(list(stream)) > 5  # read to its end
        w1.close()
        assert _open_connections(w1) == 0  # the last one closes it
        bare = openai.OpenAI(base_url=server.url, api_key="k", max_retries=0)
        a, b = tracker.wrap(bare, endpoint="/a"), tracker.wrap(bare, endpoint="/b")
        del bare
        stream = b.chat.completions.create(**ask, stream=True)
        next(iter(stream))
        a.close()
        assert len(list(stream)) > 5
        b.close()
        assert _open_connections(b) == 0
