"""Per-provider knowledge: which requests are instrumented and how usage is read from their bodies."""

from __future__ import annotations

from .base import BodyParser, StreamReader, operation_for_path

__all__ = ["BodyParser", "StreamReader", "operation_for_path", "parser_for"]


def parser_for(api: str, operation: str) -> BodyParser:
    """The parser for one API family ("openai" or "anthropic") and operation."""
    if api == "anthropic":
        from . import anthropic

        return anthropic.PARSERS[operation]
    from . import openai

    return openai.PARSERS[operation]
