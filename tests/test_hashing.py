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


def test_digest_is_sha256_of_the_whole_input_at_every_length():
    import hashlib

    from costtrack.hashing import digest

    for size in (0, 1, 2046, 2047, 2048, 4094, 4095, 20_000):
        data = ("é" * (size // 2) + "x" * (size % 2)).encode()
        assert digest(data) == hashlib.sha256(data).hexdigest()[:32]


def test_the_canonical_encoding_is_sorted_compact_json():
    import json

    from costtrack.hashing import canonical

    body = {"model": "m", "messages": [{"role": "user", "content": "héllo \"x\""}], "n": 2, "t": 0.5}
    assert canonical(body) == json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_an_integral_float_parameter_is_the_int_it_equals():
    assert h({**BASE, "top_p": 1}) == h({**BASE, "top_p": 1.0})
    assert h({**BASE, "temperature": -0.0}) == h(BASE)  # BASE has temperature 0
    assert h({**BASE, "x": "1.0"}) != h({**BASE, "x": 1}) != h({**BASE, "x": 1.5})  # not a text that looks like one
    assert h({**BASE, "x": 2.0**53}) != h({**BASE, "x": 2**53})  # nor a float too big to be exact
    # Nested numbers are taken as written: two hashes for one request at worst, never one for two.
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "integer", "minimum": 0}}}]
    as_float = [{"type": "function", "function": {"name": "f", "parameters": {"type": "integer", "minimum": 0.0}}}]
    assert h({**BASE, "tools": tools}) != h({**BASE, "tools": as_float})


def test_the_usual_body_is_hashed_as_it_is():
    from costtrack.hashing import answer_fields

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 1}
    assert answer_fields(body) is body  # nothing to leave out or to make an int: not copied
    assert answer_fields({**body, "temperature": 1.0}) == {**body, "temperature": 1}
    assert answer_fields({**body, "temperature": 0.5}) == {**body, "temperature": 0.5}
    assert answer_fields({**body, "user": "u1", "stream": True}) == body


def test_values_orjson_refuses_still_hash_and_stay_apart():
    big = 2**70
    assert h({**BASE, "x": big}) == h({**BASE, "x": big}) != h({**BASE, "x": big + 1})
    assert h({**BASE, "x": big}) != h({**BASE, "x": str(big)})
    assert h({**BASE, "x": {1: "a"}}) == h({**BASE, "x": {"1": "a"}})  # JSON object keys are text
    deep: object = "leaf"
    for _ in range(300):
        deep = [deep]
    assert h({**BASE, "x": deep}) == h({**BASE, "x": deep}) != h({**BASE, "x": [deep]})


def test_any_python_string_hashes_even_a_lone_surrogate():
    assert h({**BASE, "x": "\ud800"}) != h({**BASE, "x": "\ud801"})
    assert h({**BASE, "x": "ab"}) != h({**BASE, "x": ["a", "b"]}) != h({**BASE, "xa": "b"})


def test_any_mapping_hashes_like_the_dict_it_holds():
    from types import MappingProxyType

    assert h(MappingProxyType(BASE)) == h(BASE) == h(MappingProxyType(dict(reversed(list(BASE.items())))))


def test_a_request_hash_is_xxh3_128_of_the_whole_encoding_at_every_length():
    import xxhash

    from costtrack.hashing import canonical

    for size in (0, 10, 65_000, 65_536, 200_000):
        body = {"model": "m", "messages": [{"role": "user", "content": "é" * size}]}
        expected = xxhash.xxh3_128_hexdigest(b"costtrack-request-v3\x00openai\x00chat.completions\x00" + canonical(body))
        assert h(body) == expected and len(expected) == 32


def test_nan_and_infinities_never_hash_as_null():
    # orjson writes them as null; a body holding one (which the provider refuses) must not share a hash or a cache key.
    from costtrack.cache import cache_key

    values = [None, float("nan"), float("inf"), float("-inf")]
    assert len({h({**BASE, "temperature": v}) for v in values}) == 4
    assert len({h({**BASE, "logit_bias": {"5": v}}) for v in values}) == 4
    assert len({cache_key("openai", "chat.completions", {**BASE, "temperature": v}) for v in values}) == 4
