"""Call.record: the records built without pydantic's validation pass are ones validation accepts, field for field."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest

import costtrack
from costtrack.records import CallRecord

from helpers import Recorder, anthropic_client, fixture, openai_client, serve


class Keep:
    """The storage end of a Tracker, keeping the submitted Calls so each can be built here."""

    on_records = None

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def submit(self, item: Any) -> None:
        self.calls.append(item)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass


def _records(tmp_path: Any, store_content: bool = False) -> tuple[costtrack.Tracker, Keep]:
    keep = Keep()
    tracker = costtrack.Tracker(f"sqlite:///{tmp_path}/c.db", writer=keep, budgets=[], store_content=store_content)  # type: ignore[arg-type]
    return tracker, keep


MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("store_content", [False, True])
def test_every_kind_of_record_validates_as_built(tmp_path: Any, store_content: bool) -> None:
    tracker, keep = _records(tmp_path, store_content)
    ok = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"))))
    cut = fixture("openai_chat_stream.sse").split(b"\n\n")[0] + b"\n\n"  # the first event, then nothing
    stream = tracker.wrap(openai_client(Recorder(httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=cut))))
    failing = tracker.wrap(openai_client(Recorder(httpx2.Response(500, json={"error": {"type": "server_error"}}))))
    garbled = tracker.wrap(openai_client(Recorder(httpx2.Response(200, content=b"<html>"))))
    claude = tracker.wrap(anthropic_client(Recorder(serve("anthropic_stream.sse"))))
    unknown = tracker.wrap(openai_client(Recorder(httpx2.Response(200, json={"model": "my-own-model", "choices": [],
                                                                            "usage": {"prompt_tokens": 3}}))))  # fmt: skip
    with costtrack.context(endpoint="/api/x", user=42, tags={"run": 1, "when": object()}):  # type: ignore[arg-type]
        ok.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.5)
        for _ in stream.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass
        with pytest.raises(openai.InternalServerError):
            failing.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        garbled.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # the SDK hands back the text
        with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES) as events:
            events.until_done()
        unknown.chat.completions.create(model="my-own-model", messages=MESSAGES)
    records = [call.to_record() for call in keep.calls]
    assert {r.status for r in records} == {"ok", "incomplete", "error"}
    assert any(r.cost_usd is None for r in records) and any(r.cost_usd for r in records)
    for record in records:
        validated = CallRecord.model_validate(record.model_dump())
        assert validated == record
        assert validated.model_dump() == record.model_dump()
        assert list(record.__dict__) == list(CallRecord.model_fields)
        assert record.user == "42" and record.endpoint == "/api/x"
        assert (record.request_body is not None) is store_content


def test_a_record_built_twice_keeps_its_id(tmp_path: Any) -> None:
    """Writer.close() on a timeout builds the records of a batch the writer thread is building too: each copy had an
    id of its own, and both were stored (review finding: 1,031 rows for 902 calls). One id: the insert keeps one."""
    tracker, keep = _records(tmp_path)
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"))))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    first, second = keep.calls[0].to_record(), keep.calls[0].to_record()
    assert first.id == second.id and len(first.id) == 32 and first.model_dump() == second.model_dump()
    assert keep.calls[1].to_record().id != first.id
    assert first.request_hash == keep.calls[1].to_record().request_hash and len(first.request_hash or "") == 32


def test_the_attempt_number_comes_from_the_sdks_retry_header(tmp_path: Any) -> None:
    tracker, keep = _records(tmp_path)
    busy = httpx2.Response(500, json={}, headers={"retry-after-ms": "1"})  # the SDK waits 1 ms, not its backoff
    failing_twice = Recorder(busy, busy, serve("openai_chat.json"))
    client = tracker.wrap(openai_client(failing_twice, max_retries=2))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [call.attempt for call in keep.calls] == [1, 2, 3]
    assert [r.headers["x-stainless-retry-count"] for r in failing_twice.requests] == ["0", "1", "2"]



def test_an_event_stream_is_read_whatever_the_request_bytes_look_like(tmp_path: Any) -> None:
    # The app may hand the SDK its own bytes (not compact JSON): the response's content type decides.
    from openai.types.chat import ChatCompletionChunk

    tracker, keep = _records(tmp_path)
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat_stream.sse"))))
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
    chunks = client.post("/chat/completions", cast_to=ChatCompletionChunk, content=body, stream=True,
                         stream_cls=openai.Stream[ChatCompletionChunk])  # fmt: skip
    usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
    [record] = [call.to_record() for call in keep.calls]
    assert record.status == "ok" and record.ttft_ms is not None
    assert (record.tokens_input, record.tokens_output) == (usage[-1].prompt_tokens, usage[-1].completion_tokens)


def test_tag_keys_are_stored_as_text(tmp_path: Any) -> None:
    tracker, keep = _records(tmp_path)
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat.json"))))
    with costtrack.context(tags={1: "one", "two": 2}):  # type: ignore[dict-item]
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    record = keep.calls[0].to_record()
    assert record.tags == {"1": "one", "two": 2} and CallRecord.model_validate(record.model_dump()) == record


def test_a_finished_call_keeps_no_parsed_request_and_its_record_is_unchanged(tmp_path: Any) -> None:
    # A stream's request is parsed on the app's thread (to ask for usage); the parse is let go when the
    # call ends, so it does not wait in the writer's queue, and the record parses the bytes again alike.
    tracker, keep = _records(tmp_path)
    client = tracker.wrap(openai_client(Recorder(serve("openai_chat_stream.sse"))))
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, temperature=0.5):
        pass
    [call] = keep.calls
    assert call.finished and call.__dict__.get("_body", "unset") is None
    record = call.to_record()
    expected = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "temperature": 0.5}
    assert call.body == expected and record.model_requested == "gpt-4o-mini"
    from costtrack.hashing import request_hash

    assert record.request_hash == request_hash("openai", "chat.completions", expected)
    assert record.request_hash == call.to_record().request_hash  # built again: same hash


def test_a_request_with_nan_never_shares_its_hash_with_one_with_null(tmp_path):
    """Request bytes with NaN or Infinity (json.dumps writes them; the SDKs refuse to) hash apart from null."""
    from costtrack.call_context import current
    from costtrack.calls import Call

    tracker, _ = _records(tmp_path)
    values = [b"null", b"NaN", b"Infinity", b"-Infinity", b"0.5"]
    calls = [
        Call(tracker=tracker, provider="openai", api="openai", operation="chat.completions", context=current(),
             endpoint=None, request_bytes=b'{"messages":[{"role":"user","content":"x"}],"model":"gpt-4o-mini","temperature":'
             + value + b"}", attempt=1, timestamp=tracker.now(), started=0.0)
        for value in values
    ]  # fmt: skip
    assert len({call.record(None).request_hash for call in calls}) == len(values)
    # A strict body is known finite as it is parsed (the null check is skipped); a lenient one is checked.
    assert [call._finite for call in calls] == [True, False, False, False, True]

