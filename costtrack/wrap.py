"""wrap(client): the same SDK client, with an instrumented HTTP transport inside."""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2

from .errors import ConfigError
from .logs import log_once
from .transport import AsyncCostTransport, CostTransport, Instrument

if TYPE_CHECKING:
    from .cache import Cache
    from .fallback import CheapFirst
    from .tracker import Tracker

__all__ = ["detect_provider", "wrap"]

C = TypeVar("C")

# Default ports of the usual self-hosted OpenAI-compatible servers.
_LOCAL_PORTS = {11434: "ollama", 8000: "vllm", 8080: "llamacpp"}


def detect_provider(api: str, base_url: Any) -> str:
    """The provider a client talks to, from its API family and base URL."""
    if api == "anthropic":
        return "anthropic"
    url = httpx2.URL(str(base_url))
    host = url.host or ""
    if host == "api.openai.com":
        return "openai"
    if host.endswith(".azure.com"):  # *.openai.azure.com and the newer AI-services hosts
        return "azure"
    for name in ("ollama", "vllm"):
        if name in host:
            return name
    if "llama" in host:
        return "llamacpp"
    return _LOCAL_PORTS.get(url.port or 0, "openai-compatible")


def instrumented_copy(http: httpx2.Client | httpx2.AsyncClient, instrument: Instrument) -> Any:
    """A copy of the SDK's HTTP client whose transports (default and mounted) are instrumented.

    A shallow copy keeps every setting of the original (headers, auth, cookies,
    proxies, limits, event hooks) without re-creating it; only the transports
    are wrapped, and the original client keeps its own. A transport costtrack already
    wraps (a client wrapped before) is wrapped anew from the SDK's own: each call is recorded once.
    """
    wrapper = AsyncCostTransport if isinstance(http, httpx2.AsyncClient) else CostTransport
    instrument.follow_redirects = bool(http.follow_redirects)
    clone = copy.copy(http)
    if getattr(type(http), "__del__", None) is not None:
        clone.__class__ = _without_finalizer(type(http))
    owner = _owner_of(http)
    clone._transport = wrapper(_unwrapped(http._transport), instrument, owner)  # type: ignore[arg-type]
    clone._mounts = {
        pattern: None if transport is None else wrapper(_unwrapped(transport), instrument, owner)  # type: ignore[arg-type]
        for pattern, transport in http._mounts.items()
    }
    return clone


_QUIET: dict[type, type] = {}


def _without_finalizer(cls: type) -> type:
    """`cls` (the SDKs' HTTP client class, which closes its pool when collected) without that: a wrapped copy closes
    the pool it shares with the client that was wrapped only when the app closes it (see CostTransport.close), never
    when collected: a wrap made per request would close the pool under that client's other calls."""
    quiet = _QUIET.get(cls)
    if quiet is None:
        quiet = _QUIET[cls] = type(cls.__name__, (cls,), {"__del__": _keep_open, "__module__": cls.__module__})
    return quiet


def _keep_open(self: Any) -> None:
    pass


def _owner_of(http: httpx2.Client | httpx2.AsyncClient) -> Callable[[], Any] | None:
    """A weak reference to the HTTP client whose transports these are: the first one wrapped, when wrapped again."""
    owner = getattr(http._transport, "owner", None)
    if isinstance(http._transport, (CostTransport, AsyncCostTransport)):
        return owner  # a wrapped client wrapped again: the pool is still the first client's
    try:
        return weakref.ref(http)
    except TypeError:  # a client class without weak references: its pool is left to it, as before
        return lambda: http


def _unwrapped(transport: Any) -> Any:
    """The SDK's own transport inside costtrack's, if `transport` is one."""
    while isinstance(transport, (CostTransport, AsyncCostTransport)):
        transport = transport._inner
    return transport


def _api_of(client: object) -> str:
    root = type(client).__module__.split(".", 1)[0]
    if root not in ("openai", "anthropic"):
        raise TypeError(
            f"costtrack.wrap() takes an openai or anthropic SDK client (OpenAI, AsyncOpenAI, Anthropic, "
            f"AsyncAnthropic), not {type(client).__module__}.{type(client).__qualname__}"
        )
    return root


def _warn_if_unrecorded(client: object) -> None:
    """Anthropic's Vertex and Bedrock clients speak other paths (and Bedrock another stream format): say their calls go unrecorded."""
    module = type(client).__module__
    for cloud in ("vertex", "bedrock"):
        if module.startswith(f"anthropic.lib.{cloud}"):
            log_once(
                f"wrap.unrecorded:{cloud}",
                "costtrack: %s calls are not recorded (costtrack reads the Anthropic API's own /v1/messages); "
                "the wrapped client works as before",
                type(client).__name__,
            )


def wrap(
    client: C,
    *,
    endpoint: str | None = None,
    tags: Mapping[str, Any] | None = None,
    provider: str | None = None,
    tracker: Tracker | None = None,
    cache: Cache | None = None,
    fallback: CheapFirst | None = None,
    router: Any = None,
) -> C:
    """Return a copy of `client` (same class, same API) whose calls are recorded.

    `endpoint` names the app feature the calls serve (default: the operation,
    e.g. "chat.completions"); `tags` are added to every record; `provider`
    overrides the provider detected from the base URL ("ollama", "vllm", ...);
    `tracker` records into an explicit Tracker instead of the process default;
    `cache` (a MemoryCache or RedisCache) answers repeated requests from stored responses.
    `fallback` (a costtrack.CheapFirst) tries a chain of models cheapest first; `router`
    (a policy or costtrack.route(...)) picks each call's model; both are installed on the copy only.
    The original client is left untouched.

        client = costtrack.wrap(OpenAI(), endpoint="/api/summarize")
    """
    api = _api_of(client)
    _check_options(tags, cache)
    _warn_if_unrecorded(client)
    sdk_http = getattr(client, "_client", None)
    earlier = getattr(getattr(sdk_http, "_transport", None), "instrument", None)
    if isinstance(earlier, Instrument):
        # A client costtrack wraps already (a library's, wrapped again by the app): wrapping its transport again
        # recorded each call twice, doubling the spend. The new wrap replaces the earlier one, keeping what it does not set.
        log_once("wrap.rewrap", "costtrack: wrap() was given a client costtrack already wraps; each call is recorded "
                 "once, with this wrap's settings and the earlier wrap's for what this one does not set")  # fmt: skip
        endpoint = endpoint if endpoint is not None else earlier.endpoint
        tags = {**earlier.tags, **(tags or {})}
        tracker = tracker if tracker is not None else earlier._tracker
        provider = provider or earlier.provider
        cache = cache if cache is not None else earlier.cache
    instrument = Instrument(
        tracker,
        provider=provider or detect_provider(api, getattr(client, "base_url", "")),
        api=api,
        endpoint=endpoint,
        tags=tags,
        cache=cache,
    )
    if not isinstance(sdk_http, (httpx2.Client, httpx2.AsyncClient)):
        raise TypeError(
            f"costtrack.wrap() needs a client built on httpx2 (openai>=3, anthropic>=2); "
            f"{type(client).__qualname__} has {type(sdk_http).__qualname__}: upgrade the SDK"
        )
    http_client = instrumented_copy(sdk_http, instrument)
    wrapped = client.with_options(http_client=http_client)  # type: ignore[attr-defined]
    options = {"endpoint": endpoint, "tags": tags, "cache": cache}
    return _install_policies(wrapped, api, instrument.provider, tracker, fallback, router, options)


def _check_options(tags: Any, cache: Any) -> None:
    """Refuse at once what would fail at every call (`cache=True`, `tags="run=x"`), saying what to give."""
    from .cache import Cache

    if cache is not None and not isinstance(cache, Cache):
        raise ConfigError(
            f"wrap(cache=...): expected a costtrack.MemoryCache or costtrack.RedisCache, not {cache!r} "
            "(e.g. cache=costtrack.MemoryCache(ttl=3600))"
        )
    if tags is not None and not isinstance(tags, Mapping):
        raise ConfigError(f"wrap(tags=...): expected a dict such as {{'run': 'x'}}, not {tags!r}")


def _install_policies(client: C, api: str, provider: str, tracker: Tracker | None, fallback: Any, router: Any,
                      options: Mapping[str, Any]) -> C:  # fmt: skip
    """Fallback and routing, on the wrapped copy's resources (see costtrack/fallback.py, routing.py)."""
    if fallback is None and router is None:
        return client
    from .routing import install_policies

    return install_policies(client, api=api, provider=provider, tracker=tracker, fallback=fallback, router=router,  # type: ignore[no-any-return]
                            options=options)  # fmt: skip
