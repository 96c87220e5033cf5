"""Server-sent-event splitting: the fast byte-search path gives the same events as the regex, under any chunking."""

from __future__ import annotations

import random
import re

import pytest

from costtrack.sse import EventSplitter, event_fields, is_plain, next_boundary

_REFERENCE = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def reference_split(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    """Events and leftover bytes, found the slow and obvious way: the regex over everything buffered."""
    buffer, events = b"", []
    for chunk in chunks:
        data, start = buffer + chunk, 0
        for match in _REFERENCE.finditer(data):
            events.append(data[start : match.end()])
            start = match.end()
        buffer = data[start:]
    return events, buffer


def events_of(block: bytes, plain: bool | None = None) -> list[bytes]:
    """The events of a block of complete events, walked as the transport walks them (`plain`: the splitter's flag)."""
    plain, pos, events = is_plain(block) if plain is None else plain, 0, []
    while pos < len(block):
        stop = next_boundary(block, pos, plain)
        events.append(block[pos:stop])
        pos = stop
    return events


def test_any_stream_any_chunking_splits_like_the_reference() -> None:
    rng = random.Random(20261123)
    pieces = [b"a", b"\n", b"\r", b"data: x", b"\n\n", b"\r\n\r\n", b"event: e\n"]
    for _ in range(5000):
        stream = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randint(0, 5))))
        chunks = [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)])]
        splitter, events = EventSplitter(), []
        for chunk in chunks:
            block = splitter.feed_block(chunk)
            assert is_plain(block) or not splitter.plain  # the flag may be cautious, never wrong
            events += events_of(block, splitter.plain)
        assert (events, splitter.rest()) == reference_split(chunks), chunks


def test_feed_block_returns_complete_events_and_keeps_the_rest() -> None:
    splitter = EventSplitter()
    assert splitter.feed_block(b"data: 1\n\ndata: 2\n\nda") == b"data: 1\n\ndata: 2\n\n"
    assert splitter.feed_block(b"ta: 3") == b""
    assert splitter.feed_block(b"\n\n") == b"data: 3\n\n"
    assert splitter.rest() == b""


@pytest.mark.parametrize("block", [b"data: 1\n\ndata: 2\n\n", b"data: 1\r\n\r\ndata: 2\r\n\r\n", b"data: 1\n\n\n\ndata: 2\n\n"])
def test_next_boundary_walks_the_events_of_a_block(block: bytes) -> None:
    assert events_of(block) == reference_split([block])[0]


def test_event_fields() -> None:
    assert event_fields(b"data: {}\n\n") == (None, b"{}")
    assert event_fields(b"event: message_stop\ndata: {\"a\":1}\n\n") == ("message_stop", b'{"a":1}')
    assert event_fields(b"data: one\ndata: two\n\n") == (None, b"one\ntwo")
