"""The canonical request hash: same answer-relevant request, same hash; anything that changes the answer, a new one."""

from __future__ import annotations

from costtrack.hashing import request_hash

BASE = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "max_tokens": 5}


def h(body, provider="openai", operation="chat.completions"):
    return request_hash(provider, operation, body)


def test_key_order_volatile_fields_and_streaming_do_not_change_the_hash():
    reordered = {"max_tokens": 5, "temperature": 0.0, "messages": [{"content": "hi", "role": "user"}], "model": "gpt-4o-mini"}
    noisy = {**BASE, "user": "u1", "metadata": {"k": "v"}, "stream": True, "stream_options": {"include_usage": True}}
    assert h(BASE) == h(reordered) == h(noisy)


def test_what_changes_the_answer_changes_the_hash():
    variants = [
        {**BASE, "model": "gpt-4o"},
        {**BASE, "messages": [{"role": "user", "content": "hi!"}]},
        {**BASE, "temperature": 0.5},
        {**BASE, "max_tokens": 6},
        {**BASE, "seed": 1},
        {**BASE, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {**BASE, "response_format": {"type": "json_object"}},
        {**BASE, "stop": None},
        {**BASE, "logit_bias": {"50256": -100}},
    ]
    hashes = {h(v) for v in variants}
    assert len(hashes) == len(variants) and h(BASE) not in hashes
    assert h(BASE, provider="azure") != h(BASE) and h(BASE, operation="responses") != h(BASE)


def test_types_are_not_confused():
    assert h({**BASE, "x": "1"}) != h({**BASE, "x": 1}) != h({**BASE, "x": True})
    assert h({**BASE, "x": [1, 2]}) != h({**BASE, "x": [2, 1]})
    assert h({**BASE, "x": ("a",)}) == h({**BASE, "x": ["a"]})
    assert h({**BASE, "x": Exception("e")}) == h({**BASE, "x": "e"})  # other types by their str()


def test_digest_is_sha256_of_the_whole_encoding_at_every_length():
    import hashlib

    from costtrack.hashing import digest

    for size in (0, 1, 2046, 2047, 2048, 4094, 4095, 20_000):
        text = "é" * (size // 2) + "x" * (size % 2)
        expected = hashlib.sha256(("a" + text).encode()).hexdigest()[:32]
        assert digest(["a", text]) == expected


def test_any_python_string_hashes_even_a_lone_surrogate():
    assert h({**BASE, "x": "\ud800"}) != h({**BASE, "x": "\ud801"})
    assert h({**BASE, "x": "ab"}) != h({**BASE, "x": ["a", "b"]}) != h({**BASE, "xa": "b"})


def test_any_mapping_hashes_like_the_dict_it_holds():
    from types import MappingProxyType

    assert h(MappingProxyType(BASE)) == h(BASE) == h(MappingProxyType(dict(reversed(list(BASE.items())))))
