"""OpenAI Chat Completions: the plan, the body and the stream chunks of a ``POST …/chat/completions``."""

from __future__ import annotations

import hashlib
from typing import Any

from .generation import Generation, Output, Usage
from .models import count_text_tokens, is_reasoning_model, snapshot_model
from .prompts import Prompts


class OpenAIChat(Prompts, Generation):
    """Answers ``POST …/chat/completions``, plain and streamed."""

    @staticmethod
    def _chat_tool(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type", "function") == "function"]
        if not tools:
            return None
        choice = body.get("tool_choice", "auto")
        if choice == "none":
            return None

        def fn(t: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            f = t.get("function") or {}
            return str(f.get("name", "tool")), f.get("parameters") or {}

        if isinstance(choice, dict):
            wanted = (choice.get("function") or {}).get("name") or choice.get("name")
            for t in tools:
                if fn(t)[0] == wanted:
                    return fn(t)
            return fn(tools[0])
        if choice == "required":
            return fn(tools[0])
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        if messages and messages[-1].get("role") == "user":
            return fn(tools[0])
        return None

    def _chat_plan(self, body: dict[str, Any]) -> tuple[str, list[Output], Usage]:
        model = str(body.get("model", ""))
        snapshot = snapshot_model(model)
        canon = self._chat_prompt(body)
        prompt_tokens = count_text_tokens(canon)
        cached = self._openai_cached(snapshot, canon, prompt_tokens)
        cap = self._cap(body.get("max_completion_tokens"), body.get("max_tokens"))
        fmt = body.get("response_format") if isinstance(body.get("response_format"), dict) else {}
        schema = (fmt.get("json_schema") or {}).get("schema", {}) if fmt.get("type") == "json_schema" else None
        tool = self._chat_tool(body)
        n_choices = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 1) > 0 else 1
        outputs: list[Output] = []
        for i in range(n_choices):
            rng = self._rng(body, f"chat:{i}")
            reasoning = self._reasoning_budget(rng, body.get("reasoning_effort")) if is_reasoning_model(model) else 0
            outputs.append(
                self._generate(rng, cap=cap, reasoning=reasoning, schema=schema, json_object=fmt.get("type") == "json_object", tool=tool)
            )
        usage = Usage(
            input_tokens=prompt_tokens,
            cached_tokens=cached,
            output_tokens=sum(o.tokens for o in outputs),
            reasoning_tokens=sum(o.reasoning_tokens for o in outputs),
        )
        return snapshot, outputs, usage

    @staticmethod
    def _chat_usage(u: Usage) -> dict[str, Any]:
        return {
            "prompt_tokens": u.input_tokens,
            "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": u.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _fingerprint(self, model: str) -> str:
        return "fp_" + hashlib.sha256(f"{model}".encode()).hexdigest()[:10]

    @staticmethod
    def _finish(out: Output) -> str:
        if out.truncated:
            return "length"
        return "tool_calls" if out.tool_name else "stop"

    def _chat_body(self, body: dict[str, Any], n: int, plan: tuple[str, list[Output], Usage], *, usage: bool) -> dict[str, Any]:
        model, outputs, u = plan
        choices = []
        for i, out in enumerate(outputs):
            message: dict[str, Any] = {"role": "assistant", "content": None if out.tool_name else out.text, "refusal": None, "annotations": []}
            if out.tool_name:
                message["tool_calls"] = [
                    {"id": self._tool_call_id(n, i), "type": "function", "function": {"name": out.tool_name, "arguments": out.tool_args}}
                ]
            choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": self._finish(out)})
        result: dict[str, Any] = {
            "id": self._id("chatcmpl-", n, 29),
            "object": "chat.completion",
            "created": self._now(n),
            "model": model,
            "choices": choices,
        }
        if usage:
            result["usage"] = self._chat_usage(u)
        result["service_tier"] = "default"
        result["system_fingerprint"] = self._fingerprint(model)
        return result

    def _chat_chunks(self, body: dict[str, Any], n: int, plan: tuple[str, list[Output], Usage], *, usage: bool) -> list[dict[str, Any]]:
        model, outputs, u = plan
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) if isinstance(body.get("stream_options"), dict) else False
        base = {
            "id": self._id("chatcmpl-", n, 29),
            "object": "chat.completion.chunk",
            "created": self._now(n),
            "model": model,
            "service_tier": "default",
            "system_fingerprint": self._fingerprint(model),
        }

        def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
            c = dict(base, choices=choices)
            if include_usage:
                c["usage"] = None
            return c

        chunks: list[dict[str, Any]] = []
        for i, out in enumerate(outputs):
            if out.tool_name:
                call_id = self._tool_call_id(n, i)
                chunks.append(chunk([{"index": i, "delta": {"role": "assistant", "content": None, "tool_calls": [
                    {"index": 0, "id": call_id, "type": "function", "function": {"name": out.tool_name, "arguments": ""}}
                ], "refusal": None}, "logprobs": None, "finish_reason": None}]))
                for piece in out.tool_pieces:
                    chunks.append(chunk([{"index": i, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, "logprobs": None, "finish_reason": None}]))
            else:
                chunks.append(chunk([{"index": i, "delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None, "finish_reason": None}]))
                for piece in out.pieces:
                    chunks.append(chunk([{"index": i, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}]))
            chunks.append(chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": self._finish(out)}]))
        if include_usage and usage:
            chunks.append(dict(base, choices=[], usage=self._chat_usage(u)))
        return chunks
