"""fastjson.loads parses like json.loads: same values, same ValueError on bad input, whichever parser answers."""

from __future__ import annotations

import json

import pytest

from costtrack import fastjson

SAMPLES = [
    b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\\u00e9llo \\ud83d\\ude00"}],"temperature":0.7}',
    b'{"n": 12345678901234567890123, "f": 1e-7, "t": true, "z": null, "list": [1, 2.5, "x", {}]}',
    b'{"a": "\\ud800 lone surrogate"}',  # jiter refuses it; json.loads accepts: the fallback decides
    '{"text": "unicode as str: \u00e9"}',
    '{"bom": 1}'.encode("utf-16"),  # json.loads detects UTF-16; jiter wants UTF-8
    b'{"dup": 1, "dup": 2}',
    b"[NaN, Infinity]",
]


@pytest.mark.parametrize("data", SAMPLES)
def test_same_values_as_json_loads(data: bytes | str) -> None:
    expected = json.loads(data)
    got = fastjson.loads(data)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


@pytest.mark.parametrize("data", [b"{not json", b"", b'{"a": 1} trailing', b"\xff\xfe\x00"])
def test_bad_input_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(data)
    with pytest.raises(ValueError):
        fastjson.loads(data)


def test_json_nested_past_the_parsers_limits_raises_value_error() -> None:
    """jiter refuses it and json.loads would raise RecursionError: callers, which catch ValueError, get that."""
    deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(RecursionError):
        json.loads(deep)
    with pytest.raises(ValueError):
        fastjson.loads(deep)


@pytest.mark.parametrize(
    ("data", "finite"),
    [(b'{"a": 1.5, "b": [null, 2]}', True), (b'{"a": NaN}', False), (b'{"a": [Infinity]}', False),
     (b'{"a": -Infinity}', False), (b'{"s": "NaN Infinity"}', True)],
)  # fmt: skip
def test_loads_finite_says_whether_numbers_are_finite(data, finite):
    value, known_finite = fastjson.loads_finite(data)
    assert known_finite is finite
    assert json.dumps(value) == json.dumps(json.loads(data))  # the same value as json.loads, NaN included
