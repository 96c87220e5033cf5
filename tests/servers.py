"""A real OpenAI-compatible (and Anthropic-compatible) HTTP server on 127.0.0.1, for tests and benchmarks.

    with LLMServer(delay=0.03, token_delay=0.005, tokens=8) as server:
        client = AsyncOpenAI(base_url=server.url, api_key="x")   # http://127.0.0.1:PORT/v1

An asyncio HTTP/1.1 server (keep-alive, chunked event streams) running its own
event loop in a daemon thread, so a test's client talks to it over a real TCP
socket. Nothing but the standard library.

Timing, per completion (OpenAI ``POST …/chat/completions``, Anthropic ``POST …/messages``):
the response starts after ``delay`` seconds (queueing + prefill: the time to first
token), then ``tokens`` output tokens are generated ``token_delay`` apart, so the
last one comes at ``delay + (tokens - 1) * token_delay``. A stream sends each token
as it is generated; a plain answer is sent whole after the last one. ``tokens``
is capped by the request's ``max_tokens`` / ``max_completion_tokens``.

Failures, counted over completion requests in arrival order (1-based ``n``):

- ``rate_limit_after=N``: requests after the first N answer 429 (at once);
- ``fail_every=K``: request n with n % K == 0 answers ``fail_status`` (default 500);
- ``drop_every=K``: request n with n % K == 0 gets its connection closed, no answer;
- ``start_delay``: the port accepts connections only after this many seconds
  (a server still starting: connection refused);
- ``models_ready_after``: ``GET …/models`` answers 503 until this many seconds
  after ``start()`` (a model still loading, as llama.cpp server does).

``completions`` counts completion requests received; ``requests`` keeps
(method, path) of every request and ``bodies`` the JSON of completion requests.

Run standalone (for a benchmark in another process)::

    python tests/servers.py --port 8765 [--delay 0.02] [--tokens 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["LLMServer", "ServerConfig", "free_port"]


def free_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerConfig:
    """How the server answers (see the module docstring)."""

    delay: float = 0.0
    token_delay: float = 0.0
    tokens: int = 10
    fail_every: int | None = None
    fail_status: int = 500
    rate_limit_after: int | None = None
    drop_every: int | None = None
    start_delay: float = 0.0
    models_ready_after: float = 0.0
    model: str | None = None  # the model answered with; default: the one requested
    require_key: str | None = None  # answer 401 unless this bearer key / x-api-key is sent
    extra: dict[str, Any] = field(default_factory=dict)


_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 529: "Overloaded"}  # fmt: skip


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _prompt_tokens(body: dict[str, Any]) -> int:
    chars = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
    system = body.get("system")
    if isinstance(system, str):
        chars += len(system)
    return max(1, chars // 4) + 4


def _error_body(anthropic: bool, status: int) -> dict[str, Any]:
    if anthropic:
        kind = {429: "rate_limit_error", 529: "overloaded_error", 401: "authentication_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": f"test server: {status}"}}
    if status == 429:
        return {"error": {"message": "Rate limit reached (test server)", "type": "requests", "param": None,
                          "code": "rate_limit_exceeded"}}  # fmt: skip
    if status == 401:
        return {"error": {"message": "Incorrect API key", "type": "invalid_request_error", "param": None,
                          "code": "invalid_api_key"}}  # fmt: skip
    return {"error": {"message": f"test server: {status}", "type": "server_error", "param": None, "code": None}}


class LLMServer:
    """The server; `start()` (or `with`) runs it, `stop()` ends it. See the module docstring."""

    def __init__(self, config: ServerConfig | None = None, *, port: int | None = None, **options: Any) -> None:
        known = {f.name for f in fields(ServerConfig)}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"unknown server options: {sorted(unknown)}")
        self.config = config or ServerConfig(**options)
        self.port = port or free_port()
        self.completions = 0
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[dict[str, Any]] = []
        self.started_at: float | None = None
        self.listening_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The OpenAI-style base URL (…/v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        """The Anthropic-style base URL (the SDK adds /v1/messages)."""
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LLMServer:
        """Start serving; returns at once with `start_delay`, else once the port listens."""
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"llm-server-{self.port}", daemon=True)
        self._thread.start()
        if not self.config.start_delay:
            if not self._ready.wait(10):
                raise RuntimeError("test server did not start")
            if self._error is not None:
                raise self._error
        return self

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # pragma: no cover - surfaced by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self.config.start_delay:
            try:
                await asyncio.wait_for(self._stop.wait(), self.config.start_delay)
                return
            except asyncio.TimeoutError:
                pass
        server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, reuse_address=True, backlog=512)
        self.listening_at = time.monotonic()
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()

    # ------------------------------------------------------------------ HTTP

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                keep = await self._dispatch(method, path.split("?", 1)[0], headers, body, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # the server is stopping: end quietly
            return
        finally:
            writer.close()

    @staticmethod
    def _send(writer: asyncio.StreamWriter, status: int, data: bytes, content_type: str = "application/json",
              extra: str = "") -> None:  # fmt: skip
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(data)}\r\n{extra}\r\n".encode() + data
        )

    async def _dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes,
                        writer: asyncio.StreamWriter) -> bool:  # fmt: skip
        cfg = self.config
        self.requests.append((method, path))
        anthropic = "anthropic-version" in headers or path.endswith("/messages")
        if cfg.require_key is not None:
            sent = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
            if sent != cfg.require_key:
                self._send(writer, 401, _dumps(_error_body(anthropic, 401)))
                return True
        if method == "GET" and path.rstrip("/").endswith("/models"):
            assert self.started_at is not None
            if time.monotonic() - self.started_at < cfg.models_ready_after:
                self._send(writer, 503, _dumps({"error": {"message": "Loading model", "type": "unavailable_error"}}))
                return True
            self._send(writer, 200, _dumps(self._models(anthropic)))
            return True
        is_chat = method == "POST" and path.rstrip("/").endswith("/chat/completions")
        is_messages = method == "POST" and path.rstrip("/").endswith("/messages")
        if not (is_chat or is_messages):
            self._send(writer, 404, _dumps({"error": {"message": f"no route {method} {path}", "type": "not_found"}}))
            return True
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(writer, 400, _dumps({"error": {"message": "bad JSON", "type": "invalid_request_error"}}))
            return True
        self.completions += 1
        n = self.completions
        self.bodies.append(body)
        if cfg.drop_every and n % cfg.drop_every == 0:
            writer.transport.abort()
            return False
        if cfg.rate_limit_after is not None and n > cfg.rate_limit_after:
            self._send(writer, 429, _dumps(_error_body(is_messages, 429)), extra="retry-after-ms: 10\r\n")
            return True
        if cfg.fail_every and n % cfg.fail_every == 0:
            self._send(writer, cfg.fail_status, _dumps(_error_body(is_messages, cfg.fail_status)))
            return True
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        tokens = min(cfg.tokens, int(cap)) if isinstance(cap, int) and cap > 0 else cfg.tokens
        model = cfg.model or str(body.get("model") or "test-model")
        prompt = _prompt_tokens(body)
        if cfg.delay:
            await asyncio.sleep(cfg.delay)
        if not body.get("stream"):
            if cfg.token_delay and tokens > 1:
                await asyncio.sleep(cfg.token_delay * (tokens - 1))
            answer = self._message(n, model, prompt, tokens) if is_messages else self._chat(n, model, prompt, tokens)
            self._send(writer, 200, _dumps(answer))
            return True
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                     b"cache-control: no-cache\r\n\r\n")  # fmt: skip
        events = self._message_events if is_messages else self._chat_events
        for pause, event in events(n, model, prompt, tokens, body):
            if pause and cfg.token_delay:
                await writer.drain()
                await asyncio.sleep(cfg.token_delay)
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    # ------------------------------------------------------------------ bodies

    def _models(self, anthropic: bool) -> dict[str, Any]:
        name = self.config.model or "test-model"
        if anthropic:
            return {"data": [{"type": "model", "id": name, "display_name": name, "created_at": "2026-01-01T00:00:00Z"}],
                    "has_more": False, "first_id": name, "last_id": name}  # fmt: skip
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 1767225600, "owned_by": "test"}]}

    @staticmethod
    def _chat(n: int, model: str, prompt: int, tokens: int) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1767225600, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "tok " * tokens},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens},
        }  # fmt: skip

    @staticmethod
    def _chat_events(n: int, model: str, prompt: int, tokens: int, body: dict[str, Any]) -> list[tuple[bool, bytes]]:
        head = f'data: {{"id":"chatcmpl-{n}","object":"chat.completion.chunk","created":1767225600,"model":"{model}",'
        out = [(False, (head + '"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
                        '"finish_reason":null}]}\n\n').encode())]  # fmt: skip
        token = (head + '"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n').encode()
        out += [(i > 0, token) for i in range(tokens)]
        out.append((False, (head + '"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n').encode()))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = f'{{"prompt_tokens":{prompt},"completion_tokens":{tokens},"total_tokens":{prompt + tokens}}}'
            out.append((False, (head + f'"choices":[],"usage":{usage}}}\n\n').encode()))
        out.append((False, b"data: [DONE]\n\n"))
        return out

    @staticmethod
    def _message(n: int, model: str, prompt: int, tokens: int) -> dict[str, Any]:
        return {
            "id": f"msg_{n}", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "tok " * tokens}], "stop_reason": "max_tokens",
            "stop_sequence": None, "usage": {"input_tokens": prompt, "output_tokens": tokens},
        }  # fmt: skip

    @staticmethod
    def _message_events(n: int, model: str, prompt: int, tokens: int, body: dict[str, Any]) -> list[tuple[bool, bytes]]:
        def sse(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

        start = {"type": "message_start", "message": {
            "id": f"msg_{n}", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": prompt, "output_tokens": 1}}}  # fmt: skip
        out = [(False, sse("message_start", start)),
               (False, sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": {"type": "text", "text": ""}}))]  # fmt: skip
        delta = sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": "tok "}})  # fmt: skip
        out += [(i > 0, delta) for i in range(tokens)]
        out.append((False, sse("content_block_stop", {"type": "content_block_stop", "index": 0})))
        out.append((False, sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens",
                                                 "stop_sequence": None}, "usage": {"output_tokens": tokens}})))  # fmt: skip
        out.append((False, sse("message_stop", {"type": "message_stop"})))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a test OpenAI-compatible API on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True)
    for f in fields(ServerConfig):
        if f.name in ("extra", "model", "require_key"):
            continue
        kind = float if isinstance(f.default, float) else int
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    args = vars(parser.parse_args())
    port = args.pop("port")
    server = LLMServer(ServerConfig(**args), port=port).start()
    print(f"listening on {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
