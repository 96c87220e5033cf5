"""Per-provider knowledge: which requests are instrumented and how usage is read from their bodies."""

from __future__ import annotations

from .base import BodyParser, StreamReader, operation_for_path

__all__ = ["BodyParser", "StreamReader", "operation_for_path", "parser_for"]


_PARSERS: dict[tuple[str, str], BodyParser] = {}


def parser_for(api: str, operation: str) -> BodyParser:
    """The parser for one API family ("openai" or "anthropic") and operation."""
    parser = _PARSERS.get((api, operation))
    if parser is None:
        # Imported on first use: an app that only calls one provider never loads the other's parser.
        if api == "anthropic":
            from .anthropic import PARSERS
        else:
            from .openai import PARSERS
        parser = _PARSERS[(api, operation)] = PARSERS[operation]
    return parser
