"""Facts about models: the cheaper model of each family, the shortest cacheable prompt, the provider by name."""

from __future__ import annotations

import re

__all__ = ["CHEAPER_MODELS", "cheaper_model", "min_cacheable_tokens", "provider_of"]

#: A cheaper model of the same family for each expensive one (matched on the requested model, date suffix ignored).
CHEAPER_MODELS: dict[str, str] = {
    "gpt-4o": "gpt-4o-mini",
    "chatgpt-4o": "gpt-4o-mini",
    "gpt-4-turbo": "gpt-4o-mini",
    "gpt-4": "gpt-4o-mini",
    "gpt-4.1": "gpt-4.1-mini",
    "gpt-5": "gpt-5-mini",
    "gpt-5.1": "gpt-5-mini",
    "o1": "o4-mini",
    "o3": "o4-mini",
    "claude-opus-4-5": "claude-sonnet-4-5",
    "claude-opus-4-1": "claude-sonnet-4-5",
    "claude-opus-4": "claude-sonnet-4-5",
    "claude-3-opus": "claude-sonnet-4-5",
    "claude-sonnet-4-5": "claude-haiku-4-5",
    "claude-sonnet-4": "claude-haiku-4-5",
    "claude-3-7-sonnet": "claude-haiku-4-5",
    "claude-3-5-sonnet": "claude-haiku-4-5",
    "gemini-2.5-pro": "gemini-2.5-flash",
}

_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest|preview)$")


def min_cacheable_tokens(model: str) -> int:
    """The shortest prefix a provider caches for `model` (OpenAI and most Claude models: 1,024 tokens)."""
    name = model.lower()
    if any(k in name for k in ("haiku-4-5", "opus-4-5", "opus-4-6")):
        return 4096
    if "haiku" in name:
        return 2048
    return 1024


def _family(model: str) -> str:
    name = model.lower().split("/")[-1]
    while True:
        stripped = _DATE_SUFFIX.sub("", name)
        if stripped == name:
            return name
        name = stripped


def cheaper_model(model: str) -> str | None:
    """The cheaper counterpart of `model` in CHEAPER_MODELS, if any."""
    return CHEAPER_MODELS.get(_family(model))


def provider_of(model: str) -> str | None:
    """The provider a model's name belongs to (openai, anthropic), when the name says."""
    name = model.lower()
    if name.startswith(("gpt", "o1", "o3", "o4", "chatgpt", "text-embedding")):
        return "openai"
    if name.startswith("claude"):
        return "anthropic"
    return None
