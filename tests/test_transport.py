"""The wrapped call returns or raises exactly what the bare SDK would, and every attempt is recorded."""

from __future__ import annotations

import functools
import json
import random
import warnings

import anthropic
import httpx2
import openai
import pytest

from helpers import Recorder, anthropic_client, fixture, openai_client, serve

CHAT = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def rate_limited() -> httpx2.Response:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    return httpx2.Response(429, json=body, headers={"retry-after-ms": "1"})


def outcome(fn):
    """What the app sees: the return value's dump, or the exception's type and message."""
    try:
        result = fn()
    except Exception as exc:
        return ("raised", type(exc), str(exc))
    return ("returned", type(result), result.model_dump() if hasattr(result, "model_dump") else result)


@pytest.mark.parametrize(
    "response, status, error_type",
    [
        pytest.param(rate_limited, "error", "rate_limit_exceeded", id="429"),
        pytest.param(lambda: httpx2.Response(500, json={"error": {"message": "boom", "type": "server_error"}}), "error", "server_error", id="500"),
        pytest.param(lambda: httpx2.Response(200, content=b"<html>oops</html>", headers={"content-type": "text/html"}), "error", "malformed_response", id="non-json"),
        pytest.param(lambda: httpx2.Response(200, content=b"{not json", headers={"content-type": "application/json"}), "error", "malformed_response", id="broken-json"),
        pytest.param(lambda: serve("openai_chat.json"), "ok", None, id="ok"),
    ],
)  # fmt: skip
def test_same_outcome_as_bare_sdk(tracker, records, response, status, error_type):
    bare = openai_client(Recorder(response()))
    wrapped = tracker.wrap(openai_client(Recorder(response())))
    assert outcome(lambda: wrapped.chat.completions.create(**CHAT)) == outcome(lambda: bare.chat.completions.create(**CHAT))
    [rec] = records()
    assert (rec.status, rec.error_type) == (status, error_type)


@pytest.mark.parametrize("exc", [httpx2.ConnectTimeout("slow"), httpx2.ConnectError("refused")], ids=["timeout", "connect"])
def test_transport_errors_raise_the_sdk_exception_and_are_recorded(tracker, records, exc):
    bare = openai_client(Recorder(exc))
    wrapped = tracker.wrap(openai_client(Recorder(exc)))
    seen = outcome(lambda: wrapped.chat.completions.create(**CHAT))
    assert seen[:2] == outcome(lambda: bare.chat.completions.create(**CHAT))[:2]
    assert seen[1] in (openai.APITimeoutError, openai.APIConnectionError)
    [rec] = records()
    assert rec.status == "error" and rec.error_type == ("timeout" if "Timeout" in type(exc).__name__ else "connection_error")
    assert rec.cost_usd == 0.0 and rec.latency_ms is not None


def test_every_sdk_retry_is_its_own_record(tracker, records):
    server = Recorder(rate_limited(), rate_limited(), serve("openai_chat.json"))
    client = tracker.wrap(openai_client(server, max_retries=2))
    client.chat.completions.create(**CHAT)
    recs = sorted(records(), key=lambda r: r.attempt)
    assert [(r.attempt, r.status, r.error_type) for r in recs] == [
        (1, "error", "rate_limit_exceeded"), (2, "error", "rate_limit_exceeded"), (3, "ok", None),
    ]  # fmt: skip
    assert [r.cost_usd for r in recs][:2] == [0.0, 0.0] and recs[2].cost_usd > 0
    assert len({r.request_hash for r in recs}) == 1


def _redirecting(request: httpx2.Request) -> httpx2.Response:
    """A gateway that sends every request on to another host (308: the method and body are kept)."""
    if request.url.host == "api.openai.com":
        return httpx2.Response(308, headers={"location": str(request.url.copy_with(host="eu.api.openai.com"))})
    return serve("openai_chat_stream.sse" if json.loads(request.content).get("stream") else "openai_chat.json")


def _redirected_client(follow: bool, is_async: bool):
    transport = httpx2.MockTransport(_redirecting)
    if is_async:
        return openai.AsyncOpenAI(api_key="sk-test", max_retries=0, http_client=httpx2.AsyncClient(transport=transport, follow_redirects=follow))
    return openai.OpenAI(api_key="sk-test", max_retries=0, http_client=httpx2.Client(transport=transport, follow_redirects=follow))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_followed_redirect_records_the_answer_not_the_hop(tracker, records, stream, is_async):
    """The SDKs follow redirects (a gateway, http to https): the answer at the end is the attempt, recorded with its
    usage; the redirect itself was recorded as a malformed answer, and the answer not at all (review finding)."""

    async def call(client):
        # The fixture stream carries its usage chunk: asked for, as the bare call must to get it.
        options = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        result = client.chat.completions.create(**CHAT, **options)
        result = await result if is_async else result
        if not stream:
            return result.model_dump()
        if is_async:
            return [chunk.model_dump() async for chunk in result]
        return [chunk.model_dump() for chunk in result]

    assert await call(tracker.wrap(_redirected_client(True, is_async))) == await call(_redirected_client(True, is_async))
    [rec] = records()
    assert (rec.status, rec.error_type, rec.attempt, rec.model) == ("ok", None, 1, "gpt-4o-mini-2024-07-18")
    assert rec.tokens_input > 0 and rec.cost_usd > 0


def test_a_redirect_the_client_does_not_follow_is_an_error_as_the_sdk_raises(tracker, records):
    seen = outcome(lambda: tracker.wrap(_redirected_client(False, False)).chat.completions.create(**CHAT))
    assert seen == outcome(lambda: _redirected_client(False, False).chat.completions.create(**CHAT))
    assert seen[0] == "raised"
    [rec] = records()
    assert (rec.status, rec.error_type, rec.cost_usd) == ("error", "http_308", 0.0)


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_that_turns_the_post_into_a_get_is_the_attempts_outcome(tracker, records, status):
    """301/302/303 send a GET on, which no API answers with a completion: the redirect is the attempt's outcome,
    recorded (it was dropped with the GET, unrecorded: review finding)."""

    def gateway(request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            return httpx2.Response(status, headers={"location": "https://eu.api.openai.com/v1/chat/completions"})
        return httpx2.Response(405, json={"error": {"message": "Method not allowed", "type": "invalid_request_error"}})

    def client():
        http = httpx2.Client(transport=httpx2.MockTransport(gateway), follow_redirects=True)
        return openai.OpenAI(api_key="sk-test", max_retries=0, http_client=http)

    seen = outcome(lambda: tracker.wrap(client()).chat.completions.create(**CHAT))
    assert seen == outcome(lambda: client().chat.completions.create(**CHAT)) and seen[0] == "raised"
    [rec] = records()
    assert (rec.status, rec.error_type, rec.cost_usd) == ("error", f"http_{status}", 0.0)


@pytest.mark.parametrize(
    "status, body, error_type",
    [(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "overloaded_error"),
     (500, {"type": "error", "error": {"type": "api_error", "message": "Internal"}}, "server_error"),
     (503, None, "server_error")],
)  # fmt: skip
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_server_error_has_one_type_whether_or_not_its_body_was_read(tracker, records, status, body, error_type, stream):
    """The SDK closes a retried stream attempt's error without reading its body: its type comes from the status,
    the same as a plain call's read from the body (it was http_529 against overloaded_error)."""
    failed = httpx2.Response(status, json=body) if body is not None else httpx2.Response(status)
    server = Recorder(failed, serve("anthropic_stream.sse" if stream else "anthropic_message.json"))
    client = tracker.wrap(anthropic_client(server, max_retries=1))
    answer = client.messages.create(model="claude-sonnet-4-5", max_tokens=9, messages=[{"role": "user", "content": "x"}], stream=stream)
    if stream:
        list(answer)
    recs = sorted(records(), key=lambda r: r.attempt)
    assert [(r.attempt, r.status, r.error_type) for r in recs] == [(1, "error", error_type), (2, "ok", None)]
    assert recs[0].cost_usd == 0.0


class _EndsLate(httpx2.AsyncByteStream):
    """A network body read as it comes: each read goes on where the last stopped (the SDK drains the rest after
    [DONE] by reading again), and the connection closes a while after the last event (a slow gateway)."""

    def __init__(self, events: list[bytes], late: float) -> None:
        self._reads = self._produce(events, late)

    @staticmethod
    async def _produce(events: list[bytes], late: float):  # type: ignore[no-untyped-def]
        import asyncio

        for event in events:
            yield event
        await asyncio.sleep(late)

    def __aiter__(self):  # type: ignore[no-untyped-def]
        return self._reads

    async def aclose(self) -> None:
        await self._reads.aclose()


@pytest.mark.parametrize("late", [0.3, 0.05], ids=["cancel-while-reading", "cancel-while-caching"])
async def test_an_async_stream_whose_body_ends_late_is_whole_and_cached(tracker, records, late):
    """After [DONE] the OpenAI SDK drains the body under a 0.1 s deadline and swallows the cancel when it passes:
    a finished stream was recorded incomplete (the cancel landing on the body's read), and a cache write it cut
    short left the answer uncached (the body ends in time, the write does not) (review)."""
    import asyncio

    import costtrack

    events = [e + b"\n\n" for e in fixture("openai_chat_stream.sse").split(b"\n\n") if e]

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=_EndsLate(events, late))

    class SlowCache(costtrack.MemoryCache):
        async def aset(self, key, response):  # a remote cache a little slower than the drain's deadline
            await asyncio.sleep(0.15)
            await super().aset(key, response)

    cache = SlowCache()
    client = tracker.wrap(openai_client(Recorder(respond), is_async=True), cache=cache)
    for _ in range(2):
        stream = await client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True})
        assert [c async for c in stream]
    first, second = sorted(records(), key=lambda r: r.timestamp)
    assert (first.status, first.error_type, first.cache_hit) == ("ok", None, False) and first.cost_usd > 0
    assert (second.status, second.cache_hit) == ("ok", True)


@pytest.mark.parametrize(
    "status, kind, error_type",
    [(503, "overloaded_error", "overloaded_error"), (504, "timeout_error", "timeout"), (502, "bad_gateway", "server_error")],
)
def test_a_server_errors_body_names_its_kind_as_cheap_first_does(tracker, records, status, kind, error_type):
    """A read body says what kind of failure it was, in the names records and CheapFirst's fallback reasons share."""
    failed = httpx2.Response(status, json={"type": "error", "error": {"type": kind, "message": "..."}})
    client = tracker.wrap(anthropic_client(Recorder(failed)))
    with pytest.raises(anthropic.APIStatusError):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=9, messages=[{"role": "user", "content": "x"}])
    [rec] = records()
    assert (rec.status, rec.error_type, rec.cost_usd) == ("error", error_type, 0.0)


def _cut_stream(request: httpx2.Request) -> httpx2.Response:
    events = fixture("openai_chat_stream.sse").split(b"\n\n")

    def body():
        yield events[0] + b"\n\n"
        yield events[1] + b"\n\n"
        raise httpx2.ReadError("connection reset")

    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())


def test_stream_cut_midway_raises_like_bare_and_is_recorded(tracker, records):
    def consume(client):
        return [c.choices[0].delta.content for c in client.chat.completions.create(**CHAT, stream=True)]

    bare_seen = outcome(lambda: consume(openai_client(Recorder(_cut_stream))))
    wrapped_seen = outcome(lambda: consume(tracker.wrap(openai_client(Recorder(_cut_stream)))))
    assert wrapped_seen[:2] == bare_seen[:2] and wrapped_seen[0] == "raised"
    [rec] = records()
    assert rec.status == "error" and rec.error_type == "connection_error"
    assert rec.model == "gpt-4o-mini-2024-07-18" and rec.ttft_ms is not None


def _event_by_event(name: str):
    def respond(request: httpx2.Request) -> httpx2.Response:
        events = [event + b"\n\n" for event in fixture(name).split(b"\n\n") if event]
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=iter(events))

    return respond


def test_abandoned_stream_is_recorded_as_incomplete(tracker, records):
    client = tracker.wrap(anthropic_client(Recorder(_event_by_event("anthropic_stream.sse"))))
    stream = client.messages.create(model="claude-sonnet-4-5", max_tokens=9, messages=[{"role": "user", "content": "x"}], stream=True)
    first = next(iter(stream))
    assert first.type == "message_start"
    stream.close()
    [rec] = records()
    assert rec.status == "incomplete" and rec.tokens_input == 12030 and rec.model == "claude-sonnet-4-5-20250929"
    # Cut before message_delta: priced from the counts message_start gave (every input token, the output counted so
    # far): the least the call cost, never nothing. 30 input at $3, 10,000 cache reads at $0.30, 500 5-minute
    # writes at $3.75, 1,500 1-hour writes at $6, 1 output token at $15.
    assert rec.tokens_output == 1
    assert rec.cost_usd == pytest.approx((30 * 3 + 10_000 * 0.30 + 500 * 3.75 + 1_500 * 6 + 1 * 15) / 1e6)


def test_stream_left_after_its_final_usage_is_priced(tracker, records):
    """Closed after message_delta (the final totals) but before message_stop: incomplete, and priced exactly."""
    client = tracker.wrap(anthropic_client(Recorder(_event_by_event("anthropic_stream.sse"))))
    stream = client.messages.create(model="claude-sonnet-4-5", max_tokens=9, messages=[{"role": "user", "content": "x"}], stream=True)
    for event in stream:
        if event.type == "message_delta":
            break
    stream.close()
    [rec] = records()
    assert rec.status == "incomplete" and (rec.tokens_input, rec.tokens_output) == (12030, 57)
    # 30 input at $3, 10,000 cache reads at $0.30, 500 5-minute writes at $3.75, 1,500 1-hour writes at $6, 57 output at $15
    assert rec.cost_usd == pytest.approx((30 * 3 + 10_000 * 0.30 + 500 * 3.75 + 1_500 * 6 + 57 * 15) / 1e6)


def test_anthropic_overloaded_is_the_sdk_error(tracker, records):
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    client = tracker.wrap(anthropic_client(Recorder(httpx2.Response(529, json=body))))
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 529
    [rec] = records()
    assert (rec.status, rec.error_type) == ("error", "overloaded_error")


def test_requests_that_are_not_instrumented_pass_through(tracker, records):
    models = {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "openai"}]}
    server = Recorder(httpx2.Response(200, json=models))
    client = tracker.wrap(openai_client(server))
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    assert records() == []


def test_api_keys_are_never_stored(tracker, records, database_url):
    tracker.store_content = True
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"))))
    client.chat.completions.create(**CHAT)
    [rec] = records()
    assert rec.request_body is not None and json.loads(rec.request_body)["messages"] == CHAT["messages"]
    dumped = json.dumps(rec.export_dict())
    assert "sk-test" not in dumped and "authorization" not in dumped.lower()


def test_content_is_not_stored_by_default(tracker, records):
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"))))
    client.chat.completions.create(**CHAT)
    [rec] = records()
    assert rec.request_body is None and rec.response_body is None


async def test_cancelled_call_is_incomplete_not_an_error(tracker, records):
    import asyncio

    async def slow(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(3600)
        raise AssertionError("never answered")

    client = tracker.wrap(
        openai.AsyncOpenAI(api_key="sk-test", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(slow)), max_retries=0)
    )
    task = asyncio.ensure_future(client.chat.completions.create(**CHAT))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [rec] = records()
    assert rec.status == "incomplete" and rec.error_type is None


def _chunkings(body: bytes) -> dict[str, list[bytes]]:
    """The same stream cut every way a network might deliver it."""
    cuts = sorted(random.Random(7).sample(range(1, len(body)), 12))
    return {
        "whole": [body],
        "per-event": [event + b"\n\n" for event in body.split(b"\n\n") if event],
        "per-byte": [body[i : i + 1] for i in range(len(body))],
        "random": [body[i:j] for i, j in zip([0, *cuts], [*cuts, len(body)])],
        "crlf": [body.replace(b"\n", b"\r\n")],
    }


def _chunked(chunks: list[bytes]):
    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=iter(chunks))

    return respond


class _Timed(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A stream's events, read one per network read, the clock moved by `gaps[i]` before the i-th arrives."""

    def __init__(self, events: list[bytes], clock, gaps: list[float]) -> None:  # type: ignore[no-untyped-def]
        self._events, self._clock, self._gaps = events, clock, gaps

    def __iter__(self):  # type: ignore[no-untyped-def]
        for event, gap in zip(self._events, self._gaps):
            self._clock.advance(gap)
            yield event + b"\n\n"

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for event in self:
            yield event


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("spacing", ["compact", "json.dumps"])
@pytest.mark.parametrize("role_first", [True, False])
async def test_a_streams_first_token_is_timed_when_its_first_content_arrives(
    tracker, records, fake_clock, spacing, role_first, is_async
):
    """Time to first token is the arrival of the first chunk with content (told by its bytes or by parsing it),
    whether or not a role-only chunk comes first, in the API's compact JSON or json.dumps' spacing."""
    events = [e for e in fixture("openai_chat_stream.sse").split(b"\n\n") if e]
    if not role_first:
        events = events[1:]
    if spacing == "json.dumps":
        events = [b"data: " + json.dumps(json.loads(e[6:])).encode() if e[6:7] == b"{" else e for e in events]
    gaps = [0.010, 0.020] + [0.005] * len(events)

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=_Timed(events, fake_clock, gaps))

    tracker.clock = fake_clock
    client = tracker.wrap(openai_client(Recorder(respond), is_async=is_async))
    if is_async:
        seen = [c.choices[0].delta.content async for c in await client.chat.completions.create(**CHAT, stream=True)]
    else:
        seen = [c.choices[0].delta.content for c in client.chat.completions.create(**CHAT, stream=True)]
    assert "Hello" in seen
    [rec] = records()
    assert rec.ttft_ms == pytest.approx(30.0 if role_first else 10.0)
    assert rec.model == "gpt-4o-mini-2024-07-18" and rec.tokens_input > 0 and rec.status == "ok"


@pytest.mark.parametrize("how", ["whole", "per-event", "per-byte", "random", "crlf"])
def test_openai_stream_reads_the_same_however_it_is_chunked(tracker, records, how):
    # Mid-stream content events are skipped unread once nothing is left to learn from them.
    chunks = _chunkings(fixture("openai_chat_stream.sse"))[how]
    bare = openai_client(Recorder(_chunked(chunks)))
    wrapped = tracker.wrap(openai_client(Recorder(_chunked(chunks))))
    seen_bare = [c.model_dump() for c in bare.chat.completions.create(**CHAT, stream=True) if c.choices]
    seen_wrapped = [c.model_dump() for c in wrapped.chat.completions.create(**CHAT, stream=True)]
    assert seen_wrapped == seen_bare  # the usage-only chunk, asked for by costtrack, is hidden
    [rec] = records()
    assert (rec.status, rec.model, rec.tokens_input, rec.tokens_cached_input, rec.tokens_output) == (
        "ok", "gpt-4o-mini-2024-07-18", 2048, 1024, 2,
    )  # fmt: skip
    assert rec.ttft_ms is not None


@pytest.mark.parametrize("how", ["per-event", "random"])
async def test_async_openai_stream_reads_the_same_however_it_is_chunked(tracker, records, how):
    # The async twin: per event, chunks with nothing to read pass on unsplit once the stream is under way.
    # After [DONE] the async SDK drains an HTTP/1.1 body by reading the stream again, which a body that can
    # be read once refuses (StreamConsumed): the SDK ignores that, and so does the record.
    chunks = _chunkings(fixture("openai_chat_stream.sse"))[how]

    def respond(request: httpx2.Request) -> httpx2.Response:
        async def body():
            for chunk in chunks:
                yield chunk

        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    bare = openai_client(Recorder(respond), is_async=True)
    wrapped = tracker.wrap(openai_client(Recorder(respond), is_async=True))
    seen_bare = [c.model_dump() async for c in await bare.chat.completions.create(**CHAT, stream=True) if c.choices]
    seen_wrapped = [c.model_dump() async for c in await wrapped.chat.completions.create(**CHAT, stream=True)]
    assert seen_wrapped == seen_bare and seen_bare
    [rec] = records()
    assert (rec.status, rec.tokens_input, rec.tokens_cached_input, rec.tokens_output) == ("ok", 2048, 1024, 2)
    assert rec.ttft_ms is not None


@pytest.mark.parametrize("how", ["whole", "per-event", "per-byte", "random", "crlf"])
def test_anthropic_stream_reads_the_same_however_it_is_chunked(tracker, records, how):
    chunks = _chunkings(fixture("anthropic_stream.sse"))[how]
    args = dict(model="claude-sonnet-4-5", max_tokens=99, messages=[{"role": "user", "content": "x"}], stream=True)
    bare = anthropic_client(Recorder(_chunked(chunks)))
    wrapped = tracker.wrap(anthropic_client(Recorder(_chunked(chunks))))
    assert [e.model_dump() for e in wrapped.messages.create(**args)] == [e.model_dump() for e in bare.messages.create(**args)]
    [rec] = records()
    assert (rec.status, rec.model, rec.tokens_input, rec.tokens_cached_input, rec.tokens_output) == (
        "ok", "claude-sonnet-4-5-20250929", 12030, 10000, 57,
    )  # fmt: skip
    assert rec.ttft_ms is not None


def test_usage_after_many_content_events_is_found(tracker, records):
    # Thousands of content events in one chunk, each with "usage":null, then the real usage.
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18", "usage": None}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": f't{i} "usage":{{'}, "finish_reason": None}]}
              for i in range(2000)]  # fmt: skip
    events.append({**base, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2000, "total_tokens": 2007}})
    body = b"".join(b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    client = tracker.wrap(openai_client(Recorder(_chunked([body]))))
    texts = [c.choices[0].delta.content for c in client.chat.completions.create(**CHAT, stream=True)]
    assert len(texts) == 2000
    [rec] = records()
    assert (rec.tokens_input, rec.tokens_output, rec.status) == (7, 2000, "ok")


# --------------------------------------------------------------------------- bodies costtrack cannot read, costs it cannot know


def _network(body: bytes, content_type: str = "application/json", **headers: str):
    """A response whose body arrives as a stream (as from the network), not as bytes already in memory."""

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": content_type, **headers}, content=iter([body[:40], body[40:]]))

    return respond


def _raw_deflate(data: bytes) -> bytes:
    import zlib

    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # deflate without the zlib header, which httpx2 also accepts
    return packer.compress(data) + packer.flush()


def test_a_body_httpx2_decodes_is_read_with_httpx2s_own_decoder(tracker, records):
    respond = _network(_raw_deflate(fixture("openai_chat.json")), **{"content-encoding": "deflate"})
    bare = outcome(lambda: openai_client(Recorder(respond)).chat.completions.create(**CHAT))
    wrapped = outcome(lambda: tracker.wrap(openai_client(Recorder(respond))).chat.completions.create(**CHAT))
    assert wrapped == bare and wrapped[0] == "returned"
    [rec] = records()
    assert (rec.status, rec.tokens_input, rec.tokens_output) == ("ok", 2048, 120)


def test_an_undecodable_body_fails_as_in_the_bare_sdk(tracker, records):
    respond = _network(b"this is not gzip at all, just text", **{"content-encoding": "gzip"})
    bare = outcome(lambda: openai_client(Recorder(respond)).chat.completions.create(**CHAT))
    wrapped = outcome(lambda: tracker.wrap(openai_client(Recorder(respond))).chat.completions.create(**CHAT))
    assert wrapped[:2] == bare[:2] and bare[1] is openai.APIConnectionError
    [rec] = records()
    assert (rec.status, rec.error_type, rec.cost_usd) == ("error", "malformed_response", None)  # sent: cost unknown


def test_an_empty_answer_is_malformed_and_its_cost_unknown(tracker, records):
    respond = _network(b"")
    bare = outcome(lambda: openai_client(Recorder(respond)).chat.completions.create(**CHAT))
    wrapped = outcome(lambda: tracker.wrap(openai_client(Recorder(respond))).chat.completions.create(**CHAT))
    assert wrapped[:2] == bare[:2] and wrapped[0] == "raised"
    [rec] = records()
    assert (rec.status, rec.error_type, rec.cost_usd) == ("error", "malformed_response", None)


def test_a_stream_error_after_content_is_recorded_as_the_error(tracker, records):
    events = fixture("openai_chat_stream.sse").split(b"\n\n")[:3]  # role, "Hello", more content
    error = b'data: {"error":{"message":"The server had an error","type":"server_error","code":null}}'
    body = b"\n\n".join([*events, error, b"data: [DONE]"]) + b"\n\n"

    def consume(client):
        return [c.choices[0].delta.content for c in client.chat.completions.create(**CHAT, stream=True)]

    respond = _network(body, "text/event-stream")
    bare = outcome(lambda: consume(openai_client(Recorder(respond))))
    wrapped = outcome(lambda: consume(tracker.wrap(openai_client(Recorder(respond)))))
    assert wrapped == bare and bare[1] is openai.APIError
    [rec] = records()
    assert (rec.status, rec.error_type, rec.cost_usd) == ("error", "server_error", None)


def test_costs_are_zero_only_when_nothing_can_have_been_billed(tracker, records):
    def cut(client):
        return [c.choices[0].delta.content for c in client.chat.completions.create(**CHAT, stream=True)]

    def create(client):
        return client.chat.completions.create(**CHAT)

    cases = [
        (Recorder(_cut_stream), cut),  # 200, content delivered, then the connection dropped
        (Recorder(httpx2.Response(200, content=b"<html>oops</html>", headers={"content-type": "text/html"})), create),
        (Recorder(httpx2.ReadTimeout("no answer in time")), create),  # sent, then no answer in time
        (Recorder(httpx2.ConnectError("refused")), create),  # never sent
        (Recorder(rate_limited()), create),  # refused with an HTTP error
    ]
    for server, send in cases:
        outcome(functools.partial(send, tracker.wrap(openai_client(server))))
    recs = sorted(records(), key=lambda r: r.timestamp)
    assert [(r.error_type, r.cost_usd) for r in recs] == [
        ("connection_error", None), ("malformed_response", None), ("timeout", None),
        ("connection_error", 0.0), ("rate_limit_exceeded", 0.0),
    ]  # fmt: skip


def test_openai_paths_ending_in_messages_are_not_anthropics(tracker, records, caplog):
    thread_message = {"id": "msg_1", "object": "thread.message", "created_at": 1, "thread_id": "thread_1",
                      "role": "user", "content": [], "attachments": [], "metadata": {}, "status": "completed"}  # fmt: skip
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=thread_message))))
    with caplog.at_level("WARNING", logger="costtrack"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the Assistants API is deprecated, and still served
        message = client.beta.threads.messages.create("thread_1", role="user", content="hi")
    assert message.id == "msg_1"
    assert records() == [] and not [r for r in caplog.records if r.levelname == "ERROR"]


def test_hiding_the_usage_chunk_drops_the_content_length_it_falsifies(tracker, records):
    body = fixture("openai_chat_stream.sse")

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream", "content-length": str(len(body))},
                               content=iter([body]))  # fmt: skip

    client = tracker.wrap(openai_client(Recorder(respond)))
    raw = client.chat.completions.with_raw_response.create(**CHAT, stream=True)
    assert "content-length" not in raw.headers
    assert all(chunk.choices for chunk in raw.parse())  # the usage-only chunk stays hidden
    [rec] = records()
    assert rec.tokens_input > 0


@pytest.mark.parametrize("how", ["whole", "per-event", "random"])
def test_a_stream_with_cumulative_usage_in_every_chunk_counts_the_last(tracker, records, how):
    # vLLM's continuous usage stats: every content chunk carries the usage so far; the last one is the call's.
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "my-llama"}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}],
         "usage": {"prompt_tokens": 30, "completion_tokens": i + 1, "total_tokens": 31 + i}}
        for i in range(6)
    ]  # fmt: skip
    events.append({**base, "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36}})
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    chunks = _chunkings(body)[how]
    bare = openai_client(Recorder(_chunked(chunks)))
    wrapped = tracker.wrap(openai_client(Recorder(_chunked(chunks))))
    seen_bare = [c.model_dump() for c in bare.chat.completions.create(**CHAT, stream=True) if c.choices]
    seen_wrapped = [c.model_dump() for c in wrapped.chat.completions.create(**CHAT, stream=True)]
    assert seen_wrapped == seen_bare and len(seen_bare) == 6  # each content chunk, its usage included; the usage-only one hidden
    [rec] = records()
    assert (rec.status, rec.model, rec.tokens_input, rec.tokens_output) == ("ok", "my-llama", 30, 6)


def _chunk(content=None, usage=None, choices=True, **extra):
    body = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18"}
    body["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}] if choices else []
    return {**body, "usage": usage, **extra}


_USAGE = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
_EARLIER_MARKERS = {
    # A later `"error":null` must not hide the error before it, nor a later usage object (nested, or sent
    # twice) the usage chunk before it: whatever the chunking.
    "error-then-error-null": [_chunk("Hi"), _chunk(" a"), {"error": {"type": "server_error", "message": "x"}},
                              _chunk(" b", error=None)],
    "usage-chunk-twice": [_chunk("Hi"), _chunk(" a"), _chunk(usage=_USAGE, choices=False), _chunk(usage=_USAGE, choices=False)],
    "usage-then-nested-usage": [_chunk("Hi"), _chunk(" a"), _chunk(usage=_USAGE, choices=False),
                                _chunk(" z", extra={"usage": {"n": 1}})],
}  # fmt: skip


@pytest.mark.parametrize("how", ["whole", "per-event", "per-byte", "random"])  # per event: quiet chunks pass unsplit
@pytest.mark.parametrize("case", list(_EARLIER_MARKERS))
def test_a_later_marker_never_hides_an_earlier_one(tracker, records, case, how):
    events = _EARLIER_MARKERS[case]
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    chunks = _chunkings(body)[how]

    def consume(client):
        return [c.model_dump() for c in client.chat.completions.create(**CHAT, stream=True)]

    bare = outcome(lambda: consume(openai_client(Recorder(_chunked(chunks)))))
    wrapped = outcome(lambda: consume(tracker.wrap(openai_client(Recorder(_chunked(chunks))))))
    [rec] = records()
    if case == "error-then-error-null":
        assert wrapped[:2] == bare[:2] and bare[1] is openai.APIError
        assert (rec.status, rec.error_type) == ("error", "server_error")
    else:
        assert wrapped[0] == "returned" and wrapped[2] == [c for c in bare[2] if c["choices"]]  # usage chunks hidden
        assert (rec.status, rec.tokens_input, rec.tokens_output) == ("ok", 10, 2)


@pytest.mark.parametrize("count", ["9" * 5000, "-1", "two", ""])
def test_a_retry_count_header_no_sdk_would_send_counts_as_a_first_attempt(tracker, records, count):
    server = Recorder(serve("openai_chat.json"))
    client = tracker.wrap(openai_client(server))
    completion = client.chat.completions.create(**CHAT, extra_headers={"x-stainless-retry-count": count,
                                                                        "x-costtrack-cache": "bypass"})  # fmt: skip
    assert completion.choices[0].message.content
    assert "x-costtrack-cache" not in server.requests[0].headers  # the directive still never leaves
    [rec] = records()
    assert rec.attempt == 1 and rec.status == "ok"


@pytest.mark.parametrize("options", [None, {"include_usage": False}], ids=["spliced", "re-written"])
def test_asking_for_stream_usage_changes_only_the_body_and_its_length(tracker, records, options):
    """The request sent differs from the bare SDK's only in stream_options and Content-Length; the app's own is untouched."""
    extra = {} if options is None else {"stream_options": options}
    bare_server, server = Recorder(serve("openai_chat_stream.sse")), Recorder(serve("openai_chat_stream.sse"))
    kw = dict(**CHAT, stream=True, **extra, extra_headers={"X-App": "a"}, timeout=12.5)
    list(openai_client(bare_server).chat.completions.create(**kw))
    raw = tracker.wrap(openai_client(server)).chat.completions.with_raw_response.create(**kw)
    list(raw.parse())
    [bare], [sent], app = bare_server.requests, server.requests, raw.http_request
    assert json.loads(sent.content) == {**json.loads(bare.content), "stream_options": {"include_usage": True}}
    assert sent.headers["content-length"] == str(len(sent.content))
    assert (sent.method, sent.url, sent.extensions) == (bare.method, bare.url, bare.extensions)
    assert sent.extensions is not app.extensions and sent.headers is not app.headers
    assert [(k, v) for k, v in sent.headers.raw if k.lower() != b"content-length"] == [
        (k, v) for k, v in app.headers.raw if k.lower() != b"content-length"
    ]  # the app's headers, in their order and spelling
    # What the app's request object says (raw.http_request, event hooks) is what it asked for.
    assert app.content == bare.content and app.headers["content-length"] == str(len(bare.content))
    assert records()[0].tokens_input == 2048


class _Pieces(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A body read from the network in pieces, sync or async; `fail` is raised after them (a connection dropped)."""

    def __init__(self, pieces: list[bytes], fail: Exception | None = None) -> None:
        self._pieces, self._fail = pieces, fail

    def __iter__(self):
        yield from self._pieces
        if self._fail is not None:
            raise self._fail

    async def __aiter__(self):
        for piece in self._pieces:
            yield piece
        if self._fail is not None:
            raise self._fail


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("cut", [False, True], ids=["whole", "cut"])
async def test_a_plain_body_read_from_the_network_is_recorded_as_it_passes(tracker, records, is_async, cut):
    body = fixture("openai_chat.json")
    pieces = [body[:40], body[40:100]] + ([] if cut else [body[100:]])

    def respond(request: httpx2.Request) -> httpx2.Response:
        fail = httpx2.ReadError("connection reset") if cut else None
        return httpx2.Response(200, headers={"content-type": "application/json"}, stream=_Pieces(pieces, fail))

    async def call(client):
        try:
            result = client.chat.completions.create(**CHAT)
            result = await result if is_async else result
        except Exception as exc:
            return ("raised", type(exc), str(exc))
        return ("returned", type(result), result.model_dump())

    bare = await call(openai_client(Recorder(respond), is_async=is_async))
    wrapped = await call(tracker.wrap(openai_client(Recorder(respond), is_async=is_async)))
    assert wrapped == bare and bare[0] == ("raised" if cut else "returned")
    [rec] = records()
    if cut:
        assert (rec.status, rec.error_type, rec.cost_usd) == ("error", "connection_error", None)  # sent: cost unknown
    else:
        assert (rec.status, rec.tokens_input, rec.tokens_output) == ("ok", 2048, 120)


def _as_the_api_streams(request: httpx2.Request, spaced: bool, how: str) -> httpx2.Response:
    """The fixture stream as the API sends it for `request`: with usage asked for, `"usage":null` in every chunk
    and a usage-only chunk at the end; without, neither."""
    asked = (json.loads(request.content).get("stream_options") or {}).get("include_usage") is True
    events = []
    for event in fixture("openai_chat_stream.sse").split(b"\n\n"):
        if not event.startswith(b"data: {"):
            continue
        chunk = json.loads(event[6:])
        if not asked:
            if not chunk["choices"]:
                continue
            del chunk["usage"]
        events.append(chunk)
    text = b"".join(b"data: " + json.dumps(e, separators=None if spaced else (",", ":")).encode() + b"\n\n" for e in events)
    pieces = _chunkings(text + b"data: [DONE]\n\n")[how]
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=_Pieces(pieces))


@pytest.mark.parametrize("how", ["whole", "per-event", "per-byte", "random"])
@pytest.mark.parametrize("spaced", [False, True], ids=["compact", "spaced"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_stream_asked_for_usage_on_the_apps_behalf_reaches_it_as_its_own_request_would(
    tracker, records, how, spaced, is_async
):
    # Asked for usage, the API adds "usage":null to every chunk: the app, which did not ask, gets each chunk
    # without it (to_dict(), model_fields_set), as the bare SDK gets it; one that asked keeps it.
    serve_it = functools.partial(_as_the_api_streams, spaced=spaced, how=how)

    def client(wrapped: bool):
        if is_async:
            made = openai.AsyncOpenAI(api_key="sk-test", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(serve_it)), max_retries=0)
        else:
            made = openai_client(serve_it)
        return tracker.wrap(made) if wrapped else made

    async def chunks(wrapped: bool, **extra) -> list[dict]:
        stream = client(wrapped).chat.completions.create(**CHAT, stream=True, **extra)
        if is_async:
            return [c.to_dict() async for c in await stream]
        return [c.to_dict() for c in stream]

    bare = await chunks(False)
    assert bare and all("usage" not in c for c in bare)
    assert await chunks(True) == bare
    options = {"stream_options": {"include_usage": True}}
    asked = await chunks(True, **options)
    assert asked == await chunks(False, **options) and all("usage" in c for c in asked)
    assert [(r.tokens_input, r.tokens_output) for r in records()] == [(2048, 2), (2048, 2)]


# --------------------------------------------------------------------------- servers that refuse stream_options

_REFUSAL = {"error": {"message": "Unrecognized request argument supplied: stream_options", "type": "invalid_request_error",
                      "param": None, "code": None}}  # fmt: skip


class Pieces(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A body as a network transport hands it on, to a sync or an async client: read once, when the SDK reads."""

    def __init__(self, *pieces: bytes) -> None:
        self._pieces = pieces

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield from self._pieces

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for piece in self._pieces:
            yield piece


def _network_json(status: int, body: dict) -> httpx2.Response:
    data = json.dumps(body).encode()
    return httpx2.Response(status, headers={"content-type": "application/json"}, stream=Pieces(data[:10], data[10:]))


class StrictServer:
    """An older Azure api-version or a strict compatible server: a 400 for stream_options, else a stream without usage."""

    def __init__(self, error: dict | None = None, *, whole: bool = False, refusal: tuple[int, dict] = (400, _REFUSAL),
                 gzip: bool = False) -> None:  # fmt: skip
        self.asked_options = 0
        self.requests = 0
        self.error = error  # answered to every request instead (a 400 of its own)
        self.whole = whole  # the stream's body in one piece (an async client's mock), else one event per read
        self.refusal = refusal  # what a request with stream_options gets
        self.gzip = gzip  # error bodies compressed, as a proxy may send them

    def _error(self, status: int, body: dict) -> httpx2.Response:
        if not self.gzip:
            return _network_json(status, body)
        import gzip

        data = gzip.compress(json.dumps(body).encode())
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        return httpx2.Response(status, headers=headers, stream=Pieces(data[:7], data[7:]))

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        if self.error is not None:
            return self._error(422 if "detail" in self.error else 400, self.error)
        if b'"stream_options"' in request.content:
            self.asked_options += 1
            return self._error(*self.refusal)
        events = [event + b"\n\n" for event in fixture("openai_chat_stream.sse").split(b"\n\n") if event and b'"choices":[]' not in event]
        return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                               stream=Pieces(b"".join(events)) if self.whole else Pieces(*events))  # fmt: skip


def _chunks(client) -> list:
    return [chunk.model_dump() for chunk in client.chat.completions.create(**CHAT, stream=True)]


def test_a_server_refusing_stream_options_streams_as_the_bare_sdk_does(tracker, records, caplog):
    """costtrack asks for usage with stream_options; refused, it sends the app's own request and stops asking."""
    from costtrack.logs import reset_once

    reset_once()
    bare = [outcome(lambda: _chunks(openai_client(StrictServer()))) for _ in range(2)]
    server = StrictServer()
    client = tracker.wrap(openai_client(server))
    with caplog.at_level("WARNING", logger="costtrack"):
        wrapped = [outcome(lambda: _chunks(client)) for _ in range(2)]
    assert wrapped == bare and bare[0][0] == "returned"
    assert server.asked_options == 1  # refused once: the client's later streams are sent as written
    recs = records()
    assert [(r.status, r.tokens_input, r.cost_usd) for r in recs] == [("ok", 0, None)] * 2  # no usage: cost unknown
    assert all(r.model == "gpt-4o-mini-2024-07-18" and r.ttft_ms is not None for r in recs)
    assert caplog.text.count("refused stream_options") == 1


_EXTRA_FORBIDDEN = {"detail": [{"type": "extra_forbidden", "loc": ["body", "stream_options"],
                                "msg": "Extra inputs are not permitted", "input": {"include_usage": True}}]}  # fmt: skip


@pytest.mark.parametrize("refusal", [(400, _REFUSAL), (422, _EXTRA_FORBIDDEN)], ids=["azure", "pydantic"])
@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_refusals_are_told_apart_however_worded_or_encoded(tracker, records, refusal, gzip):
    bare = outcome(lambda: _chunks(openai_client(StrictServer(refusal=refusal, gzip=gzip))))
    server = StrictServer(refusal=refusal, gzip=gzip)
    assert outcome(lambda: _chunks(tracker.wrap(openai_client(server)))) == bare and bare[0] == "returned"
    assert (server.asked_options, server.requests) == (1, 2)


def test_a_compressed_refusal_in_memory_is_read_too(tracker, records):
    """A mock or cache answer in memory (decoded on creation) is read as it is."""
    import gzip

    data = gzip.compress(json.dumps(_REFUSAL).encode())
    refusing = httpx2.Response(400, headers={"content-type": "application/json", "content-encoding": "gzip"}, content=data)
    events = [e + b"\n\n" for e in fixture("openai_chat_stream.sse").split(b"\n\n") if e and b'"choices":[]' not in e]

    def respond(request: httpx2.Request) -> httpx2.Response:
        if b'"stream_options"' in request.content:
            return refusing
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(events))

    bare = outcome(lambda: _chunks(openai_client(Recorder(respond))))
    assert outcome(lambda: _chunks(tracker.wrap(openai_client(Recorder(respond))))) == bare and bare[0] == "returned"


def test_a_validation_error_echoing_the_request_is_not_a_refusal(tracker, records):
    """A 422 about another field that echoes the body (stream_options and all) reaches the app once, as it came,
    and the client goes on asking for usage."""
    error = {"detail": [{"type": "missing", "loc": ["body", "messages", 0, "content"], "msg": "Field required",
                         "input": {"role": "user", "stream_options": {"include_usage": True}}}]}  # fmt: skip
    bare = outcome(lambda: _chunks(openai_client(StrictServer(error))))
    server = StrictServer(error)
    client = tracker.wrap(openai_client(server))
    assert outcome(lambda: _chunks(client)) == bare and bare[:2] == ("raised", openai.UnprocessableEntityError)
    assert server.requests == 1 and not client._client._transport.instrument.refuses_stream_options


async def test_a_server_refusing_stream_options_async(tracker, records):
    async def chunks(client) -> list:
        return [chunk.model_dump() async for chunk in await client.chat.completions.create(**CHAT, stream=True)]

    bare = await chunks(openai_client(StrictServer(whole=True), is_async=True))
    server = StrictServer(whole=True)
    assert await chunks(tracker.wrap(openai_client(server, is_async=True))) == bare
    assert server.asked_options == 1
    [rec] = records()
    assert (rec.status, rec.tokens_input, rec.cost_usd) == ("ok", 0, None)


async def test_a_400_about_something_else_reaches_the_async_app_as_it_came(tracker, records):
    error = {"error": {"message": "Invalid value for 'model'", "type": "invalid_request_error", "param": "model", "code": None}}

    async def chunks(client):
        try:
            return [c.model_dump() async for c in await client.chat.completions.create(**CHAT, stream=True)]
        except openai.APIStatusError as exc:
            return ("raised", type(exc), str(exc), exc.status_code, exc.body)

    bare = await chunks(openai_client(StrictServer(error), is_async=True))
    assert await chunks(tracker.wrap(openai_client(StrictServer(error), is_async=True))) == bare and bare[0] == "raised"
    [rec] = records()
    assert (rec.status, rec.error_type) == ("error", "invalid_request_error")


def test_a_400_about_something_else_reaches_the_app_as_it_came(tracker, records):
    """A request costtrack added stream_options to, refused for another reason: the app gets the server's own error."""
    error = {"error": {"message": "Invalid value for 'model'", "type": "invalid_request_error", "param": "model", "code": None}}
    bare = outcome(lambda: _chunks(openai_client(StrictServer(error))))
    wrapped = outcome(lambda: _chunks(tracker.wrap(openai_client(StrictServer(error)))))
    assert wrapped == bare and bare[:2] == ("raised", openai.BadRequestError)
    [rec] = records()
    assert (rec.status, rec.error_type, rec.cost_usd) == ("error", "invalid_request_error", 0.0)


# --------------------------------------------------------------------------- streams the SDK cannot read


def _broken_stream(reads: str, line_end: bytes = b"\n", bad: bytes = b"data: {this is not json"):
    """A chat stream whose third event's data is not JSON: the SDK raises there, as it would without costtrack."""
    events = [e for e in fixture("openai_chat_stream.sse").split(b"\n\n") if e]
    events.insert(2, bad)
    body = [e.replace(b"\n", line_end) + line_end * 2 for e in events]

    def respond(request: httpx2.Request) -> httpx2.Response:
        stream = Pieces(b"".join(body)) if reads == "whole" else Pieces(*body)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)

    return respond


@pytest.mark.parametrize("reads", ["whole", "event by event"])
def test_a_stream_the_sdk_cannot_read_is_recorded_as_malformed(tracker, records, reads):
    bare = outcome(lambda: _chunks(openai_client(Recorder(_broken_stream(reads)))))
    wrapped = outcome(lambda: _chunks(tracker.wrap(openai_client(Recorder(_broken_stream(reads))))))
    assert wrapped == bare and bare[:2] == ("raised", json.JSONDecodeError)
    [rec] = records()
    assert (rec.status, rec.error_type) == ("error", "malformed_response")
    # Read whole, the body had its usage chunk: the provider sent (and billed) all of it. Read event by event, the
    # SDK stopped before it: the cost is unknown.
    assert rec.cost_usd is None if reads == "event by event" else rec.cost_usd > 0


@pytest.mark.parametrize("bad", [b"data:", b"data: ", b"event: note", b"id: 7"])
def test_an_event_with_no_data_is_one_the_openai_sdk_cannot_read(tracker, records, bad):
    """An event without data (`data:` alone, or an event name or id alone) is parsed by the OpenAI SDK as JSON, and
    fails: recorded as malformed, not as a stream left incomplete (review finding)."""
    bare = outcome(lambda: _chunks(openai_client(Recorder(_broken_stream("event by event", bad=bad)))))
    wrapped = outcome(lambda: _chunks(tracker.wrap(openai_client(Recorder(_broken_stream("event by event", bad=bad))))))
    assert wrapped == bare and bare[:2] == ("raised", json.JSONDecodeError)
    [rec] = records()
    assert (rec.status, rec.error_type) == ("error", "malformed_response")


def test_a_stream_body_that_cannot_be_decoded_is_malformed_whoever_asked_for_usage(tracker, records):
    """A body that is not the gzip its header says: the same error for the app, recorded as malformed both when
    costtrack decodes it (to hide the usage chunk) and when the SDK does (it was `DecodingError`; review finding)."""
    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
                               stream=Pieces(b"\x1f\x8b\x08\x00garbage-not-gzip"))  # fmt: skip

    for options in ({}, {"stream_options": {"include_usage": True}}):
        call = {**CHAT, "stream": True, **options}
        bare = outcome(lambda: list(openai_client(Recorder(respond)).chat.completions.create(**call)))  # noqa: B023
        wrapped = outcome(lambda: list(tracker.wrap(openai_client(Recorder(respond))).chat.completions.create(**call)))  # noqa: B023
        assert wrapped[:2] == bare[:2] and bare[1] is openai.APIConnectionError  # the SDK wraps the DecodingError
    assert [(r.status, r.error_type) for r in records()] == [("error", "malformed_response")] * 2


async def test_a_stream_the_async_sdk_cannot_read_is_recorded_as_malformed(tracker, records):
    async def chunks(client):
        try:
            return [c.model_dump() async for c in await client.chat.completions.create(**CHAT, stream=True)]
        except ValueError as exc:
            return ("raised", type(exc), str(exc))

    bare = await chunks(openai_client(Recorder(_broken_stream("event by event")), is_async=True))
    assert await chunks(tracker.wrap(openai_client(Recorder(_broken_stream("event by event")), is_async=True))) == bare
    [rec] = records()
    assert (rec.status, rec.error_type) == ("error", "malformed_response")


def _stream_events(line_end: bytes = b"\n") -> list[bytes]:
    """The fixture chat stream's events (usage chunk and [DONE] last), each as the network hands it on."""
    return [e.replace(b"\n", line_end) + line_end * 2 for e in fixture("openai_chat_stream.sse").split(b"\n\n") if e.strip()]


@pytest.mark.parametrize(("asks", "sent", "status"), [
    (False, "all but [DONE]", "ok"), (True, "all but [DONE]", "ok"), (False, "cut before its usage", "incomplete"),
])  # fmt: skip
def test_a_chat_stream_ending_without_done_after_its_usage_is_whole(tracker, records, asks, sent, status):
    """Some compatible servers end the body without [DONE]: the SDK ends the stream there, and with its usage (sent
    last) the answer was whole; it was recorded incomplete (review finding). A body cut before the usage still is."""
    events = _stream_events()[:-1] if sent == "all but [DONE]" else _stream_events()[:3]
    server = Recorder(lambda request: httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                                      stream=Pieces(*events)))  # fmt: skip
    call = {**CHAT, "stream": True, **({"stream_options": {"include_usage": True}} if asks else {})}
    chunks = list(tracker.wrap(openai_client(server)).chat.completions.create(**call))
    assert len(chunks) == len(events) - (1 if sent == "all but [DONE]" and not asks else 0)  # the hidden usage chunk
    [rec] = records()
    assert rec.status == status and (rec.cost_usd > 0 if status == "ok" else rec.cost_usd is None)


@pytest.mark.parametrize("bad", [b"event: error\ndata: upstream connect error or disconnect/reset before headers\n\n",
                                 b"event: error\ndata:\n\n"])  # fmt: skip
def test_an_anthropic_error_event_it_cannot_read_is_an_error(tracker, records, bad):
    """Diff review: an error event whose data is not JSON (a proxy's text), which Anthropic's SDK raises on, was
    recorded incomplete with no error type once error events were skipped in the malformed-stream check."""
    events = [e + b"\n\n" for e in fixture("anthropic_stream.sse").split(b"\n\n") if e.strip()]
    body = b"".join(events[:4]) + bad
    server = Recorder(lambda request: httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                                      stream=Pieces(body)))  # fmt: skip
    client = tracker.wrap(anthropic_client(server))
    with pytest.raises(anthropic.APIStatusError):
        for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=10, stream=True,
                                        messages=[{"role": "user", "content": "x"}]):  # fmt: skip
            pass
    [rec] = records()
    assert (rec.status, rec.error_type) == ("error", "malformed_response")


def test_a_stream_with_usage_in_every_chunk_cut_cleanly_stays_incomplete(tracker, records):
    """Diff review: a server that sends a running usage in every chunk (Perplexity; vLLM's continuous_usage_stats),
    its body ended cleanly mid-answer (no finish_reason, no usage-only chunk, no [DONE]), was recorded ok."""
    running = {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
    events = [b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "sonar",
                                      "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}],
                                      "usage": {**running, "completion_tokens": i + 1}}).encode() + b"\n\n"
              for i in range(2)]  # fmt: skip
    server = Recorder(lambda request: httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                                      stream=Pieces(*events)))  # fmt: skip
    assert len(list(tracker.wrap(openai_client(server)).chat.completions.create(**CHAT, stream=True))) == 2
    [rec] = records()
    assert (rec.status, rec.tokens_output) == ("incomplete", 2)


def test_a_crlf_stream_whose_last_line_feed_comes_after_done_is_whole(tracker, records):
    """CRLF events, the last read ending between [DONE]'s final CR and LF: the SDK's decoder has its blank line at
    the CR and stops; costtrack waited for the LF and recorded the stream incomplete (review finding)."""
    body = b"".join(_stream_events(b"\r\n"))
    server = Recorder(lambda request: httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                                      stream=Pieces(body[:-1], body[-1:])))  # fmt: skip
    call = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}  # asked: the bytes pass unsplit
    chunks = list(tracker.wrap(openai_client(server)).chat.completions.create(**call))
    assert len(chunks) == len(_stream_events()) - 1  # every event but [DONE]
    [rec] = records()
    assert (rec.status, rec.error_type) == ("ok", None) and rec.cost_usd > 0


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_a_stream_the_app_stops_reading_stays_incomplete(tracker, records, line_end):
    """Stopping early is not a malformed stream, whatever the line endings (the check reads whole events only)."""
    events = [e for e in fixture("openai_chat_stream.sse").split(b"\n\n") if e]
    body = [e.replace(b"\n", line_end) + line_end * 2 for e in events]
    server = Recorder(lambda request: httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=Pieces(*body)))
    stream = tracker.wrap(openai_client(server)).chat.completions.create(**CHAT, stream=True)
    next(iter(stream))
    stream.close()
    [rec] = records()
    assert (rec.status, rec.error_type) == ("incomplete", None)


def test_a_page_that_is_not_an_event_stream_is_recorded_as_malformed(tracker, records):
    """An HTML error page served as text/event-stream: the SDK yields nothing from it; the record says why."""
    page = b"<html>\n<head><title>502 Bad Gateway</title></head>\n\n<body>\n<h1>502 Bad Gateway</h1>\n</body>\n\n</html>\n"

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=Pieces(page[:40], page[40:]))

    bare = outcome(lambda: _chunks(openai_client(Recorder(respond))))
    assert outcome(lambda: _chunks(tracker.wrap(openai_client(Recorder(respond))))) == bare == ("returned", list, [])
    [rec] = records()
    assert (rec.status, rec.error_type, rec.cost_usd) == ("error", "malformed_response", None)


def test_a_call_trio_cancels_is_incomplete_as_on_asyncio(tracker, records):
    """Only asyncio's CancelledError was known: a call cancelled under trio was recorded error/Cancelled (review
    finding), which counted in the reports' error rates."""
    trio = pytest.importorskip("trio")

    async def slow(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep(10)
        raise AssertionError("not reached")

    async def main() -> None:
        client = tracker.wrap(openai.AsyncOpenAI(api_key="sk-test", max_retries=0,
                                                 http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(slow))))  # fmt: skip
        with trio.move_on_after(0.05):
            await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    trio.run(main)
    [record] = records()
    assert record.status == "incomplete" and record.error_type is None
