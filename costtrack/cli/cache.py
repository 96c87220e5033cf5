"""`costtrack cache`: manage the shared (Redis) response cache."""

from __future__ import annotations

import os
from typing import Optional

import typer

from . import _common

__all__ = ["app"]

app = typer.Typer(
    help="Manage the Redis response cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_URL_HELP = "Redis URL (default: $COSTTRACK_REDIS_URL, else redis://127.0.0.1:6379/0)."


@app.callback()
def _group() -> None:
    """Manage the Redis response cache."""


@app.command("clear")
def clear(
    namespace: Optional[str] = typer.Option(
        None, "--namespace", "-n", help="Delete only this namespace's entries (default: every costtrack entry)."
    ),
    redis_url: Optional[str] = typer.Option(None, "--redis-url", help=_URL_HELP),
    prefix: str = typer.Option("costtrack:cache", "--prefix", help="Key prefix the cache was created with."),
) -> None:
    """Delete cached responses from Redis: one namespace, or all of them."""
    from ..cache import DEFAULT_REDIS_URL, CacheError, RedisCache

    url = redis_url or os.environ.get("COSTTRACK_REDIS_URL") or DEFAULT_REDIS_URL
    try:
        cache = RedisCache(url, namespace=namespace or "default", prefix=prefix, timeout=2.0)
        deleted = cache.clear(namespace)
    except CacheError as exc:
        _common.fail(str(exc))
    except ImportError:
        _common.fail("the redis package is not installed: pip install 'costtrack[redis]'")
    scope = f"namespace {namespace!r}" if namespace else "every namespace"
    typer.echo(f"deleted {deleted} cached response{'s' if deleted != 1 else ''} ({scope}) from {_safe(url)}")


def _safe(url: str) -> str:
    from ..cache import redact_url

    return redact_url(url)
