"""CheapFirst fallback over real SDK clients and the offline simulator: what is sent, returned, raised and recorded."""

from __future__ import annotations

import json

import anthropic
import httpx2
import openai
import pydantic
import pytest

import costtrack
from costtrack.errors import ConfigError
from costtrack.fallback import CheapFirst, failure_reason, is_retryable
from costtrack.simulator import (
    Simulator,
    anthropic_client,
    async_anthropic_client,
    async_openai_client,
    openai_client,
)

MESSAGES = [{"role": "user", "content": "Summarize the quarterly report in two sentences."}]
CHAIN = ["gpt-4o-mini", "gpt-4o"]
CLAUDE = ["claude-haiku-4-5", "claude-opus-4-5"]
MTOK = 1_000_000
# List prices per 1M tokens (input, output); cached input is half the input price.
PRICES = {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60)}


def sent(sim: Simulator) -> list[str]:
    """The models the provider received, in order."""
    return [json.loads(request.content)["model"] for request in sim.requests]


def by_attempt(records):
    return sorted(records, key=lambda r: r.attempt)


def hand_cost(model: str, rec) -> float:
    rate_in, rate_out = PRICES[model]
    uncached = rec.tokens_input - rec.tokens_cached_input
    return (uncached * rate_in + rec.tokens_cached_input * rate_in / 2 + rec.tokens_output * rate_out) / MTOK


def chat(client, **kw):
    return client.chat.completions.create(**{"model": "gpt-4o", "messages": MESSAGES, **kw})


def claude(client, **kw):
    return client.messages.create(**{"model": "claude-opus-4-5", "max_tokens": 64, "messages": MESSAGES, **kw})


# --------------------------------------------------------------------------- escalation on failures


@pytest.mark.parametrize(
    "outcome, reason, error_type",
    [
        pytest.param(429, "rate_limit_exceeded", "rate_limit_exceeded", id="429"),
        pytest.param(503, "server_error", "server_error", id="503"),
        pytest.param(500, "server_error", "server_error", id="500"),
        pytest.param(httpx2.ReadTimeout("read timed out"), "timeout", "timeout", id="timeout"),
        pytest.param(httpx2.ConnectError("refused"), "connection_error", "connection_error", id="connect"),
    ],
)
def test_openai_escalates_on_retryable_failures(tracker, records, outcome, reason, error_type):
    sim = Simulator()
    sim.script(outcome)
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    answer = chat(client)
    assert type(answer) is openai.types.chat.ChatCompletion
    assert answer.model == "gpt-4o-2024-08-06"
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o"]
    first, second = by_attempt(records())
    assert (first.attempt, first.model_requested, first.status, first.error_type) == (1, "gpt-4o-mini", "error", error_type)
    assert first.tags == {"fallback_chain": "gpt-4o-mini>gpt-4o", "fallback_requested": "gpt-4o", "fallback_reason": reason}
    # Refused (an HTTP error) or never sent: $0. A read timeout came after the request was sent: unknown.
    assert first.cost_usd == (None if isinstance(outcome, httpx2.ReadTimeout) else 0.0)
    assert (second.attempt, second.model_requested, second.status) == (2, "gpt-4o", "ok")
    assert "fallback_reason" not in second.tags and second.tags["fallback_chain"] == "gpt-4o-mini>gpt-4o"
    assert second.cost_saved_usd == pytest.approx(0.0)  # answered by the model asked for: nothing saved


@pytest.mark.parametrize("status, reason", [(529, "overloaded_error"), (429, "rate_limit_exceeded"), (500, "server_error")])
def test_anthropic_escalates_on_overloaded_and_rate_limits(tracker, records, status, reason):
    sim = Simulator()
    sim.script(status)
    client = costtrack.wrap(anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE))
    answer = claude(client)
    assert type(answer) is anthropic.types.Message and answer.model == "claude-opus-4-5-20251101"
    assert sent(sim) == ["claude-haiku-4-5", "claude-opus-4-5"]
    first, second = by_attempt(records())
    assert (first.provider, first.attempt, first.tags["fallback_reason"]) == ("anthropic", 1, reason)
    assert (second.attempt, second.status, second.model_requested) == (2, "ok", "claude-opus-4-5")


async def test_async_openai_escalates_through_the_whole_chain(tracker, records):
    sim = Simulator()
    sim.script(429, httpx2.ReadTimeout("read timed out"))
    client = costtrack.wrap(
        async_openai_client(sim), tracker=tracker, fallback=CheapFirst(["gpt-4.1-nano", "gpt-4o-mini", "gpt-4o"])
    )
    answer = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert answer.model == "gpt-4o-2024-08-06"
    assert sent(sim) == ["gpt-4.1-nano", "gpt-4o-mini", "gpt-4o"]
    recs = by_attempt(await _arecords(tracker))
    assert [(r.attempt, r.model_requested, r.tags.get("fallback_reason")) for r in recs] == [
        (1, "gpt-4.1-nano", "rate_limit_exceeded"), (2, "gpt-4o-mini", "timeout"), (3, "gpt-4o", None),
    ]  # fmt: skip


async def test_async_anthropic_escalates_on_overloaded(tracker, records):
    sim = Simulator()
    sim.script(529)
    client = costtrack.wrap(async_anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE))
    answer = await claude(client)
    assert answer.model == "claude-opus-4-5-20251101"
    assert sent(sim) == ["claude-haiku-4-5", "claude-opus-4-5"]
    first, second = by_attempt(await _arecords(tracker))
    assert first.tags["fallback_reason"] == "overloaded_error" and second.status == "ok"


async def _arecords(tracker):
    await tracker.aflush()
    return tracker.records()


# --------------------------------------------------------------------------- every model fails


def test_raises_the_last_error_as_the_sdks_own_type(tracker, records):
    sim = Simulator()
    sim.script(429, 500)
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    with pytest.raises(openai.InternalServerError) as info:
        chat(client)
    assert type(info.value) is openai.InternalServerError and info.value.status_code == 500
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o"]
    first, second = by_attempt(records())
    assert first.tags["fallback_reason"] == "rate_limit_exceeded"
    assert second.tags["fallback_reason"] == "server_error" and second.tags["fallback_exhausted"] is True
    assert "fallback_exhausted" not in first.tags


def test_anthropic_raises_overloaded_error_when_every_model_is_overloaded(tracker, records):
    sim = Simulator()
    sim.script(529, 529)
    client = costtrack.wrap(anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE))
    with pytest.raises(anthropic.OverloadedError) as info:
        claude(client)
    assert info.value.status_code == 529
    assert sent(sim) == ["claude-haiku-4-5", "claude-opus-4-5"]
    assert [r.attempt for r in by_attempt(records())] == [1, 2]


async def test_async_raises_the_sdks_timeout_error(tracker, records):
    sim = Simulator()
    sim.script(429, httpx2.ReadTimeout("read timed out"))
    client = costtrack.wrap(async_openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o"]


def test_non_retryable_errors_are_raised_at_once(tracker, records):
    sim = Simulator()
    sim.script(400)
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    with pytest.raises(openai.BadRequestError):
        chat(client)
    assert sent(sim) == ["gpt-4o-mini"]
    [rec] = records()
    assert rec.attempt == 1 and "fallback_reason" not in rec.tags


# --------------------------------------------------------------------------- rejection, cost saved


def test_rejected_answer_escalates_and_keeps_its_cost(tracker, records):
    sim = Simulator()
    seen = []

    def accept(response):
        seen.append(response.model)
        return not response.model.startswith("gpt-4o-mini")

    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN, accept=accept))
    answer = chat(client)
    assert answer.model == "gpt-4o-2024-08-06"
    assert seen == ["gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"]
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o"]
    rejected, accepted = by_attempt(records())
    assert rejected.status == "ok" and rejected.tags["fallback_reason"] == "rejected"
    assert rejected.cost_usd == pytest.approx(hand_cost("gpt-4o-mini", rejected)) and rejected.cost_usd > 0
    assert rejected.cost_saved_usd is None  # it was not the answer
    assert accepted.cost_usd == pytest.approx(hand_cost("gpt-4o", accepted))
    assert accepted.cost_saved_usd == pytest.approx(0.0)


def test_calls_an_accept_judge_makes_are_records_of_their_own(tracker, records):
    # The LLM-judge pattern: accept() asks a model through a wrapped client. Its calls are not chain attempts.
    sim = Simulator()
    judge_client = costtrack.wrap(openai_client(sim), tracker=tracker, endpoint="/judge")

    def accept(response):
        verdict = judge_client.chat.completions.create(model="gpt-4.1-nano", messages=[{"role": "user", "content": "ok?"}])
        return verdict is not None and not response.model.startswith("gpt-4o-mini")

    client = costtrack.wrap(openai_client(sim), tracker=tracker, endpoint="/api/chat", fallback=CheapFirst(CHAIN, accept=accept))
    chat(client)
    recs = records()
    judged = [r for r in recs if r.endpoint == "/judge"]
    chain = by_attempt([r for r in recs if r.endpoint == "/api/chat"])
    assert len(judged) == 2 and all(r.attempt == 1 and "fallback_chain" not in r.tags for r in judged)
    assert all(r.cost_saved_usd is None for r in judged)
    assert [(r.attempt, r.model_requested, r.tags.get("fallback_reason")) for r in chain] == [
        (1, "gpt-4o-mini", "rejected"), (2, "gpt-4o", None),
    ]  # fmt: skip


def test_messages_given_as_a_generator_reach_every_step(tracker, records):
    sim = Simulator()
    sim.script(429)  # the cheap model is rate limited: the chain sends the messages a second time
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    client.chat.completions.create(model="gpt-4o", messages=(m for m in MESSAGES))
    bodies = [json.loads(request.content) for request in sim.requests]
    assert [b["model"] for b in bodies] == ["gpt-4o-mini", "gpt-4o"]
    assert all(b["messages"] == MESSAGES for b in bodies)


async def test_async_rejection(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(
        async_anthropic_client(sim), tracker=tracker,
        fallback=CheapFirst(CLAUDE, accept=lambda m: m.model.startswith("claude-opus")),
    )  # fmt: skip
    answer = await claude(client)
    assert answer.model.startswith("claude-opus")
    assert sent(sim) == ["claude-haiku-4-5", "claude-opus-4-5"]
    rejected, accepted = by_attempt(await _arecords(tracker))
    assert rejected.tags["fallback_reason"] == "rejected" and rejected.cost_usd > 0
    assert accepted.cost_usd > 0 and accepted.cost_saved_usd == pytest.approx(0.0)


def test_when_every_answer_is_rejected_the_last_one_is_returned(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN, accept=lambda r: False))
    answer = chat(client)
    assert answer.model == "gpt-4o-2024-08-06"
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o"]
    first, last = by_attempt(records())
    assert first.tags["fallback_reason"] == last.tags["fallback_reason"] == "rejected"
    assert last.tags["fallback_exhausted"] is True and last.cost_saved_usd == pytest.approx(0.0)


def test_cost_saved_by_the_cheap_answer_equals_the_list_price_difference(tracker, records):
    sim = Simulator()
    long_prompt = [{"role": "user", "content": "Context: " + "quarterly revenue figures and notes. " * 400}]
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    client.chat.completions.create(model="gpt-4o", messages=long_prompt)
    client.chat.completions.create(model="gpt-4o", messages=long_prompt)  # the prefix is cached now
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o-mini"]
    first, second = sorted(records(), key=lambda r: r.timestamp)
    assert first.tokens_cached_input == 0 and second.tokens_cached_input >= 1024
    for rec in (first, second):
        assert rec.cost_usd == pytest.approx(hand_cost("gpt-4o-mini", rec))
        assert rec.cost_saved_usd == pytest.approx(hand_cost("gpt-4o", rec) - hand_cost("gpt-4o-mini", rec))
        assert rec.cost_saved_usd > 0
        assert rec.tags == {"fallback_chain": "gpt-4o-mini>gpt-4o", "fallback_requested": "gpt-4o",
                            "fallback_saved_against": "openai:gpt-4o"}  # fmt: skip
    # By hand, for the cached call: uncached input at $2.50 - $0.15, cached at $1.25 - $0.075, output at $10 - $0.60.
    uncached = second.tokens_input - second.tokens_cached_input
    by_hand = (uncached * 2.35 + second.tokens_cached_input * 1.175 + second.tokens_output * 9.40) / MTOK
    assert second.cost_saved_usd == pytest.approx(by_hand)


def test_net_saving_counts_rejected_attempts(tracker, records):
    sim = Simulator()
    verdicts = iter([False, True])  # the first cheap answer is rejected, the second call's is accepted
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN, accept=lambda r: next(verdicts) if r.model.startswith("gpt-4o-mini") else True))
    chat(client)
    chat(client)
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]
    recs = records()
    saved = sum(r.cost_saved_usd or 0.0 for r in recs)
    wasted = sum(r.cost_usd for r in recs if r.tags.get("fallback_reason") == "rejected")
    cheap_ok = [r for r in recs if r.cost_saved_usd and r.cost_saved_usd > 0]
    assert len(cheap_ok) == 1 and wasted > 0
    assert saved - wasted == pytest.approx(
        hand_cost("gpt-4o", cheap_ok[0]) - hand_cost("gpt-4o-mini", cheap_ok[0]) - wasted
    )


# --------------------------------------------------------------------------- streams


def test_stream_escalates_on_a_failure_before_the_first_event(tracker, records):
    sim = Simulator()
    sim.script(429, ("cut", 0))  # gpt-4o-mini refuses; gpt-4.1-mini's stream breaks before its first event
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"]))
    stream = chat(client, stream=True)
    assert type(stream) is openai.Stream
    assert sent(sim) == ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"]  # the first event arrived before the return
    chunks = list(stream)
    assert chunks[0].model == "gpt-4o-2024-08-06"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and all(c.choices for c in chunks)  # the usage-only chunk stays hidden
    recs = by_attempt(records())
    assert [(r.attempt, r.model_requested, r.status, r.tags.get("fallback_reason")) for r in recs] == [
        (1, "gpt-4o-mini", "error", "rate_limit_exceeded"),
        (2, "gpt-4.1-mini", "error", "connection_error"),
        (3, "gpt-4o", "ok", None),
    ]
    assert recs[2].cost_usd > 0 and recs[2].ttft_ms is not None and recs[2].cost_saved_usd == pytest.approx(0.0)


def test_a_stream_that_fails_after_its_first_event_is_the_apps(tracker, records):
    sim = Simulator()
    sim.script(("cut", 2))
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    stream = chat(client, stream=True)
    with pytest.raises(openai.APIConnectionError):
        list(stream)
    assert sent(sim) == ["gpt-4o-mini"]
    [rec] = records()
    assert rec.status == "error" and rec.attempt == 1 and "fallback_reason" not in rec.tags


def test_accepted_stream_records_what_it_saved(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE))
    stream = claude(client, stream=True)
    assert type(stream) is anthropic.Stream
    events = [event.type for event in stream]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert sent(sim) == ["claude-haiku-4-5"]
    [rec] = records()
    assert rec.status == "ok" and rec.cost_usd > 0 and rec.cost_saved_usd > 0  # Opus costs more than Haiku
    assert rec.tags["fallback_requested"] == "claude-opus-4-5"
    assert rec.tags["fallback_saved_against"] == "anthropic:claude-opus-4-5"  # the stream's call, ended late


@pytest.mark.parametrize("outcome", [529, ("cut", 0)], ids=["overloaded", "cut-before-the-first-event"])
def test_anthropic_stream_helper_moves_along_the_chain(tracker, records, outcome):
    sim = Simulator()
    sim.script(outcome)
    client = costtrack.wrap(anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE))
    manager = client.messages.stream(model="claude-opus-4-5", max_tokens=64, messages=MESSAGES)
    assert isinstance(manager, anthropic.lib.streaming.MessageStreamManager) and sim.requests == []  # sent on entering
    with manager as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text and final.model.startswith("claude-opus-4-5")
    assert sent(sim) == ["claude-haiku-4-5", "claude-opus-4-5"]
    first, second = by_attempt(records())
    assert first.model_requested == "claude-haiku-4-5" and first.status == "error" and "fallback_reason" in first.tags
    assert (second.model_requested, second.status, second.cost_saved_usd) == ("claude-opus-4-5", "ok", 0.0)
    assert second.tags["fallback_saved_against"] == "anthropic:claude-opus-4-5"


def test_anthropic_stream_helper_answered_by_the_cheap_model_records_what_it_saved(tracker, records):
    sim = Simulator()
    bare = [event.type for event in anthropic_client(Simulator()).messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES).__enter__()]  # fmt: skip
    client = costtrack.wrap(anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE))
    with client.messages.stream(model="claude-opus-4-5", max_tokens=64, messages=MESSAGES) as stream:
        assert type(stream) is anthropic.lib.streaming.MessageStream
        events = [event.type for event in stream]
    assert events == bare  # the same events the SDK's own helper gives
    assert sent(sim) == ["claude-haiku-4-5"]
    assert [r.headers.get("x-stainless-helper-method") for r in sim.requests] == ["stream"]  # the helper's own request
    [rec] = records()
    assert rec.status == "ok" and rec.attempt == 1 and rec.cost_saved_usd > 0  # Opus costs more than Haiku


def test_anthropic_stream_helper_for_a_model_outside_the_chain_is_the_sdks_own(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE))
    manager = client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
    assert type(manager) is anthropic.lib.streaming.MessageStreamManager
    with manager as stream:
        stream.until_done()
    assert sent(sim) == ["claude-sonnet-4-5"] and "fallback_chain" not in records()[0].tags


async def test_async_anthropic_stream_helper_moves_along_the_chain(tracker, records):
    sim = Simulator()
    sim.script(529)
    client = costtrack.wrap(async_anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE))
    manager = client.messages.stream(model="claude-opus-4-5", max_tokens=64, messages=MESSAGES)
    assert isinstance(manager, anthropic.lib.streaming.AsyncMessageStreamManager)
    async with manager as stream:
        assert type(stream) is anthropic.lib.streaming.AsyncMessageStream
        text = "".join([piece async for piece in stream.text_stream])
    assert text and sent(sim) == ["claude-haiku-4-5", "claude-opus-4-5"]
    first, second = by_attempt(records())
    assert first.tags["fallback_reason"] == "overloaded_error" and second.status == "ok"


def test_anthropic_beta_messages_move_along_the_chain(tracker, records):
    """client.beta.messages went straight to the model asked for (review finding): the chain covers the beta twins."""
    sim = Simulator()
    sim.script(529)
    client = costtrack.wrap(anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE))
    answer = client.beta.messages.create(model="claude-opus-4-5", max_tokens=64, messages=MESSAGES)
    assert type(answer) is anthropic.types.beta.BetaMessage and answer.model.startswith("claude-opus-4-5")
    manager = client.beta.messages.stream(model="claude-opus-4-5", max_tokens=64, messages=MESSAGES)
    assert isinstance(manager, anthropic.lib.streaming.BetaMessageStreamManager) and len(sim.requests) == 2
    with manager as stream:
        assert type(stream) is anthropic.lib.streaming.BetaMessageStream
        text = "".join(stream.text_stream)
    assert text and sent(sim) == ["claude-haiku-4-5", "claude-opus-4-5", "claude-haiku-4-5"]
    first, second, third = by_attempt(records())[:1] + sorted(by_attempt(records())[1:], key=lambda r: r.timestamp)
    assert first.tags["fallback_reason"] == "overloaded_error" and second.model_requested == "claude-opus-4-5"
    assert third.model_requested == "claude-haiku-4-5" and third.status == "ok" and third.cost_saved_usd > 0


async def test_async_anthropic_beta_messages_move_along_the_chain(tracker, records):
    sim = Simulator()
    sim.script(529)
    client = costtrack.wrap(async_anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE))
    answer = await client.beta.messages.create(model="claude-opus-4-5", max_tokens=64, messages=MESSAGES)
    assert answer.model.startswith("claude-opus-4-5") and sent(sim) == ["claude-haiku-4-5", "claude-opus-4-5"]
    async with client.beta.messages.stream(model="claude-opus-4-5", max_tokens=64, messages=MESSAGES) as stream:
        assert type(stream) is anthropic.lib.streaming.BetaAsyncMessageStream
        final = await stream.get_final_message()
    assert final.model.startswith("claude-haiku-4-5") and sent(sim)[-1] == "claude-haiku-4-5"


def test_anthropic_stream_helper_raises_the_last_error_when_every_model_fails(tracker, records):
    sim = Simulator()
    sim.script(529, 529)
    client = costtrack.wrap(anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE))
    with pytest.raises(anthropic.APIStatusError) as raised:
        with client.messages.stream(model="claude-opus-4-5", max_tokens=64, messages=MESSAGES):
            pass
    assert raised.value.status_code == 529
    assert [r.status for r in by_attempt(records())] == ["error", "error"]
    assert by_attempt(records())[-1].tags.get("fallback_exhausted") is True


async def test_async_stream_escalates_before_the_first_event(tracker, records):
    sim = Simulator()
    sim.script(529, ("cut", 0))
    client = costtrack.wrap(
        async_anthropic_client(sim), tracker=tracker, fallback=CheapFirst(["claude-haiku-4-5", "claude-opus-4-1", "claude-opus-4-5"])
    )
    stream = await claude(client, stream=True)
    assert type(stream) is anthropic.AsyncStream
    assert sent(sim) == ["claude-haiku-4-5", "claude-opus-4-1", "claude-opus-4-5"]
    events = [event.type async for event in stream]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    recs = by_attempt(await _arecords(tracker))
    assert [(r.attempt, r.tags.get("fallback_reason")) for r in recs] == [(1, "overloaded_error"), (2, "connection_error"), (3, None)]
    assert recs[2].status == "ok" and recs[2].cost_usd > 0


async def test_async_openai_stream(tracker, records):
    sim = Simulator()
    sim.script(503)
    client = costtrack.wrap(async_openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert type(stream) is openai.AsyncStream
    chunks = [c async for c in stream]
    assert chunks[0].model == "gpt-4o-2024-08-06"
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o"]
    recs = by_attempt(await _arecords(tracker))
    assert [(r.attempt, r.status) for r in recs] == [(1, "error"), (2, "ok")]


def test_chat_stream_helper_goes_through_the_chain(tracker, records):
    sim = Simulator()
    sim.script(429)
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    assert final.model == "gpt-4o-2024-08-06"
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o"]
    assert [r.attempt for r in by_attempt(records())] == [1, 2]


# --------------------------------------------------------------------------- (client, model) chains


def test_local_first_then_the_api(tracker, records):
    local, api = Simulator(), Simulator()
    local.script(httpx2.ConnectError("connection refused"))  # Ollama is not running
    ollama = openai_client(local, base_url="http://localhost:11434/v1", api_key="ollama")
    client = costtrack.wrap(openai_client(api), tracker=tracker, fallback=CheapFirst([(ollama, "llama3.2"), "gpt-4o-mini"]))
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.model == "gpt-4o-mini-2024-07-18"
    assert sent(local) == ["llama3.2"] and sent(api) == ["gpt-4o-mini"]
    first, second = by_attempt(records())
    assert (first.provider, first.model_requested, first.tags["fallback_reason"]) == ("ollama", "llama3.2", "connection_error")
    assert (second.provider, second.model_requested, second.status) == ("openai", "gpt-4o-mini", "ok")
    assert first.tags["fallback_chain"] == second.tags["fallback_chain"] == "ollama:llama3.2>gpt-4o-mini"
    assert ollama._client._transport.__class__.__name__ == "MockTransport"  # the app's client is left as it was


def test_local_answer_is_used_when_it_works(tracker, records):
    local, api = Simulator(), Simulator()
    ollama = openai_client(local, base_url="http://localhost:11434/v1", api_key="ollama")
    client = costtrack.wrap(openai_client(api), tracker=tracker, fallback=CheapFirst([(ollama, "llama3.2"), "gpt-4o-mini"]))
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.model == "llama3.2"
    assert sent(local) == ["llama3.2"] and sent(api) == []
    [rec] = records()
    assert rec.provider == "ollama" and rec.attempt == 1 and rec.status == "ok"
    assert rec.tags["fallback_saved_against"] == "openai:gpt-4o-mini"  # the app's own client's provider, for reprice


async def test_async_local_first(tracker, records):
    local, api = Simulator(), Simulator()
    local.script(503)
    ollama = async_openai_client(local, base_url="http://localhost:11434/v1", api_key="ollama")
    already = costtrack.wrap(ollama, tracker=tracker, endpoint="/local")  # wrapped already: used as is
    client = costtrack.wrap(async_openai_client(api), tracker=tracker, fallback=CheapFirst([(already, "llama3.2"), "gpt-4o"]))
    await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert sent(local) == ["llama3.2"] and sent(api) == ["gpt-4o"]
    first, second = by_attempt(await _arecords(tracker))
    assert (first.provider, first.endpoint) == ("ollama", "/local")
    assert second.provider == "openai"


def test_pair_clients_must_match_the_wrapped_client(tracker):
    sync_other = openai_client(Simulator(), base_url="http://localhost:11434/v1")
    with pytest.raises(ConfigError, match="not async"):
        costtrack.wrap(async_openai_client(Simulator()), tracker=tracker, fallback=CheapFirst([(sync_other, "llama3.2"), "gpt-4o"]))
    with pytest.raises(ConfigError, match="same SDK"):
        costtrack.wrap(anthropic_client(Simulator()), tracker=tracker, fallback=CheapFirst([(sync_other, "llama3.2"), "claude-opus-4-5"]))


# --------------------------------------------------------------------------- what is left alone


def test_calls_for_other_models_are_untouched(tracker, records):
    sim = Simulator()
    sim.script(429)
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert sent(sim) == ["gpt-4.1", "gpt-4.1"]
    recs = sorted(records(), key=lambda r: r.timestamp)
    assert [(r.attempt, r.tags) for r in recs] == [(1, {}), (1, {})]
    assert all(r.cost_saved_usd is None for r in recs)


def test_sdk_retries_stay_and_every_attempt_is_numbered(tracker, records):
    sim = Simulator()
    sim.script(429, 429, 429)
    client = costtrack.wrap(openai_client(sim, max_retries=1), tracker=tracker, fallback=CheapFirst(CHAIN))
    chat(client)
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4o"]
    recs = by_attempt(records())
    assert [(r.attempt, r.model_requested, r.status, r.tags.get("fallback_reason")) for r in recs] == [
        (1, "gpt-4o-mini", "error", None),
        (2, "gpt-4o-mini", "error", "rate_limit_exceeded"),  # the attempt that escalated
        (3, "gpt-4o", "error", None),  # the SDK's retry of gpt-4o
        (4, "gpt-4o", "ok", None),
    ]


def test_backoff_between_models_uses_the_injected_sleep(tracker, records):
    sim = Simulator()
    sim.script(429, 429)
    slept: list[float] = []
    policy = CheapFirst(["gpt-4.1-nano", "gpt-4o-mini", "gpt-4o"], backoff=lambda step: 0.5 * step, sleep=slept.append)
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=policy)
    chat(client)
    assert slept == [0.5, 1.0]


def test_installed_on_the_copy_only(tracker, records):
    sim = Simulator()
    original = openai_client(sim)
    client = costtrack.wrap(original, tracker=tracker, fallback=CheapFirst(CHAIN))
    completions = client.chat.completions
    assert type(completions) is openai.resources.chat.Completions
    assert "create" in vars(completions) and "create" not in vars(original.chat.completions)
    assert type(completions).create is openai.resources.chat.Completions.create  # the class is unchanged
    assert completions.create.__wrapped__ is not None and completions.create.__name__ == "create"
    original.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert sent(sim) == ["gpt-4o"]
    plain = costtrack.wrap(original, tracker=tracker)
    assert "create" not in vars(plain.chat.completions)


def test_copies_of_the_wrapped_client_keep_the_fallback(tracker, records):
    sim = Simulator()
    sim.script(429)
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    chat(client.with_options(timeout=5))
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o"]


def test_responses_and_parse_go_through_the_chain(tracker, records):
    class Summary(pydantic.BaseModel):
        title: str

    sim = Simulator()
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    sim.script(429)
    response = client.responses.create(model="gpt-4o", input="Summarize.")
    sim.script(429)
    parsed = client.chat.completions.parse(model="gpt-4o", messages=MESSAGES, response_format=Summary)
    assert response.model == "gpt-4o-2024-08-06"
    assert isinstance(parsed.choices[0].message.parsed, Summary)
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini", "gpt-4o"]


def test_raw_responses_escalate_on_failures(tracker, records):
    sim = Simulator()
    sim.script(429)
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.parse().model == "gpt-4o-2024-08-06"
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o"]


def test_raw_responses_are_judged_on_their_parsed_answer(tracker, records):
    sim = Simulator()
    judged = []

    def accept(answer):
        judged.append(answer)
        return answer.model.startswith("gpt-4o-2024")  # only the strong model's answer will do

    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN, accept=accept))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert type(raw) is openai._legacy_response.LegacyAPIResponse and raw.headers["content-type"]
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o"]
    assert [type(a) for a in judged] == [openai.types.chat.ChatCompletion] * 2
    assert raw.parse() is judged[-1]  # the app parses the very answer that was judged
    first, second = by_attempt(records())
    assert first.tags["fallback_reason"] == "rejected" and second.cost_saved_usd == pytest.approx(0.0)


def test_anthropic_raw_responses_are_judged_too(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE, accept=lambda m: False))
    raw = client.messages.with_raw_response.create(model="claude-opus-4-5", max_tokens=64, messages=MESSAGES)
    assert raw.parse().model.startswith("claude-opus-4-5")  # every answer rejected: the last one is returned
    assert sent(sim) == ["claude-haiku-4-5", "claude-opus-4-5"]
    assert by_attempt(records())[-1].tags["fallback_exhausted"] is True



async def test_async_raw_responses_are_judged_on_their_parsed_answer(tracker, records):
    """Anthropic's async raw response parses in a coroutine: the judge got the coroutine (AttributeError in the app)."""
    sim = Simulator()
    judged = []

    def accept(answer):
        judged.append(answer)
        return answer.model.startswith("claude-opus-4-5")

    client = costtrack.wrap(async_anthropic_client(sim), tracker=tracker, fallback=CheapFirst(CLAUDE, accept=accept))
    raw = await client.messages.with_raw_response.create(model="claude-opus-4-5", max_tokens=64, messages=MESSAGES)
    assert [type(a) for a in judged] == [anthropic.types.Message] * 2
    assert (await raw.parse()) is judged[-1]
    assert sent(sim) == ["claude-haiku-4-5", "claude-opus-4-5"]
    assert by_attempt(records())[0].tags["fallback_reason"] == "rejected"


@pytest.mark.parametrize("raw", [False, True])
async def test_an_async_judge_and_retry_on_are_awaited_on_async_clients(tracker, records, raw):
    """An async `accept` (an LLM judge on an AsyncOpenAI client) was never awaited: its coroutine passed for True."""
    sim = Simulator()
    sim.script(500)
    seen: list[str] = []

    async def accept(answer):
        seen.append(answer.model)
        return answer.model.startswith("gpt-4o-2024")

    async def retry_on(exc):
        return isinstance(exc, openai.InternalServerError)

    client = costtrack.wrap(async_openai_client(sim), tracker=tracker,
                            fallback=CheapFirst(["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"], accept=accept, retry_on=retry_on))  # fmt: skip
    create = client.chat.completions.with_raw_response.create if raw else client.chat.completions.create
    answer = await create(model="gpt-4o", messages=MESSAGES)
    assert (answer.parse() if raw else answer).model.startswith("gpt-4o-2024")  # OpenAI's raw parse() is sync
    assert sent(sim) == ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"]  # a 500 escalated, the second answer rejected
    assert len(seen) == 2 and [r.tags["fallback_reason"] for r in by_attempt(records())[:2]] == ["server_error", "rejected"]
    sim.script(400)
    with pytest.raises(openai.BadRequestError):  # retry_on said no: raised at once
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def test_an_async_judge_on_a_sync_client_is_refused(tracker, recwarn):
    async def accept(answer):
        return True

    with pytest.raises(ConfigError, match="accept is an async function, and this client is sync"):
        costtrack.wrap(openai_client(Simulator()), tracker=tracker, fallback=CheapFirst(CHAIN, accept=accept))
    client = costtrack.wrap(openai_client(Simulator()), tracker=tracker,
                            fallback=CheapFirst(CHAIN, accept=lambda answer: accept(answer)))  # fmt: skip
    with pytest.raises(ConfigError, match="accept, on a sync client, returned an awaitable"):
        chat(client)
    assert not [w for w in recwarn if "never awaited" in str(w.message)]

def test_streaming_responses_are_not_judged(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN, accept=lambda r: False))
    with client.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MESSAGES) as response:
        assert json.loads(response.read())["model"].startswith("gpt-4o-mini")  # returned before it could be judged
    assert sent(sim) == ["gpt-4o-mini"]


def test_an_unreadable_raw_answer_is_returned_for_the_app_to_meet(tracker, records):
    sim, bare_sim = Simulator(), Simulator()
    sim.script("malformed")
    bare_sim.script("malformed")
    client = costtrack.wrap(openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN, accept=lambda r: False))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert sent(sim) == ["gpt-4o-mini"]  # nothing to judge: returned as it is, as the bare SDK returns it
    bare = openai_client(bare_sim).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(json.JSONDecodeError):
        bare.parse()
    with pytest.raises(json.JSONDecodeError):
        raw.parse()  # the app meets the error the bare SDK gives


# --------------------------------------------------------------------------- configuration and helpers


@pytest.mark.parametrize(
    "chain, message",
    [
        ([], "chain is empty"),
        ("gpt-4o", "must be a list"),
        (["gpt-4o-mini", 4], "is not a model"),
        (["gpt-4o-mini", None], "is not a model"),
        (["gpt-4o-mini", ""], "empty"),
        ([(object(), "llama3.2")], "SDK client"),
        (["gpt-4o", "gpt-4o"], "listed twice"),
    ],
)
def test_bad_chains_are_config_errors(chain, message):
    with pytest.raises(ConfigError, match=message) as info:
        CheapFirst(chain)
    assert "\n" not in str(info.value)


def test_bad_options_are_config_errors(tracker):
    with pytest.raises(ConfigError, match="backoff"):
        CheapFirst(CHAIN, backoff=-1)
    with pytest.raises(ConfigError, match="accept"):
        CheapFirst(CHAIN, accept="yes")
    with pytest.raises(ConfigError, match="CheapFirst"):
        costtrack.wrap(openai_client(Simulator()), tracker=tracker, fallback=["gpt-4o-mini", "gpt-4o"])


def test_retryable_classification():
    request = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")

    def status(code, body=None):
        return openai.APIStatusError("x", response=httpx2.Response(code, request=request), body=body)

    assert is_retryable(status(429)) and failure_reason(status(429)) == "rate_limit_exceeded"
    assert is_retryable(status(529)) and failure_reason(status(529)) == "overloaded_error"
    assert is_retryable(status(503)) and failure_reason(status(503)) == "server_error"
    # Retried by the SDKs, so worth the next model, with a reason of the README's list (409 was "APIStatusError")
    assert is_retryable(status(408)) and failure_reason(status(408)) == "timeout"
    assert is_retryable(status(409)) and failure_reason(status(409)) == "conflict"
    assert is_retryable(openai.APITimeoutError(request)) and failure_reason(openai.APITimeoutError(request)) == "timeout"
    assert is_retryable(openai.APIConnectionError(request=request))
    assert not is_retryable(status(400)) and not is_retryable(status(401)) and not is_retryable(status(404))
    # An error event inside an Anthropic stream arrives with the stream's 200 status.
    overloaded = anthropic.APIStatusError(
        "x", response=httpx2.Response(200, request=request), body={"type": "error", "error": {"type": "overloaded_error"}}
    )
    assert is_retryable(overloaded) and failure_reason(overloaded) == "overloaded_error"
    assert not is_retryable(ValueError("bug"))


def test_the_default_backoff_works_under_trio(tracker, records):
    """It slept with asyncio.sleep: under trio, 'no running event loop' in the app's call (review finding)."""
    trio = pytest.importorskip("trio")
    sim = Simulator()
    sim.script(429)

    async def main():
        client = costtrack.wrap(async_openai_client(sim), tracker=tracker, fallback=CheapFirst(CHAIN, backoff=0.001))
        return await chat(client)

    assert trio.run(main).model.startswith("gpt-4o-2024")
    assert sent(sim) == CHAIN
