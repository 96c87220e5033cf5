"""OpenAI (and OpenAI-compatible) bodies: chat completions, responses, embeddings."""

from __future__ import annotations

import re
from typing import Any

from .. import fastjson
from ..usage import Usage
from .base import count_of, detail_count, first_of, none_of

__all__ = ["PARSERS", "chat_usage", "choice_error", "failure_of", "response_failure", "responses_usage"]

_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_USAGE_NULL = (b":null", b": null")  # after '"usage"': how the API and json.dumps write a chunk's usage null
# The same, as a member of a chunk after another one (the API writes it after "choices"): what a chunk sent
# with usage asked for has and one sent without it lacks. A JSON string escapes its quotes, so `,"` only
# ever begins a member, never sits inside a string.
_USAGE_NULL_MEMBERS = (b',"usage":null', b', "usage": null')
# How a chunk whose delta opens with text content begins it: the API's compact JSON, and json.dumps' spacing.
_CONTENT_STARTS = (b'"delta":{"content":"', b'"delta": {"content": "')
# Once content has started, only events with these can still tell a Responses stream reader something.
_RESPONSES_MARKERS = (b"response.created", b"response.completed", b"response.incomplete", b"response.failed", b"error")
_CONTENT_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
    }
)
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def chat_usage(usage: Any) -> Usage | None:
    """Usage of a chat completion: prompt_tokens already include cached ones, completion_tokens reasoning."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    if prompt is None:
        prompt = usage.get("input_tokens")
    input_, output, unreadable = _counts(usage, prompt, "completion_tokens")
    # Each details object looked up once (every record parses one in the writer thread).
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict):
        cached_input, cache_write = detail_count(details.get("cached_tokens")), detail_count(details.get("cache_write_tokens"))
        audio_input = detail_count(details.get("audio_tokens"))
    else:
        cached_input = cache_write = audio_input = 0
    details = usage.get("completion_tokens_details")
    if isinstance(details, dict):
        reasoning, audio_output = detail_count(details.get("reasoning_tokens")), detail_count(details.get("audio_tokens"))
    else:
        reasoning = audio_output = 0
    if cached_input is None or cache_write is None or audio_input is None or reasoning is None or audio_output is None:
        # A detail count that is no whole number ("100", 99.5): read as 0 it billed cached tokens at the full rate.
        unreadable = True
        cached_input, cache_write, audio_input = cached_input or 0, cache_write or 0, audio_input or 0
        reasoning, audio_output = reasoning or 0, audio_output or 0
    # In field order (see Usage): a class called with keywords first packs them into a dict, 4k instructions.
    return Usage(input_, output, cached_input, cache_write, 0, reasoning, audio_input, audio_output, 0, unreadable)


def _counts(usage: dict[str, Any], prompt: Any, output_key: str) -> tuple[int, int, bool]:
    """(input, output, unreadable) of a usage object, chat's or the Responses API's alike.

    Both counts must be known, or the cost is unknown: priced on one it was a silent undercount. A count that is no
    whole number (a fraction, a text, a negative) makes the usage unreadable. One left out or null is worked out from
    total_tokens where there is one (the total less the other; the total alone is input), else it is unknown, except
    an output count never sent at all (the embeddings API's usage has none): no output.
    """
    total = count_of(usage.get("total_tokens"))
    completion = usage.get(output_key)
    input_ = count_of(prompt) if prompt is not None else None
    output = count_of(completion) if completion is not None else None
    if (prompt is not None and input_ is None) or (completion is not None and output is None):
        return input_ or 0, output or 0, True
    if input_ is None and output is not None:
        if total is not None and total >= output:
            input_ = total - output
    elif output is None and input_ is not None:
        if total is not None and total >= input_:
            output = total - input_
        elif output_key not in usage:
            output = 0
    elif input_ is None and output is None and total is not None:
        input_, output = total, 0
    return input_ or 0, output or 0, input_ is None or output is None


def responses_usage(usage: Any, tool_usage: Any = None) -> Usage | None:
    """Usage of a Responses API response: input_tokens include cached ones, output_tokens reasoning; its
    `tool_usage` (beside `usage`) counts the web searches billed."""
    if not isinstance(usage, dict):
        return None
    cached_input = _detail(usage, "input_tokens_details", "cached_tokens")
    cache_write = _detail(usage, "input_tokens_details", "cache_write_tokens")
    reasoning = _detail(usage, "output_tokens_details", "reasoning_tokens")
    searches = _detail(tool_usage, "web_search", "num_requests") if isinstance(tool_usage, dict) else 0
    input_, output, unreadable = _counts(usage, usage.get("input_tokens"), "output_tokens")
    if cached_input is None or cache_write is None or reasoning is None or searches is None:
        unreadable = True  # a detail count that is no whole number (see chat_usage)
        cached_input, cache_write, reasoning, searches = cached_input or 0, cache_write or 0, reasoning or 0, searches or 0
    # In field order (see Usage), as in chat_usage.
    return Usage(input_, output, cached_input, cache_write, 0, reasoning, 0, 0, searches, unreadable)



def choice_error(choices: Any) -> str | None:
    """The error type of a router's upstream failure inside an answer or chunk (OpenRouter: a choice with an error or
    finish_reason "error"), `upstream_<code>`; None when no choice carries one."""
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and (choice.get("error") or choice.get("finish_reason") == "error"):
                error = choice.get("error")
                code = error.get("code") if isinstance(error, dict) else None
                return "upstream_error" if code is None else f"upstream_{code}"
    return None


def failure_of(response: dict[str, Any]) -> str:
    """The error type of a Responses API response that failed: its error's code, else its type, else response_failed."""
    error = response.get("error")
    code = (error.get("code") or error.get("type")) if isinstance(error, dict) else None
    return str(code or "response_failed")  # "code": null was recorded as the error type "None"


def response_failure(body: dict[str, Any]) -> str | None:
    """The error type of a whole Responses API body whose status is "failed" (the SDK returns it as an answer), else None."""
    return failure_of(body) if body.get("status") == "failed" else None


def _tier_of(body: dict[str, Any]) -> str | None:
    """The `service_tier` an answer (or chunk, or Responses `response`) names, as given (None: not said)."""
    tier = body.get("service_tier")
    return tier if isinstance(tier, str) else None


def _detail(usage: dict[str, Any], details: str, name: str) -> int | None:
    """A count inside one of usage's details objects (absent or null: 0; no whole number: None, unreadable)."""
    inner = usage.get(details)
    return detail_count(inner.get(name)) if isinstance(inner, dict) else 0


def _loads(data: bytes) -> Any:
    try:
        return fastjson.loads(data)
    except ValueError:
        return None


def _starts_content(data: bytes) -> bool:
    """Whether a chunk's delta surely begins with non-empty text content (`"delta":{"content":"x`).

    A JSON string escapes its quotes, so the pattern can only be the chunk's own delta member.
    """
    for start in _CONTENT_STARTS:
        at = data.find(start)
        if at >= 0:
            return data[at + len(start) : at + len(start) + 1] not in (b'"', b"")
    return False


def _one_data_line(data: bytes) -> bool:
    """Whether a chunk ending with a blank line is one event of one `data: {` line (its JSON is data[6:-2])."""
    return data.startswith(b"data: {") and data.count(b"\n") == 2 and data.rfind(b"\r") < 0


def _names_model(data: bytes) -> bool:
    """Whether a chunk has a model member whose value is a non-empty string (`"model":"g...`, or json.dumps'
    `"model": "g...`): Azure opens a stream with a chunk whose model is ""."""
    at = data.find(b'"model":')
    if at < 0:
        return False
    value = data[at + 8 : at + 11].lstrip()
    return value[:1] == b'"' and value[1:2] not in (b'"', b"")


def _usage_object(data: bytes, start: int, end: int) -> int:
    """Where the first usage object in data[start:end] begins (-1: none); `"usage":null` is not one."""
    at = data.find(b'"usage"', start, end)
    while at >= 0:
        # The null the API writes in every chunk is told apart without the regex, which costs a stream a few us.
        if not data.startswith(_USAGE_NULL, at + 7) and _USAGE_OBJECT.match(data, at):
            return at
        at = data.find(b'"usage"', at + 7, end)
    return -1


class ChatStreamReader:
    """Reads `chat.completion.chunk` events; usage comes in a final chunk with empty choices."""

    __slots__ = (
        "_final_usage", "_hide_usage_chunk", "_model", "_model_data", "_seen_content", "_service_tier", "_usage",
        "_usage_data", "done", "failed", "strip",
    )  # fmt: skip

    def __init__(self, hide_usage_chunk: bool) -> None:
        self._model: str | None = None
        # The first content chunk, when its bytes alone showed it carries content: parsed for `model` when read.
        self._model_data: bytes | None = None
        self._usage: Usage | None = None
        # A usage chunk met by pass_on, kept as bytes: parsed when `usage` is first read (in the writer's thread).
        self._usage_data: bytes | None = None
        self._service_tier: str | None = None
        self.done = False
        self.failed: str | None = None
        self._hide_usage_chunk = hide_usage_chunk
        self._seen_content = False
        self._final_usage = False  # a usage-only chunk (empty choices) was read: the stream's last but [DONE]
        #: Bytes to drop from every event handed on (None: nothing): the `"usage":null` member the API adds to
        #: each chunk when usage is asked for, which the app did not ask for. Without it each chunk is the one
        #: the bare SDK would get (its `to_dict()` alike), and the SDK has one field less to parse in each.
        self.strip: bytes | None = None

    @property
    def usage(self) -> Usage | None:
        """The stream's usage: the last usage object it carried (None: none yet)."""
        data = self._usage_data
        if data is not None:
            self._usage_data = None
            chunk = _loads(data)
            usage = chat_usage(chunk.get("usage")) if isinstance(chunk, dict) else None
            if usage is not None:
                self._usage = usage
                self._service_tier = _tier_of(chunk)
        return self._usage

    @property
    def service_tier(self) -> str | None:
        """The service tier the usage chunk says the answer was served at (None: not said)."""
        if self._usage_data is not None:
            _ = self.usage  # a usage chunk kept as bytes is parsed first
        return self._service_tier

    @property
    def model(self) -> str | None:
        """The model the stream's chunks name (None: none yet)."""
        data = self._model_data
        if data is not None:
            self._model_data = None
            chunk = _loads(data)
            if isinstance(chunk, dict) and isinstance(chunk.get("model"), str) and chunk["model"]:
                self._model = chunk["model"]
        return self._model

    @property
    def steady(self) -> bool:
        """Content and the model are known: ordinary content events have nothing more to tell."""
        return self._seen_content and (self._model is not None or self._model_data is not None)

    def next_marker(self, block: bytes, pos: int) -> int:
        """The next usage object, error or [DONE] from `pos` (-1: none); `"usage":null`, sent in every chunk, is not one."""
        # [DONE] ends the stream, so the last one is the one: found backwards, twice as fast on SSE text in
        # CPython (the same text inside content is only read as an event). Usage and errors are looked for
        # forwards: a later `"error":null` or a second usage chunk must not hide an earlier one.
        done = block.rfind(b"[DONE]", pos)
        end = len(block) if done < 0 else done
        at = _usage_object(block, pos, end)
        # An error key cannot hide inside content: a quote in a JSON string is escaped.
        error = block.find(b'"error"', pos, end if at < 0 else at)
        if error >= 0:
            return error
        return at if at >= 0 else done

    def pass_on(self, data: bytes) -> bytes | None:
        """Whole events `data` as handed on (less `strip`) when they surely hold no usage object, error or [DONE],
        or when they are the end event alone (noted) or one usage chunk alone (kept for `usage`; b"" when hidden);
        else None.

        Conservative: a chunk it cannot vouch for (say `"usage" : null`) is read event by event instead.
        """
        # Backward searches only: on SSE text CPython's rfind costs half its `in` or count (95 against 200 ns a
        # chunk). Counting usage nulls against blank lines instead costs as much once a chunk must also be
        # checked for an error member and for other line endings, which the markers cover by themselves.
        strip = self.strip
        if strip is not None:
            # Every usage member the API adds (the null) is gone: any "usage" left may be an object.
            data = data.replace(strip, b"")
            # rpartition()[1] (the marker, or b"" when absent) rather than rfind() >= 0: the same backward search, but
            # before Python 3.13 rfind parses its arguments from a tuple, a third of its cost on a chunk.
            if data.rpartition(b'"usage"')[1]:
                return self._usage_chunk(data)
            if data.rpartition(b"[DONE]")[1]:
                return self._done(data)
            if data.rpartition(b'"error"')[1]:
                return None
            return data
        if data.rpartition(b"[DONE]")[1]:
            return self._done(data)
        if data.rpartition(b'"error"')[1]:
            return None
        at = data.rfind(b'"usage"')
        while at >= 0:
            if not data.startswith(_USAGE_NULL, at + 7):
                return self._usage_chunk(data)
            at = data.rfind(b'"usage"', 0, at)
        return data

    def body_ended(self) -> None:
        """The body was read to its end without error: after the usage-only chunk (sent last) the answer is whole,
        [DONE] or not (some compatible servers end the body without it; the SDK ends the stream there). A usage sent in
        every chunk (Perplexity, vLLM's continuous_usage_stats) says nothing of the end."""
        if not self.done and self.failed is None and self._final_usage and self.usage is not None:
            self.done = True

    def _done(self, data: bytes) -> bytes | None:
        """pass_on for a chunk holding [DONE]: the end event alone is noted and handed on; anything else is read."""
        if data == b"data: [DONE]\n\n":
            self.done = True
            return data
        return None

    def _usage_chunk(self, data: bytes) -> bytes | None:
        """pass_on for a chunk with a usage object: one such event alone is kept unparsed for `usage` (None: read it).

        Hidden (b"") when it is the usage-only chunk costtrack asked for, whose choices are empty, whatever its
        usage holds (the app never asked for it): a JSON string escapes its quotes, so `"choices":[]` there can
        only be the chunk's own member. Choices written any other way are read.
        """
        if not _one_data_line(data) or data.count(b'"usage"') != 1 or data.rfind(b'"error"') >= 0:
            return None
        if _USAGE_OBJECT.search(data) is None:
            return None
        if data.rfind(b'"choices":[]') >= 0 or data.rfind(b'"choices": []') >= 0:
            out = b"" if self._hide_usage_chunk else data
            self._final_usage = True
        elif data.rfind(b'"choices":[{') >= 0 or data.rfind(b'"choices": [{') >= 0:
            out = data
        else:
            return None
        if self._usage_data is not None:
            self.usage  # noqa: B018 - an earlier one still unread is read now: a later chunk may carry no usable usage
        self._usage_data = data[6:-2]
        return out

    def starts(self, data: bytes) -> bytes | None:
        """Before content: one whole event whose bytes show it opens the content, as handed on (None: read it).

        The usual first content chunk, read without parsing; anything else (a role-only first chunk, usage,
        an error, several events) is read event by event.
        """
        if not _one_data_line(data):
            return None
        event = data[6:-2]
        if self._hide_usage_chunk and self.strip is None:
            self._learn_strip(event)
        if _USAGE_OBJECT.search(event) is not None or event.rfind(b'"error"') >= 0 or not self._opens_content(event):
            return None
        strip = self.strip
        return data if strip is None else data.replace(strip, b"")

    def _learn_strip(self, data: bytes) -> None:
        for member in _USAGE_NULL_MEMBERS:
            if data.rfind(member) >= 0:
                self.strip = member
                return

    def _opens_content(self, data: bytes) -> bool:
        """Whether event data without usage or error opens the content by its bytes alone (then noted as seen).

        The model it names is parsed only if `model` is read (in the writer's thread).
        """
        if self._seen_content or not _starts_content(data) or not (self._model is not None or _names_model(data)):
            return False
        self._seen_content = True
        if self._model is None:
            self._model_data = data
        return True

    def feed(self, event: str | None, data: bytes) -> tuple[bool, bool]:
        """Read one event; return (carries content, hide it from the caller)."""
        if data.startswith(b"[DONE]"):
            self.done = True
            return False, False
        if self._hide_usage_chunk and self.strip is None:
            self._learn_strip(data)
        has_usage = _USAGE_OBJECT.search(data) is not None
        if not has_usage and b'"error"' not in data:
            if self.steady:
                return False, False  # nothing new to learn: skip the JSON parse
            if self._opens_content(data):
                return True, False
        chunk = _loads(data)
        if not isinstance(chunk, dict):
            return False, False
        if self._model is None and self._model_data is None and isinstance(chunk.get("model"), str) and chunk["model"]:
            self._model = chunk["model"]  # the first chunk naming a model names the stream's ("" names none: Azure's first)
        error = chunk.get("error")
        if error:  # as the SDK, which raises on a truthy error only (a compatible server's "error": "CUDA OOM" too)
            kind = (error.get("type") or error.get("code")) if isinstance(error, dict) else chunk.get("error_type")
            self.failed = str(kind or "stream_error")
        choices = chunk.get("choices")
        if self.failed is None:
            self.failed = choice_error(choices)
        content = False
        if not self._seen_content and isinstance(choices, list) and choices:
            delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
            if isinstance(delta, dict) and (
                delta.get("content") or delta.get("tool_calls") or delta.get("refusal") or delta.get("reasoning_content")
            ):
                content = self._seen_content = True
        hide = False
        if has_usage:
            usage = chat_usage(chunk.get("usage"))
            if usage is not None:
                self._usage, self._usage_data = usage, None
                self._service_tier = _tier_of(chunk)
                self._final_usage = choices == []
                hide = self._hide_usage_chunk and self._final_usage
        return content, hide


class ResponsesStreamReader:
    """Reads Responses API events; usage comes with `response.completed` (or incomplete/failed)."""

    __slots__ = ("_seen_content", "done", "failed", "model", "service_tier", "usage")

    strip = None  # nothing is hidden from a Responses stream
    starts = None  # every event before content is read

    def __init__(self, hide_usage_chunk: bool = False) -> None:
        self.model: str | None = None
        self.usage: Usage | None = None
        self.service_tier: str | None = None
        self.done = False
        self.failed: str | None = None
        self._seen_content = False

    @property
    def steady(self) -> bool:
        """Content has started: ordinary content events have nothing more to tell."""
        return self._seen_content

    def next_marker(self, block: bytes, pos: int) -> int:
        """The next created, final or error event from `pos` (-1: none)."""
        return first_of(block, pos, _RESPONSES_MARKERS)

    def pass_on(self, data: bytes) -> bytes | None:
        """Whole events `data`, when they hold no created, final or error event; else None."""
        return data if none_of(data, _RESPONSES_MARKERS) else None

    def feed(self, event: str | None, data: bytes) -> tuple[bool, bool]:
        """Read one event; return (carries content, hide it from the caller)."""
        if event is None:
            parsed = _loads(data)
            if not isinstance(parsed, dict):
                return False, False
            event = parsed.get("type") if isinstance(parsed.get("type"), str) else None
        else:
            parsed = None
        if event in _CONTENT_EVENTS:
            first = not self._seen_content
            self._seen_content = True
            return first, False
        if event == "response.created" or event in _FINAL_EVENTS or event == "error":
            if parsed is None:
                parsed = _loads(data)
            if not isinstance(parsed, dict):
                return False, False
            response = parsed.get("response")
            if isinstance(response, dict):
                if isinstance(response.get("model"), str) and response["model"]:
                    self.model = response["model"]
                usage = responses_usage(response.get("usage"), response.get("tool_usage"))
                if usage is not None:
                    self.usage = usage
                    self.service_tier = _tier_of(response)
            if event in _FINAL_EVENTS:
                self.done = True
                if event == "response.failed":
                    self.failed = failure_of(response if isinstance(response, dict) else {})
            elif event == "error":
                self.failed = str(parsed.get("code") or "stream_error")
        return False, False


class _Parser:
    def __init__(self, usage_key: Any, reader: Any) -> None:
        self._usage = usage_key
        self._reader = reader

    def usage(self, body: dict[str, Any]) -> Usage | None:
        """Usage of a whole response body, or None when absent or malformed."""
        if self._usage is responses_usage:
            return responses_usage(body.get("usage"), body.get("tool_usage"))
        return self._usage(body.get("usage"))

    def stream_reader(self, hide_usage_chunk: bool) -> Any:
        """A new reader for one streamed response."""
        return self._reader(hide_usage_chunk)


PARSERS = {
    "chat.completions": _Parser(chat_usage, ChatStreamReader),
    "responses": _Parser(responses_usage, ResponsesStreamReader),
    "embeddings": _Parser(chat_usage, ChatStreamReader),
}
