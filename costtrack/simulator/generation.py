"""Generated answers: a request's planned output (text or a tool call) and its token counts."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from .canonical import canonical, digest
from .models import CHARS_PER_TOKEN, count_text_tokens
from .state import SimulatorState
from .text import example_from_schema, pieces_of, random_words


@dataclass
class Output:
    """One generated answer: text, or a tool call, with its token counts."""

    text: str = ""
    pieces: list[str] = field(default_factory=list)
    tool_name: str | None = None
    tool_args: str = ""
    tool_pieces: list[str] = field(default_factory=list)
    visible_tokens: int = 0
    reasoning_tokens: int = 0
    truncated: bool = False

    @property
    def tokens(self) -> int:
        return self.visible_tokens + self.reasoning_tokens


@dataclass
class Usage:
    input_tokens: int = 0  # OpenAI: all prompt tokens; Anthropic: total before the cache split
    cached_tokens: int = 0  # OpenAI cache hits
    cache_read: int = 0  # Anthropic
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


class Generation(SimulatorState):
    """Draws a request's output from a generator seeded by the simulator's seed and the request."""

    def _rng(self, body: dict[str, Any], salt: str = "") -> random.Random:
        stable = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        return random.Random(int.from_bytes(digest(self.seed, salt, canonical(stable))[:8], "big"))

    @staticmethod
    def _cap(*values: Any) -> int | None:
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool):
                return max(0, v)
        return None

    @staticmethod
    def _reasoning_budget(rng: random.Random, effort: Any) -> int:
        lo, hi = {
            "none": (0, 0),
            "minimal": (0, 64),
            "low": (64, 384),
            "medium": (128, 1024),
            "high": (512, 3072),
            "xhigh": (1024, 4096),
        }.get(str(effort) if effort else "medium", (128, 1024))
        return rng.randint(lo, hi)

    def _generate(
        self,
        rng: random.Random,
        *,
        cap: int | None,
        reasoning: int = 0,
        schema: dict[str, Any] | None = None,
        json_object: bool = False,
        tool: tuple[str, dict[str, Any]] | None = None,
    ) -> Output:
        out = Output()
        if tool is not None:
            name, params = tool
            args = json.dumps(example_from_schema(params, rng=rng), separators=(",", ":"))
            visible = count_text_tokens(name) + count_text_tokens(args) + 5
            total = reasoning + visible
            if cap is not None and total > cap:
                # A tool call cut short: the arguments stop mid-way.
                reasoning = min(reasoning, cap)
                visible = cap - reasoning
                args = args[: max(0, visible - 5) * CHARS_PER_TOKEN]
                out.truncated = True
            out.tool_name = name
            out.tool_args = args
            out.tool_pieces = pieces_of(args, rng) or ([""] if not args else [])
            out.visible_tokens = visible
            out.reasoning_tokens = reasoning
            return out
        if schema is not None or json_object:
            value = example_from_schema(schema, rng=rng) if schema is not None else {"answer": " ".join(random_words(rng, 6))}
            text = json.dumps(value, ensure_ascii=False)
            visible = count_text_tokens(text)
            total = reasoning + visible
            if cap is not None and total > cap:
                reasoning = min(reasoning, cap)
                visible = cap - reasoning
                text = text[: visible * CHARS_PER_TOKEN]
                out.truncated = True
            out.text = text
            out.pieces = pieces_of(text, rng)
            out.visible_tokens = visible
            out.reasoning_tokens = reasoning
            return out
        natural = rng.randint(12, 180)
        visible = natural
        if cap is not None and reasoning + natural > cap:
            reasoning = min(reasoning, cap)
            visible = cap - reasoning
            out.truncated = True
        words = random_words(rng, natural)[:visible]
        out.text = " ".join(words)
        out.pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        out.visible_tokens = visible
        out.reasoning_tokens = reasoning
        return out
