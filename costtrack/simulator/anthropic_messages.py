"""Anthropic Messages: the plan, the message body and the stream events of a ``POST …/v1/messages``."""

from __future__ import annotations

import json
from typing import Any

from .generation import Generation, Output, Usage
from .models import snapshot_model
from .prompts import Prompts


class AnthropicMessages(Prompts, Generation):
    """Answers ``POST …/v1/messages``, plain and as events."""

    @staticmethod
    def _anthropic_tool(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
        if not tools:
            return None
        choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {"type": "auto"}
        kind = choice.get("type", "auto")
        if kind == "none":
            return None

        def fn(t: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            return str(t.get("name", "tool")), t.get("input_schema") or {}

        if kind == "tool":
            for t in tools:
                if t.get("name") == choice.get("name"):
                    return fn(t)
            return fn(tools[0])
        if kind == "any":
            return fn(tools[0])
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        if not messages or messages[-1].get("role") != "user":
            return None
        content = messages[-1].get("content")
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return None
        return fn(tools[0])

    def _messages_plan(self, body: dict[str, Any]) -> tuple[str, list[Output], Usage]:
        model = str(body.get("model", ""))
        snapshot = snapshot_model(model)
        prompt = self._anthropic_prompt(body)
        read, w5, w1 = self._anthropic_cache(snapshot, prompt)
        cap = self._cap(body.get("max_tokens"))
        fmt = (body.get("output_config") or {}).get("format") if isinstance(body.get("output_config"), dict) else None
        schema = fmt.get("schema", {}) if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
        out = self._generate(self._rng(body, "messages"), cap=cap, schema=schema, tool=self._anthropic_tool(body))
        usage = Usage(
            input_tokens=prompt.total - read - w5 - w1,
            cache_read=read,
            cache_write_5m=w5,
            cache_write_1h=w1,
            output_tokens=out.tokens,
        )
        return snapshot, [out], usage

    @staticmethod
    def _message_usage(u: Usage, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": u.input_tokens,
            "cache_creation_input_tokens": u.cache_write_5m + u.cache_write_1h,
            "cache_read_input_tokens": u.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write_5m, "ephemeral_1h_input_tokens": u.cache_write_1h},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _message_content(self, n: int, out: Output) -> list[dict[str, Any]]:
        if out.tool_name:
            try:
                tool_input = json.loads(out.tool_args) if out.tool_args else {}
            except ValueError:
                tool_input = {}
            return [{"type": "tool_use", "id": self._id("toolu_01", n), "name": out.tool_name, "input": tool_input}]
        return [{"type": "text", "text": out.text}]

    @staticmethod
    def _stop_reason(out: Output) -> str:
        if out.truncated:
            return "max_tokens"
        return "tool_use" if out.tool_name else "end_turn"

    def _message_body(self, body: dict[str, Any], n: int, plan: tuple[str, list[Output], Usage], *, usage: bool) -> dict[str, Any]:
        model, outputs, u = plan
        out = outputs[0]
        result: dict[str, Any] = {
            "id": self._id("msg_01", n),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": self._message_content(n, out),
            "stop_reason": self._stop_reason(out),
            "stop_sequence": None,
        }
        if usage:
            result["usage"] = self._message_usage(u, u.output_tokens)
        return result

    def _message_events(self, body: dict[str, Any], n: int, plan: tuple[str, list[Output], Usage], *, usage: bool) -> list[tuple[str, dict[str, Any]]]:
        model, outputs, u = plan
        out = outputs[0]
        start_msg: dict[str, Any] = {
            "id": self._id("msg_01", n),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }
        if usage:
            start_msg["usage"] = self._message_usage(u, min(1, u.output_tokens))
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start_msg})]
        if out.tool_name:
            block = self._message_content(n, out)[0]
            events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": dict(block, input={})}))
            events.append(("ping", {"type": "ping"}))
            for piece in out.tool_pieces:
                events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}))
        else:
            events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
            events.append(("ping", {"type": "ping"}))
            for piece in out.pieces:
                events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        delta: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": self._stop_reason(out), "stop_sequence": None}}
        if usage:
            # Cumulative totals, as Anthropic sends them: the final output count, the input counts repeated.
            delta["usage"] = {
                "input_tokens": u.input_tokens,
                "cache_creation_input_tokens": u.cache_write_5m + u.cache_write_1h,
                "cache_read_input_tokens": u.cache_read,
                "output_tokens": u.output_tokens,
            }
        events.append(("message_delta", delta))
        events.append(("message_stop", {"type": "message_stop"}))
        return events
