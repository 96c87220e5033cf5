"""Estimating a request's cost before it is sent (for hard limits): tokens counted from the body, priced."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from ..usage import Usage

if TYPE_CHECKING:
    from ..pricing import PriceBook


#: The estimator: characters of prompt text per token (English text with the OpenAI and
#: Anthropic tokenizers averages about 4; code and most other languages have fewer, so
#: their estimate is low), tokens added per message, tokens added per request (the reply's
#: priming), tokens per image (OpenAI's low-detail figure; detailed images cost more).
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
REPLY_OVERHEAD_TOKENS = 3
IMAGE_TOKENS = 85
#: Output tokens assumed for a request that sets no max_tokens / max_completion_tokens / max_output_tokens.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
_IMAGE_TYPES = frozenset({"image_url", "input_image", "image"})


def _json_len(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))


def _chars(value: Any) -> int:
    """Characters of prompt text in a message's content (str, or a list of parts)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        n = 0
        for part in value:
            if isinstance(part, str):
                n += len(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    n += len(text)
                    continue
                kind = part.get("type")
                if kind in _IMAGE_TYPES:
                    n += IMAGE_TOKENS * CHARS_PER_TOKEN
                elif kind == "tool_result":
                    n += _chars(part.get("content"))
                else:
                    n += _json_len(part)
            else:
                n += _json_len(part)
        return n
    return _json_len(value)


def _tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def _prompt_tokens(chars: int, extra_chars: int, messages: int) -> int:
    """Input tokens of a prompt: its text, its tool/schema JSON, and the per-message and per-request overheads."""
    return _tokens(chars) + _tokens(extra_chars) + messages * MESSAGE_OVERHEAD_TOKENS + REPLY_OVERHEAD_TOKENS


def _cap(*values: Any) -> int | None:
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
    return None


def _format_chars(fmt: Any) -> int:
    return _json_len(fmt) if isinstance(fmt, dict) and fmt.get("type") not in (None, "text") else 0


def chat_tokens(body: Mapping[str, Any], default_max_output: int) -> tuple[int, int]:
    """:func:`estimate_tokens` of a chat completion (the common case: it runs on the app's thread)."""
    chars = messages = 0
    for m in body.get("messages") or ():
        if type(m) is dict:
            messages += 1
            content = m.get("content")
            chars += len(content) if type(content) is str else _chars(content)
            if m.get("tool_calls"):
                chars += _json_len(m["tool_calls"])
    # _prompt_tokens inlined: this runs on the app's thread before every hard-limited chat call.
    tokens_in = -(-chars // CHARS_PER_TOKEN) + messages * MESSAGE_OVERHEAD_TOKENS + REPLY_OVERHEAD_TOKENS
    if "tools" in body or "response_format" in body:
        extra = _json_len(body["tools"]) if body.get("tools") else 0
        if "response_format" in body:
            extra += _format_chars(body["response_format"])
        tokens_in += -(-extra // CHARS_PER_TOKEN)
    cap = body.get("max_completion_tokens")
    if type(cap) is not int or cap < 0:
        cap = body.get("max_tokens")
        if type(cap) is not int or cap < 0:
            cap = default_max_output
    n = body.get("n")
    return tokens_in, cap * n if type(n) is int and n > 1 else cap


def _with_tools(body: Mapping[str, Any], chars: int, messages: int, output: Any, cap: Any,
                default_max_output: int) -> tuple[int, int]:  # fmt: skip
    """(input, output) tokens of a Responses or Messages request, its tools and output schema (`output`'s
    "format") counted on top of its `chars` of prompt text in `messages` messages."""
    extra = _json_len(body["tools"]) if body.get("tools") else 0
    extra += _format_chars(output.get("format")) if isinstance(output, dict) else 0
    limit = _cap(cap)
    return _prompt_tokens(chars, extra, messages), default_max_output if limit is None else limit


def estimate_tokens(
    operation: str, body: Mapping[str, Any], *, default_max_output: int = DEFAULT_MAX_OUTPUT_TOKENS
) -> tuple[int, int]:
    """(input tokens, output tokens) a request may be billed, estimated from its JSON body alone.

    Input: ``ceil(characters of prompt text / 4)``, plus 4 tokens per message and 3 per
    request; tool definitions and JSON schemas count by the length of their JSON;
    an image counts 85 tokens. Output: at most ``max_tokens`` / ``max_completion_tokens``
    (times ``n`` choices) / ``max_output_tokens``, or `default_max_output` when the
    request sets none. Embeddings have no output.
    """
    if operation == "chat.completions":
        return chat_tokens(body, default_max_output)
    if operation == "responses":
        chars = _chars(body.get("instructions")) if isinstance(body.get("instructions"), str) else 0
        items = body.get("input")
        messages = 1 if chars else 0
        if isinstance(items, str):
            chars += len(items)
            messages += 1
        elif isinstance(items, list):
            for item in items:
                messages += 1
                if isinstance(item, dict) and "role" in item:
                    chars += _chars(item.get("content"))
                else:
                    chars += _json_len(item)
        return _with_tools(body, chars, messages, body.get("text"), body.get("max_output_tokens"), default_max_output)
    if operation == "embeddings":
        value = body.get("input")
        if isinstance(value, str):
            return _tokens(len(value)), 0
        total = 0
        for item in value if isinstance(value, list) else ():
            if isinstance(item, str):
                total += _tokens(len(item))
            elif isinstance(item, int):
                total += 1  # an array of token ids
            elif isinstance(item, list):
                total += len(item)
        return total, 0
    if operation == "messages":
        system = body.get("system")
        chars = _chars(system) if system else 0
        messages = 0
        for m in body.get("messages") or ():
            if isinstance(m, dict):
                messages += 1
                chars += _chars(m.get("content"))
        return _with_tools(body, chars, messages, body.get("output_config"), body.get("max_tokens"), default_max_output)
    return _tokens(_json_len(dict(body))), default_max_output


class Estimate(NamedTuple):
    """What a request may cost: its estimated tokens, and their price (None: the model has no known price)."""

    input_tokens: int
    output_tokens: int
    cost_usd: float | None


def estimate_cost(
    pricebook: PriceBook,
    provider: str,
    operation: str,
    body: Mapping[str, Any],
    at: datetime,
    *,
    default_max_output: int = DEFAULT_MAX_OUTPUT_TOKENS,
) -> Estimate:
    """The estimated tokens of a request (:func:`estimate_tokens`), priced as uncached input and output
    at the catalog's rates in force at `at` (prompt-cache discounts and surcharges are not guessed)."""
    tokens_in, tokens_out = estimate_tokens(operation, body, default_max_output=default_max_output)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return Estimate(tokens_in, tokens_out, None)
    rates = pricebook.rates(provider, model, at)
    if rates is None or rates.per_hour is not None:
        return Estimate(tokens_in, tokens_out, None)
    return Estimate(tokens_in, tokens_out, float(pricebook.cost_of(rates, Usage(input=tokens_in, output=tokens_out))))


