"""OpenAI Responses: the plan, the response object and the typed events of a ``POST …/responses``."""

from __future__ import annotations

import copy
from typing import Any

from .generation import Generation, Output, Usage
from .models import count_text_tokens, is_reasoning_model, snapshot_model
from .prompts import Prompts


class OpenAIResponses(Prompts, Generation):
    """Answers ``POST …/responses``, plain and as typed events."""

    @staticmethod
    def _responses_tool(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        if not tools:
            return None
        choice = body.get("tool_choice", "auto")
        if choice == "none":
            return None

        def fn(t: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            return str(t.get("name", "tool")), t.get("parameters") or {}

        if isinstance(choice, dict):
            for t in tools:
                if t.get("name") == choice.get("name"):
                    return fn(t)
            return fn(tools[0])
        if choice == "required":
            return fn(tools[0])
        items = body.get("input")
        if isinstance(items, str):
            return fn(tools[0])
        items = [i for i in items or [] if isinstance(i, dict)]
        if items and items[-1].get("role") == "user":
            return fn(tools[0])
        return None

    def _responses_plan(self, body: dict[str, Any]) -> tuple[str, list[Output], Usage]:
        model = str(body.get("model", ""))
        snapshot = snapshot_model(model)
        canon = self._responses_prompt(body)
        prompt_tokens = count_text_tokens(canon)
        cached = self._openai_cached(snapshot, canon, prompt_tokens)
        cap = self._cap(body.get("max_output_tokens"))
        text_cfg = body.get("text") if isinstance(body.get("text"), dict) else {}
        fmt = text_cfg.get("format") if isinstance(text_cfg.get("format"), dict) else {}
        schema = fmt.get("schema", {}) if fmt.get("type") == "json_schema" else None
        rng = self._rng(body, "responses")
        effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
        reasoning = self._reasoning_budget(rng, effort) if is_reasoning_model(model) else 0
        out = self._generate(
            rng, cap=cap, reasoning=reasoning, schema=schema, json_object=fmt.get("type") == "json_object", tool=self._responses_tool(body)
        )
        usage = Usage(input_tokens=prompt_tokens, cached_tokens=cached, output_tokens=out.tokens, reasoning_tokens=out.reasoning_tokens)
        return snapshot, [out], usage

    @staticmethod
    def _responses_usage(u: Usage) -> dict[str, Any]:
        return {
            "input_tokens": u.input_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": u.output_tokens,
            "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.input_tokens + u.output_tokens,
        }

    def _responses_items(self, n: int, plan: tuple[str, list[Output], Usage], model: str) -> list[dict[str, Any]]:
        out = plan[1][0]
        items: list[dict[str, Any]] = []
        if is_reasoning_model(model) or out.reasoning_tokens:
            items.append({"id": self._id("rs_", n, 48), "type": "reasoning", "summary": []})
        status = "incomplete" if out.truncated else "completed"
        if out.tool_name:
            items.append({
                "id": self._id("fc_", n, 48),
                "type": "function_call",
                "status": status,
                "arguments": out.tool_args,
                "call_id": self._tool_call_id(n, 0),
                "name": out.tool_name,
            })
        elif out.visible_tokens or not out.truncated:
            items.append({
                "id": self._id("msg_", n, 48),
                "type": "message",
                "status": status,
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": out.text}],
                "role": "assistant",
            })
        return items

    def _response_object(
        self, body: dict[str, Any], n: int, plan: tuple[str, list[Output], Usage], *, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
    ) -> dict[str, Any]:
        model = plan[0]
        text_cfg = copy.deepcopy(body.get("text")) if isinstance(body.get("text"), dict) else {}
        text_cfg.setdefault("format", {"type": "text"})
        text_cfg.setdefault("verbosity", "medium")
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        created = self._now(n)
        return {
            "id": self._id("resp_", n, 48),
            "object": "response",
            "created_at": created,
            "status": status,
            "background": bool(body.get("background", False)),
            "completed_at": created + 1 if status == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort", "medium" if is_reasoning_model(str(body.get("model", ""))) else None), "summary": reasoning.get("summary")},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": text_cfg,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def _responses_body(self, body: dict[str, Any], n: int, plan: tuple[str, list[Output], Usage], *, usage: bool) -> dict[str, Any]:
        out = plan[1][0]
        status = "incomplete" if out.truncated else "completed"
        return self._response_object(
            body, n, plan, status=status, output=self._responses_items(n, plan, plan[0]),
            usage=self._responses_usage(plan[2]) if usage else None,
        )

    def _responses_events(self, body: dict[str, Any], n: int, plan: tuple[str, list[Output], Usage], *, usage: bool) -> list[dict[str, Any]]:
        out = plan[1][0]
        items = self._responses_items(n, plan, plan[0])
        events: list[dict[str, Any]] = []

        def emit(event: dict[str, Any]) -> None:
            event["sequence_number"] = len(events)
            events.append(event)

        emit({"type": "response.created", "response": self._response_object(body, n, plan, status="in_progress", output=[], usage=None)})
        emit({"type": "response.in_progress", "response": self._response_object(body, n, plan, status="in_progress", output=[], usage=None)})
        for index, item in enumerate(items):
            if item["type"] == "reasoning":
                emit({"type": "response.output_item.added", "output_index": index, "item": dict(item)})
                emit({"type": "response.output_item.done", "output_index": index, "item": dict(item)})
            elif item["type"] == "function_call":
                emit({"type": "response.output_item.added", "output_index": index, "item": dict(item, arguments="", status="in_progress")})
                for piece in out.tool_pieces:
                    emit({"type": "response.function_call_arguments.delta", "item_id": item["id"], "output_index": index, "delta": piece})
                emit({"type": "response.function_call_arguments.done", "item_id": item["id"], "output_index": index, "arguments": item["arguments"]})
                emit({"type": "response.output_item.done", "output_index": index, "item": item})
            else:
                text = item["content"][0]["text"]
                emit({"type": "response.output_item.added", "output_index": index, "item": dict(item, status="in_progress", content=[])})
                empty_part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
                emit({"type": "response.content_part.added", "item_id": item["id"], "output_index": index, "content_index": 0, "part": empty_part})
                for piece in out.pieces:
                    emit({"type": "response.output_text.delta", "item_id": item["id"], "output_index": index, "content_index": 0, "delta": piece, "logprobs": []})
                emit({"type": "response.output_text.done", "item_id": item["id"], "output_index": index, "content_index": 0, "text": text, "logprobs": []})
                emit({"type": "response.content_part.done", "item_id": item["id"], "output_index": index, "content_index": 0, "part": dict(empty_part, text=text)})
                emit({"type": "response.output_item.done", "output_index": index, "item": item})
        status = "incomplete" if out.truncated else "completed"
        final = self._response_object(body, n, plan, status=status, output=items, usage=self._responses_usage(plan[2]) if usage else None)
        emit({"type": "response.incomplete" if out.truncated else "response.completed", "response": final})
        return events
