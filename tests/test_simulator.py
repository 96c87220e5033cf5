"""The offline API simulator, exercised through the real OpenAI and Anthropic SDKs."""

from __future__ import annotations

import base64
import json
import warnings

import anthropic
import httpx2
import openai
import pytest
from pydantic import BaseModel

from costtrack.simulator import (
    Simulator,
    anthropic_client,
    async_anthropic_client,
    async_openai_client,
    count_text_tokens,
    example_from_schema,
    is_reasoning_model,
    openai_client,
    snapshot_model,
)

USER = [{"role": "user", "content": "What does a token cost?"}]
LONG_SYSTEM = "You are a careful assistant who answers briefly. " * 200  # ~10k chars, ~2.5k tokens

# claude-sonnet-4-5 is deprecated in this SDK and warns on every call; haiku-4-5 does not.
CLAUDE = "claude-haiku-4-5"


def oa(sim: Simulator, **kw) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=httpx2.MockTransport(sim)), **kw)


def aoa(sim: Simulator, **kw) -> openai.AsyncOpenAI:
    kw.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(api_key="sk-test", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(sim)), **kw)


def an(sim: Simulator, **kw) -> anthropic.Anthropic:
    kw.setdefault("max_retries", 0)
    return anthropic.Anthropic(api_key="sk-test", http_client=httpx2.Client(transport=httpx2.MockTransport(sim)), **kw)


def aan(sim: Simulator, **kw) -> anthropic.AsyncAnthropic:
    kw.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(api_key="sk-test", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(sim)), **kw)


def body(request: httpx2.Request) -> dict:
    return json.loads(request.content)


# --------------------------------------------------------------------------- models and names


def test_snapshot_names():
    assert snapshot_model("gpt-4o-mini") == "gpt-4o-mini-2024-07-18"
    assert snapshot_model("gpt-4o") == "gpt-4o-2024-08-06"
    assert snapshot_model("claude-haiku-4-5") == "claude-haiku-4-5-20251001"
    assert snapshot_model("claude-sonnet-4-5") == "claude-sonnet-4-5-20250929"
    assert snapshot_model("llama3.2") == "llama3.2"
    assert is_reasoning_model("o4-mini") and is_reasoning_model("gpt-5") and is_reasoning_model("o1")
    assert not is_reasoning_model("gpt-4o") and not is_reasoning_model("gpt-5-chat-latest")


def test_module_imports_without_sdks(monkeypatch):
    # The SDKs are imported lazily, inside the client constructors only. The package is loaded
    # afresh from its files under another name, with the SDKs blocked and the cached
    # costtrack.simulator modules blocked too, so no already-imported copy can stand in for its code.
    import importlib.util
    import sys
    from pathlib import Path

    import costtrack.simulator as mod

    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.setitem(sys.modules, "anthropic", None)
    for name in [m for m in sys.modules if m == mod.__name__ or m.startswith(mod.__name__ + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    package_dir = Path(mod.__file__).parent
    spec = importlib.util.spec_from_file_location(
        "_standalone_simulator", mod.__file__, submodule_search_locations=[str(package_dir)]
    )
    standalone = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "_standalone_simulator", standalone)
    try:
        spec.loader.exec_module(standalone)
        submodules = {m for m in sys.modules if m.startswith("_standalone_simulator.")}
        # Every module file of the package was executed by this load.
        assert submodules == {f"_standalone_simulator.{p.stem}" for p in package_dir.glob("*.py") if p.stem != "__init__"}
        assert standalone.Simulator.__module__.startswith("_standalone_simulator.")
        assert standalone.Simulator().chat_completion_body({"model": "gpt-4o", "messages": USER})["usage"]
        with pytest.raises(ImportError):
            standalone.openai_client()
        with pytest.raises(ImportError):
            standalone.anthropic_client()
    finally:
        for name in [m for m in sys.modules if m.startswith("_standalone_simulator.")]:
            del sys.modules[name]


# --------------------------------------------------------------------------- OpenAI chat


def test_chat_completion_usage_and_snapshot():
    sim = Simulator(seed=1)
    r = oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini-2024-07-18"
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content
    u = r.usage
    assert u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.prompt_tokens_details.cached_tokens == 0
    assert u.completion_tokens_details.reasoning_tokens == 0
    # The visible text is one token a word.
    assert len(r.choices[0].message.content.split()) == u.completion_tokens
    assert [req.url.path for req in sim.requests] == ["/v1/chat/completions"]


def test_chat_stream_without_include_usage_has_no_usage():
    sim = Simulator(seed=1)
    plain = oa(Simulator(seed=1)).chat.completions.create(model="gpt-4o-mini", messages=USER)
    chunks = list(oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == plain.choices[0].message.content
    assert body(sim.requests[0])["stream"] is True


def test_chat_stream_include_usage_final_chunk():
    plain = oa(Simulator(seed=1)).chat.completions.create(model="gpt-4o-mini", messages=USER)
    chunks = list(
        oa(Simulator(seed=1)).chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage == plain.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[0].model == "gpt-4o-mini-2024-07-18"


def test_chat_stream_raw_wire_format():
    sim = Simulator()
    with httpx2.Client(transport=httpx2.MockTransport(sim)) as http:
        payload = {"model": "gpt-4o", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
        raw = http.post("https://api.openai.com/v1/chat/completions", json=payload)
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = raw.text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events[:-1])
    assert json.loads(events[-3][6:])["choices"] == []


def test_chat_stream_helper_final_completion():
    sim = Simulator(seed=2)
    client = oa(sim)
    with client.chat.completions.stream(
        model="gpt-4o", messages=USER, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.usage is not None and final.usage.completion_tokens > 0
    assert sim.requests[0].headers["x-stainless-helper-method"] == "chat.completions.stream"
    # The helper does not ask for usage by itself.
    with client.chat.completions.stream(model="gpt-4o", messages=USER) as stream:
        assert stream.get_final_completion().usage is None
    assert "stream_options" not in body(sim.requests[1])


class Person(BaseModel):
    name: str
    age: int
    height: float
    member: bool
    tags: list[str]


def test_chat_parse_structured_output():
    sim = Simulator()
    r = oa(sim).chat.completions.parse(model="gpt-4o-mini", messages=USER, response_format=Person)
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Person)
    assert parsed.name and parsed.tags and parsed.member is True
    assert r.usage.completion_tokens == count_text_tokens(r.choices[0].message.content)
    sent = body(sim.requests[0])
    assert sent["stream"] is False and sent["response_format"]["type"] == "json_schema"


def test_chat_json_object_and_unknown_schema():
    client = oa(Simulator())
    r = client.chat.completions.create(model="gpt-4o", messages=USER, response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"description": "anything"}}}
    r = client.chat.completions.create(model="gpt-4o", messages=USER, response_format=fmt)
    assert json.loads(r.choices[0].message.content) == {}


WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_chat_tool_calls_plain_and_streamed():
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    client = oa(Simulator())
    r = client.chat.completions.create(model="gpt-4o", messages=USER, tools=tools)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    with client.chat.completions.stream(model="gpt-4o", messages=USER, tools=tools) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.arguments == call.function.arguments
    # After the tool's result, the model answers in text.
    follow = [*USER, r.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    r2 = client.chat.completions.create(model="gpt-4o", messages=follow, tools=tools)
    assert r2.choices[0].finish_reason == "stop" and r2.choices[0].message.content


def test_chat_n_choices_sum_completion_tokens():
    r = oa(Simulator()).chat.completions.create(model="gpt-4o-mini", messages=USER, n=3)
    assert len(r.choices) == 3
    assert r.usage.completion_tokens == sum(len(c.message.content.split()) for c in r.choices)


def test_reasoning_tokens_included_in_completion_tokens():
    r = oa(Simulator()).chat.completions.create(model="o4-mini", messages=USER)
    u = r.usage
    assert r.model == "o4-mini-2025-04-16"
    assert u.completion_tokens_details.reasoning_tokens > 0
    assert u.completion_tokens == u.completion_tokens_details.reasoning_tokens + len(r.choices[0].message.content.split())


def test_max_tokens_caps_output():
    client = oa(Simulator())
    r = client.chat.completions.create(model="gpt-4o-mini", messages=USER, max_tokens=5)
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"
    r = client.chat.completions.create(model="o3", messages=USER, max_completion_tokens=40)
    assert r.usage.completion_tokens <= 40 and r.choices[0].finish_reason == "length"


def test_openai_prompt_caching():
    sim = Simulator()
    client = oa(sim)

    def ask(q: str, model: str = "gpt-4o-mini"):
        return client.chat.completions.create(
            model=model, messages=[{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": q}]
        ).usage

    first = ask("one")
    assert first.prompt_tokens >= 1024 and first.prompt_tokens_details.cached_tokens == 0
    second = ask("a different question")
    cached = second.prompt_tokens_details.cached_tokens
    assert cached >= 1024 and cached % 128 == 0 and cached <= second.prompt_tokens
    assert second.prompt_tokens - cached < 128 + count_text_tokens("a different question") + 16
    repeat = ask("one")
    assert repeat.prompt_tokens == first.prompt_tokens
    assert repeat.prompt_tokens_details.cached_tokens == first.prompt_tokens // 128 * 128
    # Per model; short prompts never cache.
    assert ask("one", model="gpt-4o").prompt_tokens_details.cached_tokens == 0
    short = [client.chat.completions.create(model="gpt-4o-mini", messages=USER).usage for _ in range(2)]
    assert short[1].prompt_tokens_details.cached_tokens == 0
    # Disabled caching.
    off = oa(Simulator(prompt_cache=False))
    for _ in range(2):
        u = off.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "system", "content": LONG_SYSTEM}, *USER]).usage
        assert u.prompt_tokens_details.cached_tokens == 0


# --------------------------------------------------------------------------- OpenAI responses


def test_responses_create():
    r = oa(Simulator()).responses.create(model="gpt-4o-mini", input="Hello", instructions="Be brief.")
    assert r.object == "response" and r.status == "completed"
    assert r.model == "gpt-4o-mini-2024-07-18"
    assert r.output_text
    u = r.usage
    assert u.total_tokens == u.input_tokens + u.output_tokens
    assert u.input_tokens_details.cached_tokens == 0 and u.output_tokens_details.reasoning_tokens == 0


def test_responses_reasoning_and_caching():
    sim = Simulator()
    client = oa(sim)
    r = client.responses.create(model="gpt-5", input="Hi", instructions=LONG_SYSTEM)
    assert r.output[0].type == "reasoning" and r.output[1].type == "message"
    assert r.usage.output_tokens_details.reasoning_tokens > 0
    assert r.usage.output_tokens == r.usage.output_tokens_details.reasoning_tokens + len(r.output_text.split())
    r2 = client.responses.create(model="gpt-5", input="Something else", instructions=LONG_SYSTEM)
    cached = r2.usage.input_tokens_details.cached_tokens
    assert cached >= 1024 and cached % 128 == 0 and cached <= r2.usage.input_tokens


def test_responses_create_stream_events():
    plain = oa(Simulator()).responses.create(model="gpt-4o-mini", input="Hello")
    sim = Simulator()
    events = list(oa(sim).responses.create(model="gpt-4o-mini", input="Hello", stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert set(types[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.usage is None
    assert events[-1].response.usage == plain.usage
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == plain.output_text
    assert body(sim.requests[0])["stream"] is True


def test_responses_stream_wire_has_event_lines():
    with httpx2.Client(transport=httpx2.MockTransport(Simulator())) as http:
        raw = http.post("https://api.openai.com/v1/responses", json={"model": "gpt-4o", "input": "x", "stream": True})
    blocks = [b for b in raw.text.split("\n\n") if b]
    assert blocks[0].startswith("event: response.created\ndata: {")
    assert blocks[-1].startswith("event: response.completed\n")
    assert "[DONE]" not in raw.text


def test_responses_stream_helper_final_response():
    plain = oa(Simulator()).responses.create(model="gpt-4o-mini", input="Hello")
    with oa(Simulator()).responses.stream(model="gpt-4o-mini", input="Hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.usage == plain.usage
    assert final.output_text == plain.output_text == "".join(deltas)


class Answer(BaseModel):
    answer: str
    confidence: float


def test_responses_parse_and_function_calls():
    client = oa(Simulator())
    parsed = client.responses.parse(model="gpt-4o", input="x", text_format=Answer)
    assert isinstance(parsed.output_parsed, Answer)
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER}]
    r = client.responses.create(model="gpt-4o", input="weather?", tools=tools)
    assert r.output[0].type == "function_call" and json.loads(r.output[0].arguments)["city"]
    with client.responses.stream(model="gpt-4o", input="weather?", tools=tools) as stream:
        final = stream.get_final_response()
    assert final.output[0].arguments == r.output[0].arguments
    assert final.usage == r.usage


def test_responses_truncated_is_incomplete():
    client = oa(Simulator())
    r = client.responses.create(model="gpt-4o-mini", input="x", max_output_tokens=16)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 16
    events = list(client.responses.create(model="gpt-4o-mini", input="x", max_output_tokens=16, stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.usage == r.usage


# --------------------------------------------------------------------------- OpenAI embeddings and models


def test_embeddings_default_base64_decoded_by_sdk():
    sim = Simulator()
    e = oa(sim).embeddings.create(model="text-embedding-3-small", input=["alpha", "beta gamma"])
    assert body(sim.requests[0])["encoding_format"] == "base64"  # the SDK asks for base64 by default
    assert [d.index for d in e.data] == [0, 1]
    assert all(len(d.embedding) == 16 and isinstance(d.embedding[0], float) for d in e.data)
    assert abs(sum(v * v for v in e.data[0].embedding) - 1.0) < 1e-4
    assert e.usage.prompt_tokens == e.usage.total_tokens == count_text_tokens("alpha") + count_text_tokens("beta gamma")
    assert e.model == "text-embedding-3-small"


def test_embeddings_float_and_dimensions():
    sim = Simulator()
    e = oa(sim).embeddings.create(model="text-embedding-3-large", input="x", encoding_format="float", dimensions=8)
    assert len(e.data[0].embedding) == 8
    raw = sim.embedding_body({"model": "text-embedding-3-large", "input": "x", "encoding_format": "base64", "dimensions": 8})
    assert len(base64.b64decode(raw["data"][0]["embedding"])) == 8 * 4
    assert e.data[0].embedding == pytest.approx(oa(Simulator()).embeddings.create(model="text-embedding-3-large", input="x", dimensions=8).data[0].embedding)


def test_model_lists():
    ids = [m.id for m in oa(Simulator()).models.list()]
    assert "gpt-4o-mini" in ids and "gpt-4o-mini-2024-07-18" in ids
    claude = [m.id for m in an(Simulator()).models.list()]
    assert "claude-haiku-4-5-20251001" in claude


def test_any_base_url():
    sim = Simulator()
    client = oa(sim, base_url="http://localhost:11434/v1")
    r = client.chat.completions.create(model="llama3.2", messages=USER)
    assert r.model == "llama3.2"
    assert str(sim.requests[0].url) == "http://localhost:11434/v1/chat/completions"


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_message():
    m = an(Simulator()).messages.create(model=CLAUDE, max_tokens=300, messages=USER)
    assert m.type == "message" and m.model == "claude-haiku-4-5-20251001"
    assert m.stop_reason == "end_turn" and m.content[0].type == "text"
    u = m.usage
    assert u.input_tokens > 0 and u.output_tokens == len(m.content[0].text.split())
    assert u.cache_creation_input_tokens == 0 and u.cache_read_input_tokens == 0
    assert u.cache_creation.ephemeral_5m_input_tokens == 0 and u.cache_creation.ephemeral_1h_input_tokens == 0


def test_anthropic_create_stream_events():
    plain = an(Simulator()).messages.create(model=CLAUDE, max_tokens=300, messages=USER)
    sim = Simulator()
    events = list(an(sim).messages.create(model=CLAUDE, max_tokens=300, messages=USER, stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start, delta = events[0], events[-2]
    assert start.message.usage.output_tokens == 1
    assert start.message.usage.input_tokens == plain.usage.input_tokens
    assert delta.usage.output_tokens == plain.usage.output_tokens  # cumulative, not an increment
    assert delta.delta.stop_reason == "end_turn"
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == plain.content[0].text
    assert body(sim.requests[0])["stream"] is True
    assert "x-stainless-stream-helper" not in sim.requests[0].headers


def test_anthropic_stream_wire_has_ping_and_event_lines():
    with httpx2.Client(transport=httpx2.MockTransport(Simulator())) as http:
        payload = {"model": CLAUDE, "max_tokens": 20, "messages": USER, "stream": True}
        raw = http.post("https://api.anthropic.com/v1/messages", json=payload)
    blocks = [b for b in raw.text.split("\n\n") if b]
    assert all(b.startswith("event: ") for b in blocks)
    assert "event: ping\ndata: {\"type\":\"ping\"}" in blocks


def test_anthropic_stream_helper_final_message():
    plain = an(Simulator()).messages.create(model=CLAUDE, max_tokens=300, messages=USER)
    sim = Simulator()
    with an(sim).messages.stream(model=CLAUDE, max_tokens=300, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert text == plain.content[0].text
    req = sim.requests[0]
    assert body(req)["stream"] is True
    assert req.headers["x-stainless-helper-method"] == "stream"
    assert req.headers["x-stainless-stream-helper"] == "messages"


def test_anthropic_cache_control_write_then_read():
    sim = Simulator()
    client = an(sim)
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]

    def ask(q: str, system=system):
        return client.messages.create(model=CLAUDE, max_tokens=50, system=system, messages=[{"role": "user", "content": q}]).usage

    total = client.messages.count_tokens(model=CLAUDE, system=system, messages=[{"role": "user", "content": "one"}]).input_tokens
    first = ask("one")
    assert first.cache_read_input_tokens == 0 and first.cache_creation_input_tokens >= 1024
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens
    assert first.input_tokens + first.cache_creation_input_tokens == total  # input_tokens excludes the write
    second = ask("two")
    assert second.cache_creation_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.input_tokens < 20
    # A 1-hour breakpoint is a new prefix (different ttl, same text → same prefix: read).
    one_hour = [{"type": "text", "text": LONG_SYSTEM + " Extra.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    third = ask("three", system=one_hour)
    assert third.cache_creation.ephemeral_1h_input_tokens == third.cache_creation_input_tokens > 0
    assert third.cache_creation.ephemeral_5m_input_tokens == 0
    # Streams report the same numbers as plain calls.
    with client.messages.stream(model=CLAUDE, max_tokens=50, system=system, messages=[{"role": "user", "content": "two"}]) as s:
        streamed = s.get_final_message().usage
    assert streamed.cache_read_input_tokens == second.cache_read_input_tokens
    assert streamed.input_tokens == second.input_tokens and streamed.output_tokens == second.output_tokens


class Clock:
    def __init__(self) -> None:
        self.t = 1_790_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("ttl", [None, "1h"])
def test_anthropic_cache_expires_after_its_ttl_and_a_read_renews_it(ttl):
    clock = Clock()
    sim = Simulator(clock=clock)
    client = an(sim)
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": control}]
    life = 3600 if ttl else 300

    def ask(after: float):
        clock.t += after
        return client.messages.create(model=CLAUDE, max_tokens=20, system=system, messages=USER).usage

    assert ask(0).cache_creation_input_tokens > 0
    assert ask(life - 10).cache_read_input_tokens > 0  # within its life
    assert ask(life - 10).cache_read_input_tokens > 0  # the read renewed it: alive again for `life`
    expired = ask(life + 1)
    assert expired.cache_read_input_tokens == 0 and expired.cache_creation_input_tokens > 0  # written anew


def test_openai_cache_expires_after_five_idle_minutes():
    clock = Clock()
    sim = Simulator(clock=clock)
    client = oa(sim)
    messages = [{"role": "system", "content": LONG_SYSTEM}, *USER]

    def cached(after: float) -> int:
        clock.t += after
        details = client.chat.completions.create(model="gpt-4o-mini", messages=messages).usage.prompt_tokens_details
        return details.cached_tokens if details else 0

    assert cached(0) == 0
    assert cached(290) >= 1024 and cached(290) >= 1024  # each use keeps it alive
    assert cached(301) == 0 and cached(10) >= 1024  # expired, then cached again


def test_anthropic_two_breakpoints_and_automatic_caching():
    sim = Simulator()
    client = an(sim)
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    doc = [{"role": "user", "content": [{"type": "text", "text": "doc " * 1500, "cache_control": {"type": "ephemeral"}}]}]
    a = client.messages.create(model=CLAUDE, max_tokens=20, system=system, messages=doc).usage
    assert a.cache_creation.ephemeral_1h_input_tokens > 0 and a.cache_creation.ephemeral_5m_input_tokens > 0
    b = client.messages.create(model=CLAUDE, max_tokens=20, system=system, messages=doc).usage
    assert b.cache_creation_input_tokens == 0 and b.cache_read_input_tokens == a.cache_creation_input_tokens
    auto = client.messages.create(
        model=CLAUDE, max_tokens=20, cache_control={"type": "ephemeral"}, system=LONG_SYSTEM + "!", messages=USER
    ).usage
    assert auto.cache_creation_input_tokens > 1024 and auto.input_tokens < 10
    # Off: everything is plain input.
    off = an(Simulator(prompt_cache=False)).messages.create(model=CLAUDE, max_tokens=20, system=system, messages=doc).usage
    assert off.cache_creation_input_tokens == 0 and off.input_tokens == a.input_tokens + a.cache_creation_input_tokens


def test_anthropic_too_many_breakpoints_is_400():
    blocks = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError) as info:
        an(Simulator()).messages.create(model=CLAUDE, max_tokens=20, system=blocks, messages=USER)
    assert info.value.body["error"]["type"] == "invalid_request_error"


def test_anthropic_tool_use_and_structured_output():
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]
    client = an(Simulator())
    m = client.messages.create(model=CLAUDE, max_tokens=300, tools=tools, messages=USER)
    assert m.stop_reason == "tool_use" and m.content[0].type == "tool_use" and "city" in m.content[0].input
    with client.messages.stream(model=CLAUDE, max_tokens=300, tools=tools, messages=USER) as s:
        assert s.get_final_message().content[0].input == m.content[0].input
    follow = [*USER, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": m.content[0].id, "content": "sunny"}]}]
    assert client.messages.create(model=CLAUDE, max_tokens=300, tools=tools, messages=follow).stop_reason == "end_turn"
    parsed = client.messages.parse(model=CLAUDE, max_tokens=300, messages=USER, output_format=Answer)
    assert isinstance(parsed.parsed_output, Answer)


def test_anthropic_max_tokens():
    m = an(Simulator()).messages.create(model=CLAUDE, max_tokens=4, messages=USER)
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 4


# --------------------------------------------------------------------------- scripted failures


@pytest.mark.parametrize(
    ("status", "exc"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError), (503, openai.InternalServerError),
     (400, openai.BadRequestError), (401, openai.AuthenticationError), (404, openai.NotFoundError)],
)
def test_openai_status_errors(status, exc):
    sim = Simulator()
    sim.script(status)
    with pytest.raises(exc) as info:
        oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER)
    err = info.value
    assert err.status_code == status
    assert set(err.body) >= {"message", "type", "code"}  # the SDK keeps body["error"]
    if status == 429:
        assert err.body["code"] == "rate_limit_exceeded"
        assert err.response.headers["retry-after"] and err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.response.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("status", "exc", "kind"),
    [(429, anthropic.RateLimitError, "rate_limit_error"), (500, anthropic.InternalServerError, "api_error"),
     (529, anthropic.OverloadedError, "overloaded_error"), (503, anthropic.ServiceUnavailableError, "api_error")],
)
def test_anthropic_status_errors(status, exc, kind):
    sim = Simulator()
    sim.script(status)
    with pytest.raises(exc) as info:
        an(sim).messages.create(model=CLAUDE, max_tokens=20, messages=USER)
    err = info.value
    assert isinstance(err, anthropic.APIStatusError) and err.status_code == status
    assert err.body["type"] == "error" and err.body["error"]["type"] == kind  # the whole body, unlike openai
    assert err.response.headers["request-id"].startswith("req_")
    if status in (429, 529):
        assert err.response.headers["retry-after"]


def test_overloaded_is_an_internal_server_error():
    assert issubclass(anthropic.OverloadedError, anthropic.InternalServerError)


@pytest.mark.parametrize(
    ("outcome", "exc"),
    [(httpx2.ConnectTimeout("connect timed out"), "APITimeoutError"), (httpx2.ReadTimeout, "APITimeoutError"),
     (httpx2.ConnectError("refused"), "APIConnectionError")],
)
def test_transport_exceptions(outcome, exc):
    sim = Simulator()
    sim.script(outcome, outcome)
    with pytest.raises(getattr(openai, exc)) as oi:
        oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER)
    with pytest.raises(getattr(anthropic, exc)) as ai:
        an(sim).messages.create(model=CLAUDE, max_tokens=20, messages=USER)
    if exc == "APIConnectionError":
        assert not isinstance(oi.value, openai.APITimeoutError) and not isinstance(ai.value, anthropic.APITimeoutError)
    assert len(sim.requests) == 2


def test_retries_consume_the_script_in_order():
    sim = Simulator()
    sim.script(429, 500, "ok")
    r = oa(sim, max_retries=2).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert r.usage.total_tokens > 0
    assert [q.headers["x-stainless-retry-count"] for q in sim.requests] == ["0", "1", "2"]
    sim.script(529, httpx2.ConnectError("reset"), None)
    m = an(sim, max_retries=2).messages.create(model=CLAUDE, max_tokens=20, messages=USER)
    assert m.usage.output_tokens > 0
    assert [q.url.path for q in sim.requests] == ["/v1/chat/completions"] * 3 + ["/v1/messages"] * 3
    assert sim.pending == 0


def test_cut_stream_raises_mid_iteration():
    sim = Simulator()
    sim.script("cut")
    got = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}):
            got.append(chunk)
    assert 1 <= len(got) <= 3 and all(c.usage is None for c in got)

    sim.script(("cut", 5))
    got = []
    with pytest.raises(openai.APIConnectionError):
        with oa(sim).responses.stream(model="gpt-4o-mini", input="x") as stream:
            for event in stream:
                got.append(event)
    assert len(got) == 5

    # The Anthropic SDK does not wrap errors raised while reading a stream.
    sim.script("cut")
    got = []
    with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)):
        with an(sim).messages.stream(model=CLAUDE, max_tokens=50, messages=USER) as stream:
            for event in stream:
                got.append(event)
    assert got and got[0].type == "message_start"


def test_cut_plain_body_is_a_connection_error():
    sim = Simulator()
    sim.script("cut", "cut")
    with pytest.raises(openai.APIConnectionError):
        oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER)
    with pytest.raises(anthropic.APIConnectionError):
        an(sim).messages.create(model=CLAUDE, max_tokens=20, messages=USER)


def test_malformed_and_html_bodies():
    sim = Simulator()
    sim.script("malformed", "malformed", "html", "malformed")
    with pytest.raises(json.JSONDecodeError):
        oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER)
    with pytest.raises(json.JSONDecodeError):
        an(sim).messages.create(model=CLAUDE, max_tokens=20, messages=USER)
    # A 200 that is not JSON at all: the SDK hands back the text.
    assert isinstance(oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER), str)
    with pytest.raises(json.JSONDecodeError):
        list(an(sim).messages.create(model=CLAUDE, max_tokens=20, messages=USER, stream=True))


def test_no_usage_outcome():
    sim = Simulator()
    sim.script("no_usage", "no_usage", "no_usage", "no_usage", "no_usage")
    assert oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER).usage is None
    chunks = list(oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}))
    assert all(c.usage is None for c in chunks) and chunks[-1].choices
    assert oa(sim).responses.create(model="gpt-4o-mini", input="x").usage is None
    assert oa(sim).embeddings.create(model="text-embedding-3-small", input="x").usage is None
    assert an(sim).messages.create(model=CLAUDE, max_tokens=20, messages=USER).usage is None


def test_script_rejects_unknown_outcomes():
    sim = Simulator()
    with pytest.raises(ValueError):
        sim.script("explode")
    with pytest.raises(ValueError):
        sim.script(200)
    assert sim.pending == 0


# --------------------------------------------------------------------------- determinism, error rate, latency


def _raw(sim: Simulator, url: str, payload: dict) -> bytes:
    with httpx2.Client(transport=httpx2.MockTransport(sim)) as http:
        return http.post(url, json=payload).content


def test_determinism():
    chat = {"model": "gpt-4o-mini", "messages": USER}
    msg = {"model": CLAUDE, "max_tokens": 200, "messages": USER}
    for url, payload in [("https://api.openai.com/v1/chat/completions", chat), ("https://api.anthropic.com/v1/messages", msg)]:
        assert _raw(Simulator(seed=7), url, payload) == _raw(Simulator(seed=7), url, payload)
        assert _raw(Simulator(seed=7), url, payload) != _raw(Simulator(seed=8), url, payload)
    # Within one simulator: the same request, the same answer and counts (ids differ).
    client = oa(Simulator())
    a, b = (client.chat.completions.create(model="gpt-4o-mini", messages=USER) for _ in range(2))
    assert a.choices[0].message.content == b.choices[0].message.content and a.usage == b.usage and a.id != b.id
    # Streamed or not: the same text and counts.
    s = list(client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}))
    assert s[-1].usage == a.usage


def test_error_rate_is_reproducible():
    def statuses(seed: int, url: str, payload: dict) -> list[int]:
        sim = Simulator(seed=seed, error_rate=0.3)
        with httpx2.Client(transport=httpx2.MockTransport(sim)) as http:
            return [http.post(url, json=payload).status_code for _ in range(300)]

    chat = ("https://api.openai.com/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER})
    first = statuses(3, *chat)
    assert first == statuses(3, *chat)
    failed = [s for s in first if s != 200]
    assert 60 <= len(failed) <= 120 and set(failed) == {429, 500}
    msgs = ("https://api.anthropic.com/v1/messages", {"model": CLAUDE, "max_tokens": 10, "messages": USER})
    assert {s for s in statuses(3, *msgs) if s != 200} == {429, 500, 529}
    every = Simulator(error_rate=1.0)
    with pytest.raises(openai.APIStatusError):
        oa(every).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert [m.id for m in oa(every).models.list()]  # readiness checks never fail at random


def test_latency_and_chunk_delay_use_the_injected_sleep():
    waits: list[float] = []
    sim = Simulator(latency=lambda request: 0.25, sleep=waits.append, chunk_delay=0.01)
    oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert waits == [0.25]
    chunks = list(oa(sim).chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
    assert waits[1] == 0.25 and waits[2:] == [0.01] * len(chunks)  # between chunks, [DONE] included
    # No sleep given: no waiting at all.
    Simulator(latency=lambda request: 100.0)(httpx2.Request("GET", "https://api.openai.com/v1/models"))


async def test_async_latency_uses_async_sleep():
    waits: list[float] = []

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    sim = Simulator(latency=lambda request: 0.5, async_sleep=asleep, chunk_delay=0.01)
    client = async_openai_client(sim)  # wires sim.handle_async
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    n = 0
    async for _ in stream:
        n += 1
    assert waits[0] == 0.5 and waits[1:] == [0.01] * n


def test_consumer_can_stop_mid_stream():
    sim = Simulator()
    client = oa(sim)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    first = next(iter(stream))
    stream.close()
    assert first.choices[0].delta.role == "assistant"
    assert client.chat.completions.create(model="gpt-4o-mini", messages=USER).usage.total_tokens > 0


# --------------------------------------------------------------------------- async clients


async def test_async_openai_over_plain_mock_transport():
    sim = Simulator()
    client = aoa(sim)
    r = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[-1].usage == r.usage
    async with client.responses.stream(model="gpt-4o-mini", input="Hello") as rs:
        final = await rs.get_final_response()
    events = [e async for e in await client.responses.create(model="gpt-4o-mini", input="Hello", stream=True)]
    assert final.usage == events[-1].response.usage and final.usage.output_tokens > 0
    e = await client.embeddings.create(model="text-embedding-3-small", input="x")
    assert len(e.data[0].embedding) == 16


async def test_async_anthropic():
    sim = Simulator()
    client = aan(sim)
    m = await client.messages.create(model=CLAUDE, max_tokens=100, messages=USER)
    async with client.messages.stream(model=CLAUDE, max_tokens=100, messages=USER) as s:
        final = await s.get_final_message()
    assert final.usage.output_tokens == m.usage.output_tokens
    events = [e async for e in await client.messages.create(model=CLAUDE, max_tokens=100, messages=USER, stream=True)]
    assert events[-2].usage.output_tokens == m.usage.output_tokens
    sim.script(529)
    with pytest.raises(anthropic.OverloadedError):
        await client.messages.create(model=CLAUDE, max_tokens=100, messages=USER)


async def test_async_cut_and_timeouts():
    sim = Simulator()
    sim.script("cut", httpx2.ReadTimeout, "cut")
    client = aoa(sim)
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)):
        async with async_anthropic_client(sim).messages.stream(model=CLAUDE, max_tokens=50, messages=USER) as s:
            await s.get_final_message()


def test_convenience_constructors():
    sim = Simulator()
    assert openai_client(sim).chat.completions.create(model="gpt-4o", messages=USER).model == "gpt-4o-2024-08-06"
    assert anthropic_client(sim).messages.create(model=CLAUDE, max_tokens=10, messages=USER).usage.output_tokens <= 10
    assert openai_client().models.list().data  # a fresh simulator of its own
    assert len(sim.requests) == 2


# --------------------------------------------------------------------------- fixtures and schemas


def test_raw_body_helpers():
    sim = Simulator()
    chat = sim.chat_completion_body({"model": "gpt-4o", "messages": USER})
    assert chat["usage"]["total_tokens"] == chat["usage"]["prompt_tokens"] + chat["usage"]["completion_tokens"]
    chunks = sim.chat_completion_chunks({"model": "gpt-4o", "messages": USER, "stream": True, "stream_options": {"include_usage": True}})
    assert chunks[-1]["usage"] == chat["usage"]
    events = sim.message_events({"model": CLAUDE, "max_tokens": 50, "messages": USER})
    assert [name for name, _ in events][:3] == ["message_start", "content_block_start", "ping"]
    assert sim.message_body({"model": CLAUDE, "max_tokens": 50, "messages": USER})["usage"]["output_tokens"] == events[-2][1]["usage"]["output_tokens"]
    assert sim.response_events({"model": "gpt-4o", "input": "x"})[-1]["response"]["usage"] == sim.response_body({"model": "gpt-4o", "input": "x"})["usage"]


def test_example_from_schema():
    schema = {
        "type": "object",
        "properties": {
            "kind": {"enum": ["a", "b"]},
            "when": {"type": "string", "format": "date"},
            "child": {"$ref": "#/$defs/Child"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 3}]},
            "optional": {"type": "string"},
        },
        "required": ["kind", "when", "child", "maybe"],
        "$defs": {"Child": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}},
    }
    assert example_from_schema(schema) == {"kind": "a", "when": "2026-01-01", "child": {"ok": True}, "maybe": 3}
    assert example_from_schema({"not": "a schema"}) == {}


def test_no_deprecation_warnings_for_default_models():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        an(Simulator()).messages.create(model=CLAUDE, max_tokens=10, messages=USER)
