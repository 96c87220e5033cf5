"""Usage read from real SDK calls over recorded-looking bodies: each provider's token semantics and pitfalls."""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timezone
from decimal import Decimal

import httpx2
import pytest

from helpers import Recorder, anthropic_client, fixture, openai_client, serve

MTOK = Decimal(1_000_000)


def usd(*terms: tuple[int, str]) -> float:
    """Hand-computed cost: sum of tokens × USD-per-1M-token list price."""
    return float(sum(Decimal(tokens) * Decimal(price) for tokens, price in terms) / MTOK)


def test_openai_chat_cached_tokens_are_inside_prompt_tokens(tracker, records):
    """Pitfall 4: cached tokens are part of prompt_tokens, priced at the cached rate, never counted twice."""
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"))), endpoint="/api/qa")
    result = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital?"}])
    assert result.choices[0].message.content == "Paris is the capital of France."
    [rec] = records()
    assert (rec.tokens_input, rec.tokens_cached_input, rec.tokens_output) == (2048, 1536, 120)
    assert rec.model == "gpt-4o-mini-2024-07-18" and rec.model_requested == "gpt-4o-mini"
    assert rec.provider == "openai" and rec.operation == "chat.completions" and rec.endpoint == "/api/qa"
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
    assert rec.cost_usd == pytest.approx(usd((512, "0.15"), (1536, "0.075"), (120, "0.60")), rel=1e-12)
    assert rec.status == "ok" and rec.attempt == 1 and rec.cache_hit is False
    assert "gpt-4o-mini" in (rec.price_source or "")


def test_openai_reasoning_tokens_are_inside_completion_tokens(tracker, records):
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat_reasoning.json"))))
    client.chat.completions.create(model="o3", messages=[{"role": "user", "content": "6*7"}])
    [rec] = records()
    assert (rec.tokens_output, rec.tokens_reasoning) == (1500, 1200)
    assert rec.endpoint == "chat.completions"  # default endpoint: the operation


def test_openai_stream_gets_usage_and_hides_the_usage_chunk(tracker, records):
    """Pitfalls 1 and 2: usage is requested for streams, and the extra chunk never reaches the caller."""
    server = Recorder(serve("openai_chat_stream.sse"))
    client = tracker.wrap(openai_client(server))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True)
    texts = [chunk.choices[0].delta.content for chunk in stream]  # would raise IndexError on the usage chunk
    assert texts == ["", "Hello", " there", None]
    assert server.bodies[0]["stream_options"] == {"include_usage": True}
    [rec] = records()
    assert (rec.tokens_input, rec.tokens_cached_input, rec.tokens_output) == (2048, 1024, 2)
    assert rec.cost_usd == pytest.approx(usd((1024, "0.15"), (1024, "0.075"), (2, "0.60")), rel=1e-12)
    assert rec.ttft_ms is not None and rec.latency_ms is not None and 0 <= rec.ttft_ms <= rec.latency_ms
    assert rec.status == "ok"


def test_openai_stream_keeps_usage_chunk_when_the_caller_asked_for_it(tracker, records):
    server = Recorder(serve("openai_chat_stream.sse"))
    client = tracker.wrap(openai_client(server))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 2048
    assert server.bodies[0]["stream_options"] == {"include_usage": True}
    assert records()[0].tokens_input == 2048


def test_openai_stream_with_usage_turned_off_is_still_priced_and_looks_the_same(tracker, records):
    # The caller said include_usage false: costtrack asks for it anyway (the record needs it) and hides it.
    server = Recorder(serve("openai_chat_stream.sse"))
    client = tracker.wrap(openai_client(server))
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": False}))  # fmt: skip
    assert all(chunk.choices for chunk in chunks)
    assert server.bodies[0]["stream_options"] == {"include_usage": True}
    [rec] = records()
    assert rec.tokens_input == 2048 and rec.cost_usd is not None


def test_openai_stream_identical_to_bare_sdk(tracker, records):
    bare = openai_client(Recorder(serve("openai_chat_stream.sse")))
    wrapped = tracker.wrap(openai_client(Recorder(serve("openai_chat_stream.sse"))))
    args = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True)
    seen_bare = [c.model_dump() for c in bare.chat.completions.create(**args) if c.choices]
    seen_wrapped = [c.model_dump() for c in wrapped.chat.completions.create(**args)]
    assert seen_wrapped == seen_bare


def test_openai_embeddings(tracker, records):
    client = tracker.wrap(openai_client(Recorder(serve("openai_embeddings.json"))))
    client.embeddings.create(model="text-embedding-3-small", input="hello", encoding_format="float")
    [rec] = records()
    assert (rec.operation, rec.tokens_input, rec.tokens_output) == ("embeddings", 812, 0)
    assert rec.cost_usd == pytest.approx(usd((812, "0.02")), rel=1e-12)


def test_openai_responses(tracker, records):
    client = tracker.wrap(openai_client(Recorder(serve("openai_responses.json"))))
    response = client.responses.create(model="gpt-4o", input="hi")
    assert response.output_text == "Hi"
    [rec] = records()
    assert (rec.operation, rec.tokens_input, rec.tokens_cached_input, rec.tokens_output) == ("responses", 3000, 2048, 400)
    assert rec.cost_usd == pytest.approx(usd((952, "2.50"), (2048, "1.25"), (400, "10")), rel=1e-12)


def test_anthropic_input_is_the_sum_of_three_counts(tracker, records):
    """Pitfall 3: cache reads and writes are input, each priced at its own rate, 1-hour writes at 2x."""
    client = tracker.wrap(anthropic_client(Recorder(serve("anthropic_message.json"))))
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "Hi"
    [rec] = records()
    assert rec.provider == "anthropic" and rec.operation == "messages"
    assert (rec.tokens_input, rec.tokens_cached_input, rec.tokens_cache_write, rec.tokens_output) == (12030, 10000, 2000, 57)
    assert rec.tokens_cache_write_1h == 1500
    # claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 5-minute write, $6 1-hour write, $15 output.
    expected = usd((30, "3"), (10000, "0.30"), (500, "3.75"), (1500, "6"), (57, "15"))
    assert rec.cost_usd == pytest.approx(expected, rel=1e-12)


def test_anthropic_stream_output_is_cumulative_not_added(tracker, records):
    """Pitfall 3: message_delta's output_tokens replaces message_start's, never adds to it."""
    client = tracker.wrap(anthropic_client(Recorder(serve("anthropic_stream.sse"))))
    stream = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    kinds = [event.type for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    [rec] = records()
    assert (rec.tokens_input, rec.tokens_output, rec.tokens_cache_write) == (12030, 57, 2000)
    expected = usd((30, "3"), (10000, "0.30"), (500, "3.75"), (1500, "6"), (57, "15"))
    assert rec.cost_usd == pytest.approx(expected, rel=1e-12)
    assert rec.ttft_ms is not None


def test_anthropic_stream_helper(tracker, records):
    client = tracker.wrap(anthropic_client(Recorder(serve("anthropic_stream.sse"))))
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = stream.get_final_text()
    assert text == "Hello world"
    assert records()[0].tokens_output == 57


async def test_async_clients_record_the_same(tracker, records):
    oa = tracker.wrap(openai_client(Recorder(serve("openai_chat_stream.sse")), is_async=True))
    an = tracker.wrap(anthropic_client(Recorder(serve("anthropic_stream.sse")), is_async=True))
    stream = await oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert [c.choices[0].delta.content async for c in stream] == ["", "Hello", " there", None]
    async with an.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
        await s.get_final_message()
    recs = sorted(records(), key=lambda r: r.provider)
    assert [(r.provider, r.tokens_input, r.tokens_output) for r in recs] == [("anthropic", 12030, 57), ("openai", 2048, 2)]


def test_missing_usage_is_unpriced_not_zero(tracker, records):
    body = json.loads(fixture("openai_chat.json"))
    del body["usage"]
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=body))))
    result = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert result.usage is None
    [rec] = records()
    assert rec.status == "ok" and rec.cost_usd is None and rec.tokens_input == 0


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic warns dumping the SDK object built from bad values
def test_malformed_usage_values_are_ignored(tracker, records):
    body = json.loads(fixture("openai_chat.json"))
    body["usage"] = {"prompt_tokens": "many", "completion_tokens": -3, "prompt_tokens_details": [1]}
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=body))))
    bare = openai_client(Recorder(httpx2.Response(200, json=body)))
    args = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert client.chat.completions.create(**args).model_dump() == bare.chat.completions.create(**args).model_dump()
    [rec] = records()
    assert (rec.tokens_input, rec.tokens_output) == (0, 0)


@pytest.mark.parametrize(("usage", "tokens", "cost"), [
    # No prompt_tokens beside total_tokens: what is not output is input (the output was counted twice).
    ({"prompt_tokens": None, "completion_tokens": 500, "total_tokens": 100_500}, (100_000, 500), usd((100_000, "0.15"), (500, "0.60"))),
    ({"completion_tokens": 500, "total_tokens": 100_500}, (100_000, 500), usd((100_000, "0.15"), (500, "0.60"))),
    # No completion_tokens beside total_tokens: the rest of the total is output.
    ({"prompt_tokens": 100_000, "total_tokens": 100_500}, (100_000, 500), usd((100_000, "0.15"), (500, "0.60"))),
    # A whole number written as a float is that number (it read as 0, and the call was priced on its output only).
    ({"prompt_tokens": 100000.0, "completion_tokens": 500}, (100_000, 500), usd((100_000, "0.15"), (500, "0.60"))),
    # A count sent but unreadable: the readable one is kept, the cost is unknown (it was priced at $0.015 as if exact).
    ({"prompt_tokens": 100_000, "completion_tokens": None}, (100_000, 0), None),
    # ...worked out from total_tokens where there is one, as a count left out is.
    ({"prompt_tokens": 100_000, "completion_tokens": None, "total_tokens": 100_500}, (100_000, 500),
     usd((100_000, "0.15"), (500, "0.60"))),
    ({"prompt_tokens": 100_000.5, "completion_tokens": 500}, (0, 500), None),
    ({"prompt_tokens": "1000", "completion_tokens": 500, "total_tokens": 1500}, (0, 500), None),
    ({"completion_tokens": 500}, (0, 500), None),
    # An absurd count (1e20 tokens) is unreadable: stored as it came, the database refused the record (durability review).
    ({"prompt_tokens": 1e20, "completion_tokens": 500}, (0, 500), None),
    # No count read at all: billed, cost unknown (stats counted it nowhere: its group's spend read as complete).
    ({}, (0, 0), None),
    ({"prompt_tokens": "812", "completion_tokens": "40"}, (0, 0), None),
    # Detail counts: a whole float is read, a text is unreadable (read as 0 it billed cached tokens at the full rate).
    ({"prompt_tokens": 100_000, "completion_tokens": 500, "prompt_tokens_details": {"cached_tokens": 40_000.0}},
     (100_000, 500), usd((60_000, "0.15"), (40_000, "0.075"), (500, "0.60"))),
    ({"prompt_tokens": 100_000, "completion_tokens": 500, "prompt_tokens_details": {"cached_tokens": "40000"}},
     (100_000, 500), None),
    ({"prompt_tokens": 100_000, "completion_tokens": 500, "completion_tokens_details": {"reasoning_tokens": 1.5}},
     (100_000, 500), None),
    # The embeddings API's usage has no completion_tokens at all, and a total that is its prompt: no output.
    ({"prompt_tokens": 100_000, "total_tokens": 100_000}, (100_000, 0), usd((100_000, "0.15"))),
    # total_tokens alone (some compatible servers): read as input, as before (a review found it dropped).
    ({"total_tokens": 1_500}, (1_500, 0), usd((1_500, "0.15"))),
])  # fmt: skip
def test_incomplete_usage_of_a_compatible_server_is_read_or_unknown_never_partly_priced(tracker, records, database_url,
                                                                                        capsys, usage, tokens, cost):  # fmt: skip
    """Review findings: a null prompt_tokens counted the output twice, a float count read as 0 and a null
    completion_tokens as 0, each priced as if exact; then an unreadable count dropped the readable one and the call
    read as $0 in `costtrack stats`. Unknown is counted as unpriced, and `costtrack reprice` keeps it unknown."""
    body = {**json.loads(fixture("openai_chat.json")), "model": "gpt-4o-mini-2024-07-18", "usage": usage}
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=body))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic's, dumping the SDK object a float count was put in
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    [rec] = records()
    assert (rec.tokens_input, rec.tokens_output) == tokens and rec.status == "ok"
    assert rec.cost_usd == (None if cost is None else pytest.approx(cost, rel=1e-12))
    assert rec.tags.get("costtrack.usage_unreadable") is (True if cost is None else None)
    if cost is None:
        from costtrack.cli import run

        assert run(["reprice", "--database-url", database_url]) == 0
        assert "0 changed, 1 still unpriced" in capsys.readouterr().out
        assert run(["stats", "--json", "--database-url", database_url]) == 0
        data = json.loads(capsys.readouterr().out)
        total = data["total"]
        assert (total["spend_usd"], total["unpriced_calls"], total["spend_complete"]) == (None, 1, False)
        # Its model has a price: counted apart, not listed as an unpriced model (stats told to price gpt-4o-mini).
        assert (data["unpriced_models"], data["unreadable_usage_calls"]) == ([], 1)
        assert run(["stats", "--database-url", database_url]) == 0
        out = capsys.readouterr().out
        assert "1 calls sent a usage with a count costtrack could not read" in out and "Unpriced models" not in out
        assert run(["report", "audit", "-o", "-", "--no-charts", "--database-url", database_url]) == 0
        text = capsys.readouterr().out
        assert "1 of them sent a usage with a count costtrack could not read" in text and "Price gpt-4o-mini" not in text


@pytest.mark.parametrize(("counts", "tokens", "known"), [
    ({"input_tokens": 3000.0, "output_tokens": 400}, (3000, 400), True),  # a whole float: read (it read as 0)
    ({"input_tokens": "3000", "output_tokens": 400}, (0, 400), False),  # unreadable: unknown, not priced on the output
    ({"input_tokens": None, "output_tokens": 400}, (3000, 400), True),  # left out beside total_tokens 3,400: the rest
    ({"input_tokens": None, "output_tokens": None, "total_tokens": 1500}, (1500, 0), True),  # total alone: input
])  # fmt: skip
def test_responses_usage_is_read_as_chat_usage_is(tracker, records, counts, tokens, known):
    """Review finding: a Responses usage with an input count of 3000.0 or null was priced on its output alone."""
    body = json.loads(fixture("openai_responses.json"))
    body["usage"] = {**body["usage"], **counts}
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=body))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client.responses.create(model="gpt-4o-mini", input="hi")
    [rec] = records()
    assert (rec.tokens_input, rec.tokens_output) == tokens
    assert (rec.cost_usd is not None) is known and (rec.tags.get("costtrack.usage_unreadable") is True) is not known


@pytest.mark.parametrize("usage", [{}, {"prompt_tokens": None, "completion_tokens": None}])
def test_a_200_with_an_error_and_no_readable_usage_is_an_error(tracker, records, usage):
    """A gateway's 200 carrying an error object beside an empty usage was recorded ok once usage with no readable
    count stopped reading as no usage (review finding)."""
    body = {"error": {"type": "server_error", "message": "upstream"}, "usage": usage}
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=body))))
    bare = openai_client(Recorder(httpx2.Response(200, json=body)))
    args = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert type(client.chat.completions.create(**args)) is type(bare.chat.completions.create(**args))
    [rec] = records()
    assert (rec.status, rec.error_type) == ("error", "server_error")


def test_unreadable_usage_of_a_model_priced_per_hour_stays_per_hour(tmp_path, outbox_dir):
    """A self-hosted model with a per_hour price whose server sent completion_tokens null was recorded unpriced (no
    price_source): stats and the audit then asked for a price it has (review finding)."""
    import costtrack

    prices = tmp_path / "prices.toml"
    prices.write_text('[models."llama-3-8b"]\nper_hour = 0.80\n')
    body = {**json.loads(fixture("openai_chat.json")), "model": "llama-3-8b",
            "usage": {"prompt_tokens": 300, "completion_tokens": None}}  # fmt: skip
    tracker = costtrack.Tracker(f"sqlite:///{tmp_path}/ph.db", prices_file=prices, outbox_dir=outbox_dir, budgets=[])
    try:
        client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=body)), base_url="http://localhost:8000/v1"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client.chat.completions.create(model="llama-3-8b", messages=[{"role": "user", "content": "x"}])
        tracker.flush()
        [rec] = tracker.records()
        assert rec.cost_usd is None and rec.price_source is not None and rec.price_source.endswith(":llama-3-8b")  # per hour
        assert rec.tokens_input == 300 and rec.tags.get("costtrack.usage_unreadable") is True
    finally:
        tracker.close()


@pytest.mark.parametrize(("error", "expected"), [
    ({"code": None, "message": "boom"}, "response_failed"),  # it was recorded as the error type "None"
    ({"code": None, "type": "server_error", "message": "boom"}, "server_error"),
    ({"code": "rate_limit_exceeded", "message": "slow down"}, "rate_limit_exceeded"),
])  # fmt: skip
def test_a_failed_response_names_its_error_type_streamed_or_whole(tracker, records, error, expected):
    """Review finding: a response.failed event whose error has "code": null gave error_type "None"."""
    base = {"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-4o-mini-2024-07-18", "output": [],
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}  # fmt: skip
    usage = {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12,
             "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip
    events = [("response.created", {"type": "response.created", "sequence_number": 0,
                                    "response": {**base, "status": "in_progress"}}),
              ("response.failed", {"type": "response.failed", "sequence_number": 1,
                                   "response": {**base, "status": "failed", "error": error, "usage": usage}})]  # fmt: skip
    body = b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                                                 content=body))))  # fmt: skip
    seen = [event.type for event in client.responses.create(model="gpt-4o-mini", input="hi", stream=True)]
    assert seen == ["response.created", "response.failed"]
    # The same response whole (not streamed): the SDK returns it as an answer; it was recorded "ok" (review finding).
    whole = {**base, "status": "failed", "error": error, "usage": usage}
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=whole))))
    assert client.responses.create(model="gpt-4o-mini", input="hi").status == "failed"
    streamed, answered = records()
    for rec in (streamed, answered):
        assert (rec.status, rec.error_type, rec.tokens_input) == ("error", expected, 10)
        assert rec.cost_usd == pytest.approx((10 * 0.15 + 2 * 0.60) / 1e6)  # billed: its usage is priced


def test_unknown_model_is_recorded_with_tokens_and_null_cost(tracker, records):
    """Pitfall 5: a model the catalog doesn't know is unpriced (null), never $0."""
    body = json.loads(fixture("openai_chat.json"))
    body["model"] = "my-finetune-xyz"
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=body))))
    client.chat.completions.create(model="my-finetune-xyz", messages=[{"role": "user", "content": "x"}])
    [rec] = records()
    assert rec.tokens_input == 2048 and rec.cost_usd is None and rec.price_source is None


def test_usage_is_a_hashable_value_read_from_any_mapping_of_details():
    from collections import OrderedDict

    from costtrack.providers.openai import chat_usage, responses_usage
    from costtrack.usage import Usage

    assert hash(Usage(input=3, output=1)) == hash(Usage(input=3, output=1)) and {Usage(input=3), Usage(input=3)} == {Usage(input=3)}
    usage = {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": OrderedDict(cached_tokens=3),
             "completion_tokens_details": {"reasoning_tokens": 2}}  # fmt: skip
    assert chat_usage(usage) == Usage(input=10, output=4, cached_input=3, reasoning=2)
    for details in (None, "x", 5, []):  # malformed details count 0
        assert chat_usage({**usage, "prompt_tokens_details": details}) == Usage(input=10, output=4, reasoning=2)
    # A detail count that is no whole number makes the usage unreadable (read as 0 it was billed at the full rate).
    assert responses_usage({"input_tokens": 7, "output_tokens": 2, "input_tokens_details": {"cached_tokens": -1}}) == Usage(
        input=7, output=2, unreadable=True
    )
    assert responses_usage({"input_tokens": 7, "output_tokens": 2, "input_tokens_details": {"cached_tokens": None}}) == Usage(
        input=7, output=2
    )


_CHAT_EVENT = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":%s}}],"usage":null}\n\n'


_USAGE_CHUNK = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
_ERROR_CHUNK = (
    b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}],'
    b'"usage":null,"error":{"code":502,"message":"upstream"}}\n\n'
)


@pytest.mark.parametrize(
    ("data", "handed_on", "usage", "done"),
    [
        (_CHAT_EVENT % b'"Hello"', "same", None, False),
        (_CHAT_EVENT % b'"Hello"' * 3, "same", None, False),  # several events in one network read
        (_CHAT_EVENT % b'"a \\"usage\\": {1} and \\"error\\""', "same", None, False),  # quotes inside content are escaped
        (_CHAT_EVENT.replace(b"null", b" null") % b'"x"', "same", None, False),
        (_CHAT_EVENT.replace(b":null", b" : null") % b'"x"', None, None, False),  # not vouched for: read event by event
        (_CHAT_EVENT % b'"x"' + _CHAT_EVENT.replace(b"null", b" null") % b'"y"', "same", None, False),  # both spellings of the null
        # The usage-only chunk costtrack asked for: kept unparsed for `usage`, and hidden.
        (_USAGE_CHUNK, b"", (1, 2), False),
        (_USAGE_CHUNK.replace(b'":[]', b'": []'), b"", (1, 2), False),
        (b'data: {"choices":[],"usage" : {"completion_tokens":2}}\n\n', b"", "unreadable", False),  # no input count: unknown
        # Usage in a chunk that has content too (a compatible server's): kept, and the chunk handed on.
        (b'data: {"choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":3}}\n\n', "same", (3, 0), False),
        (_CHAT_EVENT % b'"x"' + b'data: {"choices":[],"usage":{}}\n\n', None, None, False),  # two events: read one by one
        (b'data: {"choices":[],"usage":{"prompt_tokens":1},"error":{"type":"x"}}\n\n', None, None, False),
        (b'data: {"error":{"type":"server_error"}}\n\n', None, None, False),
        (b"data: [DONE]\n\n", "same", None, True),  # the end event alone is noted and handed on
        (_CHAT_EVENT % b'"x"' + b"data: [DONE]\n\n", None, None, False),
    ],
)
def test_chat_stream_reader_passes_on_chunks_that_need_no_parsing(data, handed_on, usage, done):
    """Once the stream is under way a chunk passes on unsplit and unparsed when it holds nothing to read (no usage
    object, error or [DONE]), or is the end event alone, or one usage chunk (kept as bytes until `usage` is read)."""
    from costtrack.providers.openai import ChatStreamReader
    from costtrack.usage import Usage

    reader = ChatStreamReader(hide_usage_chunk=True)
    assert reader.pass_on(data) == (data if handed_on == "same" else handed_on)
    assert reader.done is done
    expected = Usage(output=2, unreadable=True) if usage == "unreadable" else None if usage is None else Usage(*usage)
    assert reader.usage == expected
    if handed_on == "same" and usage is None and not done:  # it holds nothing next_marker would stop at
        assert reader.next_marker(data, 0) < 0
    elif b'"usage" :' not in data:
        assert reader.next_marker(data, 0) >= 0
    asked = ChatStreamReader(hide_usage_chunk=False)  # the app asked for usage itself: the chunk is never hidden
    assert asked.pass_on(data) == (data if handed_on is not None else None)


@pytest.mark.parametrize(
    ("data", "content", "model"),
    [
        (b'{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}', True, "m"),  # told by its bytes
        (b'{"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}', True, "m"),  # json.dumps spacing
        (b'{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"\\"Hi\\""}}]}', True, "m"),  # an escaped quote first
        (b'{"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}', False, "m"),
        (b'{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":""}}]}', False, "m"),
        (b'{"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}', True, "m"),
        (b'{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":null,"tool_calls":[{"index":0}]}}]}', True, "m"),
        (b'{"id":"c","model":null,"choices":[{"index":0,"delta":{"content":"Hi"}}]}', True, None),
        (b'{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}', True, None),
        (b'{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}],"error":{"type":"x"}}', True, "m"),
    ],
)
def test_chat_stream_reader_tells_the_first_content_as_a_full_read_would(data, content, model):
    """The usual first content chunk is told by its bytes and its model read only when asked: the outcome is the one
    parsing it gives (content, model, steadiness); a chunk the bytes cannot vouch for is parsed."""
    from costtrack.providers.openai import ChatStreamReader

    reader = ChatStreamReader(hide_usage_chunk=True)
    assert reader.feed(None, data) == (content, False)
    assert reader.steady is (content and model is not None)
    assert reader.model == model
    assert reader.failed == ("x" if b'"error"' in data else None)
    later = b'{"id":"c","model":"later","choices":[{"index":0,"delta":{"content":"more"}}]}'
    assert reader.feed(None, later) == (not content, False)  # a model still unknown is taken from the next chunk
    assert reader.model == (model or "later") and reader.steady


@pytest.mark.parametrize(
    ("data", "quiet"),
    [
        (_CHAT_EVENT % b'"x"', True),
        (_CHAT_EVENT % b'"x"' * 3, True),
        (b": keep-alive\n\n" + _CHAT_EVENT % b'"x"', True),
        (_CHAT_EVENT % b'"x"' + _USAGE_CHUNK, False),  # the usage it asked for must be read: kept for `usage`
        (_ERROR_CHUNK, False),
        (_USAGE_CHUNK.replace(b"\n\n", b"\r\n\r\n") + _CHAT_EVENT % b'"x"', False),
        (_CHAT_EVENT % b'"x"' + b'data: {"error":{"type":"server_error"}}\n\n', False),
        (_CHAT_EVENT % b'"x"' + b"data: [DONE]\n\n", False),
    ],
)
def test_chat_stream_reader_for_an_app_that_asked_for_usage_reads_every_chunk_that_may_matter(data, quiet):
    """The app asked for usage itself: every chunk keeps its null, and a chunk holding a usage chunk, an error
    or [DONE] beside ordinary events is read event by event (None), however its nulls are counted."""
    from costtrack.providers.openai import ChatStreamReader
    from costtrack.sse import event_fields

    reader = ChatStreamReader(hide_usage_chunk=False)
    reader.feed(*event_fields(_CHAT_EVENT % b'"Hi"'))
    assert reader.strip is None
    assert reader.pass_on(data) == (data if quiet else None)


_FIRST = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}\n\n'


@pytest.mark.parametrize(
    ("data", "taken"),
    [
        (_FIRST, True),
        (b"data: " + json.dumps(json.loads(_FIRST[6:-2])).encode() + b"\n\n", True),  # json.dumps spacing
        (_FIRST.replace(b'"content":"Hi"', b'"role":"assistant","content":""'), False),  # role only: read
        (_FIRST.replace(b'"content":"Hi"', b'"content":""'), False),
        (_FIRST * 2, False),  # two events: read one by one
        (_FIRST[:-2], False),  # not a whole event
        (_FIRST.replace(b"data: ", b"data:"), False),
        (_FIRST.replace(b"}\n\n", b"}\nid: 1\n\n"), False),  # more than one line: its JSON is not data[6:-2]
        (_FIRST.replace(b"data: ", b"data: {}\r\rdata: ", 1), False),  # two events, CR-separated
        (_FIRST.replace(b'"usage":null', b'"usage":{"prompt_tokens":1}'), False),
        (_FIRST.replace(b'"usage":null', b'"error":{"type":"x"}'), False),
        (b"data: [DONE]\n\n", False),
    ],
)
def test_chat_stream_reader_takes_the_chunk_that_opens_the_content_by_its_bytes(data, taken):
    """`starts` hands on the one-event chunk whose delta opens with text (the usage null it asked for dropped),
    the reader then steady and its model read later; any other chunk is left to be read event by event."""
    from costtrack.providers.openai import ChatStreamReader

    reader = ChatStreamReader(hide_usage_chunk=True)
    out = reader.starts(data)
    if not taken:
        assert out is None and not reader.steady
        return
    assert out == data.replace(reader.strip, b"") and reader.strip in (b',"usage":null', b', "usage": null')
    assert reader.steady and reader.model == "m" and reader.usage is None and not reader.done
    asked = ChatStreamReader(hide_usage_chunk=False)  # the app asked for usage: the chunk is handed on whole
    assert asked.starts(data) == data and asked.strip is None


def test_chat_stream_reader_keeps_the_model_the_first_chunk_names():
    """The first chunk naming a model names the stream's, whether it was told by its bytes (and parsed later) or parsed."""
    from costtrack.providers.openai import ChatStreamReader
    from costtrack.sse import event_fields
    from costtrack.usage import Usage

    reader = ChatStreamReader(hide_usage_chunk=True)
    assert reader.starts(_FIRST.replace(b'"m"', b'"gpt-4o"')) is not None
    usage = _USAGE_CHUNK.replace(b"{", b'{"model":"gpt-4o-2024",', 1)
    for event in (_CHAT_EVENT.replace(b'"m"', b'"other"') % b'"x"', usage):  # read event by event (a coalesced read)
        reader.feed(*event_fields(event))
    assert reader.model == "gpt-4o" and reader.usage == Usage(input=1, output=2)


def test_chat_stream_reader_never_raises_on_a_usage_too_deeply_nested_to_parse():
    """Kept usage is parsed later; JSON nested past the parsers' limits counts as no usage, never as an error."""
    from costtrack import fastjson
    from costtrack.providers.openai import ChatStreamReader
    from costtrack.usage import Usage

    deep = b'data: {"choices":[],"usage":{"prompt_tokens":1,"x":' + b"[" * 5000 + b"]" * 5000 + b"}}\n\n"
    with pytest.raises(ValueError):
        fastjson.loads(deep[6:-2])
    reader = ChatStreamReader(hide_usage_chunk=True)
    assert reader.pass_on(deep) == b"" and reader.pass_on(deep) == b""  # the second reads the first on the app's thread
    assert reader.usage is None
    assert reader.pass_on(_USAGE_CHUNK) == b"" and reader.usage == Usage(input=1, output=2)


def test_chat_stream_reader_keeps_the_last_usage_it_meets():
    """A usage chunk kept as bytes and one read event by event: the later one is the stream's usage, as when both are read."""
    from costtrack.providers.openai import ChatStreamReader
    from costtrack.sse import event_fields
    from costtrack.usage import Usage

    reader = ChatStreamReader(hide_usage_chunk=False)
    assert reader.pass_on(_USAGE_CHUNK) == _USAGE_CHUNK
    reader.feed(*event_fields(_USAGE_CHUNK.replace(b"2}", b"5}")))
    assert reader.usage == Usage(input=1, output=5)
    reader.feed(*event_fields(_USAGE_CHUNK))
    assert reader.pass_on(_USAGE_CHUNK.replace(b"2}", b"7}")) is not None
    assert reader.usage == Usage(input=1, output=7)
    malformed = b'data: {"choices":[],"usage":{"prompt_tokens":1}\n\n'  # kept, then found not to be JSON: the last good one stays
    assert reader.pass_on(malformed) == malformed
    assert reader.usage == Usage(input=1, output=7)


@pytest.mark.parametrize(
    ("data", "handed_on"),
    [
        (_CHAT_EVENT % b'"Hello"', _CHAT_EVENT.replace(b',"usage":null', b"") % b'"Hello"'),
        (_CHAT_EVENT % b'"Hello"' * 3, _CHAT_EVENT.replace(b',"usage":null', b"") % b'"Hello"' * 3),
        (_CHAT_EVENT % b'"a ,\\"usage\\":null"', _CHAT_EVENT.replace(b',"usage":null', b"") % b'"a ,\\"usage\\":null"'),
        (_CHAT_EVENT.replace(b"null", b" null") % b'"x"', None),  # another spelling: read event by event
        (_USAGE_CHUNK, b""),  # the usage-only chunk it asked for: hidden
        (_ERROR_CHUNK, None),  # a router's chunk-shaped error, usage null and all: read, so the failure is recorded
        (_USAGE_CHUNK.replace(b"\n\n", b"\r\n\r\n") + _CHAT_EVENT % b'"x"', None),  # line endings mixed in one read
        (_USAGE_CHUNK.replace(b"}\n\n", b"}\nid: 7\n\n"), None),  # an event of more than one line
        (_USAGE_CHUNK.replace(b'":[]', b'": [ ]'), None),  # empty choices written another way: read, not guessed
        # Events without the null beside ordinary ones: each is looked at (a null short for every blank line).
        (_CHAT_EVENT % b'"x"' + _USAGE_CHUNK, None),
        (_USAGE_CHUNK + _CHAT_EVENT % b'"x"', None),
        (_CHAT_EVENT % b'"x"' + b'data: {"error":{"type":"server_error"}}\n\n', None),
        (b": keep-alive\n\n" + _CHAT_EVENT % b'"x"', b": keep-alive\n\n" + _CHAT_EVENT.replace(b',"usage":null', b"") % b'"x"'),
        (_CHAT_EVENT % b'"x"' + b"\n\n", _CHAT_EVENT.replace(b',"usage":null', b"") % b'"x"' + b"\n\n"),  # a blank line more
        (_USAGE_CHUNK.replace(b'[]', b'[{"index":0,"delta":{}}]'), _USAGE_CHUNK.replace(b'[]', b'[{"index":0,"delta":{}}]')),
        (b'data: {"error":{"type":"server_error"}}\n\n', None),
        (b"data: [DONE]\n\n", b"data: [DONE]\n\n"),
        (_CHAT_EVENT % b'"x"' + b"data: [DONE]\n\n", None),
    ],
)
def test_chat_stream_reader_hands_chunks_on_without_the_usage_null_it_asked_for(data, handed_on):
    """Asked for usage on the app's behalf, the reader learns how the API spells its null from the first
    events, then hands quiet chunks on without it (an escaped copy inside content stays)."""
    from costtrack.providers.openai import ChatStreamReader
    from costtrack.sse import event_fields

    reader = ChatStreamReader(hide_usage_chunk=True)
    reader.feed(*event_fields(_CHAT_EVENT % b'"Hi"'))
    assert reader.strip == b',"usage":null'
    assert reader.pass_on(data) == handed_on
    asked = ChatStreamReader(hide_usage_chunk=False)  # the app asked for usage itself: its nulls stay
    asked.feed(*event_fields(_CHAT_EVENT % b'"Hi"'))
    assert asked.strip is None and asked.pass_on(data) in (data, None)
    if handed_on is not None:  # what it hands on without reading, it hands on whole (nothing is hidden)
        assert asked.pass_on(data) == data


@pytest.mark.parametrize(
    ("api", "data", "quiet"),
    [
        (
            "responses",
            b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n',
            True,
        ),
        ("responses", b'event: response.completed\ndata: {"type":"response.completed"}\n\n', False),
        ("responses", b'event: error\ndata: {"type":"error"}\n\n', False),
        (
            "anthropic",
            b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"Hi"}}\n\n',
            True,
        ),
        ("anthropic", b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":5}}\n\n', False),
        ("anthropic", b'event: message_stop\ndata: {"type":"message_stop"}\n\n', False),
        ("anthropic", b'event: error\ndata: {"type":"error"}\n\n', False),
    ],
)
def test_other_stream_readers_know_which_chunks_hold_nothing_to_read(api, data, quiet):
    from costtrack.providers import parser_for

    reader = parser_for(api, "responses" if api == "responses" else "messages").stream_reader(False)
    assert reader.pass_on(data) == (data if quiet else None)
    assert (reader.pass_on(data) is not None) is (reader.next_marker(data, 0) < 0)


# --------------------------------------------------------------------------- service tiers

TIER_DAY = datetime(2026, 11, 2, tzinfo=timezone.utc)  # OpenAI's flex and priority prices are in the catalog from 2026-10-15


def _with_tier(name: str, tier: str) -> dict:
    return {**json.loads(fixture(name)), "service_tier": tier}


@pytest.mark.parametrize(
    ("tier", "expected", "source_ends"),
    [
        # o3: 1,000 input and 1,500 output tokens (1,200 of them reasoning), per 1M tokens at each tier's list price
        ("flex", usd((1000, "1"), (1500, "4")), "(flex)"),
        ("priority", usd((1000, "3.5"), (1500, "14")), "(priority)"),
        ("default", usd((1000, "2"), (1500, "8")), "openai/o3"),
    ],
)
def test_openai_answers_are_priced_at_the_service_tier_they_name(tracker, records, tier, expected, source_ends):
    """An answer served at flex or priority is billed at that tier's rates; the record keeps the tier in its tags."""
    tracker.now = lambda: TIER_DAY
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=_with_tier("openai_chat_reasoning.json", tier)))))
    client.chat.completions.create(model="o3", messages=[{"role": "user", "content": "6*7"}], service_tier="auto")
    [rec] = records()
    assert rec.cost_usd == pytest.approx(expected, rel=1e-12) and rec.price_source.endswith(source_ends)
    assert rec.tags.get("costtrack.service_tier") == (None if tier == "default" else tier)


def test_a_tier_the_catalog_has_no_price_for_then_is_priced_standard(tracker, records, caplog):
    """Before the catalog's flex prices start (2026-10-15 for o3) a flex answer gets the standard rates, under their
    source, and a warning says so once (it was silent: review finding)."""
    import logging

    from costtrack.logs import reset_once

    reset_once()
    tracker.now = lambda: datetime(2025, 9, 1, tzinfo=timezone.utc)
    client = tracker.wrap(openai_client(Recorder(*[httpx2.Response(200, json=_with_tier("openai_chat_reasoning.json", "flex"))
                                                   for _ in range(2)])))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="costtrack"):
        for _ in range(2):
            client.chat.completions.create(model="o3", messages=[{"role": "user", "content": "6*7"}])
        tracker.flush()
    warned = [r.getMessage() for r in caplog.records if "'flex' rates for model" in r.getMessage()]
    assert len(warned) == 1 and "priced at the standard rates" in warned[0]
    rec = records()[0]
    assert rec.cost_usd == pytest.approx(usd((1000, "2"), (1500, "8")), rel=1e-12)
    assert rec.price_source.endswith("openai/o3") and rec.tags["costtrack.service_tier"] == "flex"


@pytest.mark.parametrize("reads", ["whole", "event by event"])
def test_a_stream_is_priced_at_the_tier_its_usage_chunk_names(tracker, records, reads):
    """Read whole or one event per network read (where the usage chunk is kept as bytes and parsed in the writer)."""
    tracker.now = lambda: TIER_DAY
    body = fixture("openai_chat_stream.sse").replace(b'"choices":[],"usage"', b'"choices":[],"service_tier":"priority","usage"')
    assert b'"service_tier":"priority"' in body
    events = [event + b"\n\n" for event in body.split(b"\n\n") if event]

    def respond(request: httpx2.Request) -> httpx2.Response:
        content = body if reads == "whole" else iter(events)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    client = tracker.wrap(openai_client(Recorder(respond)))
    assert [c.choices[0].delta.content for c in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True)][:1]  # fmt: skip
    [rec] = records()
    # gpt-4o-mini at priority: $0.25 input, $0.125 cached input, $1.00 output per 1M tokens
    assert rec.cost_usd == pytest.approx(usd((1024, "0.25"), (1024, "0.125"), (2, "1.00")), rel=1e-12)
    assert rec.tags["costtrack.service_tier"] == "priority"


def test_anthropic_standard_tier_is_no_tier(tracker, records):
    client = tracker.wrap(anthropic_client(Recorder(serve("anthropic_message.json"))))
    client.messages.create(model="claude-sonnet-4-5", max_tokens=9, messages=[{"role": "user", "content": "x"}])
    [rec] = records()
    assert not {"service_tier", "costtrack.service_tier"} & rec.tags.keys() and "(standard)" not in (rec.price_source or "")


def test_anthropic_priority_tier_is_billed_standard_without_a_warning(tracker, records, caplog):
    """Anthropic's Priority Tier is committed capacity at the standard rates: no catalog has rates for it, and every
    call warned that it had none (review finding)."""
    import logging

    message = json.loads(fixture("anthropic_message.json"))
    message["usage"]["service_tier"] = "priority"
    client = tracker.wrap(anthropic_client(Recorder(httpx2.Response(200, json=message))))
    with caplog.at_level(logging.WARNING, logger="costtrack"):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=9, messages=[{"role": "user", "content": "x"}])
        [rec] = records()
    assert not {"service_tier", "costtrack.service_tier"} & rec.tags.keys() and not [r for r in caplog.records if "rates for model" in r.getMessage()]
    assert rec.cost_usd == pytest.approx(usd((30, "3"), (10000, "0.30"), (500, "3.75"), (1500, "6"), (57, "15")), rel=1e-12)


@pytest.mark.parametrize("reads", ["whole", "event by event"])
def test_azure_stream_opening_with_an_empty_model_takes_the_model_of_later_chunks(tracker, records, reads):
    """Azure opens a stream with a prompt-filter chunk naming model "" (no choices): the record takes the model
    the content chunks name, and is priced, even when the app names its deployment, not a model."""
    import openai

    first = {"choices": [], "created": 0, "id": "", "model": "", "object": "", "usage": None,
             "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}  # fmt: skip
    body = b"data: " + json.dumps(first, separators=(",", ":")).encode() + b"\n\n" + fixture("openai_chat_stream.sse")
    events = [event + b"\n\n" for event in body.split(b"\n\n") if event]

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                               content=body if reads == "whole" else iter(events))  # fmt: skip

    azure = openai.AzureOpenAI(api_key="k", api_version="2024-10-21", azure_endpoint="https://x.openai.azure.com",
                               http_client=httpx2.Client(transport=httpx2.MockTransport(Recorder(respond))), max_retries=0)  # fmt: skip
    client = tracker.wrap(azure)
    list(client.chat.completions.create(model="prod-mini", messages=[{"role": "user", "content": "hi"}], stream=True))
    [rec] = records()
    assert (rec.provider, rec.model, rec.model_requested) == ("azure", "gpt-4o-mini-2024-07-18", "prod-mini")
    # gpt-4o-mini: 1,024 uncached input at $0.15, 1,024 cached at $0.075, 2 output at $0.60 per 1M tokens
    assert rec.cost_usd == pytest.approx(usd((1024, "0.15"), (1024, "0.075"), (2, "0.60")), rel=1e-12)


# --------------------------------------------------------------------------- audio tokens, web searches

AUDIO_DAY = datetime(2026, 11, 2, tzinfo=timezone.utc)


def test_openai_audio_tokens_are_priced_at_the_audio_rates(tracker, records):
    """Audio tokens were billed at the text rates (7x under for gpt-audio: review finding)."""
    body = {**json.loads(fixture("openai_chat.json")), "model": "gpt-audio-2025-08-28", "usage": {
        "prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 800},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 400}}}  # fmt: skip
    tracker.now = lambda: AUDIO_DAY
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=body))))
    client.chat.completions.create(model="gpt-audio", messages=[{"role": "user", "content": "hi"}], modalities=["text", "audio"])
    [rec] = records()
    # gpt-audio: text $2.50 in / $10 out, audio $32 in / $64 out per 1M tokens
    assert rec.cost_usd == pytest.approx(usd((200, "2.50"), (800, "32"), (100, "10"), (400, "64")), rel=1e-12)
    assert (rec.tokens_input, rec.tokens_output) == (1000, 500)
    assert rec.tags == {"costtrack.audio_input_tokens": 800, "costtrack.audio_output_tokens": 400}
    from costtrack.cli.reprice import usage_of

    again = tracker.pricebook.cost(rec.provider, rec.model, usage_of(rec), rec.timestamp)
    assert again.cost_usd == rec.cost_usd  # reprice reads the audio counts back from the tags


@pytest.mark.parametrize(("model", "text", "audio"), [
    ("gpt-4o-audio-preview-2025-06-03", ("2.50", "10"), ("40", "80")),
    ("gpt-4o-audio-preview-2024-12-17", ("2.50", "10"), ("40", "80")),
    ("gpt-4o-mini-audio-preview-2024-12-17", ("0.15", "0.60"), ("10", "20")),
])  # fmt: skip
def test_audio_preview_models_bill_audio_at_their_audio_rates(tracker, records, model, text, audio):
    """The catalog has the audio-preview models' text rates only: their audio was billed as text, 9 to 38x under
    OpenAI's price sheet, silently (review finding); costtrack's copy of the catalog adds the sheet's audio rates."""
    body = {**json.loads(fixture("openai_chat.json")), "model": model, "usage": {
        "prompt_tokens": 1100, "completion_tokens": 600, "total_tokens": 1700,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 1000},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 500}}}  # fmt: skip
    tracker.now = lambda: AUDIO_DAY
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=body))))
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], modalities=["text", "audio"])
    [rec] = records()
    assert rec.cost_usd == pytest.approx(usd((100, text[0]), (1000, audio[0]), (100, text[1]), (500, audio[1])), rel=1e-12)
    assert rec.price_source.endswith("audio-preview (amended by costtrack)")


def test_anthropic_web_searches_are_billed_per_search(tracker, records):
    """server_tool_use.web_search_requests ($10 per 1,000 searches) was not billed (review finding)."""
    stream = fixture("anthropic_stream.sse").replace(
        b'"usage":{"output_tokens":57}', b'"usage":{"output_tokens":57,"server_tool_use":{"web_search_requests":2}}'
    )
    assert b"web_search_requests" in stream
    client = tracker.wrap(anthropic_client(Recorder(httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                                                    content=stream))))  # fmt: skip
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "news?"}]) as s:
        s.get_final_message()
    [rec] = records()
    tokens = usd((30, "3"), (10000, "0.30"), (500, "3.75"), (1500, "6"), (57, "15"))
    assert rec.cost_usd == pytest.approx(tokens + 2 * 10 / 1000, rel=1e-12)
    assert rec.tags == {"costtrack.web_searches": 2}


def test_openai_responses_web_searches_are_billed_per_search(tracker, records):
    body = {**json.loads(fixture("openai_responses.json")), "tool_usage": {"web_search": {"num_requests": 3}}}
    client = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json=body))))
    response = client.responses.create(model="gpt-4o", input="news?", tools=[{"type": "web_search"}])
    assert response.tool_usage is not None and response.tool_usage.web_search.num_requests == 3
    [rec] = records()
    # gpt-4o: $2.50 input, $1.25 cached, $10 output per 1M tokens; web search $10 per 1,000 searches
    assert rec.cost_usd == pytest.approx(usd((952, "2.50"), (2048, "1.25"), (400, "10")) + 3 * 10 / 1000, rel=1e-12)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_anthropic_fast_mode_is_priced_at_its_own_rates(tracker, records, streamed):
    """An answer whose usage says speed "fast" was billed at the standard rates, half its cost (review finding)."""
    if streamed:
        body = fixture("anthropic_stream.sse").replace(b'"service_tier":"standard"', b'"service_tier":"standard","speed":"fast"')
        body = body.replace(b"claude-sonnet-4-5-20250929", b"claude-opus-5")
        response = httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    else:
        message = json.loads(fixture("anthropic_message.json"))
        message["model"] = "claude-opus-5"
        message["usage"]["speed"] = "fast"
        response = httpx2.Response(200, json=message)
    client = tracker.wrap(anthropic_client(Recorder(response)))
    answer = client.messages.create(model="claude-opus-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
                                    speed="fast", stream=streamed)  # fmt: skip
    if streamed:
        list(answer)
    [rec] = records()
    # claude-opus-5 fast mode: $10 input, $1 cache read, $12.50 5-minute write, $20 1-hour write, $50 output per 1M
    # tokens (the standard rates doubled)
    expected = usd((30, "10"), (10000, "1"), (500, "12.5"), (1500, "20"), (57, "50"))
    assert rec.cost_usd == pytest.approx(expected, rel=1e-12) and rec.price_source.endswith("(fast)")
    assert rec.tags["costtrack.service_tier"] == "fast"


def test_an_apps_own_tags_are_never_read_as_billed_extras(tracker, records):
    """Unprefixed, an app's tag web_searches=500 was billed $5 on `costtrack reprice`, and a call that searched
    overwrote the app's tag of that name (review finding)."""
    from costtrack.cli.reprice import usage_of

    stream = fixture("anthropic_stream.sse").replace(
        b'"usage":{"output_tokens":57}', b'"usage":{"output_tokens":57,"server_tool_use":{"web_search_requests":2}}'
    )
    answer = httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=stream)
    client = tracker.wrap(anthropic_client(Recorder(answer)), tags={"web_searches": 500, "audio_input_tokens": "mine"})
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        s.get_final_message()
    [rec] = records()
    assert rec.tags == {"web_searches": 500, "audio_input_tokens": "mine", "costtrack.web_searches": 2}
    usage = usage_of(rec)
    assert (usage.web_searches, usage.audio_input) == (2, 0)


def test_an_anthropic_count_that_is_no_whole_number_makes_the_usage_unreadable(tracker, records):
    """Known since stop 20: Anthropic counts were read as 0 when not ints, and the call priced on the rest."""
    from costtrack.providers.anthropic import message_usage
    from costtrack.usage import Usage

    base = {"input_tokens": 3000, "output_tokens": 400, "cache_read_input_tokens": None, "cache_creation_input_tokens": None}
    assert message_usage(base) == Usage(input=3000, output=400)  # nulls: none
    assert message_usage({**base, "input_tokens": 3000.0}) == Usage(input=3000, output=400)
    assert message_usage({**base, "cache_read_input_tokens": "1000"}) == Usage(input=3000, output=400, unreadable=True)
    # Diff review: input or output left out or null read as 0 (priced on the output alone; `usage: {}` untagged).
    assert message_usage({**base, "input_tokens": None}) == Usage(input=0, output=400, unreadable=True)
    assert message_usage({}) == Usage(unreadable=True)
    body = {**json.loads(fixture("anthropic_message.json")), "usage": {**base, "output_tokens": "400"}}
    client = tracker.wrap(anthropic_client(Recorder(httpx2.Response(200, json=body))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic's, dumping the SDK object a text count was put in
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    [rec] = records()
    assert (rec.tokens_input, rec.tokens_output, rec.cost_usd) == (3000, 0, None)
    assert rec.tags.get("costtrack.usage_unreadable") is True
