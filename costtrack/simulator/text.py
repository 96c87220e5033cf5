"""Generated text: the words of answers, stream deltas, and example values that fit a JSON schema."""

from __future__ import annotations

import random
from typing import Any

_WORDS = [
    "the", "of", "and", "to", "in", "is", "that", "it", "for", "as", "with", "was", "on", "be",
    "by", "this", "are", "from", "at", "or", "an", "have", "not", "which", "but", "data", "model",
    "cost", "token", "price", "budget", "request", "reply", "answer", "result", "value", "system",
    "user", "cache", "stream", "simple", "clear", "useful", "quick", "short", "long", "first",
    "second", "next", "final", "small", "large", "fast", "slow", "good", "best", "report", "record",
    "usage", "total", "input", "output", "latency", "error", "retry", "check", "plan", "note",
    "idea", "step", "example", "we", "can", "will", "should", "may", "might", "would", "could",
    "also", "then", "so", "because", "when", "where", "while", "after", "before", "here", "there",
    "more", "less", "most", "least", "each", "every", "some", "many", "few", "other", "same", "new",
    "old", "high", "low", "right",
]


def random_words(rng: random.Random, n: int) -> list[str]:
    """n words, one token each; the first capitalised, sentences closed now and then."""
    out: list[str] = []
    sentence = 0
    for i in range(n):
        w = rng.choice(_WORDS)
        if sentence == 0:
            w = w.capitalize()
        sentence += 1
        if i == n - 1 or (sentence > 6 and rng.random() < 0.18):
            w += "."
            sentence = 0
        out.append(w)
    return out


def pieces_of(text: str, rng: random.Random, lo: int = 3, hi: int = 12) -> list[str]:
    """Split text into stream deltas of a few characters each."""
    pieces: list[str] = []
    i = 0
    while i < len(text):
        step = rng.randint(lo, hi)
        pieces.append(text[i : i + step])
        i += step
    return pieces


def _resolve_ref(ref: str, root: dict[str, Any]) -> dict[str, Any] | None:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


_STRING_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example_from_schema(schema: Any, *, root: Any = None, rng: random.Random | None = None, _depth: int = 0) -> Any:
    """A value that fits a JSON schema's required fields (strings, numbers, booleans,
    arrays, nested objects, enums, ``$ref``s, ``anyOf``); ``{}`` where it can't tell."""
    rng = rng or random.Random(0)
    if not isinstance(schema, dict):
        return {}
    root = schema if root is None else root
    if _depth > 12:
        return None
    if "$ref" in schema:
        target = _resolve_ref(str(schema["$ref"]), root)
        return {} if target is None else example_from_schema(target, root=root, rng=rng, _depth=_depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return example_from_schema((non_null or options)[0], root=root, rng=rng, _depth=_depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = example_from_schema(part, root=root, rng=rng, _depth=_depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if kinds else "null"
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema:
            kind = "array"
        else:
            return {}
    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required")
        names = list(required) if isinstance(required, list) else []
        out: dict[str, Any] = {}
        for name in names:
            sub = props.get(name, {}) if isinstance(props, dict) else {}
            out[name] = example_from_schema(sub, root=root, rng=rng, _depth=_depth + 1)
        return out
    if kind == "array":
        count = max(1, int(schema.get("minItems") or 1))
        items = schema.get("items", {})
        return [example_from_schema(items, root=root, rng=rng, _depth=_depth + 1) for _ in range(count)]
    if kind == "string":
        fmt = schema.get("format")
        if fmt in _STRING_FORMATS:
            return _STRING_FORMATS[fmt]
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
        min_len = int(schema.get("minLength") or 0)
        while len(text) < min_len:
            text += " " + rng.choice(_WORDS)
        max_len = schema.get("maxLength")
        return text[: int(max_len)] if isinstance(max_len, int) else text
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = int(low) + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0) if low is not None else 1
        high = schema.get("maximum")
        return min(value, int(high)) if high is not None else value
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = float(low) + (0.5 if "exclusiveMinimum" in schema and "minimum" not in schema else 0.0) if low is not None else 1.5
        high = schema.get("maximum")
        return min(value, float(high)) if high is not None else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {}
