"""wrap(client): the same SDK client, with an instrumented HTTP transport inside."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2

from .transport import AsyncCostTransport, CostTransport, Instrument

if TYPE_CHECKING:
    from .tracker import Tracker

__all__ = ["wrap", "detect_provider"]

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
    if host.endswith(".openai.azure.com") or host.endswith(".azure.com"):
        return "azure"
    for name in ("ollama", "vllm"):
        if name in host:
            return name
    if "llama" in host:
        return "llamacpp"
    return _LOCAL_PORTS.get(url.port or 0, "openai-compatible")


def _api_of(client: object) -> str:
    root = type(client).__module__.split(".", 1)[0]
    if root not in ("openai", "anthropic"):
        raise TypeError(
            f"costtrack.wrap() takes an openai or anthropic SDK client (OpenAI, AsyncOpenAI, Anthropic, "
            f"AsyncAnthropic), not {type(client).__module__}.{type(client).__qualname__}"
        )
    return root


def wrap(
    client: C,
    *,
    endpoint: str | None = None,
    tags: Mapping[str, Any] | None = None,
    provider: str | None = None,
    tracker: Tracker | None = None,
) -> C:
    """Return a copy of `client` (same class, same API) whose calls are recorded.

    `endpoint` names the app feature the calls serve (default: the operation,
    e.g. "chat.completions"); `tags` are added to every record; `provider`
    overrides the provider detected from the base URL ("ollama", "vllm", ...);
    `tracker` records into an explicit Tracker instead of the process default.
    The original client is left untouched.

        client = costtrack.wrap(OpenAI(), endpoint="/api/summarize")
    """
    api = _api_of(client)
    sdk_http = getattr(client, "_client", None)
    instrument = Instrument(
        tracker,
        provider=provider or detect_provider(api, getattr(client, "base_url", "")),
        api=api,
        endpoint=endpoint,
        tags=tags,
    )
    http_client: httpx2.Client | httpx2.AsyncClient
    if isinstance(sdk_http, httpx2.AsyncClient):

        async def send_async(request: httpx2.Request) -> httpx2.Response:
            return await sdk_http.send(request, stream=True)

        http_client = httpx2.AsyncClient(transport=AsyncCostTransport(send_async, instrument), timeout=sdk_http.timeout)
    elif isinstance(sdk_http, httpx2.Client):

        def send(request: httpx2.Request) -> httpx2.Response:
            return sdk_http.send(request, stream=True)

        http_client = httpx2.Client(transport=CostTransport(send, instrument), timeout=sdk_http.timeout)
    else:
        raise TypeError(
            f"costtrack.wrap() needs a client built on httpx2 (openai>=3, anthropic>=2); "
            f"{type(client).__qualname__} has {type(sdk_http).__qualname__}: upgrade the SDK"
        )
    return client.with_options(http_client=http_client)  # type: ignore[attr-defined, no-any-return]
