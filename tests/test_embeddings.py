"""EmbeddingBatcher over the simulator: waits are flushed explicitly or last a millisecond."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time

import openai
import pytest

from costtrack.batching.embeddings import EmbeddingBatcher
from costtrack.simulator import (
    Simulator,
    async_openai_client,
    count_text_tokens,
    openai_client,
)

# text-embedding-3-small: $0.02 per 1M input tokens.
EMBED_IN = 0.02 / 1e6


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
