"""Cheap-first fallback: try the cheapest model of a chain first, escalate on failure or rejection.

    client = costtrack.wrap(OpenAI(), fallback=costtrack.CheapFirst(["gpt-4o-mini", "gpt-4o"], accept=is_good))
    client.chat.completions.create(model="gpt-4o", messages=...)   # gpt-4o-mini first, gpt-4o if needed

Installed on the copy `wrap()` returns, at the resource level: the instance attributes
`create` (and `parse`) of `client.chat.completions`, `client.responses` and
`client.messages` (and `client.beta.messages`) are replaced by wrappers that call the original bound
methods with `model=` swapped, and Anthropic's `messages.stream` by one whose manager runs the chain
when entered. The classes are untouched, so return types and IDE completion stay the
SDK's own; nothing global is patched.

Every attempt is a record (the transport records it); the attempts of one call are
held (`calls.hold_calls`) and annotated before they are recorded: `attempt` numbered
1, 2, ... across the chain, tags `fallback_chain`, `fallback_requested`, and
`fallback_reason` on the attempts that escalated; the answer returned to the app
prices what it saved against the requested model (`cost_saved_usd`, and the tag
`fallback_saved_against`: "provider:model", so `costtrack reprice` can price it again).
"""

from __future__ import annotations

import functools
import inspect
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import httpx2

from .callbacks import is_async_function, plain_answer
from .calls import ERROR_KINDS, Call, Hold, hold_calls, unheld
from .errors import ConfigError

if TYPE_CHECKING:
    from .tracker import Tracker

__all__ = ["SAVED_AGAINST_TAG", "CheapFirst", "failure_reason", "install", "is_retryable", "saved_against"]

#: The tag on an answer's records naming what its cost_saved_usd is priced against: "provider:model".
SAVED_AGAINST_TAG = "fallback_saved_against"


def saved_against(tags: Mapping[str, Any], provider: str, saved: float | None) -> tuple[str, str] | None:
    """(provider, model) a stored fallback answer's saving is priced against (None: not an answer).

    From the record's tags, provider and cost_saved_usd: a record from before the tag existed is an
    answer when it has a saving, priced against `fallback_requested` at the call's own provider.
    """
    tagged = tags.get(SAVED_AGAINST_TAG)
    if isinstance(tagged, str) and ":" in tagged:
        against, model = tagged.split(":", 1)
        return against, model
    requested = tags.get("fallback_requested")
    return (provider, requested) if tagged is None and saved is not None and isinstance(requested, str) else None


# Resources whose calls carry a `model=` and are recorded, by API family: (attribute path, methods).
RESOURCES: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = {
    "openai": ((("chat", "completions"), ("create", "parse")), (("responses",), ("create", "parse"))),
    "anthropic": ((("messages",), ("create", "parse")), (("beta", "messages"), ("create", "parse"))),
}
#: Anthropic's Messages resources, whose `stream()` helpers send their request when their manager is entered.
_MESSAGES_PATHS = (("messages",), ("beta", "messages"))

# Headers the SDKs' `with_raw_response` / `with_streaming_response` add: the result is a raw response.
_RAW_HEADERS = ("x-stainless-raw-response",)

# ERROR_KINDS (calls.py): the error types in an error body worth another model (overloaded, rate limited, a server
# error, a timeout), by the names records give them.
Entry = Any  # a model name, or a (client, model name) pair


# --------------------------------------------------------------------------- failures


def _mro_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _error_kind(exc: BaseException) -> str | None:
    """The error type in an SDK exception's body (`{"error": {"type": ...}}`), if any."""
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping):
            for key in ("type", "code"):
                value = error.get(key)
                if isinstance(value, str) and value in ERROR_KINDS:
                    return value
            value = error.get("type")
            return value if isinstance(value, str) else None
    return None


def failure_reason(exc: BaseException) -> str:
    """A short name for why an attempt failed, in the records' error_type vocabulary.

    `rate_limit_exceeded`, `overloaded_error`, `server_error`, `timeout`,
    `connection_error`, `conflict`, else the exception's class name.
    """
    names = _mro_names(exc)
    if "APITimeoutError" in names or isinstance(exc, httpx2.TimeoutException):
        return "timeout"
    if "APIConnectionError" in names or isinstance(exc, httpx2.TransportError):
        return "connection_error"
    status = getattr(exc, "status_code", None)
    kind = _error_kind(exc)
    if status == 429:
        return "rate_limit_exceeded"
    if status == 529:
        return "overloaded_error"
    if kind in ERROR_KINDS:
        return ERROR_KINDS[kind]
    if status == 408:
        return "timeout"
    if status == 409:
        return "conflict"  # retried by the SDKs, and so worth the next model (is_retryable)
    if isinstance(status, int) and status >= 500:
        return "server_error"
    return type(exc).__name__


def is_retryable(exc: BaseException) -> bool:
    """Whether another model may succeed where this attempt failed.

    Rate limits (429), overload (529), server errors (5xx), request timeouts (408),
    conflicts (409), timeouts and connection errors, and the same errors reported
    inside a stream (an `error` event). Not: bad requests, authentication, unknown
    models, content refusals; those would fail the same way on the next model.
    """
    names = _mro_names(exc)
    if "APIConnectionError" in names or isinstance(exc, httpx2.TransportError):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status in (408, 409, 429) or status >= 500):
        return True
    return _error_kind(exc) in ERROR_KINDS


# --------------------------------------------------------------------------- the policy


def _sdk_family(client: object) -> str | None:
    root = type(client).__module__.split(".", 1)[0]
    return root if root in ("openai", "anthropic") else None


def check_entry(entry: Any, where: str) -> tuple[Any | None, str]:
    """(client or None, model) for a chain/route entry; ConfigError for anything else."""
    if isinstance(entry, str):
        if not entry.strip():
            raise ConfigError(f"{where}: a model name is empty")
        return None, entry
    if isinstance(entry, tuple) and len(entry) == 2:
        client, model = entry
        if _sdk_family(client) is None:
            raise ConfigError(
                f"{where}: in ({type(client).__qualname__}, {model!r}) the first item must be an "
                f"openai or anthropic SDK client"
            )
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"{where}: in (client, model) the model must be a non-empty string, not {model!r}")
        return client, model
    raise ConfigError(
        f"{where}: {entry!r} is not a model: use a model name (str) or a (client, model name) pair"
    )


def label_of(client: Any | None, model: str, provider: str | None = None) -> str:
    """How an entry is named in tags: the model, prefixed by its provider when it is another client's."""
    return model if client is None else f"{provider or _sdk_family(client)}:{model}"


class CheapFirst:
    """Try the chain's models cheapest first; escalate on a retryable failure or a rejected answer.

    Args:
        chain: model names, cheapest first; an entry may be a `(client, model)` pair
            to use another OpenAI-compatible client (a local Ollama server first, the
            API after). Such clients are wrapped with the same tracker unless they are
            wrapped already.
        accept: `accept(response) -> bool`, called on each non-streamed answer; False
            escalates to the next model. When the last model's answer is rejected too,
            it is returned (it was billed, and it is the best answer there is).
        retry_on: `retry_on(exc) -> bool`, which failures escalate (default
            `is_retryable`: 429, 529, 5xx, timeouts, connection errors). Any other
            error is raised at once.
        backoff: seconds to wait before each escalation, or `backoff(step) -> seconds`
            (step 1 is the second model); default none.
        sleep, async_sleep: how to wait (injected in tests; default `time.sleep`, `anyio.sleep`: asyncio or trio).

    Applies to calls whose requested model is in the chain; they start at the chain's
    first model. Other calls go through untouched. The SDK's own retries stay as the
    client is configured (`max_retries`): each model is retried by the SDK first, and
    every attempt is its own record. Use `client.with_options(max_retries=0)` to
    escalate on the first failure.

    Streams (`stream=True`) escalate on a failure before their first event; the
    stream is returned once that event arrived, and a later failure is the app's.
    `accept` is not called on streams.
    """

    def __init__(
        self,
        chain: Sequence[Entry],
        *,
        accept: Callable[[Any], bool] | None = None,
        retry_on: Callable[[BaseException], bool] | None = None,
        backoff: float | Callable[[int], float] = 0.0,
        sleep: Callable[[float], None] | None = None,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if isinstance(chain, (str, bytes)) or not isinstance(chain, Sequence):
            raise ConfigError(f"CheapFirst: the chain must be a list of models, not {type(chain).__name__}")
        if not chain:
            raise ConfigError("CheapFirst: the chain is empty; list at least one model, cheapest first")
        entries = [check_entry(entry, "CheapFirst") for entry in chain]
        seen: set[tuple[int, str]] = set()
        for client, model in entries:
            key = (id(client), model)
            if key in seen:
                raise ConfigError(f"CheapFirst: {model!r} is listed twice in the chain")
            seen.add(key)
        if accept is not None and not callable(accept):
            raise ConfigError("CheapFirst: accept must be a callable, accept(response) -> bool")
        if retry_on is not None and not callable(retry_on):
            raise ConfigError("CheapFirst: retry_on must be a callable, retry_on(exception) -> bool")
        if not callable(backoff):
            if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
                raise ConfigError(f"CheapFirst: backoff must be seconds >= 0 or a callable, not {backoff!r}")
        self.chain: tuple[tuple[Any | None, str], ...] = tuple(entries)
        self.accept = accept
        self.retry_on = retry_on or is_retryable
        self.backoff = backoff
        self.sleep = sleep or time.sleep
        self.async_sleep = async_sleep or anyio.sleep

    def __repr__(self) -> str:
        return f"CheapFirst([{', '.join(label_of(c, m) for c, m in self.chain)}])"

    def applies_to(self, model: Any) -> bool:
        """Whether a call asking for `model` goes through the chain."""
        return isinstance(model, str) and any(model == m for _, m in self.chain)

    def delay(self, step: int) -> float:
        """Seconds to wait before trying the chain's step `step` (0 is the first model)."""
        if step == 0:
            return 0.0
        value = self.backoff(step) if callable(self.backoff) else self.backoff
        return max(0.0, float(value))

    def clients(self) -> list[Any]:
        """The other clients the chain uses (to wrap and check at install time)."""
        return [client for client, _ in self.chain if client is not None]


# --------------------------------------------------------------------------- installing


def resolve_path(obj: Any, path: Sequence[str]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def is_async_client(client: Any) -> bool:
    return isinstance(getattr(client, "_client", None), httpx2.AsyncClient)


def is_wrapped(client: Any) -> bool:
    """Whether a client's HTTP transport is already costtrack's."""
    from .transport import AsyncCostTransport, CostTransport

    transport = getattr(getattr(client, "_client", None), "_transport", None)
    return isinstance(transport, (CostTransport, AsyncCostTransport))


def provider_of(client: Any) -> str:
    """The provider recorded for a (wrapped) client's calls."""
    transport = getattr(getattr(client, "_client", None), "_transport", None)
    instrument = getattr(transport, "instrument", None)
    provider = getattr(instrument, "provider", None)
    if isinstance(provider, str):
        return provider
    from .wrap import detect_provider

    return detect_provider(_sdk_family(client) or "openai", getattr(client, "base_url", ""))


class Clients:
    """The other clients a policy sends calls to, wrapped with the primary's tracker, checked once."""

    def __init__(self, primary: Any, api: str, tracker: Tracker | None, owner: str,
                 options: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        self.primary = primary
        self.api = api
        self.tracker = tracker
        self.owner = owner
        #: The primary's wrap() settings (endpoint, tags, cache), so a call sent elsewhere is recorded as its own.
        self.options = dict(options or {})
        self.is_async = is_async_client(primary)
        # By the client itself, held weakly: a route may build a client per call, and by id() a later client
        # took a freed one's id and got its wrapped copy (another tenant's base URL and key); nothing was freed.
        self._wrapped: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def get(self, client: Any | None) -> Any:
        if client is None:
            return self.primary
        try:
            found = self._wrapped.get(client)
        except TypeError:  # not weakly referable: wrapped anew each time
            found = None
        if found is not None:
            return found
        family = _sdk_family(client)
        if family != self.api:
            raise ConfigError(
                f"{self.owner}: a {type(client).__qualname__} cannot stand in for a {self.api} client "
                f"({type(self.primary).__qualname__}); use clients of the same SDK"
            )
        if is_async_client(client) != self.is_async:
            want = "async" if self.is_async else "sync"
            raise ConfigError(
                f"{self.owner}: {type(client).__qualname__} is not {want} like the wrapped "
                f"{type(self.primary).__qualname__}; use {'AsyncOpenAI/AsyncAnthropic' if self.is_async else 'OpenAI/Anthropic'}"
            )
        if is_wrapped(client):
            return client
        from .wrap import wrap

        wrapped = wrap(client, tracker=self.tracker, **self.options)
        try:
            self._wrapped[client] = wrapped
        except TypeError:
            pass
        return wrapped


@dataclass(frozen=True)
class Step:
    """One model of a resolved chain: the method to call and how it is named."""

    model: str
    label: str
    method: Callable[..., Any]


def _raw_mode(kwargs: Mapping[str, Any]) -> str | None:
    """How the call asks for a raw response: "stream" (`with_streaming_response`), else "true" or "raw"
    (`with_raw_response`, OpenAI's and Anthropic's word), or None for a parsed result."""
    headers = kwargs.get("extra_headers")
    if not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if str(key).lower() in _RAW_HEADERS:
            return str(value).lower()
    return None


def _judge_of(policy: CheapFirst, kwargs: Mapping[str, Any], streamed: bool, raw: str | None) -> Callable[[Any], bool] | None:
    """What judges a step's answer: `accept`, on the parsed answer of a raw response read whole; None for streams."""
    judge = policy.accept
    if judge is None or streamed or kwargs.get("stream") is True or raw == "stream":
        return None  # a stream (or a body the app reads as it streams) is returned before it can be judged
    if raw is None:
        return judge

    def parsed(response: Any) -> Any:
        # The SDK caches what parse() returns, so the app's own parse() gets this same object.
        try:
            answer = response.parse()
        except Exception:  # noqa: BLE001 - whatever parse() raises, the app meets it in its own parse()
            return True  # unreadable: the app's own parse() meets the same error; nothing to judge
        if inspect.isawaitable(answer):
            return _judge_parsed(answer, judge)  # an async client's parse() (Anthropic's): awaited by _ajudged
        return judge(answer)

    return parsed


async def _judge_parsed(pending: Awaitable[Any], judge: Callable[[Any], Any]) -> Any:
    try:
        answer = await pending
    except Exception:  # noqa: BLE001 - as in parsed(): the app's own parse() meets it
        return True
    return judge(answer)


class _Run:
    """The bookkeeping of one call through the chain: which held calls belong to which step."""

    def __init__(self, steps: Sequence[Step], requested: str, compare: tuple[str, str]) -> None:
        self.tags = {
            "fallback_chain": ">".join(step.label for step in steps),
            "fallback_requested": requested,
        }
        self.compare = compare
        self.saved_against = f"{compare[0]}:{compare[1]}"
        self.spans: list[tuple[int, int, str | None]] = []  # held calls [start, end) of each step; its reason
        self.start = 0
        self.answer_from: int | None = None  # held calls from here on belong to the answer's step
        self.exhausted = False
        self.numbered = 0

    def begin(self, hold: Hold) -> None:
        self.start = len(hold.calls)

    def escalated(self, hold: Hold, reason: str) -> None:
        self.spans.append((self.start, len(hold.calls), reason))

    def answered(self, hold: Hold) -> None:
        self.answer_from = self.start

    def annotate(self, hold: Hold) -> None:
        """Number and tag the held calls (they are recorded right after)."""
        calls = hold.calls
        reasons: dict[int, str] = {}
        for start, end, reason in self.spans:
            if reason is not None and end > start:
                reasons[end - 1] = reason  # the attempt that escalated is its step's last one
        order = sorted(range(len(calls)), key=lambda i: calls[i].started)
        for number, index in enumerate(order, start=1):
            call = calls[index]
            tags = dict(self.tags)
            if index in reasons:
                tags["fallback_reason"] = reasons[index]
            if self.exhausted and index == len(calls) - 1:
                tags["fallback_exhausted"] = True
            if self.answer_from is not None and index >= self.answer_from:
                call.compare_model = self.compare  # only a billed answer prices what it saved
                tags[SAVED_AGAINST_TAG] = self.saved_against
            self._tag(call, tags, number)
        self.numbered = len(calls)

    def late(self, call: Call) -> None:
        """The returned stream's call, ended after the others were recorded."""
        self.numbered += 1
        call.compare_model = self.compare
        self._tag(call, {**self.tags, SAVED_AGAINST_TAG: self.saved_against}, self.numbered)

    @staticmethod
    def _tag(call: Call, tags: dict[str, Any], number: int) -> None:
        call.attempt = number
        call.extra_tags = {**(call.extra_tags or {}), **tags}


def _peek(stream: Any) -> Any:
    """Wait for a stream's first event and put it back: failures before it raise here."""
    iterator = getattr(stream, "_iterator", None)
    if iterator is None:
        return stream
    try:
        first = next(iterator)
    except StopIteration:
        return stream

    def again() -> Iterator[Any]:
        yield first
        yield from iterator

    stream._iterator = again()
    return stream


async def _apeek(stream: Any) -> Any:
    iterator = getattr(stream, "_iterator", None)
    if iterator is None:
        return stream
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        return stream

    async def again() -> AsyncIterator[Any]:
        yield first
        async for item in iterator:
            yield item

    stream._iterator = again()
    return stream


def _entered(stream: Callable[..., Any], **kwargs: Any) -> Any:
    """A stream helper's stream (`stream(**kwargs)` is its manager, which sends the request on entering), its first event awaited."""
    manager = stream(**kwargs)
    entered = manager.__enter__()
    try:
        return _peek(entered)
    except BaseException:
        manager.__exit__(None, None, None)
        raise


async def _aentered(stream: Callable[..., Any], **kwargs: Any) -> Any:
    """Async twin of _entered."""
    manager = stream(**kwargs)
    entered = await manager.__aenter__()
    try:
        return await _apeek(entered)
    except BaseException:
        await manager.__aexit__(None, None, None)
        raise


@functools.cache
def _stream_managers(beta: bool = False) -> tuple[type, type]:
    """Managers like the Anthropic SDK's MessageStreamManager (or its beta twin: their subclasses), whose request
    runs along a chain on entering."""
    from anthropic.lib import streaming

    sync_base: Any = streaming.BetaMessageStreamManager if beta else streaming.MessageStreamManager
    async_base: Any = streaming.BetaAsyncMessageStreamManager if beta else streaming.AsyncMessageStreamManager

    # Like the SDK's, each keeps what it sends as a private `__api_request` (a callable; async: a coroutine),
    # which a route in front of the chain finds and tags (routing._tag_lazy_request).
    class ChainedStreamManager(sync_base):  # type: ignore[misc,valid-type]
        def __init__(self, api_request: Callable[[], Any]) -> None:
            self.__api_request, self.__stream = api_request, None

        def __enter__(self) -> Any:
            self.__stream = self.__api_request()
            return self.__stream

        def __exit__(self, *exc_info: Any) -> None:
            if self.__stream is not None:
                self.__stream.close()

    class AsyncChainedStreamManager(async_base):  # type: ignore[misc,valid-type]
        def __init__(self, api_request: Awaitable[Any]) -> None:
            self.__api_request, self.__stream = api_request, None

        async def __aenter__(self) -> Any:
            self.__stream = await self.__api_request
            return self.__stream

        async def __aexit__(self, *exc_info: Any) -> None:
            if self.__stream is not None:
                await self.__stream.close()

    return ChainedStreamManager, AsyncChainedStreamManager


def _judged(judge: Callable[[Any], Any], result: Any) -> bool:
    # Outside the chain's hold: calls the judge makes (an LLM judge) are records of their own, not attempts.
    with unheld():
        return _verdict(judge(result), "accept")


async def _ajudged(judge: Callable[[Any], Any], result: Any) -> bool:
    """`_judged` on an async client: `accept` may be async (an LLM judge on an AsyncOpenAI client)."""
    with unheld():
        verdict = judge(result)
        while inspect.isawaitable(verdict):  # a raw response's parse(), then an async accept
            verdict = await verdict
    return bool(verdict)


def _verdict(value: Any, name: str) -> bool:
    """A callback's answer on a sync client, where an async callback's coroutine would pass for True."""
    return bool(plain_answer(value, f"CheapFirst: {name}, on a sync client,"))


async def _averdict(value: Any) -> bool:
    """A callback's answer on an async client, awaited when it is async."""
    while inspect.isawaitable(value):
        value = await value
    return bool(value)


def reusable(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with `messages`/`input` given as a one-shot iterable (a generator) made a list, so it can be read twice."""
    for name in ("messages", "input"):
        value = kwargs.get(name)
        if value is not None and not isinstance(value, (list, tuple, str, bytes, dict)) and hasattr(value, "__iter__"):
            kwargs = {**kwargs, name: list(value)}
    return kwargs


def _sync_wrapper(original: Callable[..., Any], policy: CheapFirst, steps: list[Step], provider: str, *,
                  helper: bool = False) -> Callable[..., Any]:  # fmt: skip
    """The chain around `original`; `helper`: the steps enter a stream helper and wait for its first event themselves."""
    @functools.wraps(original)
    def create(**kwargs: Any) -> Any:
        requested = kwargs.get("model")
        if not policy.applies_to(requested):
            return original(**kwargs)
        kwargs = reusable(kwargs)  # each step sends the messages again
        raw = _raw_mode(kwargs)
        streamed = helper or (kwargs.get("stream") is True and raw is None)
        judge = _judge_of(policy, kwargs, streamed, raw)
        run = _Run(steps, requested, (provider, requested))
        error: BaseException | None = None
        result: Any = None
        with hold_calls() as hold:
            try:
                for index, step in enumerate(steps):
                    wait = policy.delay(index)
                    if wait:
                        policy.sleep(wait)
                    run.begin(hold)
                    try:
                        result = step.method(**{**kwargs, "model": step.model})
                        if streamed and not helper:
                            result = _peek(result)
                    except Exception as exc:
                        if not _verdict(policy.retry_on(exc), "retry_on"):
                            raise
                        run.escalated(hold, failure_reason(exc))
                        error = exc
                        continue
                    error = None
                    if judge is not None and not _judged(judge, result):
                        run.escalated(hold, "rejected")
                        continue
                    run.answered(hold)
                    break
                else:
                    run.exhausted = True
                    if error is None:
                        run.answered(hold)  # every answer was rejected: the last one is returned
            finally:
                run.annotate(hold)
        hold.late = run.late  # the returned stream's call is annotated when it ends
        if error is not None:
            raise error
        return result

    return create


def _async_wrapper(original: Callable[..., Any], policy: CheapFirst, steps: list[Step], provider: str, *,
                   helper: bool = False) -> Callable[..., Any]:  # fmt: skip
    """The chain around `original`; `helper`: the steps enter a stream helper and wait for its first event themselves."""
    @functools.wraps(original)
    async def create(**kwargs: Any) -> Any:
        requested = kwargs.get("model")
        if not policy.applies_to(requested):
            return await original(**kwargs)
        kwargs = reusable(kwargs)  # each step sends the messages again
        raw = _raw_mode(kwargs)
        streamed = helper or (kwargs.get("stream") is True and raw is None)
        judge = _judge_of(policy, kwargs, streamed, raw)
        run = _Run(steps, requested, (provider, requested))
        error: BaseException | None = None
        result: Any = None
        with hold_calls() as hold:
            try:
                for index, step in enumerate(steps):
                    wait = policy.delay(index)
                    if wait:
                        await policy.async_sleep(wait)
                    run.begin(hold)
                    try:
                        result = await step.method(**{**kwargs, "model": step.model})
                        if streamed and not helper:
                            result = await _apeek(result)
                    except Exception as exc:
                        if not await _averdict(policy.retry_on(exc)):
                            raise
                        run.escalated(hold, failure_reason(exc))
                        error = exc
                        continue
                    error = None
                    if judge is not None and not await _ajudged(judge, result):
                        run.escalated(hold, "rejected")
                        continue
                    run.answered(hold)
                    break
                else:
                    run.exhausted = True
                    if error is None:
                        run.answered(hold)  # every answer was rejected: the last one is returned
            finally:
                run.annotate(hold)
        hold.late = run.late  # the returned stream's call is annotated when it ends
        if error is not None:
            raise error
        return result

    return create


def patch_resources(
    client: Any,
    api: str,
    make: Callable[[Sequence[str], str, Callable[..., Any]], Callable[..., Any] | None],
    table: Mapping[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = RESOURCES,
) -> None:
    """Replace the instance attributes of the client's model-taking methods by `make(path, name, current)`."""
    for path, names in table.get(api, ()):
        try:
            resource = resolve_path(client, path)
        except AttributeError:  # an SDK version without this resource
            continue
        for name in names:
            current = getattr(resource, name, None)
            if current is None:
                continue
            replacement = make(path, name, current)
            if replacement is not None:
                setattr(resource, name, replacement)


def install(client: Any, policy: CheapFirst, *, api: str, provider: str, tracker: Tracker | None,
            options: Mapping[str, Any] | None = None) -> None:  # fmt: skip
    """Install a CheapFirst policy on a wrapped client (its resources, this instance only)."""
    if not isinstance(policy, CheapFirst):
        raise ConfigError(f"wrap(fallback=...): expected a costtrack.CheapFirst, not {type(policy).__qualname__}")
    clients = Clients(client, api, tracker, "CheapFirst", options)
    others = {id(c): clients.get(c) for c in policy.clients()}  # wrapped and checked now, not at the first call
    is_async = clients.is_async
    if not is_async:
        for name in ("accept", "retry_on"):
            if is_async_function(getattr(policy, name)):
                raise ConfigError(f"CheapFirst: {name} is an async function, and this client is sync; give it a plain "
                                  "function (an async one works on AsyncOpenAI and AsyncAnthropic clients)")  # fmt: skip

    def steps(path: Sequence[str], name: str, current: Callable[..., Any]) -> list[Step]:
        chain = []
        for other, model in policy.chain:
            if other is None:
                method = current
                label = model
            else:
                target = others[id(other)]
                method = getattr(resolve_path(target, path), name)
                label = label_of(other, model, provider_of(target))
            chain.append(Step(model, label, method))
        return chain

    def make(path: Sequence[str], name: str, current: Callable[..., Any]) -> Callable[..., Any]:
        factory = _async_wrapper if is_async else _sync_wrapper
        return factory(current, policy, steps(path, name, current), provider)

    patch_resources(client, api, make)
    if api != "anthropic":
        return
    for path in _MESSAGES_PATHS:
        try:
            messages = resolve_path(client, path)
        except AttributeError:  # an SDK version without this resource
            continue
        current = getattr(messages, "stream", None)
        if current is not None:
            messages.stream = _chained_stream(current, policy, steps(path, "stream", current), provider, is_async,
                                              beta=path[0] == "beta")  # fmt: skip


def _chained_stream(current: Callable[..., Any], policy: CheapFirst, steps: list[Step], provider: str, is_async: bool,
                    beta: bool) -> Callable[..., Any]:  # fmt: skip
    """`messages.stream` (or its beta twin), whose request, sent when its manager is entered, runs along the chain."""
    enter = _aentered if is_async else _entered
    chain = [Step(step.model, step.label, functools.partial(enter, step.method)) for step in steps]
    run = (_async_wrapper if is_async else _sync_wrapper)(current, policy, chain, provider, helper=True)
    manager = _stream_managers(beta)[1 if is_async else 0]

    @functools.wraps(current)
    def stream(**kwargs: Any) -> Any:
        if not policy.applies_to(kwargs.get("model")):
            return current(**kwargs)
        return manager(run(**kwargs) if is_async else functools.partial(run, **kwargs))

    return stream
