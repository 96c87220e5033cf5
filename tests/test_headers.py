"""Header lookups: the same answers as httpx2.Headers' own, whatever the case the app or SDK used."""

from __future__ import annotations

import httpx2
import pytest

from costtrack.headers import (
    RETRY_HEADER,
    attempt_number,
    has_header,
    header_value,
    three_header_values,
    two_header_values,
)


def test_lookups_agree_with_httpx2_whatever_the_case() -> None:
    headers = httpx2.Headers([("Content-Type", "application/json"), ("X-Stainless-Retry-Count", "2"),
                              ("x-costtrack-cache", "bypass"), ("X-Dup", "a"), ("x-dup", "b")])  # fmt: skip
    assert header_value(headers, b"x-stainless-retry-count") == b"2" == headers["x-stainless-retry-count"].encode()
    assert has_header(headers, b"x-costtrack-cache") and not has_header(headers, b"x-absent")
    assert header_value(headers, b"x-dup") == b"a"  # the first, as the SDKs set each header once
    assert header_value(httpx2.Headers(), b"content-type") is None


def test_a_mapping_without_httpx2s_list_is_read_through_its_public_api() -> None:
    class Plain(dict):
        pass

    assert header_value(Plain({"x-stainless-retry-count": "4"}), b"x-stainless-retry-count") == b"4"
    assert header_value(Plain(), b"x-stainless-retry-count") is None


def test_two_headers_in_one_pass_agree_with_two_lookups() -> None:
    headers = httpx2.Headers([("X-Dup", "a"), ("X-Stainless-Retry-Count", "2"), ("x-dup", "b")])
    for first, second in [(b"x-dup", b"x-stainless-retry-count"), (b"x-stainless-retry-count", b"x-absent")]:
        assert two_header_values(headers, first, second) == (header_value(headers, first), header_value(headers, second))
    assert two_header_values({"x-dup": "a"}, b"x-dup", b"x-absent") == (b"a", None)  # no httpx2 list: public API


def test_three_headers_in_one_pass_agree_with_three_lookups() -> None:
    headers = httpx2.Headers([("X-Dup", "a"), ("Content-Length", "9"), ("x-dup", "b"), ("Content-Type", "text/event-stream")])
    names = [b"x-dup", b"content-length", b"content-type", b"x-absent"]
    for first, second, third in [names[:3], names[1:], [names[2], names[0], names[1]], [names[3], names[3], names[0]]]:
        expected = (header_value(headers, first), header_value(headers, second), header_value(headers, third))
        assert three_header_values(headers, first, second, third) == expected
    assert three_header_values({"x-dup": "a"}, b"x-absent", b"x-dup", b"x-none") == (None, b"a", None)  # public API


@pytest.mark.parametrize(
    ("value", "attempt"),
    [(None, 1), ("0", 1), ("2", 3), ("", 1), ("-1", 1), ("1.5", 1), ("9" * 10, 1), ("9" * 5000, 1)],
)
def test_attempt_number_reads_the_sdks_retry_count(value, attempt):
    headers = httpx2.Headers({"content-type": "application/json"} | ({} if value is None else {"X-Stainless-Retry-Count": value}))
    assert attempt_number(header_value(headers, RETRY_HEADER)) == attempt
