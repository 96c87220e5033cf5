"""Warming the client up without the network: a writer that stores nothing, and canned answers."""

from __future__ import annotations

from typing import Any

import httpx2


class NullWriter:
    """A writer that stores nothing (for warming up)."""

    def submit(self, record: Any) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> None:
        pass


def canned_answer(request: httpx2.Request) -> httpx2.Response:
    """A minimal answer in the request's own wire format (for warming up)."""
    import json

    body = json.loads(request.content or b"{}")
    model = str(body.get("model") or "model")
    stream = bool(body.get("stream"))
    if request.url.path.endswith("/messages"):
        usage = {"input_tokens": 3, "output_tokens": 1}
        if not stream:
            data = {"id": "msg_0", "type": "message", "role": "assistant", "model": model, "stop_reason": "end_turn",
                    "stop_sequence": None, "content": [{"type": "text", "text": "ok"}], "usage": usage}  # fmt: skip
            return httpx2.Response(200, json=data)
        events = [
            ("message_start", {"type": "message_start", "message": {"id": "msg_0", "type": "message", "role": "assistant",
             "model": model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": 1}}),
            ("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        text = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=text.encode())
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    if not stream:
        data = {"id": "c0", "object": "chat.completion", "created": 0, "model": model, "usage": usage,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}  # fmt: skip
        return httpx2.Response(200, json=data)
    head = {"id": "c0", "object": "chat.completion.chunk", "created": 0, "model": model}
    chunks = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**head, "choices": [], "usage": usage},
    ]
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=text.encode())
