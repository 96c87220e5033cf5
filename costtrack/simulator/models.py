"""Model names: the dated snapshots the simulator reports, reasoning models, model listings and the tokenizer."""

from __future__ import annotations

from typing import Any

MODEL_SNAPSHOTS: dict[str, str] = {
    # OpenAI
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "o1": "o1-2024-12-17",
    "o1-mini": "o1-mini-2024-09-12",
    "o3": "o3-2025-04-16",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
    "gpt-5-nano": "gpt-5-nano-2025-08-07",
    "gpt-5.1": "gpt-5.1-2025-11-13",
    "gpt-5.2": "gpt-5.2-2025-12-11",
    "gpt-5.2-pro": "gpt-5.2-pro-2025-12-11",
    "gpt-5.4-mini": "gpt-5.4-mini-2026-03-17",
    "gpt-5.4-nano": "gpt-5.4-nano-2026-03-17",
    "gpt-5.5": "gpt-5.5-2026-04-23",
    # Anthropic
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-opus-4-0": "claude-opus-4-20250514",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}

_EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")

_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")

_ANTHROPIC_DISPLAY = {
    "claude-haiku-4-5-20251001": "Claude Haiku 4.5",
    "claude-sonnet-4-5-20250929": "Claude Sonnet 4.5",
    "claude-opus-4-5-20251101": "Claude Opus 4.5",
    "claude-opus-4-1-20250805": "Claude Opus 4.1",
    "claude-opus-4-20250514": "Claude Opus 4",
    "claude-sonnet-4-20250514": "Claude Sonnet 4",
    "claude-3-7-sonnet-20250219": "Claude Sonnet 3.7",
    "claude-3-5-haiku-20241022": "Claude Haiku 3.5",
}

CHARS_PER_TOKEN = 4


def snapshot_model(name: str) -> str:
    """The dated snapshot the simulator reports for a requested model name (unknown names unchanged)."""
    return MODEL_SNAPSHOTS.get(name, name)


def is_reasoning_model(name: str) -> bool:
    """Whether the simulator bills reasoning tokens for this (OpenAI) model."""
    base = name.split("/")[-1]
    if base.startswith("gpt-5") and "chat" in base:
        return False
    return base.startswith(_REASONING_PREFIXES)


def count_text_tokens(text: str) -> int:
    """The simulator's tokenizer: one token per four characters, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def models_body(provider: str) -> dict[str, Any]:
    """The ``GET …/models`` listing of a provider: every model name the simulator knows."""
    if provider == "anthropic":
        names = sorted({v for k, v in MODEL_SNAPSHOTS.items() if k.startswith("claude")}, reverse=True)
        data = [
            {
                "type": "model",
                "id": name,
                "display_name": _ANTHROPIC_DISPLAY.get(name, name),
                "created_at": f"{name[-8:-4]}-{name[-4:-2]}-{name[-2:]}T00:00:00Z",
                "lifecycle": "active",
            }
            for name in names
        ]
        return {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
    names = sorted({*(k for k in MODEL_SNAPSHOTS if not k.startswith("claude")), *(v for k, v in MODEL_SNAPSHOTS.items() if not k.startswith("claude")), *_EMBEDDING_MODELS})
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"} for name in names]}
