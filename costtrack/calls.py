"""Call: one attempt in flight, from the request bytes to a finished CallRecord."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .context import CallContext
from .providers import StreamReader, parser_for
from .records import CallRecord, Status
from .usage import Usage

if TYPE_CHECKING:
    from .pricing import PriceBook
    from .tracker import Tracker

__all__ = ["Call", "request_hash", "VOLATILE_KEYS"]

# Request keys that do not change the answer: left out of the request hash.
VOLATILE_KEYS = frozenset({"stream", "stream_options", "user", "metadata", "store", "service_tier", "safety_identifier"})


def request_hash(provider: str, operation: str, body: dict[str, Any]) -> str:
    """A stable hash of what the answer depends on: provider, operation and the canonical request."""
    payload = {key: value for key, value in body.items() if key not in VOLATILE_KEYS}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    digest = hashlib.blake2b(f"{provider}\x00{operation}\x00".encode(), digest_size=16)
    digest.update(canonical.encode())
    return digest.hexdigest()


class Call:
    """What is known about one attempt; `record()` turns it into a CallRecord.

    The transport fills it on the app's thread with cheap facts only (times,
    bytes, stream events); parsing the body and pricing happen in `record()`.
    """

    __slots__ = (
        "tracker", "finished", "provider", "api", "operation", "context", "endpoint", "body", "request_bytes",
        "attempt", "timestamp", "started", "first_token", "ended", "status_code",
        "chunks", "reader", "status", "error_type", "store_content", "cache_hit",
        "cost_saved_usd", "extra_tags", "batch", "hide_usage_chunk",
    )  # fmt: skip

    def __init__(
        self,
        *,
        tracker: Tracker,
        provider: str,
        api: str,
        operation: str,
        context: CallContext,
        endpoint: str | None,
        body: dict[str, Any],
        request_bytes: bytes,
        attempt: int,
        timestamp: datetime,
        started: float,
    ) -> None:
        self.tracker = tracker
        self.finished = False
        self.provider = provider
        self.api = api
        self.operation = operation
        self.context = context
        self.endpoint = endpoint
        self.body = body
        self.request_bytes = request_bytes
        self.attempt = attempt
        self.timestamp = timestamp
        self.started = started
        self.first_token: float | None = None
        self.ended: float | None = None
        self.status_code: int | None = None
        self.chunks: list[bytes] = []
        self.reader: StreamReader | None = None
        self.status: Status = "ok"
        self.error_type: str | None = None
        self.store_content = tracker.store_content
        self.cache_hit = False
        self.cost_saved_usd: float | None = None
        self.extra_tags: dict[str, Any] | None = None
        self.batch = False
        self.hide_usage_chunk = False

    def finish(self, outcome: str | None = None) -> None:
        """Mark the attempt ended ("incomplete", an error type, or None for normal) and submit it, once."""
        if self.finished:
            return
        self.finished = True
        self.ended = self.tracker.clock()
        if outcome == "incomplete":
            self.status = "incomplete"
        elif outcome is not None:
            self.status, self.error_type = "error", outcome
        self.tracker.submit(self)

    @property
    def model_requested(self) -> str | None:
        """The model the app asked for."""
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    def record(self, pricebook: PriceBook | None) -> CallRecord:
        """Parse what was received, price it, and build the record."""
        usage: Usage | None = None
        model: str | None = None
        body_text: str | None = None
        if self.reader is not None:
            usage, model = self.reader.usage, self.reader.model
            if self.reader.failed and self.status == "ok":
                self.status, self.error_type = "error", self.reader.failed
            elif not self.reader.done and self.status == "ok":
                self.status = "incomplete"
        elif self.chunks:
            raw = b"".join(self.chunks)
            body_text = raw.decode("utf-8", "replace") if self.store_content else None
            parsed = _json_object(raw)
            if parsed is None:
                if self.status == "ok" and (self.status_code or 200) < 400:
                    self.status, self.error_type = "error", "malformed_response"
            else:
                model = parsed.get("model") if isinstance(parsed.get("model"), str) else None
                if (self.status_code or 200) < 400:
                    usage = parser_for(self.api, self.operation).usage(parsed)
                else:
                    self.error_type = _error_type(parsed) or self.error_type
        if (self.status_code or 200) >= 400:
            self.status = "error"
            self.error_type = self.error_type or f"http_{self.status_code}"
        cost: float | None = None
        source: str | None = None
        if self.cache_hit:
            cost = 0.0
        elif usage is not None and (usage.input or usage.output):
            priced_model = model or self.model_requested
            if pricebook is not None and priced_model:
                cost, source = pricebook.cost(self.provider, priced_model, usage, self.timestamp, batch=self.batch)
        elif self.status == "error":
            cost = 0.0  # a refused or failed request carries no usage and is not billed
        if usage is None:
            usage = Usage()
        latency = None if self.ended is None else (self.ended - self.started) * 1000.0
        ttft = None if self.first_token is None else (self.first_token - self.started) * 1000.0
        tags = dict(self.context.tags)
        if self.extra_tags:
            tags.update(self.extra_tags)
        return CallRecord(
            timestamp=self.timestamp,
            provider=self.provider,
            model=model or self.model_requested,
            model_requested=self.model_requested,
            operation=self.operation,
            endpoint=self.context.endpoint or self.endpoint or self.operation,
            tokens_input=usage.input,
            tokens_output=usage.output,
            tokens_cached_input=usage.cached_input,
            tokens_cache_write=usage.cache_write,
            tokens_cache_write_1h=usage.cache_write_1h,
            tokens_reasoning=usage.reasoning,
            cost_usd=cost,
            latency_ms=latency,
            ttft_ms=ttft,
            cache_hit=self.cache_hit,
            cost_saved_usd=self.cost_saved_usd,
            status=self.status,
            error_type=self.error_type,
            request_hash=request_hash(self.provider, self.operation, self.body),
            attempt=self.attempt,
            user=self.context.user,
            tags=tags,
            price_source=source,
            request_body=self.request_bytes.decode("utf-8", "replace") if self.store_content else None,
            response_body=body_text,
        )


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _error_type(body: dict[str, Any]) -> str | None:
    error = body.get("error")
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code")
        return str(kind) if kind else None
    return None
