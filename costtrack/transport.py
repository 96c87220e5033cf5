"""Transports that sit inside the SDK's HTTP client: time each attempt and read its body as it passes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx2

from .calls import Call
from .context import CallContext, current
from .logs import log_once
from .providers import operation_for_path, parser_for
from .sse import EventSplitter, event_fields

if TYPE_CHECKING:
    from .tracker import Tracker

__all__ = ["CostTransport", "AsyncCostTransport", "Instrument"]

_TIMEOUTS = (httpx2.TimeoutException,)
_CONNECTION = (httpx2.NetworkError, httpx2.ProtocolError, httpx2.ProxyError)


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, _TIMEOUTS):
        return "timeout"
    if isinstance(exc, _CONNECTION):
        return "connection_error"
    return type(exc).__name__


class Instrument:
    """What both transports share: deciding what to record and starting a Call."""

    def __init__(
        self,
        tracker: Tracker | None,
        *,
        provider: str,
        api: str,
        endpoint: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        self._tracker = tracker
        self.provider = provider
        self.api = api
        self.endpoint = endpoint
        self.tags = dict(tags or {})

    @property
    def tracker(self) -> Tracker:
        """The tracker records go to: the one given to wrap(), else the process default."""
        if self._tracker is not None:
            return self._tracker
        from .tracker import default_tracker

        return default_tracker()

    def start(self, request: httpx2.Request) -> tuple[Call | None, httpx2.Request]:
        """A Call for an instrumented request (None otherwise), and the request to send."""
        if request.method != "POST":
            return None, request
        operation = operation_for_path(request.url.path)
        if operation is None:
            return None, request
        try:
            content = request.content
            body = json.loads(content) if content else {}
            if not isinstance(body, dict):
                return None, request
        except Exception:  # multipart, unread streams, not JSON: not ours to record
            return None, request
        context = current()
        if self.tags:
            context = CallContext(
                endpoint=context.endpoint, user=context.user, tags={**self.tags, **context.tags},
                bypass_cache=context.bypass_cache,
            )  # fmt: skip
        tracker = self.tracker
        try:
            attempt = int(request.headers.get("x-stainless-retry-count", "0")) + 1
        except ValueError:
            attempt = 1
        call = Call(
            provider=self.provider,
            api=self.api,
            operation=operation,
            context=context,
            endpoint=self.endpoint,
            body=body,
            request_bytes=content,
            attempt=attempt,
            timestamp=tracker.now(),
            started=tracker.clock(),
            store_content=tracker.store_content,
        )
        if operation == "chat.completions" and body.get("stream") is True:
            request = self._ask_for_stream_usage(request, body, call)
        return call, request

    def _ask_for_stream_usage(self, request: httpx2.Request, body: dict[str, Any], call: Call) -> httpx2.Request:
        # Without stream_options.include_usage an OpenAI chat stream carries no usage at all.
        options = body.get("stream_options")
        if isinstance(options, dict) and "include_usage" in options:
            return request
        new_body = dict(body)
        new_body["stream_options"] = {**(options or {}), "include_usage": True}
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
        new_request = httpx2.Request(
            request.method,
            request.url,
            headers=headers,
            content=json.dumps(new_body, ensure_ascii=False, separators=(",", ":")).encode(),
            extensions=request.extensions,
        )
        call.hide_usage_chunk = True
        return new_request

    def response(self, call: Call, response: httpx2.Response, *, is_async: bool) -> httpx2.Response:
        """The response handed to the SDK: same status and headers, body read as it passes."""
        call.status_code = response.status_code
        streaming = response.headers.get("content-type", "").startswith("text/event-stream")
        hide = streaming and call.hide_usage_chunk
        if streaming:
            call.reader = parser_for(self.api, call.operation).stream_reader(hide)
        headers = response.headers
        if "content-encoding" in headers:
            # The body is passed on decoded (so it can be read here); say so in the headers.
            headers = httpx2.Headers([(k, v) for k, v in headers.multi_items() if k.lower() not in ("content-encoding", "content-length")])
        stream_cls = _AsyncRecordedStream if is_async else _RecordedStream
        return httpx2.Response(
            response.status_code,
            headers=headers,
            stream=stream_cls(self, call, response, hide),
            extensions=response.extensions,
        )

    def fail(self, call: Call, exc: BaseException) -> None:
        """The attempt raised before a response arrived."""
        call.ended = self.tracker.clock()
        call.status = "error"
        call.error_type = _error_type(exc)
        self.tracker.submit(call)


class _Reader:
    """Reads one response body as the SDK consumes it; finishes the Call exactly once."""

    __slots__ = ("_instrument", "_call", "_response", "_hide", "_splitter", "_finished", "_complete")

    def __init__(self, instrument: Instrument, call: Call, response: httpx2.Response, hide: bool) -> None:
        self._instrument = instrument
        self._call = call
        self._response = response
        self._hide = hide
        self._splitter = EventSplitter() if call.reader is not None else None
        self._finished = False
        self._complete = False

    def _pass(self, chunk: bytes) -> bytes:
        """Read a chunk; return the bytes to hand on (the same chunk unless an event is hidden)."""
        call = self._call
        splitter = self._splitter
        if splitter is None:
            call.chunks.append(chunk)
            return chunk
        reader = call.reader
        assert reader is not None
        kept: list[bytes] | None = [] if self._hide else None
        for event in splitter.feed(chunk):
            try:
                content, hide = reader.feed(*event_fields(event))
            except Exception:
                log_once("stream.read", "costtrack: could not read a stream event; the stream is passed on as is", exc_info=True)
                content, hide = False, False
            if content and call.first_token is None:
                call.first_token = self._instrument.tracker.clock()
            if kept is not None and not hide:
                kept.append(event)
        return chunk if kept is None else b"".join(kept)

    def _rest(self) -> bytes:
        if self._splitter is None:
            return b""
        rest = self._splitter.rest()
        if rest.strip():
            call = self._call
            assert call.reader is not None
            call.reader.feed(*event_fields(rest))
        return rest

    def _finish(self, error: BaseException | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        call = self._call
        call.ended = self._instrument.tracker.clock()
        if error is not None:
            call.status, call.error_type = "error", _error_type(error)
        elif not self._complete and call.reader is None:
            call.status = "incomplete"  # a stream's own end event decides, in Call.record
        self._instrument.tracker.submit(call)

    def __del__(self) -> None:
        # A stream the app dropped without closing is still recorded.
        try:
            self._finish()
        except Exception:
            pass


class _RecordedStream(_Reader, httpx2.SyncByteStream):
    __slots__ = ()

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._response.iter_bytes():
                out = self._pass(chunk)
                if out:
                    yield out
            rest = self._rest()
            self._complete = True
            if rest:
                yield rest
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._finish(exc)
            raise

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            self._finish()


class _AsyncRecordedStream(_Reader, httpx2.AsyncByteStream):
    __slots__ = ()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes():
                out = self._pass(chunk)
                if out:
                    yield out
            rest = self._rest()
            self._complete = True
            if rest:
                yield rest
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._finish(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._response.aclose()
        finally:
            self._finish()


class CostTransport(httpx2.BaseTransport):
    """Sync transport: records instrumented requests, passes every request to `send`."""

    def __init__(self, send: Callable[[httpx2.Request], httpx2.Response], instrument: Instrument) -> None:
        self._send = send
        self._instrument = instrument

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send the request; an instrumented one is timed and its body read on the way back."""
        instrument = self._instrument
        try:
            call, request = instrument.start(request)
        except Exception:
            log_once("transport.start", "costtrack: could not read a request; it is sent unrecorded", exc_info=True)
            call = None
        if call is None:
            return self._send(request)
        try:
            response = self._send(request)
        except BaseException as exc:
            instrument.fail(call, exc)
            raise
        return instrument.response(call, response, is_async=False)


class AsyncCostTransport(httpx2.AsyncBaseTransport):
    """Async twin of CostTransport."""

    def __init__(self, send: Callable[[httpx2.Request], Awaitable[httpx2.Response]], instrument: Instrument) -> None:
        self._send = send
        self._instrument = instrument

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send the request; an instrumented one is timed and its body read on the way back."""
        instrument = self._instrument
        try:
            call, request = instrument.start(request)
        except Exception:
            log_once("transport.start", "costtrack: could not read a request; it is sent unrecorded", exc_info=True)
            call = None
        if call is None:
            return await self._send(request)
        try:
            response = await self._send(request)
        except BaseException as exc:
            instrument.fail(call, exc)
            raise
        return instrument.response(call, response, is_async=True)
