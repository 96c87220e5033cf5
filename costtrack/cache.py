"""Response cache: answer a repeated request from a stored copy of the provider's response.

    client = costtrack.wrap(OpenAI(), cache=costtrack.MemoryCache(ttl=3600, maxsize=10_000))
    client = costtrack.wrap(OpenAI(), cache=costtrack.RedisCache(url="redis://localhost:6379/0", ttl=3600,
                                                                 namespace="myapp-v2"))

The cache sits in costtrack's transport, inside the SDK's HTTP client. A key is
a SHA-256 hash of the provider, the operation, the target (host and path), the
few request headers that change the answer (``anthropic-beta``...), whether the
request streams, and the app's request body canonicalised (keys sorted, a top-level
``1.0`` == ``1``), without the fields that do not change the answer (``VOLATILE_KEYS``:
``user``, ``metadata``, ``stream_options``...). Auth headers and API keys are
never part of a key or a value. What is stored is the response as received
(status, content type, request id, body bytes, decompressed): a hit is read back
through the same path as a live response, so the SDK builds the same objects, a
stream replays as a stream, and the record says ``cache_hit=True``, ``cost_usd=0``
and ``cost_saved_usd`` = what the original call cost.

Only complete 2xx answers are stored: errors (an error object in a 200 body too),
and streams cut, failed or abandoned before their end, never are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread

from .callbacks import is_async_function, plain_answer
from .errors import CosttrackError
from .forks import renew_locks_in_child
from .hashing import VOLATILE_KEYS, answer_fields, canonical, digest
from .logs import log, log_once

__all__ = [
    "CACHE_HEADER",
    "DEFAULT_REDIS_URL",
    "KEY_HEADERS",
    "STORED_HEADERS",
    "VOLATILE_KEYS",
    "Cache",
    "CacheError",
    "CachedResponse",
    "MemoryCache",
    "RedisCache",
    "cache_key",
    "default_cacheable",
    "redact_url",
]

#: Per-request header read (and removed before the request goes out): "bypass" or "off".
CACHE_HEADER = "x-costtrack-cache"

#: Request headers that change the answer (or whose answer it is: the organization, the project), so they are part of the key.
KEY_HEADERS = ("anthropic-beta", "anthropic-version", "openai-beta", "openai-organization", "openai-project")

#: Response headers kept with a stored response (the body is stored decompressed).
STORED_HEADERS = frozenset({"content-type", "x-request-id", "request-id", "openai-model", "openai-version"})

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

_NAMESPACE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


class CacheError(CosttrackError):
    """A cache administration operation (clear) failed, or a cache setting is invalid."""


# --------------------------------------------------------------------------- keys


def cache_key(
    provider: str,
    operation: str,
    body: Mapping[str, Any],
    *,
    target: str = "",
    headers: Mapping[str, str] | None = None,
) -> str:
    """The hex digest identifying a request's answer (without namespace).

    `body` is the app's request as parsed JSON; `target` the host and path it is
    sent to; `headers` the answer-changing headers (see KEY_HEADERS). The body is
    encoded as for request hashes (`hashing.answer_fields`, then `hashing.canonical`: keys sorted,
    a top-level ``1.0`` == ``1``).
    """
    streamed = body.get("stream") is True
    # v4: chat completions' service_tier and store, and Anthropic's service_tier, joined the key (entries stored
    # before would answer a priority or store=True caller with another's answer until they expire).
    head = [f"costtrack-cache-v4\x00{provider}\x00{operation}\x00{target}\x00{int(streamed)}\x00"]
    if headers:
        for name in KEY_HEADERS:
            value = headers.get(name)
            if value:
                head.append(f"{name}={value}\x00")
    fields = answer_fields(body)
    options = body.get("stream_options") if streamed else None
    if isinstance(options, dict):
        # include_usage is costtrack's to set, and a hit shows or hides the usage chunk as its caller asked; the
        # other options shape the events themselves (include_obfuscation adds a field to each).
        shaping = {name: value for name, value in options.items() if name != "include_usage"}
        if shaping:
            fields = {**fields, "stream_options": shaping}
    kept = _KEPT_APART.get(operation)
    if kept:
        # An answer repeats these request fields (a Responses answer its store, metadata, user...; a chat completion
        # its service_tier), or they decide what the provider keeps (a chat completion stored with store=True): a hit
        # must not hand one caller another's, nor leave unstored a completion its caller asked to store.
        echoed = {name: body[name] for name in kept if name in body}
        if operation == "chat.completions" and echoed.get("store") is not True:
            # Not stored (store false or left out, the default): store and the metadata kept with it change nothing.
            echoed.pop("store", None)
            echoed.pop("metadata", None)
        if echoed:
            fields = {**fields, **echoed}
    return digest("".join(head).encode("utf-8", "surrogatepass") + canonical(fields))


#: Request fields left out of request hashes (hashing.VOLATILE_KEYS) that a Responses API answer repeats back.
RESPONSES_ECHOED = (
    "store", "metadata", "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention", "service_tier",
)  # fmt: skip
#: The same for a chat completion: the tier it was served at comes back in the answer, and store (with its metadata)
#: keeps the completion at OpenAI for the app to list or retrieve.
CHAT_KEPT_APART = ("service_tier", "store", "metadata")
#: An Anthropic answer names the tier it was served at (usage.service_tier): "auto" and "standard_only" differ.
_KEPT_APART = {"responses": RESPONSES_ECHOED, "chat.completions": CHAT_KEPT_APART, "messages": ("service_tier",)}


def default_cacheable(body: Mapping[str, Any]) -> bool:
    """Requests whose answer depends on server-side state that changes are never cached.

    Responses API `background` requests (the answer is a queued job) and
    `conversation` requests (the conversation grows with every call) are left out.
    """
    return not body.get("background") and body.get("conversation") is None


# --------------------------------------------------------------------------- values

_MAGIC = b"CTC1\n"


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A stored response: status, the headers worth keeping, and the (decompressed) body bytes."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expires: float | None = None  # by the cache's timer; None = no expiry of its own

    def to_bytes(self) -> bytes:
        """Serialised for a shared store: a magic line, a JSON line of metadata, then the body."""
        meta = {"status": self.status, "headers": [list(h) for h in self.headers], "expires": self.expires}
        return _MAGIC + json.dumps(meta, separators=(",", ":")).encode() + b"\n" + self.body

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedResponse | None:
        """The response in `data`, or None if it is not one (another version, corrupted)."""
        if not data.startswith(_MAGIC):
            return None
        end = data.find(b"\n", len(_MAGIC))
        if end < 0:
            return None
        try:
            meta = json.loads(data[len(_MAGIC) : end])
            headers = tuple((str(k), str(v)) for k, v in meta["headers"])
            expires = meta.get("expires")
            return cls(int(meta["status"]), headers, data[end + 1 :], None if expires is None else float(expires))
        except (ValueError, KeyError, TypeError):
            return None


# --------------------------------------------------------------------------- base


class Cache(ABC):
    """What the transport needs from a cache; MemoryCache and RedisCache implement it.

    Args:
        ttl: seconds an entry is served (None: until evicted or cleared).
        namespace: part of every key; bump it (``"myapp-v3"``) to start afresh
            after a prompt change, and `clear(namespace)` drops one namespace.
        cacheable: a policy deciding from the app's request body whether a
            request is cached at all, e.g. ``lambda body: body.get("temperature", 1) == 0``.
            Default: everything but stateful Responses requests (`default_cacheable`).
        timer: the clock entries expire by (inject a fake one in tests).
    """

    def __init__(
        self,
        *,
        ttl: float | None = 3600,
        namespace: str = "default",
        cacheable: Callable[[dict[str, Any]], bool] | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0):
            raise CacheError(f"ttl must be a positive number of seconds or None, got {ttl!r} (an hour is ttl=3600)")
        if cacheable is not None and (not callable(cacheable) or is_async_function(cacheable)):
            raise CacheError(f"cacheable must be a plain function, cacheable(body) -> bool, not {cacheable!r}: it "
                             "decides before the request is sent")  # fmt: skip
        self.ttl = ttl
        self.namespace = check_namespace(namespace)
        self.cacheable = cacheable
        self.timer = timer
        self._counts = {"hits": 0, "misses": 0, "sets": 0, "errors": 0}
        self._count_lock = threading.Lock()
        renew_locks_in_child(self)

    def _renew_locks(self) -> None:
        self._count_lock = threading.Lock()
        if hasattr(self, "_lock"):
            self._lock = threading.Lock()

    # The transport's side.

    def is_cacheable(self, body: dict[str, Any]) -> bool:
        """Whether this request may be read from and written to the cache; never raises."""
        if not default_cacheable(body):
            return False
        policy = self.cacheable
        if policy is None:
            return True
        try:
            return bool(plain_answer(policy(body), "the cache's cacheable() policy"))
        except Exception:
            log_once("cache.policy", "costtrack: the cache's cacheable() policy raised; the request is not cached",
                     exc_info=True)  # fmt: skip
            return False

    def key(self, provider: str, operation: str, body: Mapping[str, Any], *, target: str = "",
            headers: Mapping[str, str] | None = None) -> str:  # fmt: skip
        """The storage key of a request: the namespace and its `cache_key`."""
        return f"{self.namespace}:{cache_key(provider, operation, body, target=target, headers=headers)}"

    @abstractmethod
    def get(self, key: str) -> CachedResponse | None:
        """The stored response for `key`, or None; never raises."""
        ...

    @abstractmethod
    def set(self, key: str, response: CachedResponse) -> None:
        """Store a response for `ttl` seconds; never raises."""
        ...

    async def aget(self, key: str) -> CachedResponse | None:
        """`get` for async clients."""
        return self.get(key)

    async def aset(self, key: str, response: CachedResponse) -> None:
        """`set` for async clients."""
        self.set(key, response)

    @abstractmethod
    def clear(self, namespace: str | None = None) -> int:
        """Delete the entries of one namespace (every namespace if None); return how many."""
        ...

    async def aclear(self, namespace: str | None = None) -> int:
        """`clear` for async code: runs in a worker thread, not on the event loop (a Redis scan may take seconds)."""
        return await anyio.to_thread.run_sync(self.clear, namespace)

    def close(self) -> None:  # noqa: B027 - a cache that holds nothing open (memory) has nothing to do
        """Release what the cache holds open (a Redis client's connections); nothing for a memory cache."""

    async def aclose(self) -> None:
        """`close` for async code."""
        self.close()

    def stats(self) -> dict[str, int]:
        """Counters since creation: hits, misses, sets, errors."""
        with self._count_lock:
            return dict(self._counts)

    def _count(self, name: str) -> None:
        with self._count_lock:
            self._counts[name] += 1

    def _expires(self) -> float | None:
        return None if self.ttl is None else self.timer() + self.ttl


def check_namespace(namespace: str) -> str:
    """A namespace is 1-200 letters, digits, '.', '_' or '-' (no ':' or glob characters)."""
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise CacheError(
            f"invalid cache namespace {namespace!r}: use 1-200 letters, digits, '.', '_' or '-' (e.g. 'myapp-v2')"
        )
    return namespace


# --------------------------------------------------------------------------- memory


async def _start(closer: AsyncIterator[None]) -> None:
    """Run `closer` to its first yield (closed before that, it has nothing to do)."""
    with contextlib.suppress(StopAsyncIteration):
        await closer.__anext__()


class MemoryCache(Cache):
    """An in-process cache: at most `maxsize` responses, each for `ttl` seconds (least recently used evicted).

    Thread-safe; shared by every client wrapped with it, in this process only.
    """

    def __init__(
        self,
        *,
        ttl: float | None = 3600,
        maxsize: int = 10_000,
        namespace: str = "default",
        cacheable: Callable[[dict[str, Any]], bool] | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(ttl=ttl, namespace=namespace, cacheable=cacheable, timer=timer)
        if not isinstance(maxsize, int) or maxsize < 1:
            raise CacheError(f"maxsize must be a positive number of entries, got {maxsize!r}")
        import cachetools

        self.maxsize = maxsize
        self._data: Any = (
            cachetools.LRUCache(maxsize) if ttl is None else cachetools.TTLCache(maxsize, ttl, timer=timer)
        )
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedResponse | None:
        with self._lock:
            found = self._data.get(key)
            self._counts["hits" if found is not None else "misses"] += 1
        return found

    def set(self, key: str, response: CachedResponse) -> None:
        with self._lock:
            self._data[key] = response
            self._counts["sets"] += 1

    def clear(self, namespace: str | None = None) -> int:
        with self._lock:
            if namespace is None:
                count = len(self._data)
                self._data.clear()
                return count
            prefix = check_namespace(namespace) + ":"
            doomed = [k for k in list(self._data.keys()) if k.startswith(prefix)]
            for k in doomed:
                self._data.pop(k, None)
            return len(doomed)

    def __len__(self) -> int:
        with self._lock:
            expire = getattr(self._data, "expire", None)
            if expire is not None:
                expire()
            return len(self._data)

    def stats(self) -> dict[str, int]:
        counts = super().stats()
        counts["size"] = len(self)
        return counts


# --------------------------------------------------------------------------- redis


def redact_url(url: str) -> str:
    """A Redis URL without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparseable redis url>"


class _Breaker:
    """After a failure, skip the service for `cooldown` seconds, then try it again."""

    __slots__ = ("cooldown", "open_until", "timer")

    def __init__(self, cooldown: float, timer: Callable[[], float]) -> None:
        self.cooldown = cooldown
        self.timer = timer
        self.open_until: float | None = None

    def allow(self) -> bool:
        until = self.open_until
        return until is None or self.timer() >= until

    def failure(self) -> None:
        self.open_until = self.timer() + self.cooldown

    def success(self) -> None:
        self.open_until = None


class RedisCache(Cache):
    """A cache in Redis, shared by every process and machine using the same URL and namespace.

    Entries expire natively (SET PX) and are also checked against `timer`
    (wall-clock seconds by default) so an injected clock expires them in tests.
    Redis down or slow never fails a call: each operation has short socket
    timeouts (`timeout`, 50 ms by default); a failure logs one warning and
    sends calls straight to the provider for `retry_after` seconds before Redis is tried again.

    Args:
        url: ``redis://[user:password@]host:port/db`` (default: $COSTTRACK_REDIS_URL,
            else redis://127.0.0.1:6379/0).
        prefix: the first part of every Redis key (``costtrack:cache:<namespace>:<hash>``).
        timer: the clock entries expire by and `retry_after` is counted on (inject a fake one in tests, and advance
            it past `retry_after` to have Redis tried again: while it stands still, Redis stays skipped).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        ttl: float | None = 3600,
        namespace: str = "default",
        cacheable: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 0.05,
        retry_after: float = 10.0,
        prefix: str = "costtrack:cache",
        timer: Callable[[], float] = time.time,
        **redis_options: Any,
    ) -> None:
        super().__init__(ttl=ttl, namespace=namespace, cacheable=cacheable, timer=timer)
        import os

        self.url = url or os.environ.get("COSTTRACK_REDIS_URL") or DEFAULT_REDIS_URL
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise CacheError(f"not a Redis URL: {redact_url(self.url)!r}: use redis://host:6379/0 (or rediss://, unix://)")
        database = urlsplit(self.url).path.strip("/")  # redis-py reads /15/ as database 15
        if self.url.startswith(("redis://", "rediss://")) and database and not database.isdigit():
            # The Redis client ignored it and used database 0: `cache clear` cleared another database than the one named.
            raise CacheError(f"Redis URL {redact_url(self.url)!r}: database {database!r} is not a number: e.g. redis://host:6379/0")
        self.timeout = timeout
        if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "*?[]\\"):
            # Keys are found by a SCAN pattern built on it: `*` matched, and `clear()` deleted, another app's keys.
            raise CacheError(f"invalid cache prefix {prefix!r}: give a non-empty text without * ? [ ] or \\")
        self.prefix = prefix
        self._options = redis_options
        self._breaker = _Breaker(retry_after, timer)
        self._sync: Any = None
        # One redis.asyncio client per live event loop (its connections belong to that loop): apps that run a
        # loop per thread would otherwise rebuild the client, and reconnect, at every switch between them. Each
        # is kept with the async generator that closes it when its loop shuts down (see _close_with_loop).
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = weakref.WeakKeyDictionary()
        self._starting: set[asyncio.Future[None]] = set()
        self._lock = threading.Lock()

    # Clients, created on first use.

    def _client_options(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry_on_timeout": False,
            **self._options,
        }

    @property
    def client(self) -> Any:
        """The `redis.Redis` client (sync), created on first use."""
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    import redis
                    from redis.backoff import NoBackoff
                    from redis.retry import Retry

                    options = {"retry": Retry(NoBackoff(), 0), **self._client_options()}
                    self._sync = redis.Redis.from_url(self.url, **options)
                client = self._sync
        return client

    def _async_client(self) -> Any:
        """A `redis.asyncio.Redis` for the running event loop (its connections belong to that loop)."""
        loop = asyncio.get_running_loop()
        held = self._async.get(loop)
        if held is not None:
            return held[0]
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options = {"retry": Retry(NoBackoff(), 0), **self._client_options()}
        client = redis.asyncio.Redis.from_url(self.url, **options)
        closer = self._close_with_loop(weakref.ref(loop), client)
        with self._lock:
            held = self._async.setdefault(loop, (client, closer))
        if held[0] is client:
            started = asyncio.ensure_future(_start(closer))  # started, so the loop's shutdown closes it
            self._starting.add(started)  # a task the loop holds only weakly: kept until it has run
            started.add_done_callback(self._starting.discard)
        return held[0]

    async def _close_with_loop(self, loop: weakref.ref[asyncio.AbstractEventLoop], client: Any) -> AsyncIterator[None]:
        """Waits for its loop's shutdown, then closes the loop's client: each asyncio.run left one Redis connection
        open, and its loop alive (review finding). Only a loop shut down as asyncio.run and asyncio.Runner do it
        (closing the async generators still open) closes its client so; `aclose()` closes the running loop's."""
        try:
            yield
        finally:
            with self._lock:
                key = loop()
                held = self._async.get(key) if key is not None else None
                if held is not None and held[0] is client:
                    del self._async[key]
            with contextlib.suppress(Exception):
                await client.aclose()

    def _redis_key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    # Failures: one warning, then straight to the provider until retry_after has passed.

    def _failed(self, exc: BaseException) -> None:
        self._breaker.failure()
        self._count("errors")
        log_once(
            f"cache.redis:{self.url}",
            "costtrack: the Redis cache at %s is unreachable (%s: %s); calls go to the provider, "
            "Redis is tried again every %ss",
            redact_url(self.url), type(exc).__name__, exc, self._breaker.cooldown,
        )  # fmt: skip

    def _ok(self) -> None:
        if self._breaker.open_until is not None:
            self._breaker.success()
            log.info("costtrack: the Redis cache at %s is reachable again", redact_url(self.url))

    def _decode(self, key: str, data: bytes | None) -> CachedResponse | None:
        found = None if data is None else CachedResponse.from_bytes(data)
        if found is not None and found.expires is not None and self.timer() >= found.expires:
            found = None
        self._count("hits" if found is not None else "misses")
        return found

    def _encode_value(self, response: CachedResponse) -> tuple[bytes, int | None]:
        stored = CachedResponse(response.status, response.headers, response.body, self._expires())
        px = None if self.ttl is None else max(1, int(self.ttl * 1000))
        return stored.to_bytes(), px

    def get(self, key: str) -> CachedResponse | None:
        if not self._breaker.allow():
            return None
        try:
            data = self.client.get(self._redis_key(key))
        except Exception as exc:
            self._failed(exc)
            return None
        self._ok()
        return self._decode(key, data)

    def set(self, key: str, response: CachedResponse) -> None:
        if not self._breaker.allow():
            return
        try:
            value, px = self._encode_value(response)
            self.client.set(self._redis_key(key), value, px=px)
        except Exception as exc:
            self._failed(exc)
            return
        self._ok()
        self._count("sets")

    async def aget(self, key: str) -> CachedResponse | None:
        if not self._breaker.allow():
            return None
        try:
            data = await self._async_client().get(self._redis_key(key))
        except Exception as exc:
            self._failed(exc)
            return None
        self._ok()
        return self._decode(key, data)

    async def aset(self, key: str, response: CachedResponse) -> None:
        if not self._breaker.allow():
            return
        try:
            value, px = self._encode_value(response)
            await self._async_client().set(self._redis_key(key), value, px=px)
        except Exception as exc:
            self._failed(exc)
            return
        self._ok()
        self._count("sets")

    def clear(self, namespace: str | None = None) -> int:
        """Delete one namespace's entries (every costtrack entry under `prefix` if None).

        Raises CacheError when Redis cannot be reached (unlike get/set, which never raise).
        """
        pattern = f"{self.prefix}:*" if namespace is None else f"{self.prefix}:{check_namespace(namespace)}:*"
        deleted = 0
        try:
            import redis

            # An administrative scan may take longer than a lookup: a client with a longer read timeout.
            client = redis.Redis.from_url(self.url, **{**self._client_options(), "socket_timeout": max(self.timeout, 5.0),
                                                       "socket_connect_timeout": max(self.timeout, 2.0)})  # fmt: skip
            try:
                batch: list[bytes] = []
                for name in client.scan_iter(match=pattern, count=1000):
                    batch.append(name)
                    if len(batch) >= 500:
                        deleted += client.unlink(*batch)
                        batch.clear()
                if batch:
                    deleted += client.unlink(*batch)
            finally:
                client.close()
        except CacheError:
            raise
        except Exception as exc:
            raise CacheError(f"could not clear the Redis cache at {redact_url(self.url)}: {type(exc).__name__}: {exc}") from exc
        return deleted

    def close(self) -> None:
        """Close the sync client's connections (the cache reconnects if used again)."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the async client of the running loop, and the sync one."""
        with self._lock:
            held = self._async.pop(asyncio.get_running_loop(), None)
        if held is not None:
            await held[0].aclose()
            await held[1].aclose()  # its work is done
        self.close()
