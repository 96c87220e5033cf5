"""An offline simulator of the OpenAI and Anthropic HTTP APIs.

``Simulator`` is an ``httpx2`` handler: give it to ``httpx2.MockTransport`` and
hand that transport's client to a real SDK client, and every call the SDK makes
is answered here, in the providers' own wire formats, with no network and no key::

    sim = Simulator(seed=1)
    client = OpenAI(api_key="sk-test", max_retries=0,
                    http_client=httpx2.Client(transport=httpx2.MockTransport(sim)))
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])
    sim.requests        # every request received, in order

Endpoints are matched on the end of the URL path, so any ``base_url`` works:

- OpenAI ``POST …/chat/completions`` (plain, ``stream``, ``stream_options.include_usage``,
  ``response_format`` json_schema / json_object, function tools, ``n``),
  ``POST …/responses`` (plain and typed-event streams), ``POST …/embeddings``
  (float or base64), ``GET …/models``.
- OpenAI Batch API: ``POST …/files`` (multipart upload), ``GET …/files/{id}`` and
  ``GET …/files/{id}/content``, ``POST …/batches``, ``GET …/batches/{id}`` and
  ``POST …/batches/{id}/cancel`` (see "Batch API" below).
- Anthropic ``POST …/v1/messages`` (plain and event streams, ``cache_control``,
  tools, ``output_config.format``), ``POST …/v1/messages/count_tokens``, ``GET …/v1/models``
  (a ``/models`` request carrying an ``anthropic-version`` header).

Token counts are deterministic: about four characters a token of all prompt text
plus a small per-message overhead; the output length is drawn from a generator
seeded by ``seed`` and the request (the ``stream`` flags excluded), capped by
``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``. The same
request therefore gets the same text and the same counts, streamed or not;
only ids, ``created`` and prompt-cache hits depend on what came before.

Realism a cost tracker must cope with:

- the response ``model`` is a dated snapshot of the requested alias
  (``gpt-4o-mini`` → ``gpt-4o-mini-2024-07-18``); unknown names are echoed;
- OpenAI automatic prompt caching: a prompt of ≥1024 tokens whose prefix was
  seen before (same model, this simulator) reports
  ``prompt_tokens_details.cached_tokens`` (Responses:
  ``input_tokens_details.cached_tokens``): a multiple of 128, ≥1024, included
  in ``prompt_tokens``;
- reasoning models (o1, o3, o4-mini, gpt-5…) report ``reasoning_tokens``
  included in ``completion_tokens`` / ``output_tokens``;
- Anthropic ``cache_control`` breakpoints (on tools, system blocks, message
  blocks, or top-level automatic caching): a prefix of ≥1024 tokens is written
  the first time (``cache_creation_input_tokens``, split by ttl in
  ``cache_creation.ephemeral_5m/1h_input_tokens``) and read afterwards
  (``cache_read_input_tokens``); ``input_tokens`` excludes both;
- Anthropic ``message_delta.usage`` carries cumulative totals (``output_tokens``
  is the final count, and the input counts are repeated, not increments).

Failures can be scripted per request (:meth:`Simulator.script`) or drawn at
random (``error_rate``). Cache entries never expire.

Batch API: a batch moves one step per ``GET …/batches/{id}``, deterministically:
``validating`` (the create answer) → ``in_progress`` (``batch_polls`` polls, the
request counts growing) → ``finalizing`` → ``completed``; an input file with a bad
line (not JSON, no or a duplicate ``custom_id``, a ``url`` other than the batch's
endpoint) makes it ``failed`` at the first poll, with ``errors``. Each line is answered
by the same code as a live call (so the same body gets the same text and counts) when
the batch reaches it; a line can fail with a 400 (a body a live call would refuse),
at random (``error_rate``, as a 500), or as scripted by
:meth:`Simulator.fail_batch_lines`. Answers go to the output file, failures to the error
file (both JSONL: ``custom_id``, ``response: {status_code, request_id, body}``, ``error``;
lines in a shuffled order, since the real API does not keep the input order either).
Uploaded and written files are kept in ``sim.files``, batches in ``sim.batches``.
``POST …/batches/{id}/cancel`` makes it ``cancelling``, and ``cancelled`` at the next
poll with the lines answered so far in its output file. The Batch and Files endpoints
never fail at random (scripted outcomes apply to them like to any request).
"""

from __future__ import annotations

import array
import base64
import copy
import hashlib
import json
import math
import random
import re
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx2

if TYPE_CHECKING:  # pragma: no cover
    import anthropic
    import openai

__all__ = [
    "Simulator",
    "openai_client",
    "async_openai_client",
    "anthropic_client",
    "async_anthropic_client",
    "snapshot_model",
    "is_reasoning_model",
    "count_text_tokens",
    "example_from_schema",
    "MODEL_SNAPSHOTS",
]

# --------------------------------------------------------------------------- models

MODEL_SNAPSHOTS: dict[str, str] = {
    # OpenAI
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "o1": "o1-2024-12-17",
    "o1-mini": "o1-mini-2024-09-12",
    "o3": "o3-2025-04-16",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
    "gpt-5-nano": "gpt-5-nano-2025-08-07",
    "gpt-5.1": "gpt-5.1-2025-11-13",
    "gpt-5.2": "gpt-5.2-2025-12-11",
    "gpt-5.2-pro": "gpt-5.2-pro-2025-12-11",
    "gpt-5.4-mini": "gpt-5.4-mini-2026-03-17",
    "gpt-5.4-nano": "gpt-5.4-nano-2026-03-17",
    "gpt-5.5": "gpt-5.5-2026-04-23",
    # Anthropic
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-opus-4-0": "claude-opus-4-20250514",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}

_EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")

_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")

_ANTHROPIC_DISPLAY = {
    "claude-haiku-4-5-20251001": "Claude Haiku 4.5",
    "claude-sonnet-4-5-20250929": "Claude Sonnet 4.5",
    "claude-opus-4-5-20251101": "Claude Opus 4.5",
    "claude-opus-4-1-20250805": "Claude Opus 4.1",
    "claude-opus-4-20250514": "Claude Opus 4",
    "claude-sonnet-4-20250514": "Claude Sonnet 4",
    "claude-3-7-sonnet-20250219": "Claude Sonnet 3.7",
    "claude-3-5-haiku-20241022": "Claude Haiku 3.5",
}

# 2026-01-01T00:00:00Z: the synthetic clock starts here and ticks a second a request.
_EPOCH = 1_767_225_600

#: OpenAI caches prompts of at least this many tokens, in steps of ``_OPENAI_CACHE_BLOCK``.
_OPENAI_CACHE_MIN = 1024
_OPENAI_CACHE_BLOCK = 128
#: Anthropic caches a prefix only from this many tokens (a simplification: one minimum for all models).
_ANTHROPIC_CACHE_MIN = 1024
_ANTHROPIC_MAX_BREAKPOINTS = 4
_ANTHROPIC_LOOKBACK_BLOCKS = 20

_CHARS_PER_TOKEN = 4


def snapshot_model(name: str) -> str:
    """The dated snapshot the simulator reports for a requested model name (unknown names unchanged)."""
    return MODEL_SNAPSHOTS.get(name, name)


def is_reasoning_model(name: str) -> bool:
    """Whether the simulator bills reasoning tokens for this (OpenAI) model."""
    base = name.split("/")[-1]
    if base.startswith("gpt-5") and "chat" in base:
        return False
    return base.startswith(_REASONING_PREFIXES)


def count_text_tokens(text: str) -> int:
    """The simulator's tokenizer: one token per four characters, rounded up."""
    return -(-len(text) // _CHARS_PER_TOKEN)


def _digest(*parts: object) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.digest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


# --------------------------------------------------------------------------- text and JSON generation

_WORDS = (
    "the of and to in is that it for as with was on be by this are from at or an have not which but "
    "data model cost token price budget request reply answer result value system user cache stream "
    "simple clear useful quick short long first second next final small large fast slow good best "
    "report record usage total input output latency error retry check plan note idea step example "
    "we can will should may might would could also then so because when where while after before "
    "here there more less most least each every some many few other same new old high low right"
).split()


def _words(rng: random.Random, n: int) -> list[str]:
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


def _pieces_of(text: str, rng: random.Random, lo: int = 3, hi: int = 12) -> list[str]:
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


# --------------------------------------------------------------------------- plans


@dataclass
class _Output:
    """One generated answer: text, or a tool call, with its token counts."""

    text: str = ""
    pieces: list[str] = field(default_factory=list)
    tool_name: str | None = None
    tool_args: str = ""
    tool_pieces: list[str] = field(default_factory=list)
    visible_tokens: int = 0
    reasoning_tokens: int = 0
    truncated: bool = False

    @property
    def tokens(self) -> int:
        return self.visible_tokens + self.reasoning_tokens


@dataclass
class _Usage:
    input_tokens: int = 0  # OpenAI: all prompt tokens; Anthropic: total before the cache split
    cached_tokens: int = 0  # OpenAI cache hits
    cache_read: int = 0  # Anthropic
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass
class _AnthropicPrompt:
    total: int
    blocks: list[tuple[str, str | None]]  # (serialized block, cache ttl if it is a breakpoint)
    overhead: int


@dataclass
class _Outcome:
    kind: str  # ok, status, raise, cut, malformed, html, no_usage
    status: int = 0
    exc: BaseException | type[BaseException] | None = None
    cut_after: int | None = None


_KNOWN_STRINGS = {"ok", "cut", "malformed", "html", "no_usage"}


def _parse_outcome(value: Any) -> _Outcome:
    if value is None:
        return _Outcome("ok")
    if isinstance(value, bool):
        raise TypeError(f"not a simulator outcome: {value!r}")
    if isinstance(value, int):
        if not 400 <= value <= 599:
            raise ValueError(f"a scripted status must be an error status (4xx/5xx), got {value}")
        return _Outcome("status", status=value)
    if isinstance(value, BaseException) or (isinstance(value, type) and issubclass(value, BaseException)):
        return _Outcome("raise", exc=value)
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "cut" and isinstance(value[1], int):
        return _Outcome("cut", cut_after=max(0, value[1]))
    if isinstance(value, str) and value in _KNOWN_STRINGS:
        return _Outcome(value)
    raise ValueError(
        f"unknown simulator outcome {value!r}: use an int status, an exception, "
        "'cut', ('cut', n_events), 'malformed', 'html', 'no_usage', 'ok' or None"
    )


# --------------------------------------------------------------------------- Batch API state

_BATCH_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"/files$"), "files_create"),
    ("GET", re.compile(r"/files/[^/]+/content$"), "files_content"),
    ("GET", re.compile(r"/files/[^/]+$"), "files_retrieve"),
    ("POST", re.compile(r"(?<!/messages)/batches$"), "batches_create"),
    ("POST", re.compile(r"(?<!/messages)/batches/[^/]+/cancel$"), "batches_cancel"),
    ("GET", re.compile(r"(?<!/messages)/batches/[^/]+$"), "batches_retrieve"),
)
_BATCH_ENDPOINTS = frozenset(endpoint for _, _, endpoint in _BATCH_ROUTES)
#: The endpoints a simulated batch can run (the ones costtrack records).
_BATCH_LINE_ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings")
_FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


@dataclass
class _SimFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class _SimBatch:
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int
    metadata: dict[str, Any] | None
    model: str | None
    lines: list[dict[str, Any]]
    problems: list[dict[str, Any]]
    status: str = "validating"
    step: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None

    def object(self) -> dict[str, Any]:
        failed = sum(1 for r in self.results if r["response"]["status_code"] >= 400)
        usage = {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}
        for r in self.results:
            u = r["response"]["body"].get("usage") if r["response"]["status_code"] < 400 else None
            if not isinstance(u, dict):
                continue
            in_details = u.get("prompt_tokens_details") or u.get("input_tokens_details") or {}
            out_details = u.get("completion_tokens_details") or u.get("output_tokens_details") or {}
            usage["input_tokens"] += int(u.get("prompt_tokens", u.get("input_tokens", 0)) or 0)
            usage["output_tokens"] += int(u.get("completion_tokens", u.get("output_tokens", 0)) or 0)
            usage["cached_tokens"] += int(in_details.get("cached_tokens", 0) or 0)
            usage["reasoning_tokens"] += int(out_details.get("reasoning_tokens", 0) or 0)
        counted = self.status != "validating" and self.status != "failed"
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": {"object": "list", "data": self.problems} if self.problems else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.in_progress_at,
            "expires_at": self.created_at + 86_400,
            "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at,
            "failed_at": self.failed_at,
            "expired_at": None,
            "cancelling_at": self.cancelling_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": {
                "total": len(self.lines) if counted else 0,
                "completed": len(self.results) - failed,
                "failed": failed,
            },
            "usage": {
                "input_tokens": usage["input_tokens"],
                "input_tokens_details": {"cached_tokens": usage["cached_tokens"]},
                "output_tokens": usage["output_tokens"],
                "output_tokens_details": {"reasoning_tokens": usage["reasoning_tokens"]},
                "total_tokens": usage["input_tokens"] + usage["output_tokens"],
            },
            "metadata": self.metadata,
        }


def _multipart(content_type: str, content: bytes) -> tuple[dict[str, str], dict[str, tuple[str | None, bytes]]] | None:
    """(form fields, files as (filename, bytes)) of a multipart/form-data body, or None if it is not one."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/form-data") or match is None:
        return None
    delimiter = b"--" + match.group(1).encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str | None, bytes]] = {}
    for part in content.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            return None
        if data.endswith(b"\r\n"):
            data = data[:-2]
        disposition = ""
        for header in head.decode("latin-1").split("\r\n"):
            name, _, value = header.partition(":")
            if name.strip().lower() == "content-disposition":
                disposition = value
        params = dict(re.findall(r';\s*([\w*]+)="([^"]*)"', disposition))
        if "name" not in params:
            return None
        if "filename" in params:
            files[params["name"]] = (params["filename"], data)
        else:
            fields[params["name"]] = data.decode("utf-8", "replace")
    return fields, files


def _batch_lines(content: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The requests of a batch input file, and the problems that fail its validation (with 1-based line numbers)."""
    lines: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()

    def problem(code: str, number: int, message: str, param: str | None = None) -> None:
        problems.append({"code": code, "line": number, "message": message, "param": param})

    for number, raw in enumerate(content.decode("utf-8", "replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            problem("invalid_json_line", number, "This line is not parseable as valid JSON.")
            continue
        if not isinstance(line, dict):
            problem("invalid_json_line", number, "This line is not a JSON object.")
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            problem("missing_required_parameter", number, "Missing required parameter: 'custom_id'.", "custom_id")
            continue
        if custom_id in seen:
            problem("duplicate_custom_id", number, f"The custom_id for this request is a duplicate of another request: {custom_id}.", "custom_id")
            continue
        seen.add(custom_id)
        if str(line.get("method", "")).upper() != "POST":
            problem("invalid_method", number, "The method of every request must be POST.", "method")
            continue
        if line.get("url") != endpoint:
            problem("mismatched_endpoint", number, f"The url of this request ({line.get('url')!r}) does not match the batch's endpoint {endpoint!r}.", "url")
            continue
        if not isinstance(line.get("body"), dict):
            problem("missing_required_parameter", number, "Missing required parameter: 'body'.", "body")
            continue
        lines.append(line)
    return lines, problems


# --------------------------------------------------------------------------- byte streams


class _SimStream(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A response body delivered chunk by chunk, for sync and async clients alike.

    Single-pass, like a socket: iterating again (the OpenAI async SDK drains a
    body after ``[DONE]``) goes on from where the last iteration stopped.
    ``fail_with`` is raised once the chunks run out (a connection cut mid-body).
    """

    def __init__(
        self,
        chunks: list[bytes],
        *,
        fail_with: BaseException | None = None,
        delay: float = 0.0,
        sleep: Callable[[float], None] | None = None,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._chunks = chunks
        self._pos = 0
        self._fail_with = fail_with
        self._delay = delay
        self._sleep = sleep
        self._async_sleep = async_sleep
        self.closed = False

    def _take(self) -> bytes | None:
        if self.closed or self._pos >= len(self._chunks):
            return None
        chunk = self._chunks[self._pos]
        self._pos += 1
        return chunk

    def _failure(self) -> BaseException | None:
        fail, self._fail_with = self._fail_with, None
        return None if self.closed else fail

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self._take()) is not None:
            if self._pos > 1 and self._delay and self._sleep is not None:
                self._sleep(self._delay)
            yield chunk
        if (fail := self._failure()) is not None:
            raise fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := self._take()) is not None:
            if self._pos > 1 and self._delay:
                if self._async_sleep is not None:
                    await self._async_sleep(self._delay)
                elif self._sleep is not None:
                    self._sleep(self._delay)
            yield chunk
        if (fail := self._failure()) is not None:
            raise fail

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


# --------------------------------------------------------------------------- the simulator


class Simulator:
    """A callable httpx2 handler: ``Simulator()(request) -> httpx2.Response``, for OpenAI and Anthropic.

    Use it as ``httpx2.MockTransport(sim)`` with a sync *or* an async client (the
    handler is synchronous; ``MockTransport`` calls it from both). With
    ``latency``/``sleep`` for an async client, prefer
    ``httpx2.MockTransport(sim.handle_async)`` so the wait does not block the
    event loop (``async_sleep`` is then used).

    Args:
        seed: varies the generated texts, lengths and random errors.
        error_rate: that fraction of requests (drawn from ``seed`` and a request
            counter, so reproducible) fails with 500 or 429 (OpenAI), or 500, 429
            or 529 (Anthropic). Model listings and the Batch/Files endpoints never fail
            at random; batch lines do (a 500 in the error file).
        prompt_cache: when False, nothing is ever cached: no OpenAI cached
            tokens, and Anthropic ``cache_control`` is ignored.
        latency: seconds to wait before answering each request.
        sleep / async_sleep: how to wait; by default nothing ever waits.
        chunk_delay: seconds between stream chunks (through ``sleep``/``async_sleep``).
        retry_after: the delay, in seconds, that error responses ask for in
            ``retry-after-ms`` (the SDKs honour it; ``retry-after`` carries it
            rounded up to whole seconds, as the providers send).
        clock: returns the ``created`` timestamps; by default a synthetic clock
            starting 2026-01-01 and ticking one second a request.
        batch_polls: how many polls a batch stays ``in_progress`` (at least 1).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        error_rate: float = 0.0,
        prompt_cache: bool = True,
        latency: Callable[[httpx2.Request], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
        chunk_delay: float = 0.0,
        retry_after: float = 0.02,
        clock: Callable[[], float] | None = None,
        batch_polls: int = 1,
    ) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if batch_polls < 1:
            raise ValueError("batch_polls must be at least 1")
        self.seed = seed
        self.error_rate = error_rate
        self.prompt_cache = prompt_cache
        self.latency = latency
        self.sleep = sleep
        self.async_sleep = async_sleep
        self.chunk_delay = chunk_delay
        self.retry_after = retry_after
        self.clock = clock
        self.requests: list[httpx2.Request] = []
        self._script: deque[_Outcome] = deque()
        self._lock = threading.RLock()
        self._counter = 0
        self._openai_seen: set[bytes] = set()
        self._anthropic_seen: set[bytes] = set()
        self.batch_polls = batch_polls
        self.files: dict[str, _SimFile] = {}
        self.batches: dict[str, _SimBatch] = {}
        self._batch_line_failures: dict[str, int] = {}

    # ------------------------------------------------------------------ public API

    def script(self, *outcomes: Any) -> None:
        """Queue outcomes for the next requests, in order (one per request, retries included).

        Each is: an int status (429, 500, 503, 529, …: the provider's error body
        and headers); an exception instance or class to raise in the handler
        (``httpx2.ConnectTimeout``, ``ReadTimeout``, ``ConnectError``…; its
        ``request`` is set); ``"cut"`` (the body stops after a few stream events,
        or half-way through a JSON body, and raises ``httpx2.RemoteProtocolError``;
        ``("cut", n)`` cuts after n events, or n bytes of a plain body); ``"malformed"`` (200, JSON
        content-type, a truncated JSON body / a broken SSE data line);
        ``"html"`` (200, ``text/html`` body); ``"no_usage"`` (200, a valid body
        without any usage object); ``"ok"`` or ``None`` (a normal answer, exempt
        from ``error_rate``).
        """
        parsed = [_parse_outcome(o) for o in outcomes]
        with self._lock:
            self._script.extend(parsed)

    def fail_batch_lines(self, *custom_ids: str, status: int = 500) -> None:
        """Make the batch lines with these ``custom_id``s fail with ``status`` (in the error file), once each."""
        if not 400 <= status <= 599:
            raise ValueError(f"a batch line failure must be an error status (4xx/5xx), got {status}")
        with self._lock:
            for custom_id in custom_ids:
                self._batch_line_failures[custom_id] = status

    @property
    def pending(self) -> int:
        """Scripted outcomes not yet used."""
        with self._lock:
            return len(self._script)

    def reset_cache(self) -> None:
        """Forget every prompt seen, so nothing is cached any more."""
        with self._lock:
            self._openai_seen.clear()
            self._anthropic_seen.clear()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        delay = self.latency(request) if self.latency is not None else 0.0
        if delay and delay > 0 and self.sleep is not None:
            self.sleep(delay)
        return self._handle(request)

    async def handle_async(self, request: httpx2.Request) -> httpx2.Response:
        """The handler for ``MockTransport`` with an async client when waits must not block the loop."""
        delay = self.latency(request) if self.latency is not None else 0.0
        if delay and delay > 0:
            if self.async_sleep is not None:
                await self.async_sleep(delay)
            elif self.sleep is not None:
                self.sleep(delay)
        return self._handle(request)

    # Raw bodies, for fixtures. Each counts as a request (ids, clock, prompt cache).

    def chat_completion_body(self, request_json: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            n = self._next()
            return self._chat_body(request_json, n, self._chat_plan(request_json), usage=True)

    def chat_completion_chunks(self, request_json: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            n = self._next()
            return self._chat_chunks(request_json, n, self._chat_plan(request_json), usage=True)

    def response_body(self, request_json: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            n = self._next()
            return self._responses_body(request_json, n, self._responses_plan(request_json), usage=True)

    def response_events(self, request_json: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            n = self._next()
            return self._responses_events(request_json, n, self._responses_plan(request_json), usage=True)

    def embedding_body(self, request_json: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._next()
            return self._embedding_body(request_json, usage=True)

    def message_body(self, request_json: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            n = self._next()
            return self._message_body(request_json, n, self._messages_plan(request_json), usage=True)

    def message_events(self, request_json: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            n = self._next()
            return self._message_events(request_json, n, self._messages_plan(request_json), usage=True)

    # ------------------------------------------------------------------ dispatch

    def _next(self) -> int:
        n = self._counter
        self._counter += 1
        return n

    def _now(self, n: int) -> int:
        return int(self.clock()) if self.clock is not None else _EPOCH + n

    def _id(self, prefix: str, n: int, length: int = 24) -> str:
        token = hashlib.sha256(f"{self.seed}:{prefix}:{n}".encode()).hexdigest()[:length]
        return f"{prefix}{token}"

    @staticmethod
    def _route(request: httpx2.Request) -> tuple[str, str]:
        """(provider, endpoint) for a request."""
        path = request.url.path.rstrip("/")
        method = request.method.upper()
        if method == "POST" and path.endswith("/chat/completions"):
            return "openai", "chat"
        if method == "POST" and path.endswith("/responses"):
            return "openai", "responses"
        if method == "POST" and path.endswith("/embeddings"):
            return "openai", "embeddings"
        if method == "POST" and path.endswith("/messages/count_tokens"):
            return "anthropic", "count_tokens"
        if method == "POST" and path.endswith("/messages"):
            return "anthropic", "messages"
        anthropic_like = "anthropic-version" in request.headers or "x-api-key" in request.headers
        provider = "anthropic" if anthropic_like or path.endswith("/v1/messages") else "openai"
        if method == "GET" and path.endswith("/models"):
            return provider, "models"
        if provider == "openai":
            for verb, pattern, endpoint in _BATCH_ROUTES:
                if method == verb and pattern.search(path):
                    return provider, endpoint
        return provider, "unknown"

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        with self._lock:
            self.requests.append(request)
            n = self._next()
            provider, endpoint = self._route(request)
            outcome = self._script.popleft() if self._script else None
            if outcome is None:
                outcome = self._random_outcome(n, provider, endpoint)

            if outcome.kind == "raise":
                raise self._exception(outcome.exc, request)
            if outcome.kind == "status":
                return self._error(provider, outcome.status, request, n)
            if endpoint == "unknown":
                return self._error(provider, 404, request, n, message=f"Unknown endpoint: {request.method} {request.url.path}")

            body: dict[str, Any] = {}
            if request.method.upper() == "POST" and endpoint != "files_create":
                try:
                    body = json.loads(request.content or b"{}")
                except ValueError:
                    return self._error(provider, 400, request, n, message="We could not parse the JSON body of your request.")
                if not isinstance(body, dict):
                    return self._error(provider, 400, request, n, message="The request body must be a JSON object.")
            try:
                return self._answer(provider, endpoint, body, request, n, outcome)
            except _BadRequest as err:
                return self._error(provider, 400, request, n, message=str(err))

    def _random_outcome(self, n: int, provider: str, endpoint: str) -> _Outcome:
        if self.error_rate <= 0 or endpoint == "models" or endpoint in _BATCH_ENDPOINTS:
            return _Outcome("ok")
        rng = random.Random(f"{self.seed}:error:{n}")
        if rng.random() >= self.error_rate:
            return _Outcome("ok")
        choices = [500, 429, 529] if provider == "anthropic" else [500, 429]
        return _Outcome("status", status=rng.choice(choices))

    @staticmethod
    def _exception(exc: BaseException | type[BaseException] | None, request: httpx2.Request) -> BaseException:
        assert exc is not None
        if isinstance(exc, type):
            if issubclass(exc, httpx2.RequestError):
                return exc(f"Simulated {exc.__name__}", request=request)
            return exc()
        if isinstance(exc, httpx2.RequestError) and getattr(exc, "_request", None) is None:
            exc.request = request
        return exc

    def _headers(self, provider: str, n: int, *, stream: bool = False, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"content-type": "text/event-stream; charset=utf-8" if stream else "application/json"}
        if provider == "anthropic":
            headers["request-id"] = self._id("req_", n)
            headers["anthropic-organization-id"] = "00000000-0000-4000-8000-00000000516d"
        else:
            headers["x-request-id"] = self._id("req_", n, 32)
            headers["openai-organization"] = "org-simulator"
            headers["openai-processing-ms"] = str(120 + n % 400)
            headers["openai-version"] = "2020-10-01"
        if extra:
            headers.update(extra)
        return headers

    def _error(
        self, provider: str, status: int, request: httpx2.Request, n: int, *, message: str | None = None,
        error_code: str | None = None, param: str | None = None,
    ) -> httpx2.Response:
        model = ""
        try:
            model = str(json.loads(request.content or b"{}").get("model", ""))
        except (ValueError, AttributeError):
            pass
        extra: dict[str, str] = {}
        if status in (429, 500, 502, 503, 504, 529):
            ms = max(0, int(round(self.retry_after * 1000)))
            extra["retry-after-ms"] = str(ms)
            extra["retry-after"] = str(max(1, math.ceil(self.retry_after)))
        if provider == "anthropic":
            kind, default = {
                400: ("invalid_request_error", "Invalid request."),
                401: ("authentication_error", "invalid x-api-key"),
                403: ("permission_error", "Your API key does not have permission to use the specified resource."),
                404: ("not_found_error", f"model: {model}" if model else "Not found"),
                413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
                429: ("rate_limit_error", "This request would exceed the rate limit for your organization of 50 requests per minute. Please try again later."),
                500: ("api_error", "Internal server error"),
                503: ("api_error", "Service unavailable"),
                504: ("timeout_error", "Request timed out"),
                529: ("overloaded_error", "Overloaded"),
            }.get(status, ("api_error", f"Simulated error {status}"))
            body: dict[str, Any] = {
                "type": "error",
                "error": {"type": kind, "message": message or default},
                "request_id": self._id("req_", n),
            }
            if status == 429:
                extra["anthropic-ratelimit-requests-limit"] = "50"
                extra["anthropic-ratelimit-requests-remaining"] = "0"
                extra["anthropic-ratelimit-requests-reset"] = "2026-01-01T00:01:00Z"
            if status == 529:
                extra["x-should-retry"] = "true"
        else:
            kind, code, default = {
                400: ("invalid_request_error", None, "Invalid request."),
                401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com/account/api-keys."),
                403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported"),
                404: ("invalid_request_error", "model_not_found", f"The model `{model}` does not exist or you do not have access to it." if model else "Not found"),
                429: ("requests", "rate_limit_exceeded", f"Rate limit reached for {model or 'this model'} in organization org-simulator on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms. Visit https://platform.openai.com/account/rate-limits to learn more."),
                500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
                502: ("server_error", None, "Bad gateway."),
                503: ("server_error", None, "The server is overloaded or not ready yet."),
            }.get(status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Simulated error {status}"))
            if error_code is not None:
                code = error_code or None  # "" for none: e.g. a missing file or batch is not a missing model
            body = {"error": {"message": message or default, "type": kind, "param": param, "code": code}}
            if status == 429:
                extra["x-ratelimit-limit-requests"] = "500"
                extra["x-ratelimit-remaining-requests"] = "0"
                extra["x-ratelimit-reset-requests"] = "120ms"
        return httpx2.Response(status, json=body, headers=self._headers(provider, n, extra=extra))

    # ------------------------------------------------------------------ answers

    def _answer(
        self, provider: str, endpoint: str, body: dict[str, Any], request: httpx2.Request, n: int, outcome: _Outcome
    ) -> httpx2.Response:
        usage = outcome.kind != "no_usage"
        stream = bool(body.get("stream")) and endpoint in ("chat", "responses", "messages")
        if outcome.kind == "html":
            return httpx2.Response(
                200,
                content=b"<html><head><title>502 Bad Gateway</title></head><body>upstream error</body></html>",
                headers={"content-type": "text/html"},
            )

        if endpoint == "models":
            return self._json(provider, n, self._models_body(provider), outcome)
        if endpoint in _BATCH_ENDPOINTS:
            return self._batch_api(endpoint, body, request, n, outcome)
        if endpoint == "embeddings":
            return self._json(provider, n, self._embedding_body(body, usage=usage), outcome)
        if endpoint == "count_tokens":
            tokens = self._anthropic_prompt(body).total
            return self._json(provider, n, {"input_tokens": tokens}, outcome)

        if endpoint == "chat":
            plan = self._chat_plan(body)
            if not stream:
                return self._json(provider, n, self._chat_body(body, n, plan, usage=usage), outcome)
            chunks = self._chat_chunks(body, n, plan, usage=usage)
            events = [_sse(c) for c in chunks] + [_sse("[DONE]")]
        elif endpoint == "responses":
            plan = self._responses_plan(body)
            if not stream:
                return self._json(provider, n, self._responses_body(body, n, plan, usage=usage), outcome)
            events = [_sse(e, e["type"]) for e in self._responses_events(body, n, plan, usage=usage)]
        else:  # messages
            plan = self._messages_plan(body)
            if not stream:
                return self._json(provider, n, self._message_body(body, n, plan, usage=usage), outcome)
            events = [_sse(data, name) for name, data in self._message_events(body, n, plan, usage=usage)]
        return self._stream(provider, n, events, outcome)

    def _json(self, provider: str, n: int, data: dict[str, Any], outcome: _Outcome) -> httpx2.Response:
        raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        headers = self._headers(provider, n)
        if outcome.kind == "malformed":
            return httpx2.Response(200, content=raw[: max(1, len(raw) // 2)], headers=headers)
        if outcome.kind == "cut":
            cut = len(raw) // 2 if outcome.cut_after is None else min(outcome.cut_after, len(raw))
            fail = httpx2.RemoteProtocolError(
                "peer closed connection without sending complete message body (incomplete chunked read)"
            )
            return httpx2.Response(200, headers=headers, stream=_SimStream([raw[:cut]], fail_with=fail))
        headers["content-length"] = str(len(raw))
        return httpx2.Response(200, content=raw, headers=headers)

    def _stream(self, provider: str, n: int, events: list[bytes], outcome: _Outcome) -> httpx2.Response:
        fail: BaseException | None = None
        if outcome.kind == "cut":
            keep = outcome.cut_after if outcome.cut_after is not None else min(3, max(1, len(events) - 2))
            keep = min(keep, len(events) - 1)
            partial = events[keep][: len(events[keep]) // 2]  # the connection drops mid-event
            events = events[:keep] + ([partial] if partial else [])
            fail = httpx2.RemoteProtocolError(
                "peer closed connection without sending complete message body (incomplete chunked read)"
            )
        elif outcome.kind == "malformed":
            keep = min(2, len(events))
            head = b"event: content_block_delta\n" if provider == "anthropic" else b""
            events = events[:keep] + [head + b'data: {"id": "broken", "choices": [{"delta": {"content": "unterminated\n\n']
        return httpx2.Response(
            200,
            headers=self._headers(provider, n, stream=True),
            stream=_SimStream(
                events, fail_with=fail, delay=self.chunk_delay, sleep=self.sleep, async_sleep=self.async_sleep
            ),
        )

    # ------------------------------------------------------------------ generation

    def _rng(self, body: dict[str, Any], salt: str = "") -> random.Random:
        stable = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        return random.Random(int.from_bytes(_digest(self.seed, salt, _canonical(stable))[:8], "big"))

    @staticmethod
    def _cap(*values: Any) -> int | None:
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool):
                return max(0, v)
        return None

    @staticmethod
    def _reasoning_budget(rng: random.Random, effort: Any) -> int:
        lo, hi = {
            "none": (0, 0),
            "minimal": (0, 64),
            "low": (64, 384),
            "medium": (128, 1024),
            "high": (512, 3072),
            "xhigh": (1024, 4096),
        }.get(str(effort) if effort else "medium", (128, 1024))
        return rng.randint(lo, hi)

    def _generate(
        self,
        rng: random.Random,
        *,
        cap: int | None,
        reasoning: int = 0,
        schema: dict[str, Any] | None = None,
        json_object: bool = False,
        tool: tuple[str, dict[str, Any]] | None = None,
    ) -> _Output:
        out = _Output()
        if tool is not None:
            name, params = tool
            args = json.dumps(example_from_schema(params, rng=rng), separators=(",", ":"))
            visible = count_text_tokens(name) + count_text_tokens(args) + 5
            total = reasoning + visible
            if cap is not None and total > cap:
                # A tool call cut short: the arguments stop mid-way.
                reasoning = min(reasoning, cap)
                visible = cap - reasoning
                args = args[: max(0, visible - 5) * _CHARS_PER_TOKEN]
                out.truncated = True
            out.tool_name = name
            out.tool_args = args
            out.tool_pieces = _pieces_of(args, rng) or ([""] if not args else [])
            out.visible_tokens = visible
            out.reasoning_tokens = reasoning
            return out
        if schema is not None or json_object:
            value = example_from_schema(schema, rng=rng) if schema is not None else {"answer": " ".join(_words(rng, 6))}
            text = json.dumps(value, ensure_ascii=False)
            visible = count_text_tokens(text)
            total = reasoning + visible
            if cap is not None and total > cap:
                reasoning = min(reasoning, cap)
                visible = cap - reasoning
                text = text[: visible * _CHARS_PER_TOKEN]
                out.truncated = True
            out.text = text
            out.pieces = _pieces_of(text, rng)
            out.visible_tokens = visible
            out.reasoning_tokens = reasoning
            return out
        natural = rng.randint(12, 180)
        visible = natural
        if cap is not None and reasoning + natural > cap:
            reasoning = min(reasoning, cap)
            visible = cap - reasoning
            out.truncated = True
        words = _words(rng, natural)[:visible]
        out.text = " ".join(words)
        out.pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        out.visible_tokens = visible
        out.reasoning_tokens = reasoning
        return out

    # ------------------------------------------------------------------ OpenAI prompt caching

    def _openai_cached(self, model: str, canon: str, prompt_tokens: int) -> int:
        """Automatic prefix caching: 128-token blocks, hits from 1024 tokens, per model."""
        if not self.prompt_cache or prompt_tokens < _OPENAI_CACHE_MIN:
            return 0
        block_chars = _OPENAI_CACHE_BLOCK * _CHARS_PER_TOKEN
        n_blocks = len(canon) // block_chars
        h = hashlib.sha256(model.encode())
        hashes: list[bytes] = []
        for i in range(n_blocks):
            h.update(canon[i * block_chars : (i + 1) * block_chars].encode("utf-8", "surrogatepass"))
            hashes.append(h.copy().digest())
        hit = 0
        for i, digest in enumerate(hashes):
            if digest in self._openai_seen:
                hit = i + 1
            else:
                break
        self._openai_seen.update(hashes)
        cached = hit * _OPENAI_CACHE_BLOCK
        return min(cached, prompt_tokens) if cached >= _OPENAI_CACHE_MIN else 0

    @staticmethod
    def _content_text(content: Any) -> str:
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts: list[str] = []
            for part in content:
                if isinstance(part, str):
                    parts.append(part)
                elif isinstance(part, dict):
                    kind = part.get("type", "")
                    if isinstance(part.get("text"), str):
                        parts.append(part["text"])
                    elif kind in ("image_url", "input_image", "image"):
                        # An image costs a fixed 85 tokens here, whatever its size.
                        ref = _canonical(part)
                        parts.append(("<image:" + hashlib.sha256(ref.encode()).hexdigest())[: 85 * _CHARS_PER_TOKEN].ljust(85 * _CHARS_PER_TOKEN, "."))
                    else:
                        parts.append(_canonical(part))
                else:
                    parts.append(_canonical(part))
            return "".join(parts)
        return _canonical(content)

    def _chat_prompt(self, body: dict[str, Any]) -> str:
        segments: list[str] = []
        if body.get("tools"):
            segments.append("<|tools|>" + _canonical(body["tools"]) + "<|end|>")
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") != "text":
            segments.append("<|format|>" + _canonical(fmt) + "<|end|>")
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            text = self._content_text(message.get("content"))
            if message.get("tool_calls"):
                text += _canonical(message["tool_calls"])
            segments.append(f"<|im_start|>{message.get('role', 'user')}\n{text}<|im_end|>\n")
        segments.append("<|im_start|>assistant")
        return "".join(segments)

    def _responses_prompt(self, body: dict[str, Any]) -> str:
        segments: list[str] = []
        if body.get("tools"):
            segments.append("<|tools|>" + _canonical(body["tools"]) + "<|end|>")
        fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
        if isinstance(fmt, dict) and fmt.get("type") != "text":
            segments.append("<|format|>" + _canonical(fmt) + "<|end|>")
        if isinstance(body.get("instructions"), str):
            segments.append(f"<|im_start|>developer\n{body['instructions']}<|im_end|>\n")
        items = body.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        for item in items or []:
            if not isinstance(item, dict):
                continue
            if "role" in item:
                text = self._content_text(item.get("content"))
                segments.append(f"<|im_start|>{item['role']}\n{text}<|im_end|>\n")
            else:
                segments.append(f"<|im_start|>{item.get('type', 'item')}\n{_canonical(item)}<|im_end|>\n")
        segments.append("<|im_start|>assistant")
        return "".join(segments)

    # ------------------------------------------------------------------ OpenAI chat

    @staticmethod
    def _chat_tool(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type", "function") == "function"]
        if not tools:
            return None
        choice = body.get("tool_choice", "auto")
        if choice == "none":
            return None

        def fn(t: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            f = t.get("function") or {}
            return str(f.get("name", "tool")), f.get("parameters") or {}

        if isinstance(choice, dict):
            wanted = (choice.get("function") or {}).get("name") or choice.get("name")
            for t in tools:
                if fn(t)[0] == wanted:
                    return fn(t)
            return fn(tools[0])
        if choice == "required":
            return fn(tools[0])
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        if messages and messages[-1].get("role") == "user":
            return fn(tools[0])
        return None

    def _chat_plan(self, body: dict[str, Any]) -> tuple[str, list[_Output], _Usage]:
        model = str(body.get("model", ""))
        snapshot = snapshot_model(model)
        canon = self._chat_prompt(body)
        prompt_tokens = count_text_tokens(canon)
        cached = self._openai_cached(snapshot, canon, prompt_tokens)
        cap = self._cap(body.get("max_completion_tokens"), body.get("max_tokens"))
        fmt = body.get("response_format") if isinstance(body.get("response_format"), dict) else {}
        schema = (fmt.get("json_schema") or {}).get("schema", {}) if fmt.get("type") == "json_schema" else None
        tool = self._chat_tool(body)
        n_choices = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 1) > 0 else 1
        outputs: list[_Output] = []
        for i in range(n_choices):
            rng = self._rng(body, f"chat:{i}")
            reasoning = self._reasoning_budget(rng, body.get("reasoning_effort")) if is_reasoning_model(model) else 0
            outputs.append(
                self._generate(rng, cap=cap, reasoning=reasoning, schema=schema, json_object=fmt.get("type") == "json_object", tool=tool)
            )
        usage = _Usage(
            input_tokens=prompt_tokens,
            cached_tokens=cached,
            output_tokens=sum(o.tokens for o in outputs),
            reasoning_tokens=sum(o.reasoning_tokens for o in outputs),
        )
        return snapshot, outputs, usage

    @staticmethod
    def _chat_usage(u: _Usage) -> dict[str, Any]:
        return {
            "prompt_tokens": u.input_tokens,
            "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": u.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _fingerprint(self, model: str) -> str:
        return "fp_" + hashlib.sha256(f"{model}".encode()).hexdigest()[:10]

    @staticmethod
    def _finish(out: _Output) -> str:
        if out.truncated:
            return "length"
        return "tool_calls" if out.tool_name else "stop"

    def _tool_call_id(self, n: int, i: int) -> str:
        return self._id("call_", n * 16 + i)

    def _chat_body(self, body: dict[str, Any], n: int, plan: tuple[str, list[_Output], _Usage], *, usage: bool) -> dict[str, Any]:
        model, outputs, u = plan
        choices = []
        for i, out in enumerate(outputs):
            message: dict[str, Any] = {"role": "assistant", "content": None if out.tool_name else out.text, "refusal": None, "annotations": []}
            if out.tool_name:
                message["tool_calls"] = [
                    {"id": self._tool_call_id(n, i), "type": "function", "function": {"name": out.tool_name, "arguments": out.tool_args}}
                ]
            choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": self._finish(out)})
        result: dict[str, Any] = {
            "id": self._id("chatcmpl-", n, 29),
            "object": "chat.completion",
            "created": self._now(n),
            "model": model,
            "choices": choices,
        }
        if usage:
            result["usage"] = self._chat_usage(u)
        result["service_tier"] = "default"
        result["system_fingerprint"] = self._fingerprint(model)
        return result

    def _chat_chunks(self, body: dict[str, Any], n: int, plan: tuple[str, list[_Output], _Usage], *, usage: bool) -> list[dict[str, Any]]:
        model, outputs, u = plan
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) if isinstance(body.get("stream_options"), dict) else False
        base = {
            "id": self._id("chatcmpl-", n, 29),
            "object": "chat.completion.chunk",
            "created": self._now(n),
            "model": model,
            "service_tier": "default",
            "system_fingerprint": self._fingerprint(model),
        }

        def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
            c = dict(base, choices=choices)
            if include_usage:
                c["usage"] = None
            return c

        chunks: list[dict[str, Any]] = []
        for i, out in enumerate(outputs):
            if out.tool_name:
                call_id = self._tool_call_id(n, i)
                chunks.append(chunk([{"index": i, "delta": {"role": "assistant", "content": None, "tool_calls": [
                    {"index": 0, "id": call_id, "type": "function", "function": {"name": out.tool_name, "arguments": ""}}
                ], "refusal": None}, "logprobs": None, "finish_reason": None}]))
                for piece in out.tool_pieces:
                    chunks.append(chunk([{"index": i, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, "logprobs": None, "finish_reason": None}]))
            else:
                chunks.append(chunk([{"index": i, "delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None, "finish_reason": None}]))
                for piece in out.pieces:
                    chunks.append(chunk([{"index": i, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}]))
            chunks.append(chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": self._finish(out)}]))
        if include_usage and usage:
            chunks.append(dict(base, choices=[], usage=self._chat_usage(u)))
        return chunks

    # ------------------------------------------------------------------ OpenAI responses

    @staticmethod
    def _responses_tool(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        if not tools:
            return None
        choice = body.get("tool_choice", "auto")
        if choice == "none":
            return None

        def fn(t: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            return str(t.get("name", "tool")), t.get("parameters") or {}

        if isinstance(choice, dict):
            for t in tools:
                if t.get("name") == choice.get("name"):
                    return fn(t)
            return fn(tools[0])
        if choice == "required":
            return fn(tools[0])
        items = body.get("input")
        if isinstance(items, str):
            return fn(tools[0])
        items = [i for i in items or [] if isinstance(i, dict)]
        if items and items[-1].get("role") == "user":
            return fn(tools[0])
        return None

    def _responses_plan(self, body: dict[str, Any]) -> tuple[str, list[_Output], _Usage]:
        model = str(body.get("model", ""))
        snapshot = snapshot_model(model)
        canon = self._responses_prompt(body)
        prompt_tokens = count_text_tokens(canon)
        cached = self._openai_cached(snapshot, canon, prompt_tokens)
        cap = self._cap(body.get("max_output_tokens"))
        text_cfg = body.get("text") if isinstance(body.get("text"), dict) else {}
        fmt = text_cfg.get("format") if isinstance(text_cfg.get("format"), dict) else {}
        schema = fmt.get("schema", {}) if fmt.get("type") == "json_schema" else None
        rng = self._rng(body, "responses")
        effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
        reasoning = self._reasoning_budget(rng, effort) if is_reasoning_model(model) else 0
        out = self._generate(
            rng, cap=cap, reasoning=reasoning, schema=schema, json_object=fmt.get("type") == "json_object", tool=self._responses_tool(body)
        )
        usage = _Usage(input_tokens=prompt_tokens, cached_tokens=cached, output_tokens=out.tokens, reasoning_tokens=out.reasoning_tokens)
        return snapshot, [out], usage

    @staticmethod
    def _responses_usage(u: _Usage) -> dict[str, Any]:
        return {
            "input_tokens": u.input_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": u.output_tokens,
            "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.input_tokens + u.output_tokens,
        }

    def _responses_items(self, n: int, plan: tuple[str, list[_Output], _Usage], model: str) -> list[dict[str, Any]]:
        out = plan[1][0]
        items: list[dict[str, Any]] = []
        if is_reasoning_model(model) or out.reasoning_tokens:
            items.append({"id": self._id("rs_", n, 48), "type": "reasoning", "summary": []})
        status = "incomplete" if out.truncated else "completed"
        if out.tool_name:
            items.append({
                "id": self._id("fc_", n, 48),
                "type": "function_call",
                "status": status,
                "arguments": out.tool_args,
                "call_id": self._tool_call_id(n, 0),
                "name": out.tool_name,
            })
        elif out.visible_tokens or not out.truncated:
            items.append({
                "id": self._id("msg_", n, 48),
                "type": "message",
                "status": status,
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": out.text}],
                "role": "assistant",
            })
        return items

    def _response_object(
        self, body: dict[str, Any], n: int, plan: tuple[str, list[_Output], _Usage], *, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
    ) -> dict[str, Any]:
        model = plan[0]
        text_cfg = copy.deepcopy(body.get("text")) if isinstance(body.get("text"), dict) else {}
        text_cfg.setdefault("format", {"type": "text"})
        text_cfg.setdefault("verbosity", "medium")
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        created = self._now(n)
        return {
            "id": self._id("resp_", n, 48),
            "object": "response",
            "created_at": created,
            "status": status,
            "background": bool(body.get("background", False)),
            "completed_at": created + 1 if status == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort", "medium" if is_reasoning_model(str(body.get("model", ""))) else None), "summary": reasoning.get("summary")},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": text_cfg,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def _responses_body(self, body: dict[str, Any], n: int, plan: tuple[str, list[_Output], _Usage], *, usage: bool) -> dict[str, Any]:
        out = plan[1][0]
        status = "incomplete" if out.truncated else "completed"
        return self._response_object(
            body, n, plan, status=status, output=self._responses_items(n, plan, plan[0]),
            usage=self._responses_usage(plan[2]) if usage else None,
        )

    def _responses_events(self, body: dict[str, Any], n: int, plan: tuple[str, list[_Output], _Usage], *, usage: bool) -> list[dict[str, Any]]:
        out = plan[1][0]
        items = self._responses_items(n, plan, plan[0])
        events: list[dict[str, Any]] = []

        def emit(event: dict[str, Any]) -> None:
            event["sequence_number"] = len(events)
            events.append(event)

        emit({"type": "response.created", "response": self._response_object(body, n, plan, status="in_progress", output=[], usage=None)})
        emit({"type": "response.in_progress", "response": self._response_object(body, n, plan, status="in_progress", output=[], usage=None)})
        for index, item in enumerate(items):
            if item["type"] == "reasoning":
                emit({"type": "response.output_item.added", "output_index": index, "item": dict(item)})
                emit({"type": "response.output_item.done", "output_index": index, "item": dict(item)})
            elif item["type"] == "function_call":
                emit({"type": "response.output_item.added", "output_index": index, "item": dict(item, arguments="", status="in_progress")})
                for piece in out.tool_pieces:
                    emit({"type": "response.function_call_arguments.delta", "item_id": item["id"], "output_index": index, "delta": piece})
                emit({"type": "response.function_call_arguments.done", "item_id": item["id"], "output_index": index, "arguments": item["arguments"]})
                emit({"type": "response.output_item.done", "output_index": index, "item": item})
            else:
                text = item["content"][0]["text"]
                emit({"type": "response.output_item.added", "output_index": index, "item": dict(item, status="in_progress", content=[])})
                empty_part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
                emit({"type": "response.content_part.added", "item_id": item["id"], "output_index": index, "content_index": 0, "part": empty_part})
                for piece in out.pieces:
                    emit({"type": "response.output_text.delta", "item_id": item["id"], "output_index": index, "content_index": 0, "delta": piece, "logprobs": []})
                emit({"type": "response.output_text.done", "item_id": item["id"], "output_index": index, "content_index": 0, "text": text, "logprobs": []})
                emit({"type": "response.content_part.done", "item_id": item["id"], "output_index": index, "content_index": 0, "part": dict(empty_part, text=text)})
                emit({"type": "response.output_item.done", "output_index": index, "item": item})
        status = "incomplete" if out.truncated else "completed"
        final = self._response_object(body, n, plan, status=status, output=items, usage=self._responses_usage(plan[2]) if usage else None)
        emit({"type": "response.incomplete" if out.truncated else "response.completed", "response": final})
        return events

    # ------------------------------------------------------------------ OpenAI embeddings and models

    def _embedding_body(self, body: dict[str, Any], *, usage: bool) -> dict[str, Any]:
        raw = body.get("input", "")
        if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
            inputs: list[Any] = [raw]
        else:
            inputs = list(raw) if isinstance(raw, list) else [raw]
        if not inputs or any(i == "" or i == [] for i in inputs):
            raise _BadRequest("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.")
        dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) and body["dimensions"] > 0 else 16
        b64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for index, item in enumerate(inputs):
            tokens += len(item) if isinstance(item, list) else count_text_tokens(str(item))
            rng = random.Random(int.from_bytes(_digest("embedding", body.get("model"), _canonical(item))[:8], "big"))
            vec = [rng.gauss(0.0, 1.0) for _ in range(dims)]
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            floats = array.array("f", (v / norm for v in vec))
            if sys.byteorder != "little":  # pragma: no cover
                floats.byteswap()
            embedding: Any = base64.b64encode(floats.tobytes()).decode() if b64 else floats.tolist()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        result: dict[str, Any] = {"object": "list", "data": data, "model": str(body.get("model", ""))}
        if usage:
            result["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return result

    @staticmethod
    def _models_body(provider: str) -> dict[str, Any]:
        if provider == "anthropic":
            names = sorted({v for k, v in MODEL_SNAPSHOTS.items() if k.startswith("claude")}, reverse=True)
            data = [
                {
                    "type": "model",
                    "id": name,
                    "display_name": _ANTHROPIC_DISPLAY.get(name, name),
                    "created_at": f"{name[-8:-4]}-{name[-4:-2]}-{name[-2:]}T00:00:00Z",
                    "lifecycle": "active",
                }
                for name in names
            ]
            return {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        names = sorted({*(k for k in MODEL_SNAPSHOTS if not k.startswith("claude")), *(v for k, v in MODEL_SNAPSHOTS.items() if not k.startswith("claude")), *_EMBEDDING_MODELS})
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"} for name in names]}

    # ------------------------------------------------------------------ OpenAI Batch API

    def _batch_api(
        self, endpoint: str, body: dict[str, Any], request: httpx2.Request, n: int, outcome: _Outcome
    ) -> httpx2.Response:
        path = request.url.path.rstrip("/")
        if endpoint == "files_create":
            return self._file_create(request, n, outcome)
        if endpoint == "batches_create":
            return self._batch_create(body, request, n, outcome)
        if endpoint in ("files_retrieve", "files_content"):
            file_id = path.rsplit("/files/", 1)[1].split("/")[0]
            sim_file = self.files.get(file_id)
            if sim_file is None:
                return self._error("openai", 404, request, n, message=f"No such File object: {file_id}", error_code="", param="id")
            if endpoint == "files_retrieve":
                return self._json("openai", n, sim_file.object(), outcome)
            headers = self._headers("openai", n, extra={"content-type": "application/octet-stream"})
            headers["content-length"] = str(len(sim_file.content))
            return httpx2.Response(200, content=sim_file.content, headers=headers)
        batch_id = path.rsplit("/batches/", 1)[1].split("/")[0]
        batch = self.batches.get(batch_id)
        if batch is None:
            return self._error("openai", 404, request, n, message=f"No batch found with id '{batch_id}'.", error_code="")
        if endpoint == "batches_cancel":
            if batch.status in ("validating", "in_progress", "finalizing"):
                batch.status = "cancelling"
                batch.cancelling_at = self._now(n)
            elif batch.status not in ("cancelling", "cancelled"):
                return self._error("openai", 409, request, n, message=f"Cannot cancel a batch with status '{batch.status}'.", error_code="")
            return self._json("openai", n, batch.object(), outcome)
        self._batch_step(batch, n)
        return self._json("openai", n, batch.object(), outcome)

    def _file_create(self, request: httpx2.Request, n: int, outcome: _Outcome) -> httpx2.Response:
        parsed = _multipart(request.headers.get("content-type", ""), request.content)
        if parsed is None:
            return self._error("openai", 400, request, n, message="Could not parse the multipart form.")
        fields, files = parsed
        if "file" not in files:
            return self._error("openai", 400, request, n, message="'file' is a required property", param="file")
        purpose = fields.get("purpose")
        if purpose not in _FILE_PURPOSES:
            return self._error("openai", 400, request, n, message=f"'{purpose}' is not one of {list(_FILE_PURPOSES)} - 'purpose'", param="purpose")
        filename, content = files["file"]
        file_id = self._file_id("upload", n)
        self.files[file_id] = _SimFile(id=file_id, filename=filename or "upload", purpose=purpose, content=content, created_at=self._now(n))
        return self._json("openai", n, self.files[file_id].object(), outcome)

    def _file_id(self, kind: str, n: int) -> str:
        return "file-" + hashlib.sha256(f"{self.seed}:file:{kind}:{n}".encode()).hexdigest()[:22]

    def _batch_create(self, body: dict[str, Any], request: httpx2.Request, n: int, outcome: _Outcome) -> httpx2.Response:
        window = body.get("completion_window")
        if window != "24h":
            return self._error("openai", 400, request, n, message=f"Invalid completion_window: {window!r}. Supported values are: '24h'.", param="completion_window")
        endpoint = body.get("endpoint")
        if endpoint not in _BATCH_LINE_ENDPOINTS:
            return self._error(
                "openai", 400, request, n, param="endpoint",
                message=f"Invalid endpoint: {endpoint!r}. This simulator runs batches for {', '.join(_BATCH_LINE_ENDPOINTS)}.",
            )  # fmt: skip
        file_id = body.get("input_file_id")
        sim_file = self.files.get(str(file_id))
        if sim_file is None:
            return self._error("openai", 404, request, n, message=f"No such File object: {file_id}", error_code="", param="input_file_id")
        if sim_file.purpose != "batch":
            return self._error("openai", 400, request, n, message=f"File {file_id} has purpose '{sim_file.purpose}'; a batch needs purpose 'batch'.", param="input_file_id")
        lines, problems = _batch_lines(sim_file.content, endpoint)
        created = self._now(n)
        models = [line["body"].get("model") for line in lines if isinstance(line["body"].get("model"), str)]
        batch = _SimBatch(
            id=self._id("batch_", n),
            endpoint=endpoint,
            input_file_id=sim_file.id,
            completion_window=window,
            created_at=created,
            metadata=body.get("metadata") if isinstance(body.get("metadata"), dict) else None,
            model=models[0] if models else None,
            lines=lines,
            problems=problems,
        )
        self.batches[batch.id] = batch
        return self._json("openai", n, batch.object(), outcome)

    def _batch_step(self, batch: _SimBatch, n: int) -> None:
        """One poll: the batch moves one step (see the module docstring)."""
        now = self._now(n)
        total = len(batch.lines)
        if batch.status == "validating":
            if batch.problems or not batch.lines:
                batch.status, batch.failed_at = "failed", now
                batch.problems = batch.problems or [{"code": "empty_file", "line": None, "message": "The input file is empty.", "param": None}]
                return
            batch.status, batch.in_progress_at, batch.step = "in_progress", now, 1
            self._batch_process(batch, 0)
        elif batch.status == "in_progress":
            batch.step += 1
            if batch.step <= self.batch_polls:
                self._batch_process(batch, total * (batch.step - 1) // self.batch_polls)
            else:
                self._batch_process(batch, total)
                batch.status, batch.finalizing_at = "finalizing", now
        elif batch.status == "finalizing":
            self._batch_files(batch, n)
            batch.status, batch.completed_at = "completed", now
        elif batch.status == "cancelling":
            self._batch_files(batch, n)
            batch.status, batch.cancelled_at = "cancelled", now

    def _batch_process(self, batch: _SimBatch, upto: int) -> None:
        """Answer the batch's lines up to `upto` (exclusive), each like a live call."""
        while len(batch.results) < upto:
            line = batch.lines[len(batch.results)]
            n = self._next()
            status, body = self._batch_line_answer(batch.endpoint, line, n)
            batch.results.append(
                {
                    "id": self._id("batch_req_", n, 32),
                    "custom_id": line["custom_id"],
                    "response": {"status_code": status, "request_id": self._id("req_", n, 32), "body": body},
                    "error": None,
                }
            )

    def _batch_line_answer(self, endpoint: str, line: dict[str, Any], n: int) -> tuple[int, dict[str, Any]]:
        body = line["body"]
        request = httpx2.Request("POST", "https://api.openai.com" + endpoint, json=body)
        status = self._batch_line_failures.pop(line["custom_id"], None)
        if status is None and self.error_rate > 0:
            rng = random.Random(f"{self.seed}:batch-error:{n}")
            if rng.random() < self.error_rate:
                status = 500
        if status is not None:
            return status, self._error("openai", status, request, n).json()
        try:
            if endpoint == "/v1/chat/completions":
                return 200, self._chat_body(body, n, self._chat_plan(body), usage=True)
            if endpoint == "/v1/responses":
                return 200, self._responses_body(body, n, self._responses_plan(body), usage=True)
            return 200, self._embedding_body(body, usage=True)
        except _BadRequest as err:
            return 400, self._error("openai", 400, request, n, message=str(err)).json()

    def _batch_files(self, batch: _SimBatch, n: int) -> None:
        """Write the output and error files (each in an order of its own, as the real API may)."""
        answered = [r for r in batch.results if r["response"]["status_code"] < 400]
        failed = [r for r in batch.results if r["response"]["status_code"] >= 400]
        for kind, results in (("output", answered), ("error", failed)):
            if not results:
                continue
            results = list(results)
            random.Random(f"{self.seed}:{batch.id}:{kind}").shuffle(results)
            content = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in results).encode()
            file_id = self._file_id(f"{batch.id}:{kind}", n)
            self.files[file_id] = _SimFile(
                id=file_id, filename=f"{batch.id}_{kind}.jsonl", purpose="batch_output", content=content, created_at=self._now(n)
            )
            if kind == "output":
                batch.output_file_id = file_id
            else:
                batch.error_file_id = file_id

    # ------------------------------------------------------------------ Anthropic

    def _anthropic_prompt(self, body: dict[str, Any]) -> _AnthropicPrompt:
        blocks: list[tuple[str, str | None]] = []

        def ttl_of(block: Any) -> str | None:
            cc = block.get("cache_control") if isinstance(block, dict) else None
            if isinstance(cc, dict) and cc.get("type", "ephemeral") == "ephemeral":
                return "1h" if cc.get("ttl") == "1h" else "5m"
            return None

        for tool in body.get("tools") or []:
            blocks.append(("<tool>" + _canonical({k: v for k, v in tool.items() if k != "cache_control"}) if isinstance(tool, dict) else _canonical(tool), ttl_of(tool)))
        system = body.get("system")
        if isinstance(system, str) and system:
            blocks.append(("<system>" + system, None))
        elif isinstance(system, list):
            for i, block in enumerate(system):
                text = self._content_text([block])
                blocks.append((("<system>" if i == 0 else "") + text, ttl_of(block)))
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            marker = "\n\nHuman: " if message.get("role") == "user" else "\n\nAssistant: "
            content = message.get("content")
            if isinstance(content, str):
                blocks.append((marker + content, None))
                continue
            for i, block in enumerate(content or []):
                if isinstance(block, dict) and block.get("type") not in ("text", "image", "document"):
                    text = _canonical({k: v for k, v in block.items() if k != "cache_control"})
                else:
                    text = self._content_text([block])
                blocks.append(((marker if i == 0 else "") + text, ttl_of(block)))
        fmt = (body.get("output_config") or {}).get("format") if isinstance(body.get("output_config"), dict) else None
        if isinstance(fmt, dict):
            blocks.append(("<format>" + _canonical(fmt), None))
        auto = body.get("cache_control")
        if isinstance(auto, dict) and blocks:
            # Automatic caching: a breakpoint on the last cacheable block.
            last_text, last_ttl = blocks[-1]
            blocks[-1] = (last_text, last_ttl or ("1h" if auto.get("ttl") == "1h" else "5m"))
        overhead = 3  # "\n\nAssistant:" after the last block: never part of a cached prefix
        return _AnthropicPrompt(
            total=sum(count_text_tokens(b) for b, _ in blocks) + overhead, blocks=blocks, overhead=overhead
        )

    def _anthropic_cache(self, model: str, prompt: _AnthropicPrompt) -> tuple[int, int, int]:
        """(cache read, 5-minute writes, 1-hour writes) for a prompt, updating the cache."""
        breakpoints = [i for i, (_, ttl) in enumerate(prompt.blocks) if ttl is not None]
        if len(breakpoints) > _ANTHROPIC_MAX_BREAKPOINTS:
            raise _BadRequest(f"A maximum of {_ANTHROPIC_MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(breakpoints)}.")
        if not self.prompt_cache or not breakpoints:
            return 0, 0, 0
        h = hashlib.sha256(model.encode())
        hashes: list[bytes] = []
        positions: list[int] = []
        pos = 0
        for text, _ in prompt.blocks:
            h.update(text.encode("utf-8", "surrogatepass") + b"\x1e")
            hashes.append(h.copy().digest())
            pos += count_text_tokens(text)
            positions.append(pos)
        hit = -1
        for bp in breakpoints:
            for j in range(bp, max(-1, bp - _ANTHROPIC_LOOKBACK_BLOCKS - 1), -1):
                if hashes[j] in self._anthropic_seen:
                    hit = max(hit, j)
                    break
        read = positions[hit] if hit >= 0 else 0
        last = read
        w5 = w1 = 0
        for bp in breakpoints:
            if bp <= hit or positions[bp] < _ANTHROPIC_CACHE_MIN:
                continue
            segment = positions[bp] - last
            if prompt.blocks[bp][1] == "1h":
                w1 += segment
            else:
                w5 += segment
            last = positions[bp]
            self._anthropic_seen.add(hashes[bp])
        return read, w5, w1

    @staticmethod
    def _anthropic_tool(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
        if not tools:
            return None
        choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {"type": "auto"}
        kind = choice.get("type", "auto")
        if kind == "none":
            return None

        def fn(t: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            return str(t.get("name", "tool")), t.get("input_schema") or {}

        if kind == "tool":
            for t in tools:
                if t.get("name") == choice.get("name"):
                    return fn(t)
            return fn(tools[0])
        if kind == "any":
            return fn(tools[0])
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        if not messages or messages[-1].get("role") != "user":
            return None
        content = messages[-1].get("content")
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return None
        return fn(tools[0])

    def _messages_plan(self, body: dict[str, Any]) -> tuple[str, list[_Output], _Usage]:
        model = str(body.get("model", ""))
        snapshot = snapshot_model(model)
        prompt = self._anthropic_prompt(body)
        read, w5, w1 = self._anthropic_cache(snapshot, prompt)
        cap = self._cap(body.get("max_tokens"))
        fmt = (body.get("output_config") or {}).get("format") if isinstance(body.get("output_config"), dict) else None
        schema = fmt.get("schema", {}) if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
        out = self._generate(self._rng(body, "messages"), cap=cap, schema=schema, tool=self._anthropic_tool(body))
        usage = _Usage(
            input_tokens=prompt.total - read - w5 - w1,
            cache_read=read,
            cache_write_5m=w5,
            cache_write_1h=w1,
            output_tokens=out.tokens,
        )
        return snapshot, [out], usage

    @staticmethod
    def _message_usage(u: _Usage, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": u.input_tokens,
            "cache_creation_input_tokens": u.cache_write_5m + u.cache_write_1h,
            "cache_read_input_tokens": u.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write_5m, "ephemeral_1h_input_tokens": u.cache_write_1h},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _message_content(self, n: int, out: _Output) -> list[dict[str, Any]]:
        if out.tool_name:
            try:
                tool_input = json.loads(out.tool_args) if out.tool_args else {}
            except ValueError:
                tool_input = {}
            return [{"type": "tool_use", "id": self._id("toolu_01", n), "name": out.tool_name, "input": tool_input}]
        return [{"type": "text", "text": out.text}]

    @staticmethod
    def _stop_reason(out: _Output) -> str:
        if out.truncated:
            return "max_tokens"
        return "tool_use" if out.tool_name else "end_turn"

    def _message_body(self, body: dict[str, Any], n: int, plan: tuple[str, list[_Output], _Usage], *, usage: bool) -> dict[str, Any]:
        model, outputs, u = plan
        out = outputs[0]
        result: dict[str, Any] = {
            "id": self._id("msg_01", n),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": self._message_content(n, out),
            "stop_reason": self._stop_reason(out),
            "stop_sequence": None,
        }
        if usage:
            result["usage"] = self._message_usage(u, u.output_tokens)
        return result

    def _message_events(self, body: dict[str, Any], n: int, plan: tuple[str, list[_Output], _Usage], *, usage: bool) -> list[tuple[str, dict[str, Any]]]:
        model, outputs, u = plan
        out = outputs[0]
        start_msg: dict[str, Any] = {
            "id": self._id("msg_01", n),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }
        if usage:
            start_msg["usage"] = self._message_usage(u, min(1, u.output_tokens))
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start_msg})]
        if out.tool_name:
            block = self._message_content(n, out)[0]
            events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": dict(block, input={})}))
            events.append(("ping", {"type": "ping"}))
            for piece in out.tool_pieces:
                events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}))
        else:
            events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
            events.append(("ping", {"type": "ping"}))
            for piece in out.pieces:
                events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        delta: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": self._stop_reason(out), "stop_sequence": None}}
        if usage:
            # Cumulative totals, as Anthropic sends them: the final output count, the input counts repeated.
            delta["usage"] = {
                "input_tokens": u.input_tokens,
                "cache_creation_input_tokens": u.cache_write_5m + u.cache_write_1h,
                "cache_read_input_tokens": u.cache_read,
                "output_tokens": u.output_tokens,
            }
        events.append(("message_delta", delta))
        events.append(("message_stop", {"type": "message_stop"}))
        return events


class _BadRequest(Exception):
    """A request the provider would refuse with a 400."""


# --------------------------------------------------------------------------- client constructors


def _transport(sim: Simulator | None, *, use_async: bool) -> tuple[Simulator, httpx2.MockTransport]:
    sim = sim if sim is not None else Simulator()
    return sim, httpx2.MockTransport(sim.handle_async if use_async else sim)


def openai_client(sim: Simulator | None = None, **kw: Any) -> openai.OpenAI:
    """An ``openai.OpenAI`` answered by ``sim`` (a new Simulator if None); ``max_retries`` defaults to 0."""
    import openai

    sim, transport = _transport(sim, use_async=False)
    kw.setdefault("api_key", "sk-simulator")
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(http_client=httpx2.Client(transport=transport), **kw)


def async_openai_client(sim: Simulator | None = None, **kw: Any) -> openai.AsyncOpenAI:
    """An ``openai.AsyncOpenAI`` answered by ``sim``; ``max_retries`` defaults to 0."""
    import openai

    sim, transport = _transport(sim, use_async=True)
    kw.setdefault("api_key", "sk-simulator")
    kw.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(http_client=httpx2.AsyncClient(transport=transport), **kw)


def anthropic_client(sim: Simulator | None = None, **kw: Any) -> anthropic.Anthropic:
    """An ``anthropic.Anthropic`` answered by ``sim``; ``max_retries`` defaults to 0."""
    import anthropic

    sim, transport = _transport(sim, use_async=False)
    kw.setdefault("api_key", "sk-ant-simulator")
    kw.setdefault("max_retries", 0)
    return anthropic.Anthropic(http_client=httpx2.Client(transport=transport), **kw)


def async_anthropic_client(sim: Simulator | None = None, **kw: Any) -> anthropic.AsyncAnthropic:
    """An ``anthropic.AsyncAnthropic`` answered by ``sim``; ``max_retries`` defaults to 0."""
    import anthropic

    sim, transport = _transport(sim, use_async=True)
    kw.setdefault("api_key", "sk-ant-simulator")
    kw.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(http_client=httpx2.AsyncClient(transport=transport), **kw)
