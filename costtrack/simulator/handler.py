"""The Simulator: an httpx2 handler that routes each request to the builder of its provider's answer."""

from __future__ import annotations

import json
import random
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

from .anthropic_messages import AnthropicMessages
from .batch_api import BatchAPI
from .batches import BATCH_ENDPOINTS, BATCH_ROUTES, SimBatch, SimFile
from .models import models_body
from .outcomes import BadRequest, Outcome, parse_outcome
from .streams import sse


# BatchAPI brings the OpenAI builders and the replies along: a batch line is answered like a live call.
class Simulator(BatchAPI, AnthropicMessages):
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
        self._script: deque[Outcome] = deque()
        self._lock = threading.RLock()
        self._counter = 0
        self._openai_seen: dict[bytes, float] = {}
        self._anthropic_seen: dict[bytes, tuple[float, float]] = {}
        self.batch_polls = batch_polls
        self.files: dict[str, SimFile] = {}
        self.batches: dict[str, SimBatch] = {}
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
        parsed = [parse_outcome(o) for o in outcomes]
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
            for verb, pattern, endpoint in BATCH_ROUTES:
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
            except BadRequest as err:
                return self._error(provider, 400, request, n, message=str(err))

    def _random_outcome(self, n: int, provider: str, endpoint: str) -> Outcome:
        if self.error_rate <= 0 or endpoint == "models" or endpoint in BATCH_ENDPOINTS:
            return Outcome("ok")
        rng = random.Random(f"{self.seed}:error:{n}")
        if rng.random() >= self.error_rate:
            return Outcome("ok")
        choices = [500, 429, 529] if provider == "anthropic" else [500, 429]
        return Outcome("status", status=rng.choice(choices))

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

    # ------------------------------------------------------------------ answers

    def _answer(
        self, provider: str, endpoint: str, body: dict[str, Any], request: httpx2.Request, n: int, outcome: Outcome
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
            return self._json(provider, n, models_body(provider), outcome)
        if endpoint in BATCH_ENDPOINTS:
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
            events = [sse(c) for c in chunks] + [sse("[DONE]")]
        elif endpoint == "responses":
            plan = self._responses_plan(body)
            if not stream:
                return self._json(provider, n, self._responses_body(body, n, plan, usage=usage), outcome)
            events = [sse(e, e["type"]) for e in self._responses_events(body, n, plan, usage=usage)]
        else:  # messages
            plan = self._messages_plan(body)
            if not stream:
                return self._json(provider, n, self._message_body(body, n, plan, usage=usage), outcome)
            events = [sse(data, name) for name, data in self._message_events(body, n, plan, usage=usage)]
        return self._stream(provider, n, events, outcome)
