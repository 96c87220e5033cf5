"""`costtrack prices`: the rates used for a model, and the cost of one call."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import ConfigError
from ..periods import parse_instant
from ..pricing import HALVED, KNOWN_TIERS, PriceBook, Rates, cost_breakdown, priced_tier
from ..providers.base import MAX_COUNT  # past any real count: a cost past a float's range printed Infinity
from ..usage import Usage
from . import _common

app = typer.Typer(help="Model prices: show the rates used for a model, or price one call.", no_args_is_help=True)

ProviderOption = Annotated[
    Optional[str],
    typer.Option("--provider", "-p", help="openai, anthropic, azure, ollama, vllm, llamacpp, openai-compatible..."),
]
AtOption = Annotated[
    Optional[str],
    typer.Option("--at", help="Prices in force at this date or time (UTC), e.g. 2025-06-01. Default: now."),
]
PricesFileOption = Annotated[
    Optional[Path],
    typer.Option("--prices-file", help="TOML price overrides (default: $COSTTRACK_PRICES_FILE).", dir_okay=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]

_BUCKETS = (
    ("input", "input (uncached)"),
    ("cached_input", "cached input (cache read)"),
    ("cache_write", "cache write, 5 minutes"),
    ("cache_write_1h", "cache write, 1 hour"),
    ("output", "output (reasoning included)"),
)
#: Rows shown only for a model with its own audio rates.
_AUDIO_BUCKETS = (("input_audio", "audio input"), ("output_audio", "audio output"))
_ZERO = Decimal(0)


def _parse_at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    try:
        return parse_instant(value, "--at")
    except ConfigError as exc:
        _common.fail(str(exc))


def _lookup(book: PriceBook, provider: str | None, model: str, at: datetime) -> tuple[Rates, str | None]:
    """The rates for MODEL, and the provider they are for (the prices file's, when -p was not given)."""
    _common.check_provider(book, provider, model)
    rates = book.rates(provider, model, at)
    if rates is None:
        scope = f" for provider {provider!r}" if provider else ""
        others = [p for p in book.file_providers(model) if p is not None and p != (provider or "").strip().lower()]
        if others:
            if len(others) == 1:
                which = f"provider {others[0]!r}: use -p {others[0]}"
            else:
                which = f"providers {', '.join(map(repr, others))}: choose one with -p (e.g. -p {others[0]})"
            _common.fail(f"no price for model {model!r}{scope}: the prices file {book.prices_file} has it for {which}")
        if book.file_providers(model) and book.rates(provider, model, datetime.max.replace(tzinfo=timezone.utc)):
            _common.fail(f"no price for model {model!r}{scope} at {at:%Y-%m-%d}: its entries in the prices file "
                         f"{book.prices_file} start later (since = ...); give a later --at or an entry without since")  # fmt: skip
        _common.fail(
            f"no price for model {model!r}{scope}: check the name (try --provider), "
            f"or add it to a prices file (--prices-file or $COSTTRACK_PRICES_FILE)"
        )
    if provider is None:
        provider = book.file_provider(rates)  # the file's only entry for the model, under its provider
        own = [p for p in book.file_providers(model) if p is not None and p != provider]
        if own:  # these prices are for any provider; calls through these get their own entries
            typer.echo(f"note: the prices file also prices {model} for {', '.join(own)}: calls through "
                       f"{'it' if len(own) == 1 else 'them'} get that entry (see -p {own[0]})", err=True)
    return rates, provider


def _num(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _plain(value: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: 0.000150, 1.200006."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _rates_json(rates: Rates) -> dict[str, Any]:
    return {
        "input": _num(rates.input),
        "cached_input": _num(rates.cached_input),
        "cache_write": _num(rates.cache_write),
        "cache_write_1h": _num(rates.cache_write_1h),
        "output": _num(rates.output),
        "input_audio": _num(rates.input_audio),
        "output_audio": _num(rates.output_audio),
        "web_search_per_1k": _num(rates.web_search),
    }


@app.command("show")
def show(
    model: Annotated[str, typer.Argument(help="Model name as sent to or returned by the provider.")],
    provider: ProviderOption = None,
    at: AtOption = None,
    prices_file: PricesFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the rates (USD per 1M tokens) used for MODEL, its long-context tiers, and their source."""
    when = _parse_at(at)
    book = PriceBook(prices_file)
    rates, for_provider = _lookup(book, provider, model, when)
    inferred = for_provider if provider is None and for_provider else None
    if as_json:
        data: dict[str, Any] = {
            "model": model,
            "provider": for_provider,
            "at": when.isoformat(),
            "source": rates.source,
            "valid_from": rates.valid_from.isoformat() if rates.valid_from else None,
            "unit": "USD per 1M tokens",
        }
        if rates.per_hour is not None:
            data["per_hour"] = float(rates.per_hour)
        else:
            data["rates"] = _rates_json(rates)
            data["effective_rates"] = {k: float(v) for k, v in rates.effective().items()}
            data["tiers"] = [
                {"above_input_tokens": tier.threshold, "rates": _rates_json(tier.rates)} for tier in rates.tiers
            ]
        _common.print_json(data)
        return

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(emoji=False)  # model names are printed as they are (`gpt-oss-20b:free`, `[1m]`): no emoji, no markup
    if rates.per_hour is not None:
        console.print(f"{escape(model)}: self-hosted, ${_plain(rates.per_hour)} per hour (no per-token price)")
        console.print(f"source: {escape(rates.source)}", highlight=False)
        if inferred:
            console.print(_inferred_line(inferred), highlight=False)
        return
    table = Table(title=f"{escape(model)}: USD per 1M tokens at {when:%Y-%m-%d}", title_justify="left")
    table.add_column("bucket")
    table.add_column("rate", justify="right")
    for tier in rates.tiers:
        table.add_column(f"input > {tier.threshold:,}", justify="right")
    own = _rates_json(rates)
    for key, label in _BUCKETS:
        cells = [_cell(rates, key, own[key] is None)]
        cells += [_cell(tier.rates, key, getattr(tier.rates, key) is None) for tier in rates.tiers]
        table.add_row(label, *cells)
    for key, label in _AUDIO_BUCKETS:
        if getattr(rates, key) is not None:  # else billed as text: the rows above
            table.add_row(label, *(_plain(getattr(r, key) or _ZERO) for r in (rates, *(t.rates for t in rates.tiers))))
    console.print(table)
    if rates.web_search is not None:
        console.print(f"web search: ${_plain(rates.web_search)} per 1,000 searches", highlight=False)
    if rates.valid_from:
        console.print(f"in force since {rates.valid_from.isoformat()}", highlight=False)
    console.print(f"source: {escape(rates.source)}", highlight=False)
    if inferred:
        console.print(_inferred_line(inferred), highlight=False)


def _inferred_line(provider: str) -> str:
    return f"provider: {provider} (the prices file's entry for this model; no -p given)"


def _cell(rates: Rates, key: str, is_fallback: bool) -> str:
    value = _plain(rates.effective()[key])
    if not is_fallback:
        return value
    return f"{value} (2x input)" if key == "cache_write_1h" else f"{value} (= input)"


@app.command("cost")
def cost(
    model: Annotated[str, typer.Argument(help="Model name as sent to or returned by the provider.")],
    input_tokens: Annotated[
        int, typer.Option("--input-tokens", min=0, max=MAX_COUNT, help="All input tokens, cached and cache-write tokens included.")
    ],
    output_tokens: Annotated[
        int, typer.Option("--output-tokens", min=0, max=MAX_COUNT, help="All output tokens, reasoning included.")
    ],
    cached_tokens: Annotated[int, typer.Option("--cached-tokens", min=0, max=MAX_COUNT, help="Input tokens read from cache.")] = 0,
    cache_write_tokens: Annotated[
        Optional[int], typer.Option("--cache-write-tokens", min=0, max=MAX_COUNT, help="Input tokens written to cache (5m and 1h).")
    ] = None,
    cache_write_1h_tokens: Annotated[
        int, typer.Option("--cache-write-1h-tokens", min=0, max=MAX_COUNT, help="The part of the cache writes with a 1-hour TTL.")
    ] = 0,
    reasoning_tokens: Annotated[
        int, typer.Option("--reasoning-tokens", min=0, max=MAX_COUNT, help="The part of the output spent on reasoning.")
    ] = 0,
    audio_input_tokens: Annotated[
        int, typer.Option("--audio-input-tokens", min=0, max=MAX_COUNT, help="The part of the uncached input that is audio.")
    ] = 0,
    audio_output_tokens: Annotated[
        int, typer.Option("--audio-output-tokens", min=0, max=MAX_COUNT, help="The part of the output that is audio.")
    ] = 0,
    web_searches: Annotated[
        int, typer.Option("--web-searches", min=0, max=MAX_COUNT, help="Server-side web searches the call ran.")
    ] = 0,
    batch: Annotated[
        bool, typer.Option("--batch", help="Batch API: the catalog's Batch rates, else 50% of the standard rates.")
    ] = False,
    service_tier: Annotated[
        Optional[str], typer.Option("--service-tier", help="Served at this tier (OpenAI's flex, priority): its rates where the catalog has them.")
    ] = None,
    provider: ProviderOption = None,
    at: AtOption = None,
    prices_file: PricesFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Price one call of MODEL with the record's token semantics."""
    writes = cache_write_1h_tokens if cache_write_tokens is None else cache_write_tokens
    if cache_write_1h_tokens > writes:
        _common.fail(
            f"--cache-write-1h-tokens {cache_write_1h_tokens} is more than --cache-write-tokens {writes}: "
            "1-hour writes are part of the cache writes"
        )
    if cached_tokens + writes > input_tokens:
        _common.fail(
            f"--cached-tokens {cached_tokens} + cache writes {writes} is more than --input-tokens {input_tokens}: "
            "input tokens include cached and cache-write tokens"
        )
    if reasoning_tokens > output_tokens:
        _common.fail(
            f"--reasoning-tokens {reasoning_tokens} is more than --output-tokens {output_tokens}: "
            "output tokens include reasoning tokens"
        )
    if audio_input_tokens > input_tokens - cached_tokens - writes:
        _common.fail(
            f"--audio-input-tokens {audio_input_tokens} is more than the uncached input "
            f"({input_tokens - cached_tokens - writes}): audio input tokens are part of --input-tokens"
        )
    if audio_output_tokens > output_tokens:
        _common.fail(
            f"--audio-output-tokens {audio_output_tokens} is more than --output-tokens {output_tokens}: "
            "output tokens include audio tokens"
        )
    when = _parse_at(at)
    book = PriceBook(prices_file)
    rates, for_provider = _lookup(book, provider, model, when)
    if rates.per_hour is not None:
        _common.fail(
            f"{model} is priced per hour (${_plain(rates.per_hour)}/h, {rates.source}), not per token: "
            "a single call has no price"
        )
    usage = Usage(
        input=input_tokens, output=output_tokens, cached_input=cached_tokens, cache_write=writes,
        cache_write_1h=cache_write_1h_tokens, reasoning=reasoning_tokens, audio_input=audio_input_tokens,
        audio_output=audio_output_tokens, web_searches=web_searches,
    )  # fmt: skip
    halve = False
    if batch and service_tier is not None:
        _common.fail("--batch and --service-tier do not go together: a batch is priced at the Batch API's own rates")
    if service_tier is not None and service_tier.strip().lower() == "batch":
        _common.fail("--service-tier batch: the Batch API is priced with --batch (its own rates), not as a tier")
    if service_tier is not None and service_tier.strip().lower() not in KNOWN_TIERS:
        _common.fail(f"--service-tier {service_tier!r} is not a service tier: use flex, priority or scale (OpenAI), "
                     "fast (Anthropic), or leave it out for the standard rates")  # fmt: skip
    if batch or service_tier is not None:
        rates, halve = book.priced_as(provider, model, when, batch=batch, tier=service_tier)  # type: ignore[assignment]
        assert rates is not None  # _lookup found the model
        tier = priced_tier(service_tier)
        if tier is not None and not rates.source.endswith(f"({tier})"):
            # As a recorded call is priced, but said: a misspelt tier would otherwise pass for the standard price.
            typer.echo(f"note: the catalog has no {tier!r} rates for {model} on {when:%Y-%m-%d}: "
                       "priced at the standard ones", err=True)  # fmt: skip
    total = book.cost_of(rates, usage, batch=halve)
    if as_json:
        _common.print_json({
            "cost_usd": float(total),
            "cost_usd_exact": _plain(total),
            "price_source": rates.source + (HALVED if halve else ""),
            "model": model,
            "provider": for_provider,
            "at": when.isoformat(),
            "batch": batch,
            "service_tier": service_tier,
            "usage": {
                "input": usage.input, "cached_input": usage.cached_input, "cache_write": usage.cache_write,
                "cache_write_1h": usage.cache_write_1h, "output": usage.output, "reasoning": usage.reasoning,
                "audio_input": usage.audio_input, "audio_output": usage.audio_output, "web_searches": usage.web_searches,
            },
            "breakdown_usd": {k: float(v) for k, v in cost_breakdown(rates, usage, batch=halve).items()},
        })  # fmt: skip
        return
    typer.echo(f"${_plain(total)}{'  (batch: 50%)' if halve else ''}")
    typer.echo(f"source: {rates.source}")
    if provider is None and for_provider:
        typer.echo(_inferred_line(for_provider))
