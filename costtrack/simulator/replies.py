"""The HTTP responses the simulator sends: headers, the providers' error bodies, JSON and event-stream bodies."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx2

from .outcomes import Outcome
from .state import SimulatorState
from .streams import SimStream


class Replies(SimulatorState):
    """Builds the ``httpx2.Response`` of every answer and error, cut short or malformed when scripted so."""

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
            ms = max(0, round(self.retry_after * 1000))
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

    def _json(self, provider: str, n: int, data: dict[str, Any], outcome: Outcome) -> httpx2.Response:
        raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        headers = self._headers(provider, n)
        if outcome.kind == "malformed":
            return httpx2.Response(200, content=raw[: max(1, len(raw) // 2)], headers=headers)
        if outcome.kind == "cut":
            cut = len(raw) // 2 if outcome.cut_after is None else min(outcome.cut_after, len(raw))
            fail = httpx2.RemoteProtocolError(
                "peer closed connection without sending complete message body (incomplete chunked read)"
            )
            return httpx2.Response(200, headers=headers, stream=SimStream([raw[:cut]], fail_with=fail))
        headers["content-length"] = str(len(raw))
        return httpx2.Response(200, content=raw, headers=headers)

    def _stream(self, provider: str, n: int, events: list[bytes], outcome: Outcome) -> httpx2.Response:
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
            events = [*events[:keep], head + b'data: {"id": "broken", "choices": [{"delta": {"content": "unterminated\n\n']
        return httpx2.Response(
            200,
            headers=self._headers(provider, n, stream=True),
            stream=SimStream(
                events, fail_with=fail, delay=self.chunk_delay, sleep=self.sleep, async_sleep=self.async_sleep
            ),
        )
