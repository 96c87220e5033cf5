"""Batching: the Batch API runner, gather_limited and EmbeddingBatcher, with real SDK objects over the simulator.

Nothing here waits on real time: batch polls sleep on a FakeClock, and the embedding batcher's
waits are flushed explicitly or last a millisecond.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import math
import threading
import time
import warnings

import anthropic
import openai
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from rich.console import Console

import costtrack
from costtrack.batching import (
    BatchFailedError,
    BatchItemError,
    BatchResults,
    BatchTimeoutError,
    EmbeddingBatcher,
    arun_batch,
    gather_limited,
    run_batch,
)
from costtrack.cli.reprice import usage_of
from costtrack.simulator import (
    Simulator,
    anthropic_client,
    async_openai_client,
    count_text_tokens,
    openai_client,
)

# gpt-4o-mini: $0.15 / $0.60 per 1M input / output tokens; the Batch API halves both.
MINI_IN, MINI_OUT = 0.15 / 1e6, 0.60 / 1e6
# text-embedding-3-small: $0.02 per 1M input tokens.
EMBED_IN = 0.02 / 1e6


def chat(i: int) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Summarise ticket number {i} in one line."}]}


def route(request) -> tuple[str, str]:
    """(method, path) with the ids generalised."""
    path = request.url.path
    for prefix in ("/v1/batches/", "/v1/files/"):
        if path.startswith(prefix):
            rest = path[len(prefix):].split("/", 1)
            path = prefix + "{id}" + ("/" + rest[1] if len(rest) > 1 else "")
    return request.method, path


def live_chat(body: dict) -> ChatCompletion:
    """What a live (non-batch) call answers for the same body, from a fresh simulator."""
    return openai_client(Simulator()).chat.completions.create(**body)


def cost_of(r) -> float:
    return (r.tokens_input * MINI_IN + r.tokens_output * MINI_OUT) / 2


# --------------------------------------------------------------------------- run_batch


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
        assert r.tags == {"batch": True, "batch_id": results.id}
        assert r.status == "ok" and r.latency_ms is None and r.attempt == 1
        assert r.cost_usd == pytest.approx(cost_of(r), rel=1e-9)
        # `costtrack reprice` reads tags.batch: it finds the same discounted cost.
        again, _ = tracker.pricebook.cost(r.provider, r.model, usage_of(r), r.timestamp, batch=bool(r.tags.get("batch")))
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
    assert all(r.cost_usd == 0 and r.tokens_input == 0 and r.tags["batch"] is True for r in errors)


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
    from costtrack import batching

    original = batching._Job.jsonl
    monkeypatch.setattr(batching._Job, "jsonl", lambda self: original(self) + b"this line is not JSON\n")
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
        assert r.tags == {"team": "search", "run": "nightly", "batch": True, "batch_id": vectors.id}
    (response,) = [r for r in stored if r.operation == "responses"]
    assert response.endpoint == "/jobs/responses" and response.tags["job"] == 7
    assert response.cost_usd == pytest.approx(cost_of(response), rel=1e-9)


def test_progress_bar_draws_on_the_given_console():
    out = io.StringIO()
    tracker = costtrack.Tracker("sqlite://", writer=_NullWriter())
    run_batch(openai_client(Simulator()), [chat(1), chat(2)], tracker=tracker, sleep=lambda s: None,
              progress=Console(file=out, width=100))
    assert "batch completed" in out.getvalue() and "2/2" in out.getvalue()


def test_run_batch_checks_its_arguments():
    tracker = costtrack.Tracker("sqlite://", writer=_NullWriter())
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


class _NullWriter:
    """A writer that drops records (for tests that do not read them back)."""

    def submit(self, record) -> None:
        pass

    def flush(self, timeout=None) -> bool:
        return True

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- gather_limited


async def test_gather_limited_caps_in_flight_requests_and_keeps_order(tracker, records):
    sim = Simulator()
    in_flight = peak = 0

    async def handler(request):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        body = json.loads(request.content)
        for _ in range(int(body["messages"][0]["content"].split()[3]) % 4 + 1):
            await asyncio.sleep(0)  # requests finish out of order
        in_flight -= 1
        return await sim.handle_async(request)

    import httpx2

    client = tracker.wrap(openai.AsyncOpenAI(api_key="sk-test", max_retries=0,
                                             http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler))))
    requests = [chat(i) for i in range(12)]
    answers = await gather_limited([lambda r=r: client.chat.completions.create(**r) for r in requests], limit=3)
    assert peak == 3
    assert [a.choices[0].message.content for a in answers] == [live_chat(r).choices[0].message.content for r in requests]
    assert len(records()) == 12


async def test_gather_limited_with_coroutines_and_plain_factories():
    running = peak = 0

    async def job(i: int, hops: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(hops):
            await asyncio.sleep(0)
        running -= 1
        return i

    items = [job(i, 5 - i % 5) if i % 2 else (lambda i=i: job(i, i % 3)) for i in range(20)]
    assert await gather_limited(items, limit=4) == list(range(20))
    assert peak == 4
    assert await gather_limited([], limit=2) == []
    with pytest.raises(ValueError):
        await gather_limited([lambda: job(0, 0)], limit=0)


async def test_gather_limited_errors():
    started: list[int] = []

    async def job(i: int) -> int:
        started.append(i)
        await asyncio.sleep(0)
        if i == 1:
            raise RuntimeError("boom")
        return i

    mixed = await gather_limited([job(i) for i in range(4)], limit=2, return_exceptions=True)
    assert mixed[0] == 0 and isinstance(mixed[1], RuntimeError) and mixed[2:] == [2, 3]

    started.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="boom"):
            await gather_limited([job(i) for i in range(6)], limit=1)
        gc.collect()
    assert started == [0, 1]  # the rest never started...
    assert not [w for w in caught if "never awaited" in str(w.message)]  # ...and were closed


async def test_gather_limited_progress_bar():
    out = io.StringIO()

    async def job(i: int) -> int:
        return i

    assert await gather_limited([job(i) for i in range(3)], progress=Console(file=out, width=80), description="jobs") == [0, 1, 2]
    assert "jobs" in out.getvalue() and "3/3" in out.getvalue()


# --------------------------------------------------------------------------- EmbeddingBatcher


TEXTS = [f"support ticket {i}: the invoice total looks wrong" for i in range(10)]


def single_vector(text: str) -> list[float]:
    """What one live call with this single input answers."""
    return openai_client(Simulator()).embeddings.create(model="text-embedding-3-small", input=text).data[0].embedding


def embedding_inputs(sim: Simulator) -> list[int]:
    return [len(json.loads(r.content)["input"]) for r in sim.requests if r.url.path.endswith("/embeddings")]


def test_embedding_batcher_combines_concurrent_calls(tracker, records, fake_clock):
    sim = Simulator()
    # A frozen clock: a partial batch waits until flushed, so the request count does not depend on thread timing.
    batcher = EmbeddingBatcher(tracker.wrap(openai_client(sim)), model="text-embedding-3-small", max_batch=4,
                               max_wait=0.01, clock=fake_clock)
    got: dict[int, list[float]] = {}

    def call(i: int) -> None:
        got[i] = batcher.embed(TEXTS[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(TEXTS))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while not (batcher.requests == 2 and batcher.pending == 2) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert batcher.flush() == 2
    for t in threads:
        t.join(10)

    assert sorted(embedding_inputs(sim)) == [2, 4, 4]  # ceil(10 / 4) requests (sent from different threads)
    assert batcher.requests == 3
    for i, text in enumerate(TEXTS):
        assert got[i] == pytest.approx(single_vector(text))  # each caller gets its own vector
    stored = sorted(records(), key=lambda r: r.tokens_input)
    assert len(stored) == 3  # one record per combined request
    assert sum(r.tokens_input for r in stored) == sum(count_text_tokens(t) for t in TEXTS)
    assert sorted(r.tags["embedding_inputs"] for r in stored) == [2, 4, 4]
    assert all(r.cost_usd == pytest.approx(r.tokens_input * EMBED_IN, rel=1e-9) for r in stored)


def test_embedding_batcher_sends_after_max_wait():
    sim = Simulator()
    batcher = EmbeddingBatcher(openai_client(sim), model="text-embedding-3-small", max_batch=8, max_wait=0.001)
    assert batcher.embed("alone") == pytest.approx(single_vector("alone"))
    assert embedding_inputs(sim) == [1]
    with pytest.raises(ValueError):
        batcher.embed("")  # would make the provider refuse everyone's request
    assert embedding_inputs(sim) == [1] and batcher.pending == 0


async def test_embedding_batcher_async(tracker, records):
    sim = Simulator()
    batcher = EmbeddingBatcher(tracker.wrap(async_openai_client(sim)), model="text-embedding-3-small",
                               max_batch=4, max_wait=0.001, dimensions=8)
    vectors = await asyncio.gather(*(batcher.aembed(t) for t in TEXTS))
    assert sorted(embedding_inputs(sim), reverse=True) == [4, 4, 2]  # the three requests may arrive in any order
    assert math.ceil(len(TEXTS) / 4) == 3 == batcher.requests
    assert all(len(v) == 8 for v in vectors)
    expected = [openai_client(Simulator()).embeddings.create(model="text-embedding-3-small", input=t, dimensions=8).data[0].embedding
                for t in TEXTS]
    assert vectors == [pytest.approx(e) for e in expected]
    assert len(records()) == 3
    with pytest.raises(TypeError, match="aembed"):
        batcher.embed("sync call on an async client")


async def test_embedding_batcher_shares_a_failure_with_its_batch():
    sim = Simulator()
    sim.script(500)
    batcher = EmbeddingBatcher(async_openai_client(sim), model="text-embedding-3-small", max_batch=2, max_wait=0.001)
    outcome = await asyncio.gather(batcher.aembed("a"), batcher.aembed("b"), batcher.aembed("c"), return_exceptions=True)
    assert [type(o) for o in outcome[:2]] == [openai.InternalServerError] * 2
    assert outcome[2] == pytest.approx(single_vector("c"))
    assert embedding_inputs(sim) == [2, 1]


async def test_embedding_batcher_aembed_with_a_sync_client():
    sim = Simulator()
    batcher = EmbeddingBatcher(openai_client(sim), model="text-embedding-3-small", max_batch=2, max_wait=0.001)
    assert await batcher.aembed("threaded") == pytest.approx(single_vector("threaded"))


# --------------------------------------------------------------------------- the simulated Batch API itself


def test_simulated_batch_api_edges():
    sim = Simulator()
    client = openai_client(sim)
    line = {"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {"model": "text-embedding-3-small", "input": ""}}
    upload = client.files.create(file=("in.jsonl", (json.dumps(line) + "\n").encode()), purpose="batch")
    assert client.files.retrieve(upload.id).filename == "in.jsonl"
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=upload.id, endpoint="/v1/moderations", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h", metadata={"job": "x"})
    assert (batch.status, batch.metadata, batch.request_counts.total) == ("validating", {"job": "x"}, 0)
    while batch.status != "completed":
        batch = client.batches.retrieve(batch.id)
    # An empty input is refused like a live call would be: a 400 in the error file.
    assert batch.output_file_id is None and batch.request_counts.failed == 1
    (failed,) = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    assert failed["custom_id"] == "a" and failed["response"]["status_code"] == 400
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)
    # Anthropic's Message Batches are not simulated.
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client(sim).messages.batches.retrieve("msgbatch_1")


def test_simulated_batch_lines_fail_at_random_but_reproducibly():
    def run() -> list[str]:
        sim = Simulator(seed=3, error_rate=0.5)
        tracker = costtrack.Tracker("sqlite://", writer=_NullWriter())
        results = run_batch(openai_client(sim), [chat(i) for i in range(8)], tracker=tracker, sleep=lambda s: None, progress=False)
        return [type(r).__name__ for r in results]

    first = run()
    assert first == run() and "BatchItemError" in first and "ChatCompletion" in first
