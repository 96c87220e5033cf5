"""gather_limited: at most `limit` calls in flight, results in input order, errors, the progress bar."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import warnings

import openai
import pytest
from rich.console import Console

from costtrack.batching.gather import gather_limited
from costtrack.simulator import Simulator

from helpers import batch_chat as chat
from helpers import live_chat


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
