"""run_batch and arun_batch with real SDK objects over the simulated Batch API; polls sleep on a FakeClock."""

from __future__ import annotations

import io
import json

import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from rich.console import Console

import costtrack
from costtrack.batching.batch_api import (
    BatchFailedError,
    BatchItemError,
    BatchResults,
    BatchTimeoutError,
    arun_batch,
    run_batch,
)
from costtrack.bench.warmup import NullWriter  # a writer that stores nothing
from costtrack.cli.reprice import usage_of
from costtrack.simulator import (
    Simulator,
    anthropic_client,
    async_openai_client,
    count_text_tokens,
    openai_client,
)
from costtrack.usage import batched

from helpers import batch_chat as chat
from helpers import live_chat

# gpt-4o-mini: $0.15 / $0.60 per 1M input / output tokens; the Batch API halves both.
MINI_IN, MINI_OUT = 0.15 / 1e6, 0.60 / 1e6
# text-embedding-3-small: $0.02 per 1M input tokens.
EMBED_IN = 0.02 / 1e6


def route(request) -> tuple[str, str]:
    """(method, path) with the ids generalised."""
    path = request.url.path
    for prefix in ("/v1/batches/", "/v1/files/"):
        if path.startswith(prefix):
            rest = path[len(prefix):].split("/", 1)
            path = prefix + "{id}" + ("/" + rest[1] if len(rest) > 1 else "")
    return request.method, path


def cost_of(r) -> float:
    return (r.tokens_input * MINI_IN + r.tokens_output * MINI_OUT) / 2


def test_batch_lifecycle_order_and_records(tracker, records, fake_clock):
    sim = Simulator(batch_polls=2)
    client = tracker.wrap(openai_client(sim))
    requests = [chat(i) for i in range(5)]

    results = run_batch(client, requests, endpoint="/jobs/nightly", poll_interval=30,
                        sleep=fake_clock.sleep, clock=fake_clock, progress=False)

    # The exact API conversation: upload, create, one poll per step (in_progress x2, finalizing, completed),
    # then the output file; no error file since nothing failed.
    assert [route(r) for r in sim.requests] == [
        ("POST", "/v1/files"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches/{id}"),
        ("GET", "/v1/batches/{id}"),
        ("GET", "/v1/batches/{id}"),
        ("GET", "/v1/batches/{id}"),
        ("GET", "/v1/files/{id}/content"),
    ]
    assert fake_clock.sleeps == [30, 30, 30, 30]
    created = json.loads(sim.requests[1].content)
    assert created == {"input_file_id": created["input_file_id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    uploaded = sim.files[created["input_file_id"]]
    assert uploaded.purpose == "batch"
    lines = [json.loads(line) for line in uploaded.content.decode().splitlines()]
    assert [(line["method"], line["url"], line["body"]) for line in lines] == [("POST", "/v1/chat/completions", r) for r in requests]
    assert len({line["custom_id"] for line in lines}) == 5

    # Answers in input order (the simulator shuffles its output file), the same a live call gives.
    assert isinstance(results, BatchResults) and results.ok and results.errors == []
    assert results.batch.status == "completed" and results.id == results.batch.id
    assert results.wall_time_s == 120
    assert all(isinstance(r, ChatCompletion) for r in results)
    for request, answer in zip(requests, results):
        live = live_chat(request)
        assert answer.choices[0].message.content == live.choices[0].message.content
        assert answer.usage.completion_tokens == live.usage.completion_tokens

    # One record per request, none for the upload, polls or download; priced at half.
    stored = records()
    assert len(stored) == 5
    by_tokens = sorted(stored, key=lambda r: (r.tokens_input, r.tokens_output))
    expected = sorted((a.usage.prompt_tokens, a.usage.completion_tokens) for a in results)
    assert [(r.tokens_input, r.tokens_output) for r in by_tokens] == expected
    for r in stored:
        assert r.provider == "openai" and r.operation == "chat.completions" and r.endpoint == "/jobs/nightly"
        assert r.model == "gpt-4o-mini-2024-07-18" and r.model_requested == "gpt-4o-mini"
        assert r.tags == {"costtrack.batch": True, "costtrack.batch_id": results.id}
        assert r.status == "ok" and r.latency_ms is None and r.attempt == 1
        assert r.cost_usd == pytest.approx(cost_of(r), rel=1e-9)
        # `costtrack reprice` reads the batch tag back: it finds the same discounted cost.
        again, _ = tracker.pricebook.cost(r.provider, r.model, usage_of(r), r.timestamp, batch=batched(r.tags, r.price_source))
        assert again == pytest.approx(r.cost_usd, rel=1e-12)


def test_batch_cost_by_hand(tracker, records):
    # One request: 14 prompt tokens; its output length is whatever the simulator drew, read back from the answer.
    sim = Simulator()
    results = run_batch(openai_client(sim), [chat(7)], tracker=tracker, sleep=lambda s: None, progress=False)
    usage = results[0].usage
    (record,) = records()
    assert (record.tokens_input, record.tokens_output) == (usage.prompt_tokens, usage.completion_tokens)
    full = usage.prompt_tokens * 0.15 / 1_000_000 + usage.completion_tokens * 0.60 / 1_000_000
    assert record.cost_usd == pytest.approx(full / 2, rel=1e-9)
    assert record.provider == "openai" and record.endpoint == "chat.completions"  # a bare client: default endpoint


def test_failed_lines_are_reported_and_recorded_as_errors(tracker, records):
    sim = Simulator()
    sim.fail_batch_lines("costtrack-1", status=500)
    sim.fail_batch_lines("costtrack-3", status=400)
    requests = [chat(i) for i in range(4)]
    results = run_batch(tracker.wrap(openai_client(sim)), requests, sleep=lambda s: None, progress=False)

    assert [route(r)[1] for r in sim.requests][-2:] == ["/v1/files/{id}/content", "/v1/files/{id}/content"]  # output + errors
    assert [type(r) for r in results] == [ChatCompletion, BatchItemError, ChatCompletion, BatchItemError]
    assert not results.ok and results.errors == [results[1], results[3]]
    failed = results[1]
    assert (failed.index, failed.custom_id, failed.status_code, failed.code) == (1, "costtrack-1", 500, "server_error")
    assert "HTTP 500" in str(failed) and failed.body["error"]["type"] == "server_error"
    assert (results[3].status_code, results[3].code) == (400, "invalid_request_error")
    assert results.batch.request_counts.failed == 2

    stored = records()
    assert len(stored) == 4
    errors = [r for r in stored if r.status == "error"]
    assert sorted(r.error_type for r in errors) == ["invalid_request_error", "server_error"]
    assert all(r.cost_usd == 0 and r.tokens_input == 0 and r.tags["costtrack.batch"] is True for r in errors)


def test_timeout_cancels_and_returns_partial_results(tracker, records, fake_clock):
    sim = Simulator(batch_polls=5)
    client = tracker.wrap(openai_client(sim))
    with pytest.raises(BatchTimeoutError) as caught:
        run_batch(client, [chat(i) for i in range(5)], poll_interval=30, timeout=65,
                  sleep=fake_clock.sleep, clock=fake_clock, progress=False)

    # Polls at 30 s, 60 s and (the last, shortened wait) 65 s; then cancel, one more poll, the partial output.
    assert fake_clock.sleeps == [30, 30, 5, 30]
    assert [route(r) for r in sim.requests][2:] == [
        ("GET", "/v1/batches/{id}"),
        ("GET", "/v1/batches/{id}"),
        ("GET", "/v1/batches/{id}"),
        ("POST", "/v1/batches/{id}/cancel"),
        ("GET", "/v1/batches/{id}"),
        ("GET", "/v1/files/{id}/content"),
    ]
    error = caught.value
    assert error.batch.status == "cancelled"
    partial = error.results
    assert [type(r) for r in partial] == [ChatCompletion, ChatCompletion] + [BatchItemError] * 3
    assert [e.code for e in partial.errors] == ["batch_cancelled"] * 3 and partial.errors[0].status_code is None
    assert "2 of 5 requests answered" in str(error)
    # What ran was billed: it is recorded; what never ran is not.
    assert len(records()) == 2


def test_timeout_without_cancel_leaves_the_batch_running(tracker, records, fake_clock):
    sim = Simulator(batch_polls=5)
    with pytest.raises(BatchTimeoutError) as caught:
        run_batch(openai_client(sim), [chat(1)], tracker=tracker, poll_interval=10, timeout=15,
                  cancel_on_timeout=False, sleep=fake_clock.sleep, clock=fake_clock, progress=False)
    assert caught.value.results is None and caught.value.batch.status == "in_progress"
    assert all(route(r)[1] != "/v1/batches/{id}/cancel" for r in sim.requests)
    assert records() == []


def test_batch_failing_validation_raises(monkeypatch, tracker, records):
    from costtrack.batching import batch_api

    original = batch_api._Job.jsonl
    monkeypatch.setattr(batch_api._Job, "jsonl", lambda self: original(self) + b"this line is not JSON\n")
    sim = Simulator()
    with pytest.raises(BatchFailedError, match="line 3: This line is not parseable") as caught:
        run_batch(openai_client(sim), [chat(1), chat(2)], tracker=tracker, sleep=lambda s: None, progress=False)
    assert caught.value.batch.status == "failed"
    assert [route(r) for r in sim.requests][-1] == ("GET", "/v1/batches/{id}")  # nothing downloaded
    assert records() == []


async def test_arun_batch_async_twin(tracker, records, fake_clock):
    sim = Simulator(batch_polls=2)
    client = tracker.wrap(async_openai_client(sim))
    sim.fail_batch_lines("costtrack-2")

    async def sleep(seconds: float) -> None:
        fake_clock.sleep(seconds)

    requests = [chat(i) for i in range(4)]
    results = await arun_batch(client, requests, endpoint="/jobs/async", poll_interval=60, sleep=sleep, clock=fake_clock, progress=False)
    assert [route(r) for r in sim.requests] == [("POST", "/v1/files"), ("POST", "/v1/batches")] + [("GET", "/v1/batches/{id}")] * 4 + [
        ("GET", "/v1/files/{id}/content")
    ] * 2
    assert fake_clock.sleeps == [60] * 4 and results.wall_time_s == 240
    assert [type(r) for r in results] == [ChatCompletion, ChatCompletion, BatchItemError, ChatCompletion]
    assert results[3].choices[0].message.content == live_chat(requests[3]).choices[0].message.content
    stored = records()
    assert len(stored) == 4 and {r.endpoint for r in stored} == {"/jobs/async"}
    assert all(r.cost_usd == pytest.approx(cost_of(r), rel=1e-9) for r in stored)


def test_embeddings_and_responses_batches(tracker, records):
    sim = Simulator()
    client = tracker.wrap(openai_client(sim), endpoint="/api/search", tags={"team": "search"})
    texts = ["first document", "a second, longer document about costs"]
    with costtrack.context(tags={"run": "nightly"}, user="u1"):
        vectors = run_batch(client, [{"model": "text-embedding-3-small", "input": t} for t in texts],
                            url="/v1/embeddings", sleep=lambda s: None, progress=False)
        answers = run_batch(client, [{"model": "gpt-4o-mini", "input": "Say hi"}], url="responses",
                            tags={"job": 7}, endpoint="/jobs/responses", sleep=lambda s: None, progress=False)
    assert all(isinstance(v, CreateEmbeddingResponse) for v in vectors)
    assert len(vectors[0].data[0].embedding) == 16
    assert isinstance(answers[0], Response) and answers[0].output_text

    stored = records()
    embeddings = sorted((r for r in stored if r.operation == "embeddings"), key=lambda r: r.tokens_input)
    assert [r.tokens_input for r in embeddings] == [count_text_tokens(t) for t in texts]
    for r in embeddings:
        assert r.cost_usd == pytest.approx(r.tokens_input * EMBED_IN / 2, rel=1e-9)
        # wrap(endpoint=...) applies when neither run_batch nor the context names one; tags merge.
        assert r.endpoint == "/api/search" and r.user == "u1"
        assert r.tags == {"team": "search", "run": "nightly", "costtrack.batch": True, "costtrack.batch_id": vectors.id}
    (response,) = [r for r in stored if r.operation == "responses"]
    assert response.endpoint == "/jobs/responses" and response.tags["job"] == 7
    assert response.cost_usd == pytest.approx(cost_of(response), rel=1e-9)


def test_progress_bar_draws_on_the_given_console():
    out = io.StringIO()
    tracker = costtrack.Tracker("sqlite://", writer=NullWriter())
    run_batch(openai_client(Simulator()), [chat(1), chat(2)], tracker=tracker, sleep=lambda s: None,
              progress=Console(file=out, width=100))
    assert "batch completed" in out.getvalue() and "2/2" in out.getvalue()


def test_run_batch_checks_its_arguments():
    tracker = costtrack.Tracker("sqlite://", writer=NullWriter())
    sim = Simulator()
    client = openai_client(sim)
    with pytest.raises(ValueError, match="does not stream"):
        run_batch(client, [dict(chat(1), stream=True)], tracker=tracker, progress=False)
    with pytest.raises(ValueError, match="not '/v1/moderations'"):
        run_batch(client, [chat(1)], url="/v1/moderations", tracker=tracker, progress=False)
    with pytest.raises(TypeError, match="openai client"):
        run_batch(anthropic_client(sim), [chat(1)], tracker=tracker, progress=False)
    with pytest.raises(TypeError, match="arun_batch"):
        run_batch(async_openai_client(sim), [chat(1)], tracker=tracker, progress=False)
    assert sim.requests == []
    empty = run_batch(client, [], tracker=tracker, progress=False)
    assert empty == [] and empty.ok and sim.requests == []

