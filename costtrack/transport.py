"""Transports inside the SDK's HTTP client: time each attempt and read its body as it passes."""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx2
from httpx2._decoders import MultiDecoder  # the decoders the SDK's own reads use

from . import fastjson
from .budgets import BudgetExceeded
from .cache import CACHE_HEADER, KEY_HEADERS, STORED_HEADERS, Cache, CachedResponse
from .call_context import CallContext
from .call_context import context_var as _context
from .calls import Call
from .forks import renews_in_child
from .headers import RETRY_HEADER as _RETRY_HEADER
from .headers import attempt_number, has_header, header_value, three_header_values, two_header_values
from .logs import log_once
from .providers import StreamReader, operation_for_path, parser_for
from .providers.openai import choice_error
from .sse import EventSplitter, event_fields, next_boundary

if TYPE_CHECKING:
    from .tracker import Tracker

__all__ = ["AsyncCostTransport", "CostTransport", "Instrument"]

_CACHE_HEADER = CACHE_HEADER.encode()
# Per API family: request paths already seen → operation (the SDK's paths are few and fixed).
_OPERATION_OF: dict[str, dict[str, str]] = {"openai": {}, "anthropic": {}}
_KEY_HEADERS = frozenset(name.encode() for name in KEY_HEADERS)
_TIMEOUTS = (httpx2.TimeoutException,)
_CANCELLED = (asyncio.CancelledError, KeyboardInterrupt)
# Redirects that send the same request on (method and body kept); 301/302/303 make a POST a GET, which is not
# recorded, so such an answer is recorded as the attempt's outcome: an error, not billed.
_RESENT = frozenset({307, 308})
# Seconds a stream's cache write may hold off a cancel (the SDK's drain deadline, an app's anyio timeout): the
# write is given time to finish, not unbounded time.
_FILL_SHIELD = 1.0
_CONNECTION = (httpx2.NetworkError, httpx2.ProtocolError, httpx2.ProxyError)
# The lines of a server-sent event (a field, or a comment): what an event stream's body is made of.
_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")
_EVENT_FIELDS = _SSE_FIELDS[:4]  # a block with none of these (comments only) is no event to the SDKs
# What a server answers a parameter it does not know with (Azure: 400 "Unrecognized request argument supplied").
_OPTION_REFUSALS = frozenset({400, 422})
# Failures before a request can have reached the provider: such an attempt is not billed.
_UNSENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout, httpx2.ProxyError, httpx2.UnsupportedProtocol)


_new = object.__new__


def _cancelled(exc: BaseException) -> bool:
    """The app stopped waiting: asyncio's or trio's cancellation (trio's is checked by name: trio is optional), Ctrl-C."""
    return isinstance(exc, _CANCELLED) or (type(exc).__name__ == "Cancelled" and type(exc).__module__.startswith("trio"))


def error_type(exc: BaseException) -> str:
    """The record's outcome for an exception raised while sending or reading: an error type, or "incomplete"."""
    if _cancelled(exc):
        return "incomplete"  # the app stopped waiting (task cancelled, Ctrl-C): not the provider's failure
    if isinstance(exc, _TIMEOUTS):
        return "timeout"
    if isinstance(exc, _CONNECTION):
        return "connection_error"
    if isinstance(exc, httpx2.DecodingError):
        return "malformed_response"  # a body that cannot be decoded (bad gzip), as an unreadable one
    return type(exc).__name__


def take_cache_directive(request: httpx2.Request) -> str | None:
    """Remove the per-request cache header (the provider never sees it) and return its value, lowercased."""
    headers = request.headers
    if not has_header(headers, _CACHE_HEADER):
        return None
    value = headers.pop(CACHE_HEADER, "").strip().lower()
    if value not in ("bypass", "off"):
        log_once(f"cache.directive:{value}", "costtrack: unknown %s header value %r (use 'bypass' or 'off'); ignored",
                 CACHE_HEADER, value)  # fmt: skip
        return None
    return value


def _decoder(headers: httpx2.Headers, encoding: bytes | None) -> Callable[[bytes], bytes] | None:
    """The decoder httpx2 itself applies to this body (raw deflate, br, zstd and stacked codings alike), or None.

    `encoding`: the first Content-Encoding value, read beforehand (None: the usual case, nothing to decode).
    """
    if encoding is None:
        return None
    codings = [c.strip().lower() for c in headers.get_list("content-encoding", split_commas=True)]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    try:
        decoder = MultiDecoder(codings)
    except httpx2.DecodingError:  # more codings than httpx2 applies: the SDK's own read fails on them too
        return _unreadable
    return lambda data: b"".join(decoder.decode(data))


def _unreadable(data: bytes) -> bytes:
    return b""  # a body costtrack cannot decode: the record keeps timing and status


class Instrument:
    """What both transports share: deciding what to record, starting Calls, finishing them."""

    def __init__(
        self,
        tracker: Tracker | None,
        *,
        provider: str,
        api: str,
        endpoint: str | None = None,
        tags: Mapping[str, Any] | None = None,
        cache: Cache | None = None,
    ) -> None:
        self._tracker = tracker
        self.cache = cache
        self.provider = provider
        self.api = api
        self.endpoint = endpoint
        self.tags = dict(tags or {})
        self._operations = _OPERATION_OF.setdefault(api, {})
        # (the context in force, it merged with self.tags) for the last call: contexts are immutable, and most
        # calls of a client run in the same one, so the merge is made once rather than per call.
        self._merged: tuple[CallContext, CallContext] | None = None
        # The server refused a request costtrack had added stream_options to (Azure before api-version 2024-09-01,
        # some compatible servers): this client's streams are sent as the app wrote them from then on.
        self.refuses_stream_options = False
        # The SDK's HTTP client follows redirects (both SDKs' default; set by wrap): a 307 or 308 is then a hop of
        # the attempt, not an attempt, and the request it leads to (the same POST) is recorded instead. A per-request
        # follow_redirects=False is not seen here: such a hop goes unrecorded (it is not billed).
        self.follow_redirects = False

    @property
    def tracker(self) -> Tracker:
        """The tracker records go to: the one given to wrap(), else the process default."""
        if self._tracker is not None:
            return self._tracker
        from .tracker import default_tracker

        return default_tracker()

    def begin(self, request: httpx2.Request, attempt: int = 1) -> Call | None:
        """A Call for an instrumented request (None otherwise), from the app's own request."""
        if request.method != "POST":
            return None
        url = request.url
        reference = getattr(url, "_uri_reference", None)  # httpx2's parsed URL: its path, without building bytes
        path = url.path if reference is None else reference.path
        known = self._operations
        operation = known.get(path)
        if operation is None:
            operation = operation_for_path(url.path, self.api)
            if operation is None:
                return None
            if len(known) < 256:
                known[path] = operation
        try:
            content = request.content
        except httpx2.RequestNotRead:
            # The request of a followed redirect (httpx2 passes the body on unread): bytes in memory, read here.
            if not isinstance(request.stream, httpx2.ByteStream):
                return None  # a streamed upload: not one of the JSON requests recorded here
            content = request.read()
        except Exception:
            return None
        if content[:1] != b"{":
            return None
        context = _context.get()
        if self.tags:
            merged = self._merged
            if merged is not None and merged[0] is context:
                context = merged[1]
            else:
                outer = context
                context = CallContext(outer.endpoint, outer.user, {**self.tags, **outer.tags}, outer.bypass_cache)
                self._merged = (outer, context)
        tracker = self._tracker or self.tracker
        # Made and then initialised: Call(...) with keywords would have type.__call__ pack them into a dict for
        # __init__ first (4k instructions, 7% of what a plain call adds on the app's thread).
        call = _new(Call)
        call.__init__(
            tracker=tracker,
            provider=self.provider,
            api=self.api,
            operation=operation,
            context=context,
            endpoint=self.endpoint,
            request_bytes=content,
            attempt=attempt,
            timestamp=tracker.stamp(),
            started=tracker.clock(),
        )
        # The SDKs serialise compactly, so a byte test spares parsing the body of every plain call.
        # rfind rather than `in`: the SDK writes "stream" after the messages, and on prose CPython's
        # forward search runs 3x slower than its backward one (1.2 against 0.36 us on a 2.5 KB body).
        if operation == "chat.completions" and content.rfind(b'"stream":true') >= 0 and call.body.get("stream") is True:
            body = call.body
            # Without stream_options.include_usage an OpenAI chat stream carries no usage at all:
            # it is asked for (in outgoing()) and the extra usage-only chunk hidden from the app.
            options = body.get("stream_options")
            # include_usage false is asked for too (the record needs the usage) and hidden the same way, so a
            # cached stream replays to each caller as its own request would have streamed.
            call.hide_usage_chunk = not (isinstance(options, dict) and options.get("include_usage") is True) and not (
                self.refuses_stream_options and options is None
            )
        return call

    @staticmethod
    def admit(call: Call) -> None:
        """Check `call` against hard budget limits just before it is sent (a cache hit costs nothing, so is never refused).

        Raises costtrack.BudgetExceeded, the one error costtrack raises into the app on
        purpose; any other failure of the check is logged once and the call is sent.
        """
        monitor = call.tracker.budget_monitor
        if monitor is None or not monitor.hard:
            return
        try:
            monitor.before_send(call)
        except BudgetExceeded:
            raise
        except Exception:
            log_once("budget.check", "costtrack: could not check a call against its budgets; it is sent", exc_info=True)

    @staticmethod
    async def aadmit(call: Call) -> None:
        """`admit` for an async client: the hard limit's first read of the database is made in a worker thread, so
        the event loop never waits on the database."""
        monitor = call.tracker.budget_monitor
        if monitor is None or not monitor.hard:
            return
        if not monitor.ready:
            try:
                await anyio.to_thread.run_sync(monitor.prepare)
            except Exception:
                log_once("budget.check", "costtrack: could not check a call against its budgets; it is sent", exc_info=True)
        Instrument.admit(call)

    def open(self, request: httpx2.Request) -> tuple[Call | None, str | None]:
        """Both transports' first step: the per-request cache directive, and a Call (None: send unrecorded).

        Never raises: a failure is logged once and the request is sent unrecorded.
        """
        scanned, directive = False, None
        try:
            found, retries = two_header_values(request.headers, _CACHE_HEADER, _RETRY_HEADER)
            scanned = True
            if found is not None:
                directive = take_cache_directive(request)
            return self.begin(request, attempt_number(retries)), directive
        except Exception:
            log_once("transport.start", "costtrack: could not read a request; it is sent unrecorded", exc_info=True)
            return None, directive if scanned else take_cache_directive(request)

    def sendable(self, call: Call, request: httpx2.Request) -> httpx2.Request:
        """`outgoing()`, falling back to the app's own request if it fails (then nothing is hidden)."""
        try:
            return self.outgoing(call, request)
        except Exception:
            log_once("transport.start", "costtrack: could not read a request; it is sent unrecorded", exc_info=True)
            call.hide_usage_chunk = False
            return request

    def refused_usage_option(self, call: Call, response: httpx2.Response, raw: bytes) -> bool:
        """Whether an error answer to a request costtrack added stream_options to refuses that option; if so this
        client stops adding it (logged once) and the call goes on as the app's own request, without usage."""
        if response.status_code not in _OPTION_REFUSALS or not _refuses_stream_options(response, raw):
            return False
        self.refuses_stream_options = True
        call.hide_usage_chunk = False
        log_once(f"transport.stream_options:{self.provider}", "costtrack: the %s server refused stream_options, which "
                 "costtrack adds to read a stream's usage; this client's streams are now sent as written and recorded "
                 "without usage (cost unknown) unless the app asks for it", self.provider)  # fmt: skip
        return True

    @staticmethod
    def replayable(response: httpx2.Response, raw: bytes) -> httpx2.Response:
        """`response` again, its body (read raw, as it came) to be read anew."""
        return httpx2.Response(response.status_code, headers=response.headers, stream=httpx2.ByteStream(raw),
                               extensions=response.extensions)  # fmt: skip

    @staticmethod
    def outgoing(call: Call, request: httpx2.Request) -> httpx2.Request:
        """The request to send for `call`: the app's, asking for stream usage when costtrack hides it."""
        return _with_stream_usage(request, call.body) if call.hide_usage_chunk else request

    def cache_plan(self, call: Call, request: httpx2.Request, directive: str | None) -> tuple[str, bool] | None:
        """(key, whether to look it up) when the response cache applies to this request, else None.

        A bypassed request (context `bypass_cache=True`, or the header value "bypass")
        skips the lookup but its fresh answer still refreshes the entry; "off" neither reads nor writes.
        """
        cache = self.cache
        if cache is None or directive == "off" or not cache.is_cacheable(call.body):
            return None
        url = request.url
        # The query too: Azure's api-version, extra_query=... may change the answer.
        target = f"{url.host}:{url.port or ''}{url.path}" + (f"?{url.query.decode('ascii', 'replace')}" if url.query else "")
        picked = {k.lower().decode("latin-1"): v.decode("latin-1") for k, v in request.headers.raw if k.lower() in _KEY_HEADERS}
        key = cache.key(call.provider, call.operation, call.body, target=target, headers=picked)
        return key, directive != "bypass" and not call.context.bypass_cache

    def replay(self, call: Call, entry: CachedResponse, *, is_async: bool) -> httpx2.Response:
        """A stored response handed to the SDK through the same reading path as a live one."""
        call.cache_hit = True
        response = httpx2.Response(entry.status, headers=[*entry.headers, (CACHE_HEADER, "hit")], content=entry.body)
        return self.response(call, response, is_async=is_async)

    def response(
        self, call: Call, response: httpx2.Response, *, is_async: bool, fill: str | None = None
    ) -> httpx2.Response:
        """The response handed to the SDK: same status, headers and bytes, read as they pass.

        With `fill` (a cache key), a complete 2xx body is stored in the cache once read.
        """
        if response.status_code in _RESENT and self.follow_redirects and "location" in response.headers:
            call.discard()
            return response
        call.status_code = response.status_code
        store = None
        if fill is not None and self.cache is not None and 200 <= response.status_code < 300:
            kept = tuple((k, v) for k, v in response.headers.multi_items() if k.lower() in STORED_HEADERS)
            store = (self.cache, fill, kept)
        headers = response.headers
        # One pass over the headers (a real answer has a score of them) for all that is needed: the length
        # only matters to a stream whose usage chunk is hidden (dropping it makes the body shorter).
        length = None
        if call.hide_usage_chunk:
            content_type, encoding, length = three_header_values(headers, b"content-type", b"content-encoding", b"content-length")
        else:
            content_type, encoding = two_header_values(headers, b"content-type", b"content-encoding")
        if content_type is not None and content_type.lstrip().lower().startswith(b"text/event-stream"):
            call.reader = parser_for(self.api, call.operation).stream_reader(call.hide_usage_chunk)
        else:
            call.hide_usage_chunk = False
            if store is None and type(response.stream) is httpx2.ByteStream:
                try:
                    content = response.content
                except httpx2.ResponseNotRead:
                    pass
                else:
                    # A whole body already in memory (a cache hit, a mock): nothing left to wait for.
                    call.chunks = [content]
                    call.finish()
                    return response
        decode = _decoder(headers, encoding)
        recorded: _Reader
        if call.reader is None and decode is None and store is None:
            # A plain body (the usual JSON answer): kept as it passes, with nothing to decode, split or store.
            recorded = (_AsyncRecordedBody if is_async else _RecordedBody)(call, response.stream)
        else:
            recorded = (_AsyncRecordedStream if is_async else _RecordedStream)(call, response.stream, decode, store)
            if call.reader is not None:
                _OPEN_STREAMS.add(recorded)
        if call.hide_usage_chunk and (decode is not None or length is not None):
            # Dropping an event re-writes the body: it goes on decoded and shorter, and the headers say so.
            dropped = (b"content-encoding", b"content-length") if decode is not None else (b"content-length",)
            headers = httpx2.Headers([(k, v) for k, v in headers.raw if k.lower() not in dropped])
        elif not isinstance(response.stream, httpx2.ByteStream):
            # A network response: keep the transport's own object, its body now read as it passes.
            response.stream = recorded
            return response
        # A response built from bytes (a cache hit, a mock) was read on creation: pass on a fresh one.
        return httpx2.Response(response.status_code, headers=headers, stream=recorded, extensions=response.extensions)

    @staticmethod
    def fail(call: Call, exc: BaseException) -> None:
        """The attempt raised before a response arrived."""
        call.unsent = isinstance(exc, _UNSENT)
        call.finish(error_type(exc))


#: Words of an error that refuses a parameter as such (not a value of it): Azure's "Unrecognized request argument
#: supplied", "unknown field", "extra inputs are not permitted" (pydantic), "not supported".
_REFUSING = re.compile(r"unrecogni[sz]ed|unknown|unexpected|not permitted|not allowed|extra|not supported|unsupported", re.I)


def _refuses_stream_options(response: httpx2.Response, raw: bytes) -> bool:
    """Whether an error body refuses the stream_options parameter itself: an error message that names it with a
    refusing word, or a validation error located at it; never text merely echoing the request."""
    try:
        decode = _decoder(response.headers, header_value(response.headers, b"content-encoding"))
        text = decode(raw) if decode is not None else raw
    except Exception:
        text = raw  # a body in memory comes decoded already
    try:
        body = fastjson.loads(text)
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    messages: list[Any] = []
    error = body.get("error")
    if isinstance(error, dict):
        messages += [error.get("message"), error.get("param")]
    elif isinstance(error, str):
        messages.append(error)
    detail = body.get("detail")  # FastAPI / pydantic: [{"loc": [..., "stream_options"], "msg": ..., "type": ...}]
    if isinstance(detail, str):
        messages.append(detail)
    elif isinstance(detail, list):
        for item in detail:
            if isinstance(item, dict) and isinstance(item.get("loc"), list) and "stream_options" in item["loc"][-1:]:
                return True
    for message in messages:
        if isinstance(message, str) and "stream_options" in message and (_REFUSING.search(message) or message == "stream_options"):
            return True
    return False


def _is_answer(body: dict[str, Any]) -> bool:
    """Whether a whole 200 body is an answer worth replaying: one with its usage, or, from a server that sends none,
    one shaped like an answer (choices, content, output or embeddings). Not an error object (a gateway's 200 would be
    replayed for the whole TTL where the next call would have reached the provider), nor a Responses object not done."""
    if body.get("error") or body.get("object") == "error":  # a truthy error, as the SDKs read it ("error": null is none)
        return False
    if body.get("object") == "response" and body.get("status") not in ("completed", "incomplete", None):
        return False  # queued, in progress, failed or cancelled
    if choice_error(body.get("choices")) is not None:
        return False  # a router's error inside the answer (OpenRouter): an empty answer, replayed for the TTL
    if isinstance(body.get("usage"), dict):
        return True
    return any(isinstance(body.get(key), list) and body[key] for key in ("choices", "content", "output", "data"))


def _with_stream_usage(request: httpx2.Request, body: dict[str, Any]) -> httpx2.Request:
    """A copy of `request` asking for stream usage; the app's own request object is left as it was."""
    content = request.content
    if "stream_options" not in body and content.endswith(b"}"):
        # Splice the option into the app's own bytes: nothing else about the request changes.
        content = content[:-1] + b',"stream_options":{"include_usage":true}}'
    else:
        options = body.get("stream_options")
        options = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        content = json.dumps({**body, "stream_options": options}, ensure_ascii=False, separators=(",", ":")).encode()
    # The copy is made field by field rather than through httpx2.Request(), which re-parses the URL and
    # copies the headers twice (4 us in a tight loop against 1): same method, URL and extensions, the
    # same header list but for its Content-Length, the new bytes already read.
    headers = httpx2.Headers(request.headers)
    items = headers._list
    length = str(len(content)).encode()
    for i in range(len(items) - 1, -1, -1):  # httpx2 puts Content-Length last: found in one step
        if items[i][1] == b"content-length":
            items[i] = (items[i][0], b"content-length", length)
            break
    else:
        items.append((b"Content-Length", b"content-length", length))
    spliced = object.__new__(httpx2.Request)
    spliced.__dict__.update(request.__dict__)
    spliced.headers = headers
    spliced.extensions = dict(request.extensions)
    spliced.stream = httpx2.ByteStream(content)
    spliced._content = content
    return spliced


#: Streams handed to the SDK and not yet collected: at interpreter exit the open ones are recorded (incomplete) before
#: the writers close; collected during the interpreter's teardown, their records could no longer be made.
_OPEN_STREAMS: weakref.WeakSet[_Reader] = weakref.WeakSet()


@renews_in_child
def _forget_parents_streams() -> None:
    """A forked child's copies of the parent's open streams are the parent's to record, not the child's."""
    _OPEN_STREAMS.clear()


def finish_open_streams() -> None:
    """Record every stream still open (the app holds it unread at exit) as it stands. Never raises."""
    for reader in list(_OPEN_STREAMS):
        try:
            if not reader._call.finished:
                reader._finish()
        except Exception:
            log_once("stream.exit", "costtrack: could not record a stream left open at exit", exc_info=True)


class _Reader:
    """Reads one response body as the SDK consumes it; finishes the Call exactly once."""

    __slots__ = (
        "_call", "_complete", "_decode", "_kept", "_last", "_opening", "_pass_on", "_saved", "_splitter", "_store", "_stream",
    )  # fmt: skip

    def __init__(
        self,
        call: Call,
        stream: Any,
        decode: Callable[[bytes], bytes] | None,
        store: tuple[Cache, str, tuple[tuple[str, str], ...]] | None = None,
    ) -> None:
        self._call = call
        self._stream = stream
        self._decode = decode
        self._splitter = EventSplitter() if call.reader is not None else None
        if self._splitter is None:  # a body read whole, kept for the record
            self._kept: list[bytes] = []
            call.chunks = self._kept
        self._complete = False
        # The last whole events handed on (a stream's): where the SDK stopped, if it met data it cannot read.
        self._last: bytes | None = None
        self._store = store
        # A stream's bytes, kept for the cache (a plain body is kept in call.chunks already).
        self._saved: list[bytes] | None = [] if store is not None and self._splitter is not None else None
        # Set while a stream is under way with nothing buffered: the reader's pass_on, which hands a chunk of
        # whole events on without splitting it when it holds nothing to read or hide (see __iter__); before
        # content, the reader's `starts` (kept in _opening too), when it can tell content opening by its bytes.
        self._opening: Callable[[bytes], bytes | None] | None = None
        if call.reader is not None and call.reader.starts is not None and decode is None and store is None:
            self._opening = call.reader.starts
        self._pass_on = self._opening

    def _pass(self, chunk: bytes) -> bytes:
        """Read a chunk; return the bytes to hand on (the same bytes unless an event is hidden)."""
        call = self._call
        if self._decode is None:
            data = chunk
        else:
            try:
                data = self._decode(chunk)
            except Exception:
                if call.hide_usage_chunk:
                    raise  # the body goes on decoded: the SDK's own decoding would raise this same error here
                # The SDK decodes the bytes it is handed itself (and meets the error itself, if any).
                log_once("stream.decode", "costtrack: could not decode a response body; its usage is not read", exc_info=True)
                call.status, call.error_type = "error", "malformed_response"
                self._decode = _unreadable
                data = b""
        if self._saved is not None:
            self._saved.append(data)
        splitter = self._splitter
        if splitter is None:
            self._kept.append(data)
            return chunk
        reader = call.reader
        assert reader is not None
        self._pass_on = None
        end = len(data) - 2
        if splitter.idle and end >= 0 and data.find(b"\n\n") == end and data.rfind(b"\r") < 0:
            # One whole event ending at the blank line (a stream's usual network read): nothing to split.
            hidden = self._event(call, reader, data)
            self._last = data
            kept = b"" if hidden else data if call.hide_usage_chunk else None
        else:
            block = splitter.feed_block(data)
            if not block:
                return block if call.hide_usage_chunk else chunk
            self._last = block
            try:
                kept = self._read(call, reader, block, splitter.plain)
            except Exception:
                log_once("stream.read", "costtrack: could not read stream events; they are passed on as is", exc_info=True)
                kept = block if call.hide_usage_chunk else None
        if splitter.idle and self._decode is None and self._saved is None:
            if reader.steady:
                self._pass_on, self._opening = reader.pass_on, None
            elif reader.starts is not None and call.first_token is None:
                self._pass_on = self._opening = reader.starts
        if kept is None:
            return chunk
        strip = reader.strip
        return kept if strip is None else kept.replace(strip, b"")

    def _opened(self) -> None:
        """The reader's `starts` took a chunk that opens the content: its time is the first token's."""
        call = self._call
        call.first_token = call.tracker.clock()
        reader = call.reader
        assert reader is not None
        self._opening = None
        self._pass_on = reader.pass_on if reader.steady else None

    @staticmethod
    def _read(call: Call, reader: StreamReader, block: bytes, plain: bool) -> bytes | None:
        """Read a block of complete events (`plain`: see sse.is_plain); return the bytes to hand on when events are hidden, else None."""
        kept: list[bytes] | None = [] if call.hide_usage_chunk else None
        pos, end = 0, len(block)
        while pos < end:
            if plain and reader.steady:
                # Mid-stream content has nothing more to tell: jump to the next event that might.
                found = reader.next_marker(block, pos)
                if found < 0:
                    start = end
                else:  # the start of the event the marker is in
                    last = block.rfind(b"\n\n", pos, found)
                    start = pos if last < 0 else last + 2
                if start > pos:
                    if kept is not None:
                        kept.append(block[pos:start])
                    pos = start
                    continue
            stop = next_boundary(block, pos, plain)
            event = block[pos:stop]
            pos = stop
            if not _Reader._event(call, reader, event) and kept is not None:
                kept.append(event)
        return None if kept is None else b"".join(kept)

    @staticmethod
    def _event(call: Call, reader: StreamReader, event: bytes) -> bool:
        """Read one whole event (stamping the first content's time); return whether to hide it. Never raises."""
        try:
            content, hide = reader.feed(*event_fields(event))
        except Exception:
            log_once("stream.read", "costtrack: could not read a stream event; it is passed on as is", exc_info=True)
            return False
        if content and call.first_token is None:
            call.first_token = call.tracker.clock()
        return hide and call.hide_usage_chunk

    def _rest(self) -> bytes:
        """Bytes after the last complete event, read and handed on at the end of the body."""
        if self._splitter is None:
            return b""
        rest = self._splitter.rest()
        reader = self._call.reader
        if rest.strip() and reader is not None:
            try:
                reader.feed(*event_fields(rest))
            except Exception:
                log_once("stream.read", "costtrack: could not read a stream event; it is passed on as is", exc_info=True)
        if not self._call.hide_usage_chunk:
            return b""
        strip = None if reader is None else reader.strip
        return rest if strip is None else rest.replace(strip, b"")

    def _entry(self) -> tuple[Cache, str, CachedResponse] | None:
        """What to store in the cache, once: only a complete body, or a stream read to its end without error."""
        store, self._store = self._store, None
        if store is None:
            return None
        call = self._call
        reader = call.reader
        try:
            if reader is not None:
                # With its usage (so a hit can say what it saved); a server that sends none is not cached, nor an
                # empty stream or one whose error a compatible server put in a chunk.
                if not reader.done or reader.failed or reader.usage is None or self._saved is None:
                    return None
                body = b"".join(self._saved)
            else:
                if not self._complete:
                    return None
                body = b"".join(call.chunks)
                parsed = json.loads(body)
                if not isinstance(parsed, dict) or not _is_answer(parsed):
                    return None
        except ValueError:
            return None  # not JSON: the SDK will fail on it too
        cache, key, headers = store
        return cache, key, CachedResponse(call.status_code or 200, headers, body)

    def _fill(self) -> None:
        try:
            entry = self._entry()
            if entry is not None:
                cache, key, response = entry
                cache.set(key, response)
        except Exception:
            log_once("cache.fill", "costtrack: could not store a response in the cache", exc_info=True)

    async def _afill(self) -> None:
        try:
            entry = self._entry()
            if entry is not None:
                cache, key, response = entry
                # Shielded: the OpenAI SDK drains a stream after [DONE] under a 0.1 s deadline, which cut a slower
                # cache write short and left a whole answer uncached.
                with anyio.CancelScope(shield=True, deadline=anyio.current_time() + _FILL_SHIELD):
                    await cache.aset(key, response)
        except Exception:
            log_once("cache.fill", "costtrack: could not store a response in the cache", exc_info=True)

    def _finish(self, error: BaseException | None = None) -> None:
        call = self._call
        if isinstance(error, httpx2.StreamConsumed):
            # Read again after it was read (the async OpenAI SDK drains an HTTP/1.1 stream after [DONE]):
            # not a failure of the call; what was read decides.
            error = None
        elif error is not None and _cancelled(error) and call.reader is not None and call.reader.done:
            # Cancelled after the stream's end event: the answer was whole (the OpenAI SDK's drain after [DONE]
            # gives up after 0.1 s on a body slow to end, and swallows that cancel): what was read decides.
            error = None
        if error is not None:
            self._store = None
            call.finish(error_type(error))
        elif not self._complete and call.reader is None:
            call.finish("incomplete")  # a stream's own end event decides, in Call.record
        else:
            reader = call.reader
            if reader is not None:
                self._ended(reader)
            if reader is not None and reader.failed is None and self._unreadable_end():
                # The SDK raised on it (billed or not, as the usage read says); the app saw an error.
                call.status, call.error_type = "error", "malformed_response"
            call.finish()

    def _ended(self, reader: StreamReader) -> None:
        """A stream the SDK ended without error: what it took as whole events is read (see _tail), and the reader told
        of a body read to its end (the SDK ends a stream there, with or without an end event)."""
        if not self._complete:
            self._tail()
        else:
            ended = getattr(reader, "body_ended", None)
            if ended is not None:
                ended()

    def _tail(self) -> None:
        """Read the last event of a stream the SDK closed with its final line ending still to come: after a CR the
        SDK's decoder has a blank line (`\\r\\n\\r`) and acts on the event ([DONE]: it stops reading)."""
        splitter = self._splitter
        if splitter is not None and splitter.pending.endswith((b"\r\n\r", b"\n\r")):
            self._rest()

    def _unreadable_end(self) -> bool:
        """Whether a stream ended on data the SDK cannot read: the SDK raises at the first event whose data is not
        JSON and reads no further, so that event is among the last handed on; or a whole body held no event."""
        last = self._last
        if last is None:
            return self._complete  # read to its end without one whole event
        if last == b"data: [DONE]\n\n":
            return False  # the usual last read of a chat stream
        anthropic = self._call.api == "anthropic"
        for block in last.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n\n"):
            if not block.strip():
                continue
            lines = block.split(b"\n")
            if self._complete and not any(line.startswith(_SSE_FIELDS) for line in lines):
                return True  # a body read to its end that is not server-sent events (an HTML page): the SDK yields nothing
            name, data = event_fields(block + b"\n\n")
            if anthropic:
                # Anthropic's SDK raises on an error event (one the reader could read set `failed`: this one it could
                # not); it skips events without a name or data, and pings.
                if name == "error":
                    return True
                if name in (None, "ping") or not data:
                    continue
            elif data.startswith(b"[DONE]") or not any(line.startswith(_EVENT_FIELDS) for line in lines):
                continue
            try:
                fastjson.loads(data)  # OpenAI's SDK parses every event's data, an empty one too (`data:` alone)
            except ValueError:
                return True
        return False

    def __del__(self) -> None:
        # A body the app dropped without closing is still recorded.
        try:
            self._call.finish("incomplete" if not self._complete and self._call.reader is None else None)
        except Exception:
            pass


class _RecordedStream(_Reader, httpx2.SyncByteStream):
    __slots__ = ()

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._stream:
                # The usual chunk of a stream under way (servers flush an event or a few at a time): whole
                # events with nothing left to read or hide, handed on as they came (less the reader's strip).
                # A chunk ending with a blank line ends at an event's end, whatever the line endings before it.
                pass_on = self._pass_on
                if pass_on is not None and chunk[-2:] == b"\n\n":
                    out = pass_on(chunk)
                    if out is not None:
                        self._last = chunk
                        if pass_on is self._opening:
                            self._opened()
                        if out:
                            yield out
                        continue
                out = self._pass(chunk)
                if out:
                    yield out
            rest = self._rest()
            self._complete = True
            if self._store is not None:
                self._fill()
            if rest:
                yield rest
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._finish(exc)
            raise

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._finish()
            if self._store is not None:
                self._fill()  # a stream the SDK stopped reading after its end event


class _AsyncRecordedStream(_Reader, httpx2.AsyncByteStream):
    __slots__ = ()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                pass_on = self._pass_on  # see _RecordedStream.__iter__
                if pass_on is not None and chunk[-2:] == b"\n\n":
                    out = pass_on(chunk)
                    if out is not None:
                        self._last = chunk
                        if pass_on is self._opening:
                            self._opened()
                        if out:
                            yield out
                        continue
                out = self._pass(chunk)
                if out:
                    yield out
            rest = self._rest()
            self._complete = True
            if self._store is not None:
                await self._afill()
            if rest:
                yield rest
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._finish(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._finish()
            if self._store is not None:
                await self._afill()  # a stream the SDK stopped reading after its end event


class _RecordedBody(_Reader, httpx2.SyncByteStream):
    """A plain body (no decoding, no events, no cache entry to fill): each chunk kept for the record as it passes."""

    __slots__ = ()

    def __init__(self, call: Call, stream: Any) -> None:  # the slots _finish() and __del__ read, and the chunks kept
        self._call = call
        self._stream = stream
        self._complete = False
        self._store = None
        self._kept: list[bytes] = []
        call.chunks = self._kept

    def __iter__(self) -> Iterator[bytes]:
        keep = self._kept.append
        try:
            for chunk in self._stream:
                keep(chunk)
                yield chunk
            self._complete = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._finish(exc)
            raise

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._finish()


class _AsyncRecordedBody(_Reader, httpx2.AsyncByteStream):
    """Async twin of _RecordedBody."""

    __slots__ = ()

    __init__ = _RecordedBody.__init__

    async def __aiter__(self) -> AsyncIterator[bytes]:
        keep = self._kept.append
        try:
            async for chunk in self._stream:
                keep(chunk)
                yield chunk
            self._complete = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._finish(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._finish()


def _released(owner: Callable[[], Any] | None) -> bool:
    """Whether the HTTP client that owns a transport (a weak reference to it) is closed or gone."""
    client = None if owner is None else owner()
    return client is None or bool(getattr(client, "is_closed", True))


# costtrack's transports by the SDK transport they share (wrapped copies of one client, a wrapped client wrapped again):
# the pool is closed with the last of them, never under another one still in use.
_sharing: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()


def _share(transport: Any, inner: Any) -> None:
    try:
        _sharing.setdefault(inner, weakref.WeakSet()).add(transport)
    except TypeError:  # a transport without weak references: never closed by costtrack, as before
        pass


def _last_user(transport: Any) -> bool:
    """Whether no other of costtrack's transports over the same SDK transport is open (`transport` is closing)."""
    transport.closed = True
    try:
        peers = _sharing.get(transport._inner)
        return peers is not None and all(peer.closed for peer in list(peers))
    except (RuntimeError, TypeError):  # changed while read (another thread wrapping): leave the pool open
        return False


class CostTransport(httpx2.BaseTransport):
    """Sync transport: records instrumented requests and hands every request to the SDK's own transport.

    `owner`: a weak reference to the HTTP client `inner` belongs to (the client that was wrapped), or None.
    """

    def __init__(self, inner: httpx2.BaseTransport, instrument: Instrument,
                 owner: Callable[[], Any] | None = None) -> None:  # fmt: skip
        self._inner = inner
        self.instrument = instrument
        self.owner = owner
        self.closed = False
        _share(self, inner)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send the request; an instrumented one is timed and its body read on the way back."""
        instrument = self.instrument
        call, directive = instrument.open(request)
        if call is None:
            return self._inner.handle_request(request)
        key = None
        if instrument.cache is not None:
            try:
                plan = instrument.cache_plan(call, request, directive)
                if plan is not None:
                    key, lookup = plan
                    entry = instrument.cache.get(key) if lookup else None
                    if entry is not None:
                        return instrument.replay(call, entry, is_async=False)
            except Exception:
                log_once("cache.lookup", "costtrack: the cache lookup failed; the request is sent", exc_info=True)
        if call.tracker.budget_monitor is not None:
            instrument.admit(call)
        sent = instrument.sendable(call, request) if call.hide_usage_chunk else request
        try:
            response = self._inner.handle_request(sent)
            if sent is not request and response.status_code in _OPTION_REFUSALS:
                # A body already in memory (a mock) is read again as it is; a network one is read raw and replayed.
                in_memory = isinstance(response.stream, httpx2.ByteStream)
                raw = response.read() if in_memory else b"".join(response.iter_raw())
                if instrument.refused_usage_option(call, response, raw):
                    response.close()
                    response = self._inner.handle_request(request)  # the app's own request, as it wrote it
                elif not in_memory:
                    response = instrument.replayable(response, raw)
        except BaseException as exc:
            instrument.fail(call, exc)
            raise
        return instrument.response(call, response, is_async=False, fill=key)

    def close(self) -> None:
        """Close the SDK's transport once the client that was wrapped is closed or gone (`wrap(OpenAI())` keeps no
        other handle on its pool, whose connections were otherwise never closed) and no other wrapped copy sharing
        it is open; while any of them is in use, the pool stays open for it."""
        if _last_user(self) and _released(self.owner):
            self._inner.close()


class AsyncCostTransport(httpx2.AsyncBaseTransport):
    """Async twin of CostTransport."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, instrument: Instrument,
                 owner: Callable[[], Any] | None = None) -> None:  # fmt: skip
        self._inner = inner
        self.instrument = instrument
        self.owner = owner
        self.closed = False
        _share(self, inner)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send the request; an instrumented one is timed and its body read on the way back."""
        instrument = self.instrument
        call, directive = instrument.open(request)
        if call is None:
            return await self._inner.handle_async_request(request)
        key = None
        if instrument.cache is not None:
            try:
                plan = instrument.cache_plan(call, request, directive)
                if plan is not None:
                    key, lookup = plan
                    entry = await instrument.cache.aget(key) if lookup else None
                    if entry is not None:
                        return instrument.replay(call, entry, is_async=True)
            except Exception:
                log_once("cache.lookup", "costtrack: the cache lookup failed; the request is sent", exc_info=True)
        if call.tracker.budget_monitor is not None:
            await instrument.aadmit(call)
        sent = instrument.sendable(call, request) if call.hide_usage_chunk else request
        try:
            response = await self._inner.handle_async_request(sent)
            if sent is not request and response.status_code in _OPTION_REFUSALS:
                in_memory = isinstance(response.stream, httpx2.ByteStream)  # see CostTransport
                raw = await response.aread() if in_memory else b"".join([piece async for piece in response.aiter_raw()])
                if instrument.refused_usage_option(call, response, raw):
                    await response.aclose()
                    response = await self._inner.handle_async_request(request)  # the app's own request, as it wrote it
                elif not in_memory:
                    response = instrument.replayable(response, raw)
        except BaseException as exc:
            instrument.fail(call, exc)
            raise
        return instrument.response(call, response, is_async=True, fill=key)

    async def aclose(self) -> None:
        """Close the SDK's transport once the client that was wrapped is closed or gone (see CostTransport.close)."""
        if _last_user(self) and _released(self.owner):
            await self._inner.aclose()
