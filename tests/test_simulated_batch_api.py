"""The simulated Batch API itself (costtrack.simulator): its edges, and lines failing at random but reproducibly."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

import costtrack
from costtrack.batching import run_batch
from costtrack.bench.warmup import NullWriter  # a writer that stores nothing
from costtrack.simulator import Simulator, anthropic_client, openai_client

from helpers import batch_chat as chat


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
        tracker = costtrack.Tracker("sqlite://", writer=NullWriter())
        results = run_batch(openai_client(sim), [chat(i) for i in range(8)], tracker=tracker, sleep=lambda s: None, progress=False)
        return [type(r).__name__ for r in results]

    first = run()
    assert first == run() and "BatchItemError" in first and "ChatCompletion" in first
