"""Call: one attempt in flight, from the request bytes to a finished CallRecord."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import fastjson
from .call_context import CallContext
from .hashing import request_hash
from .logs import log_once
from .pricing import priced_tier
from .providers import StreamReader, parser_for
from .providers.openai import choice_error, response_failure
from .records import CallRecord, Status, new_id
from .usage import TIER_TAG, UNREADABLE_TAG, Usage, billed_extras

if TYPE_CHECKING:
    from .pricing import PriceBook
    from .tracker import Tracker

__all__ = ["ERROR_KINDS", "Call", "Hold", "hold_calls", "unheld"]

class Hold:
    """Finished Calls kept back so a layer above the SDK (fallback, routing) can annotate them first.

    While a Hold is active, Calls started inside `hold_calls()` are appended to
    `calls` when they finish instead of being recorded; `release()` records them.
    A Call that finishes after the release (a stream read later) is passed to
    `late` (when set) and then recorded.
    """

    __slots__ = ("active", "calls", "late")

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.active = True
        self.late: Callable[[Call], None] | None = None

    def release(self) -> None:
        """Record every held Call and stop holding."""
        self.active = False
        calls, self.calls = self.calls, []
        for call in calls:
            call.tracker.submit(call)


_hold: contextvars.ContextVar[Hold | None] = contextvars.ContextVar("costtrack_hold", default=None)


@contextmanager
def hold_calls() -> Iterator[Hold]:
    """Hold the Calls started inside the block; they are recorded on `release()` or at the block's end."""
    hold = Hold()
    token = _hold.set(hold)
    try:
        yield hold
    finally:
        _hold.reset(token)
        hold.release()


@contextmanager
def unheld() -> Iterator[None]:
    """Calls started inside the block are recorded on their own, even inside `hold_calls()` (e.g. an LLM judge)."""
    token = _hold.set(None)
    try:
        yield
    finally:
        _hold.reset(token)


class Call:
    """What is known about one attempt; `record()` turns it into a CallRecord.

    The transport fills it on the app's thread with cheap facts only (times,
    bytes, stream events); parsing the body and pricing happen in `record()`.
    """

    # What most attempts keep as is, as class attributes: a Call is made on the app's thread, where each
    # line of __init__ costs, and the transport and the layers above set only what differs.
    _body: dict[str, Any] | None = None
    _finite = False  # the body was parsed from strict JSON: no NaN or infinity in it (see fastjson.loads_finite)
    finished = False
    first_token: float | None = None
    ended: float | None = None
    status_code: int | None = None
    reader: StreamReader | None = None
    status: Status = "ok"
    error_type: str | None = None
    cache_hit = False
    cost_saved_usd: float | None = None
    extra_tags: dict[str, Any] | None = None
    batch = False
    unsent = False  # failed before the request reached the provider (see Instrument.fail)
    hide_usage_chunk = False
    # The body's bytes as read (a plain answer; a stream is read by `reader`): a list set by whoever reads them,
    # so a stream's Call carries one object fewer while it waits in the writer's queue.
    chunks: Sequence[bytes] = ()
    # Set by fallback/routing: (provider, model) the app asked for, to price what this call saved.
    compare_model: tuple[str, str] | None = None

    def __init__(
        self,
        *,
        tracker: Tracker,
        provider: str,
        api: str,
        operation: str,
        context: CallContext,
        endpoint: str | None,
        request_bytes: bytes,
        body: dict[str, Any] | None = None,
        attempt: int,
        timestamp: datetime | float,
        started: float,
    ) -> None:
        self.tracker = tracker
        self.provider = provider
        self.api = api
        self.operation = operation
        self.context = context
        self.endpoint = endpoint
        if body is not None:
            self._body = body
        self.request_bytes = request_bytes
        self.attempt = attempt
        self._timestamp = timestamp  # a float (seconds since the epoch) is made a datetime when first needed
        self.started = started
        self.store_content = tracker.store_content
        self.hold = _hold.get()

    def finish(self, outcome: str | None = None) -> None:
        """Mark the attempt ended ("incomplete", an error type, or None for normal) and submit it, once."""
        if self.finished:
            return
        self.finished = True
        self.ended = self.tracker.clock()
        if self._body is not None:
            # Parsed on the app's thread (a stream, a cache key, a budget check): the writer parses it again
            # rather than keep it alive in its queue, where its objects outlived the collector's young
            # generations and, a few thousand calls later, cost a sweep of the whole heap (see Writer._prepare).
            self._body = None
        if outcome == "incomplete":
            if self.status == "ok":  # an error seen on the way (an undecodable body) stays the outcome
                self.status = "incomplete"
        elif outcome is not None:
            self.status, self.error_type = "error", outcome
        hold = self.hold
        if hold is not None:
            if hold.active:
                hold.calls.append(self)
                return
            if hold.late is not None:
                try:
                    hold.late(self)
                except Exception:
                    log_once("hold.late", "costtrack: could not annotate a call that ended late", exc_info=True)
        self.tracker.submit(self)

    def discard(self) -> None:
        """Drop the attempt unrecorded (a redirect the client follows: the request it leads to is the attempt)."""
        if self.finished:
            return
        self.finished = True
        monitor = self.tracker.budget_monitor
        if monitor is not None:
            monitor.release(self)

    @property
    def timestamp(self) -> datetime:
        """When the attempt started (UTC)."""
        stamp = self._timestamp
        if type(stamp) is float:
            stamp = self._timestamp = datetime.fromtimestamp(stamp, timezone.utc)
        elif stamp.tzinfo is None:  # type: ignore[union-attr]
            stamp = self._timestamp = stamp.replace(tzinfo=timezone.utc)  # type: ignore[union-attr]  # an injected clock's
        return stamp  # type: ignore[return-value]

    @property
    def body(self) -> dict[str, Any]:
        """The app's request body, parsed on first use (off the app's thread unless a cache or a stream needs it)."""
        body = self._body
        if body is None:
            try:
                parsed, self._finite = fastjson.loads_finite(self.request_bytes) if self.request_bytes else ({}, True)
            except ValueError:
                parsed = {}
            body = self._body = parsed if isinstance(parsed, dict) else {}
        return body

    def to_record(self) -> CallRecord:
        """The record, priced with the tracker's price book (called in the writer thread)."""
        record = self.record(self.tracker.pricebook)
        # The parsed request is not needed again (`body` would parse it anew): dropped now, not whenever the
        # app lets go of the response that holds this call, so it dies young (see Writer._prepare).
        self._body = None
        return record

    @property
    def model_requested(self) -> str | None:
        """The model the app asked for."""
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    def record(self, pricebook: PriceBook | None) -> CallRecord:
        """Parse what was received, price it, and build the record."""
        usage: Usage | None = None
        model: str | None = None
        tier: str | None = None
        body_text: str | None = None
        if self.reader is not None:
            usage, model = self.reader.usage, self.reader.model
            tier = self.reader.service_tier
            if self.reader.failed and self.status == "ok":
                self.status, self.error_type = "error", self.reader.failed
            elif not self.reader.done and self.status == "ok":
                self.status = "incomplete"
        elif self.chunks or (self.status == "ok" and self.status_code is not None):
            # A whole body was read (an empty one too: that is a malformed answer, not a missing one).
            raw = b"".join(self.chunks)
            body_text = raw.decode("utf-8", "replace") if self.store_content else None
            parsed = _json_object(raw)
            if parsed is None:
                if self.status == "ok" and (self.status_code or 200) < 300:
                    self.status, self.error_type = "error", "malformed_response"
            else:
                model = parsed.get("model") if isinstance(parsed.get("model"), str) else None
                model = model or None  # "" names no model
                if (self.status_code or 200) < 300:
                    usage = parser_for(self.api, self.operation).usage(parsed)
                    tier = _tier_in(parsed)
                    if self.status == "ok":
                        no_usage = usage is None or (usage.unreadable and not usage.input and not usage.output)
                        failure = _answer_error(parsed, no_usage)
                        if failure is None and self.operation == "responses":
                            failure = response_failure(parsed)  # a failed response with usage: billed, and an error
                        if failure is not None:
                            self.status, self.error_type = "error", failure
                else:
                    self.error_type = _error_type(parsed) or self.error_type
        if (self.status_code or 200) >= 300:
            self.status = "error"
            self.error_type = _status_error_type(self.status_code or 0, self.error_type)
        price: float | None = None
        source: str | None = None
        requested = self.model_requested
        priced_model = model or requested
        billed = usage is not None and (usage.input > 0 or usage.output > 0)
        tier = priced_tier(tier)
        if tier == "priority" and self.api == "anthropic":
            tier = None  # Anthropic's Priority Tier is committed capacity billed at the standard rates
        if billed and pricebook is not None and priced_model:
            assert usage is not None
            price, source = pricebook.cost(self.provider, priced_model, usage, self.timestamp, batch=self.batch, tier=tier)
            if usage.unreadable and price is not None:
                price, source = None, None  # a count it could not read: unknown, not the readable part's cost
        saved = self.cost_saved_usd
        if self.cache_hit:
            cost, saved = 0.0, price  # nothing billed; saved what the original call cost
        elif billed:
            cost = price
            if self.compare_model is not None and price is not None and pricebook is not None and usage is not None:
                provider, compare = self.compare_model
                reference, _ = pricebook.cost(provider, compare, usage, self.timestamp, batch=self.batch, tier=tier,
                                              warn=False)  # never called at that tier: nothing to warn of
                if reference is not None:
                    saved = reference - price
        else:
            # Refused (an HTTP error) or never sent: not billed. Any other call without usage, an answer
            # cut mid-way or unreadable, or a request that timed out once sent, may be billed: unknown.
            cost = 0.0 if self.status == "error" and (self.unsent or (self.status_code or 0) >= 300) else None
        if usage is None:
            usage = Usage()
        latency = None if self.ended is None else (self.ended - self.started) * 1000.0
        ttft = None if self.first_token is None else (self.first_token - self.started) * 1000.0
        context = self.context
        tags = dict(context.tags)
        if self.extra_tags:
            tags.update(self.extra_tags)
        if tier is not None:
            tags[TIER_TAG] = tier  # priced at that tier's rates: `costtrack reprice` reads it back
        if usage.audio_input or usage.audio_output or usage.web_searches:
            tags.update(billed_extras(usage))  # priced apart, with no column of their own: reprice reads them back
        if usage.unreadable:
            tags[UNREADABLE_TAG] = True  # reprice keeps its cost unknown
        if tags and not all(type(key) is str for key in tags):
            tags = {_text(key): value for key, value in tags.items()}  # JSON object keys are text
        # Every value below is already of its field's type (tests/test_calls.py checks they
        # validate), so the record is built without pydantic's validation pass.
        return CallRecord.trusted({
            # One id however many times the call is made a record: close() building a batch the writer thread is
            # building too (it timed out) stores the same record twice, and the insert keeps one.
            "id": self.__dict__.setdefault("record_id", new_id()),
            "timestamp": self.timestamp,
            "provider": self.provider,
            "model": model or requested,
            "model_requested": requested,
            "operation": self.operation,
            "endpoint": _text(context.endpoint or self.endpoint or self.operation),
            "tokens_input": usage.input,
            "tokens_output": usage.output,
            "tokens_cached_input": usage.cached_input,
            "tokens_cache_write": usage.cache_write,
            "tokens_reasoning": usage.reasoning,
            "cost_usd": cost,
            "latency_ms": latency,
            "ttft_ms": ttft,
            "cache_hit": self.cache_hit,
            "cost_saved_usd": saved,
            "status": self.status,
            "error_type": self.error_type,
            "request_hash": request_hash(self.provider, self.operation, self.body, finite=self._finite),
            "attempt": self.attempt,
            "user": None if context.user is None else _text(context.user),
            "tags": tags,
            "price_source": source,
            "tokens_cache_write_1h": usage.cache_write_1h,
            "request_body": self.request_bytes.decode("utf-8", "replace") if self.store_content else None,
            "response_body": body_text,
        })  # fmt: skip


def _text(value: object) -> str:
    """A str field's value: the app may have tagged calls with a number or another object."""
    return value if type(value) is str else str(value)


def _tier_in(body: dict[str, Any]) -> str | None:
    """The service tier a whole answer names: OpenAI at the top level, Anthropic inside its usage, where its fast
    mode (`speed: "fast"`, billed at its own rates) is taken as the tier `fast`."""
    tier = body.get("service_tier")
    if tier is None and isinstance(body.get("usage"), dict):
        usage = body["usage"]
        tier = "fast" if usage.get("speed") == "fast" else usage.get("service_tier")
    return tier if isinstance(tier, str) else None


def _answer_error(body: dict[str, Any], no_usage: bool) -> str | None:
    """The error type of a 200 that is no answer (the SDK hands it on as one): an error object beside no usage (a
    gateway's), or a choice that ended in an error (OpenRouter's finish_reason "error"); None for an answer."""
    if no_usage and body.get("error"):  # truthy, as the SDKs read it ("error": {} or null is none)
        kind = _error_type(body)
        return ERROR_KINDS.get(kind or "", kind) or "api_error"
    return choice_error(body.get("choices"))


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = fastjson.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


#: Error types (in an error body) by the common name records and fallbacks give them.
ERROR_KINDS = {
    "rate_limit_error": "rate_limit_exceeded",
    "rate_limit_exceeded": "rate_limit_exceeded",
    "overloaded_error": "overloaded_error",
    "api_error": "server_error",
    "server_error": "server_error",
    "timeout_error": "timeout",
}


def _status_error_type(status: int, body_type: str | None) -> str:
    """An HTTP error's error_type: the README's common names for the kinds every provider has (429, 529, other 5xx),
    whether or not the body was read (the SDKs close a retried attempt's unread); else the body's own type, else
    `http_<status>`."""
    if status == 429:
        return "rate_limit_exceeded"  # OpenAI's body says "requests" or "tokens", Anthropic's "rate_limit_error"
    if status == 529:
        return "overloaded_error"  # Anthropic's
    if body_type in ERROR_KINDS:
        return ERROR_KINDS[body_type]  # a 503 saying it is overloaded, a 504 a timeout: as CheapFirst names them
    if status >= 500:
        return "server_error"  # OpenAI's type for them; a gateway's anything, or an unread body
    return body_type or f"http_{status}"


def _error_type(body: dict[str, Any]) -> str | None:
    error = body.get("error")
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code")
        return str(kind) if kind else None
    return None
