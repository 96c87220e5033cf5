"""Prices: the rates in force for a model at a call's timestamp, and the exact cost of its usage.

The catalog is genai-prices' bundled data, read through a private snapshot
(never the network, never the process-global snapshot another library may
auto-update), plus an optional TOML overrides file that wins over it:

    [models."my-model"]
    provider = "openai"      # optional; when absent the entry matches any provider
    input = 0.5              # USD per 1M tokens
    output = 1.5
    cached_input = 0.05      # optional (default: the input rate)
    cache_write = 0.6        # optional, 5-minute writes (default: the input rate)
    cache_write_1h = 1.0     # optional, 1-hour writes (default: 2x the input rate)
    input_audio = 40         # optional, audio input and output tokens (default: the text rates)
    output_audio = 80
    web_search = 10          # optional, USD per 1,000 server-side web searches (default: none billed)

    [models."llama3.1:8b"]   # self-hosted, priced per hour: calls are recorded
    per_hour = 0.8           # unpriced, the rate feeds the API-vs-self-hosted calculator

Model names are matched exactly first (the catalog's own aliases, e.g.
`gpt-4o-2024-05-13` is its own $5/$15 entry), then normalised: a `provider/`
prefix, a `[1m]` suffix, Vertex `@date` and Bedrock `anthropic.…-v1:0` forms;
last, a dated snapshot the catalog does not know falls back to its undated
model, and the price source says so. With no provider, an `openai/` or
`anthropic/` prefix resolves to that provider's own entry when it lists the
name (`openai/o3` is OpenAI's o3 with its price history, not OpenRouter's
listing), and a prices-file model listed under a single provider is found.
Self-hosted providers (ollama, vllm, llamacpp, openai-compatible) look up the
overrides file, then the catalog only under a model's exact id or alias, as
listed by the provider the name belongs to or by OpenAI or Anthropic
(`gpt-4o-mini` and `text-embedding-3-small` through a local proxy are priced as
OpenAI's; not `gpt-oss-20b`, open weights run on the app's own machines):
`llama3.1:8b` or `deepseek-r1:8b` on a local server is unpriced
(NULL, one warning), never $0 and never an API's price.

Costs are computed in Decimal, each token bucket at its own rate, and converted
to float once. `PriceBook.cost()` is on the hot path of every call: model
resolution is cached per (provider, model) and the Rates of every price period
are built once, so a repeated model costs a few microseconds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .catalog_fixes import amended
from .errors import PricesFileError
from .forks import renew_locks_in_child, renews_in_child
from .logs import log, log_once
from .usage import Usage

if TYPE_CHECKING:  # genai-prices takes ~0.2 s to import: loaded on the first catalog lookup
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, ModelPrice, Provider

__all__ = [
    "ENV_PRICES_FILE",
    "SELF_HOSTED_PROVIDERS",
    "Price",
    "PriceBook",
    "Rates",
    "Tier",
    "cost_breakdown",
    "default_pricebook",
]

ENV_PRICES_FILE = "COSTTRACK_PRICES_FILE"
SELF_HOSTED_PROVIDERS = frozenset({"ollama", "vllm", "llamacpp", "openai-compatible"})
_FIRST_PARTY = ("openai", "anthropic")  # their exact model ids are priced whatever the provider serving them
# ...but for the models they publish the weights of, which a self-hosted server runs on the app's own machines.
_OPEN_WEIGHTS = ("gpt-oss",)

#: Service tiers billed at the standard rates (OpenAI's "default"/"auto", Anthropic's "standard"); a batch is priced
#: by its own flag, not as a tier.
_STANDARD_TIERS = frozenset({"default", "auto", "standard", "batch"})


#: Every service tier a provider answers with: the standard ones, OpenAI's flex, scale and priority, Anthropic's fast
#: mode (its Priority Tier is billed at the standard rates).
KNOWN_TIERS = _STANDARD_TIERS | {"flex", "scale", "priority", "fast"}


def priced_tier(tier: str | None) -> str | None:
    """The service tier a call is priced at, as the catalog names it: None for the standard one."""
    return None if tier is None or tier.strip().lower() in _STANDARD_TIERS else tier.strip().lower()


#: What a batch call's price_source ends with when it is priced at half the standard rates (no Batch table for it).
HALVED = " (batch 50%)"
_MTOK = Decimal(1_000_000)
# Batch API: 50% of the standard rates (OpenAI and Anthropic), where the catalog has no Batch rates.
_HALF = Decimal("0.5")
_TWO = Decimal(2)
_THOUSAND = Decimal(1000)
_ZERO = Decimal(0)
_UTC = timezone.utc


def _aware(at: datetime) -> datetime:
    """`at` with a time zone: a naive datetime is UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=_UTC)


def _utc_day(at: datetime) -> date:
    """The UTC calendar day of `at` (naive: UTC already); prices change at UTC midnight."""
    tz = at.tzinfo
    return at.date() if tz is None or tz is _UTC else at.astimezone(_UTC).date()


# --------------------------------------------------------------------------- rates


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per 1M tokens for each token bucket; None = the price sheet has no rate for it.

    A bucket without its own rate is billed at: cached input → the input rate;
    5-minute cache writes → the input rate; 1-hour cache writes → 2x the input
    rate (Anthropic's 1-hour multiplier; never the 5-minute rate). `per_hour`
    marks a self-hosted model priced per hour (overrides file only): such a
    model has no per-token price. `tiers` are long-context tiers, ascending:
    when a call's total input (cache reads and writes included) is strictly
    above a tier's threshold, that tier's rates apply to every bucket.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    per_hour: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    source: str = ""
    valid_from: date | None = None  # start of this price period, when the catalog dates it
    # Audio input and output tokens (None: billed as text), and USD per 1,000 server-side web searches (None: no fee known).
    input_audio: Decimal | None = None
    output_audio: Decimal | None = None
    web_search: Decimal | None = None

    def for_input(self, input_tokens: int) -> Rates:
        """The rates that apply to a call with `input_tokens` total input tokens (its tier, if any)."""
        for tier in reversed(self.tiers):
            if input_tokens > tier.threshold:
                return tier.rates
        return self

    def effective(self) -> dict[str, Decimal]:
        """The rate each bucket is billed at, fallbacks applied (USD per 1M tokens), and `web_search_per_1k` (USD per
        1,000 searches) when the model has a search fee."""
        rates = {
            "input": self.input,
            "cached_input": self.input if self.cached_input is None else self.cached_input,
            "cache_write": self.input if self.cache_write is None else self.cache_write,
            "cache_write_1h": self.input * _TWO if self.cache_write_1h is None else self.cache_write_1h,
            "output": self.output,
            "input_audio": self.input if self.input_audio is None else self.input_audio,
            "output_audio": self.output if self.output_audio is None else self.output_audio,
        }
        if self.web_search is not None:
            rates["web_search_per_1k"] = self.web_search
        return rates


class Tier(NamedTuple):
    """A long-context tier: `rates` apply when total input tokens are strictly above `threshold`."""

    threshold: int
    rates: Rates


class Price(NamedTuple):
    """A call's cost in USD (None = unpriced) and where the rates came from."""

    cost_usd: float | None
    price_source: str | None


_new_tuple = tuple.__new__


def _bucket_terms(rates: Rates, usage: Usage) -> tuple[tuple[str, int, Decimal], ...]:
    """(bucket, tokens, USD per 1M) for each token bucket of `usage`, at the tier its input reaches."""
    r = rates.for_input(usage.input) if rates.tiers else rates
    audio_in, audio_out = _audio_parts(r, usage)
    terms = (
        ("input", usage.uncached_input - audio_in, r.input),
        ("cached_input", usage.cached_input, r.input if r.cached_input is None else r.cached_input),
        ("cache_write", usage.cache_write_5m, r.input if r.cache_write is None else r.cache_write),
        ("cache_write_1h", usage.cache_write_1h, r.input * _TWO if r.cache_write_1h is None else r.cache_write_1h),
        ("output", usage.output - audio_out, r.output),
    )
    if audio_in:
        terms += (("input_audio", audio_in, r.input_audio),)  # type: ignore[assignment]
    if audio_out:
        terms += (("output_audio", audio_out, r.output_audio),)  # type: ignore[assignment]
    return terms


def _audio_parts(rates: Rates, usage: Usage) -> tuple[int, int]:
    """The audio input (of the uncached input) and audio output tokens billed at audio rates: 0 without such a rate."""
    audio_in = min(usage.audio_input, usage.uncached_input) if rates.input_audio is not None else 0
    audio_out = min(usage.audio_output, usage.output) if rates.output_audio is not None else 0
    return max(audio_in, 0), max(audio_out, 0)


def _search_fees(rates: Rates, usage: Usage) -> Decimal:
    """USD for the call's server-side web searches (per 1,000 searches; never halved by the Batch API)."""
    if not usage.web_searches or rates.web_search is None:
        return _ZERO
    return usage.web_searches * rates.web_search / _THOUSAND


def cost_breakdown(rates: Rates, usage: Usage, *, batch: bool = False) -> dict[str, Decimal]:
    """The exact USD cost of each token bucket (they sum to `PriceBook.cost_of`)."""
    _check_per_token(rates)
    factor = _HALF if batch else None
    out: dict[str, Decimal] = {}
    for bucket, tokens, rate in _bucket_terms(rates, usage):
        value = tokens * rate / _MTOK
        out[bucket] = value * factor if factor is not None else value
    fees = _search_fees(rates.for_input(usage.input) if rates.tiers else rates, usage)
    if fees:
        out["web_search"] = fees
    return out


def _check_per_token(rates: Rates) -> None:
    if rates.per_hour is not None:
        raise ValueError(f"{rates.source or 'these rates'} are per hour (${rates.per_hour}/h), not per token")


def _cost_of(rates: Rates, usage: Usage, batch: bool) -> Decimal:
    # The hot path: written out rather than via _bucket_terms, and skipping empty buckets.
    total_input = usage.input
    if rates.tiers:
        rates = rates.for_input(total_input)
    rate_in = rates.input
    cached = usage.cached_input
    writes = usage.cache_write
    writes_1h = usage.cache_write_1h
    uncached = total_input - cached - writes
    acc = uncached * rate_in if uncached > 0 else _ZERO
    if cached:
        rate = rates.cached_input
        acc += cached * (rate_in if rate is None else rate)
    if writes:
        writes_5m = writes - writes_1h
        if writes_5m > 0:
            rate = rates.cache_write
            acc += writes_5m * (rate_in if rate is None else rate)
        if writes_1h > 0:
            rate = rates.cache_write_1h
            acc += writes_1h * (rate_in * _TWO if rate is None else rate)
    if usage.output:
        acc += usage.output * rates.output
    if usage.audio_input or usage.audio_output:
        # Counted above at the text rates; the difference to their own rates, where the model has them.
        audio_in, audio_out = _audio_parts(rates, usage)
        if audio_in:
            acc += audio_in * (rates.input_audio - rate_in)  # type: ignore[operator]
        if audio_out:
            acc += audio_out * (rates.output_audio - rates.output)  # type: ignore[operator]
    acc /= _MTOK
    if batch:
        acc *= _HALF
    return acc + _search_fees(rates, usage) if usage.web_searches else acc


# --------------------------------------------------------------------------- overrides file

_PRICE_KEYS = ("input", "output", "cached_input", "cache_write", "cache_write_1h", "per_hour", "input_audio", "output_audio",
               "web_search")  # fmt: skip
_ENTRY_KEYS = frozenset({"provider", "model", "since", *_PRICE_KEYS})


class _Override(NamedTuple):
    name: str  # the name it matches (lower case)
    provider: str | None
    # Every entry of this model and provider, by start date (None: from the beginning), ascending: a price history.
    periods: tuple[tuple[date | None, Rates], ...]

    @property
    def rates(self) -> Rates:
        """The latest prices (the only ones, without `since`)."""
        return self.periods[-1][1]

    def entry(self) -> _Entry:
        """The resolved entry: fixed prices, or the history the call's date picks from."""
        if len(self.periods) == 1 and self.periods[0][0] is None:
            return _Entry(fixed=self.rates)
        return _Entry(periods=self.periods)

    @property
    def dated_only(self) -> bool:
        """Every entry has a `since`: before the first, these prices were not in force."""
        return self.periods[0][0] is not None


def _since(value: object, what: str) -> date | None:
    """An entry's `since`: a TOML date (since = 2025-09-01) or such a date as a string."""
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise PricesFileError(f"{what} must be the date these prices start, such as 2025-09-01, got {value!r}")


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise PricesFileError(
                f"prices file {path}: reading TOML on Python 3.10 needs the 'tomli' package: pip install tomli"
            ) from exc
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise PricesFileError(
            f"prices file {path} does not exist: create it, or point --prices-file / ${ENV_PRICES_FILE} at a TOML file"
        ) from None
    except IsADirectoryError:
        raise PricesFileError(f"prices file {path} is a directory: give the path of a TOML file") from None
    except OSError as exc:
        reason = exc.strerror or exc
        raise PricesFileError(f"prices file {path} cannot be read ({reason}): check its permissions") from None
    except UnicodeDecodeError:
        raise PricesFileError(f"prices file {path} is not UTF-8 text: save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        detail = " ".join(str(exc).split())
        raise PricesFileError(f"prices file {path} is not valid TOML ({detail}): fix the syntax") from None


def _parse_overrides(path: Path) -> tuple[dict[str, list[_Override]], str]:
    data = _load_toml(path)
    where = f"prices file {path}"
    for key in data:
        if key != "models":
            raise PricesFileError(
                f'{where}: unknown top-level key {key!r}: put each model in a [models."NAME"] table'
            )
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise PricesFileError(f'{where}: "models" must be a table: write [models."NAME"] sections')
    index: dict[str, list[_Override]] = {}
    for table_name, entry in models.items():
        here = f'{where}: [models."{table_name}"]'
        if not isinstance(entry, dict):
            raise PricesFileError(f"{here} must be a table of prices (input = ..., output = ...)")
        unknown = sorted(set(entry) - _ENTRY_KEYS)
        if unknown:
            allowed = ", ".join(sorted(_ENTRY_KEYS))
            raise PricesFileError(f"{here} has unknown key {unknown[0]!r}: allowed keys are {allowed}")
        provider = entry.get("provider")
        if provider is not None and (not isinstance(provider, str) or not provider.strip()):
            raise PricesFileError(f'{here}: provider must be a provider name such as "openai"')
        name = entry.get("model", table_name)
        if not isinstance(name, str) or not name.strip():
            raise PricesFileError(f"{here}: model must be the model name to match, as a string")
        prices: dict[str, Decimal] = {}
        for key in _PRICE_KEYS:
            if key in entry:
                prices[key] = _price_value(entry[key], f"{here} {key}")
        if "per_hour" in prices:
            extra = sorted(set(prices) - {"per_hour"})
            if extra:
                raise PricesFileError(
                    f"{here} has both per_hour and {extra[0]}: a model is priced either per hour or per token"
                )
        elif "input" not in prices or "output" not in prices:
            missing = "input" if "input" not in prices else "output"
            raise PricesFileError(
                f"{here} has no {missing} price: give input and output (USD per 1M tokens), or per_hour"
            )
        since = _since(entry.get("since"), f"{here} since")
        source = f"overrides:{path}:{table_name}"
        rates = Rates(
            input=prices.get("input", _ZERO),
            output=prices.get("output", _ZERO),
            cached_input=prices.get("cached_input"),
            cache_write=prices.get("cache_write"),
            cache_write_1h=prices.get("cache_write_1h"),
            per_hour=prices.get("per_hour"),
            source=source,
            valid_from=since,
            input_audio=prices.get("input_audio"),
            output_audio=prices.get("output_audio"),
            web_search=prices.get("web_search"),
        )
        key = name.strip().lower()
        prov = provider.strip().lower() if provider else None
        entries = index.setdefault(key, [])
        for i, other in enumerate(entries):
            if other.provider != prov:
                continue
            if any(start == since for start, _ in other.periods):
                scope = f"provider {prov!r}" if prov else "any provider"
                when = f" from {since.isoformat()}" if since else ""
                raise PricesFileError(f"{here}: model {name!r} is priced twice for {scope}{when}: keep one entry, "
                                      "or give each a different since = YYYY-MM-DD")  # fmt: skip
            # Another period of the same model's prices: a history, ordered by start (no start first).
            periods = tuple(sorted((*other.periods, (since, rates)), key=lambda p: (p[0] is not None, p[0] or date.min)))
            entries[i] = _Override(key, prov, periods)
            break
        else:
            entries.append(_Override(key, prov, ((since, rates),)))
    return index, str(path)


def _price_value(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PricesFileError(f"{what} must be a number of USD (e.g. 0.5), got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise PricesFileError(f"{what} must be a finite number of USD, got {value!r}")
    if value < 0:
        raise PricesFileError(f"{what} must not be negative, got {value!r}")
    return Decimal(str(value))  # str(): 0.15 stays exactly 0.15


# --------------------------------------------------------------------------- catalog (genai-prices)

_catalog_lock = threading.Lock()
_catalog: _Catalog | None = None


class _Catalog:
    """genai-prices' bundled data behind a private snapshot, with lookups cached."""

    def __init__(self) -> None:
        import genai_prices
        from genai_prices import data, types
        from genai_prices.data_snapshot import DataSnapshot, find_provider_by_id

        self.version: str = genai_prices.__version__
        self.types = types
        # Private: UpdatePrices() (started by another library) swaps only the global snapshot.
        providers, self.amended = amended(data.providers, types)
        self.snapshot: DataSnapshot = DataSnapshot(providers=providers, from_auto_update=False)
        self._find_provider_by_id = find_provider_by_id
        self._owners: dict[int, Provider] = {}
        for provider in self.snapshot.providers:
            for model in provider.models:
                self._owners.setdefault(id(model), provider)
        self._providers: dict[str, Provider | None] = {}
        self._exact: dict[str, ModelInfo] | None = None

    def provider(self, provider_id: str) -> Provider | None:
        try:
            return self._providers[provider_id]
        except KeyError:
            found = self._find_provider_by_id(self.snapshot.providers, provider_id)
            self._providers[provider_id] = found
            return found

    def source_of(self, price: ModelPrice, source: str) -> str:
        """`source` for rates read from `price`, saying so when costtrack corrected it."""
        return f"{source} (amended by costtrack)" if id(price) in self.amended else source

    def owner(self, model: ModelInfo) -> Provider | None:
        return self._owners.get(id(model))

    def find(self, name: str, provider_id: str, *, strict: bool) -> ModelInfo | None:
        """The catalog model for `name`: under `provider_id` when given, else by the name alone.

        `strict`: accept only a model whose id or an exact alias is `name`
        (no prefix/contains rules), for lookups not anchored to a provider:
        of the provider genai-prices attributes the name to, or of OpenAI's
        or Anthropic's catalog (genai-prices attributes `text-embedding-3-small`
        to no provider, yet it is an OpenAI id like `gpt-4o-mini`).
        """
        lname = name.lower()
        if provider_id:
            provider = self.provider(provider_id)
            if provider is not None:
                model = provider.find_model(lname, all_providers=self.snapshot.providers)
                if model is not None:
                    return model
            strict = True  # another provider's catalog: only under the model's exact name
        try:
            _, model = self.snapshot.find_provider_model(lname, None, None, None)
        except LookupError:
            model = None
        if model is not None and strict and not _is_exact_alias(model, lname):
            model = None
        if model is None:
            # No provider at all (e.g. the CLI): any provider's model listed under exactly this name;
            # strict: only OpenAI's or Anthropic's own (an exact id, chat or embedding alike).
            model = self._exact_index().get(lname)
            if model is not None and strict:
                owner = self.owner(model)
                if owner is None or owner.id not in _FIRST_PARTY:
                    model = None
        return model

    def find_own(self, name: str, provider_id: str) -> ModelInfo | None:
        """The model `provider_id`'s own catalog lists for `name` (its match rules), else None."""
        provider = self.provider(provider_id)
        if provider is None:
            return None
        return provider.find_model(name.lower(), all_providers=self.snapshot.providers)

    def _exact_index(self) -> dict[str, ModelInfo]:
        index = self._exact
        if index is None:
            index = {}
            first = _FIRST_PARTY
            ordered = sorted(self.snapshot.providers, key=lambda p: first.index(p.id) if p.id in first else len(first))
            for provider in ordered:
                for model in provider.models:
                    for alias in _exact_aliases(model):
                        index.setdefault(alias, model)
            self._exact = index
        return index


class _EmptyCatalog(_Catalog):
    """No catalog: every lookup misses (unpriced unless the prices file has the model)."""

    def __init__(self) -> None:
        self.version = "none"
        self.amended: set[int] = set()
        self._owners = {}
        self._providers = {}
        self._exact = {}

    def provider(self, provider_id: str) -> Provider | None:
        return None

    def find(self, name: str, provider_id: str, *, strict: bool) -> ModelInfo | None:
        return None

    def find_own(self, name: str, provider_id: str) -> ModelInfo | None:
        return None


def catalog_available() -> bool:
    """Whether the genai-prices catalog could be loaded (it needs Python 3.11+)."""
    return not isinstance(_get_catalog(), _EmptyCatalog)


def _get_catalog() -> _Catalog:
    global _catalog
    catalog = _catalog
    if catalog is None:
        with _catalog_lock:
            if _catalog is None:
                try:
                    _catalog = _Catalog()
                except ImportError:
                    # genai-prices needs Python 3.11+; on 3.10 only the prices file prices calls.
                    log.warning("costtrack: the price catalog (genai-prices) is not installed; "
                                "only models in the prices file (COSTTRACK_PRICES_FILE) are priced")
                    _catalog = _EmptyCatalog()
            catalog = _catalog
    return catalog


def _exact_aliases(model: ModelInfo) -> list[str]:
    """The model's id and the names its match rule lists verbatim (no prefix/contains rules)."""
    names = [model.id.lower()]
    stack: list[Any] = [model.match]
    while stack:
        clause = stack.pop()
        if hasattr(clause, "equals"):
            names.append(clause.equals.lower())
        elif hasattr(clause, "or_"):
            stack.extend(clause.or_)
    return names


def _is_exact_alias(model: ModelInfo, lname: str) -> bool:
    return lname in _exact_aliases(model)


def _decimal_at(value: Any, total_input: int) -> Decimal | None:
    """A genai-prices price value (Decimal or TieredPrices) for a call with `total_input` tokens."""
    if value is None or isinstance(value, Decimal):
        return value
    price = value.base  # TieredPrices: the highest tier whose start the total input strictly exceeds
    for tier in reversed(value.tiers):
        if total_input > tier.start:
            price = tier.price
            break
    return price


_TOKEN_PRICE_KEYS = {
    "input": ("input_mtok", "input_text_mtok"),
    "output": ("output_mtok", "output_text_mtok"),
    "cached_input": ("cache_read_mtok", "cache_text_read_mtok"),
    "cache_write": ("cache_write_5m_mtok", "cache_write_mtok", "cache_text_write_5m_mtok", "cache_text_write_mtok"),
    "cache_write_1h": ("cache_write_1h_mtok", "cache_text_write_1h_mtok"),
    "input_audio": ("input_audio_mtok",),
    "output_audio": ("output_audio_mtok",),
    "web_search": ("web_searches_kcount",),
}


class _NotTokenPriced(Exception):
    """The catalog prices this model in other units (audio hours, characters): not per token."""


def _rates_from_model_price(model_price: ModelPrice, source: str, valid_from: date | None) -> Rates:
    values = {k: v for k, v in model_price.__dict__.items() if not k.startswith("_") and v is not None}
    raw: dict[str, Any] = {}
    for bucket, keys in _TOKEN_PRICE_KEYS.items():
        raw[bucket] = next((values[k] for k in keys if k in values), None)
    if not values:  # listed with no price at all (moderation, ":free" models): free of charge
        return Rates(input=_ZERO, output=_ZERO, source=f"{source} (free)", valid_from=valid_from)
    if raw["input"] is None and raw["output"] is None:
        raise _NotTokenPriced(", ".join(sorted(values)))

    def at_level(total_input: int) -> Rates:
        dec = {bucket: _decimal_at(v, total_input) for bucket, v in raw.items()}
        return Rates(
            input=dec["input"] if dec["input"] is not None else _ZERO,
            output=dec["output"] if dec["output"] is not None else _ZERO,
            cached_input=dec["cached_input"],
            cache_write=dec["cache_write"],
            cache_write_1h=dec["cache_write_1h"],
            source=source,
            valid_from=valid_from,
            input_audio=dec["input_audio"],
            output_audio=dec["output_audio"],
            web_search=dec["web_search"],
        )

    tiered = [v for v in raw.values() if v is not None and not isinstance(v, Decimal)]
    thresholds = sorted({tier.start for v in tiered for tier in v.tiers})
    base = at_level(0)
    if not thresholds:
        return base
    tiers = tuple(Tier(t, at_level(t + 1)) for t in thresholds)
    return dataclasses.replace(base, tiers=tiers)


# --------------------------------------------------------------------------- resolved entries


class _Entry:
    """A resolved (provider, model): its Rates for any timestamp, built once per price period."""

    __slots__ = ("_by_price", "_by_variant", "before", "fixed", "model", "periods", "source", "variants")

    def __init__(self, fixed: Rates | None = None, periods: tuple[tuple[date | None, Rates], ...] | None = None,
                 model: ModelInfo | None = None, source: str = "", variants: ModelInfo | None = None) -> None:  # fmt: skip
        self.fixed = fixed
        self.periods = periods  # catalog order; None start = no constraint (always in force)
        self.model = model  # other constraints (time of day): genai-prices picks, cached per price object
        self.source = source
        self._by_price: dict[int, Rates] = {}
        # A catalog model with price variants (service tiers, the Batch API's own table): their rates, by (variant, day).
        self.variants = variants
        self._by_variant: dict[tuple[str, str, date], Rates | None] = {}
        # A prices-file history whose entries are all dated: what prices a call before the first (the entry or
        # catalog model it overrides; an _Unknown: nothing). None: the first period covers the time before it.
        self.before: _Entry | _Unknown | None = None

    def variant_rates_at(self, at: datetime, key: str, value: str) -> Rates | None:
        """The rates at `at` of the catalog's price variant `key`=`value` (service_tier=flex, processing=batch),
        None when the model has no such variant in force then."""
        model = self.variants
        if model is None:
            return None
        at = _aware(at)
        cache_key = (key, value, _utc_day(at))
        if cache_key in self._by_variant:
            return self._by_variant[cache_key]
        rates = None
        for variant in model.price_variants or ():
            if variant.when == {key: value} and (variant.constraint is None or variant.constraint.active(at)):
                # The variant's prices override the standard ones they name (genai-prices): a bucket it does not
                # name is billed at the standard rate (OpenAI's Batch table lists no cached-input rate for gpt-4o).
                standard = self.rates_at(at)
                assert standard is not None  # a catalog model always has rates
                rates = _rates_from_model_price(model.get_prices(at, {key: value}), f"{standard.source} ({value})", None)
                break
        self._by_variant[cache_key] = rates
        return rates

    def batch_rates_at(self, at: datetime) -> Rates | None:
        """The Batch API's rates at `at` from the catalog's Batch table: its rates when in force then; before the
        table's first date, the standard rates of then, each bucket scaled as the table scales it (a bucket the
        table leaves at its standard rate, or a price that changed since, keeps its place); None without a table."""
        rates = self.variant_rates_at(at, "processing", "batch")
        model = self.variants
        if rates is not None or model is None:
            return rates
        at = _aware(at)
        day = _utc_day(at)
        cache_key = ("processing", "batch before its table", day)
        if cache_key in self._by_variant:
            return self._by_variant[cache_key]
        starts = [v.constraint.start_date for v in model.price_variants or ()
                  if v.when == {"processing": "batch"} and isinstance(v.constraint, _start_date_constraint())]  # fmt: skip
        if starts and day < min(starts):
            first = datetime(*min(starts).timetuple()[:3], tzinfo=_UTC)
            table, then, now = self.variant_rates_at(first, "processing", "batch"), self.rates_at(first), self.rates_at(at)
            assert table is not None and then is not None and now is not None  # a catalog model always has rates
            rates = _scaled(now, table, then, f"{now.source} (batch)")
        self._by_variant[cache_key] = rates
        return rates

    def priced_as(self, at: datetime, tier: str | None, batch: bool) -> tuple[Rates | None, bool]:
        """(rates, whether the cost is still to be halved) for a call at `at` sent through the Batch API (the
        catalog's Batch rates when it has them in force then, else the standard ones halved) or served at service
        tier `tier` (its rates where the catalog has them, else the standard ones)."""
        before = self.before
        if before is not None and self._before_history(at):
            # Before a dated-only prices-file history: priced as what it overrides (a catalog model's Batch table too).
            return before.priced_as(at, tier, batch) if isinstance(before, _Entry) else (None, False)
        if batch:
            variant = self.batch_rates_at(at)
            return (variant, False) if variant is not None else (self.rates_at(at), True)
        variant = None
        if tier is not None:
            # OpenAI's tiers are service_tier variants in the catalog; Anthropic's fast mode is a speed one.
            variant = self.variant_rates_at(at, "service_tier", tier) or self.variant_rates_at(at, "speed", tier)
        return (variant if variant is not None else self.rates_at(at)), False

    def _before_history(self, at: datetime) -> bool:
        """Whether `at` comes before every dated period (so `before` prices it)."""
        periods = self.periods
        if periods is None:
            return False
        day = _utc_day(at)
        return all(start is not None and day < start for start, _ in periods)

    def rates_at(self, at: datetime) -> Rates | None:
        """The rates in force at `at` (None: none, before a dated-only prices-file history with nothing under it)."""
        fixed = self.fixed
        if fixed is not None:
            return fixed
        periods = self.periods
        if periods is not None:
            day = _utc_day(at)
            # genai-prices: the last price whose constraint holds wins; none holding → the first.
            for start, rates in reversed(periods):
                if start is None or day >= start:
                    return rates
            before = self.before
            if before is not None:
                return before.rates_at(at) if isinstance(before, _Entry) else None
            return periods[0][1]
        assert self.model is not None
        model_price = self.model.get_prices(_aware(at))
        rates = self._by_price.get(id(model_price))
        if rates is None:
            rates = _rates_from_model_price(model_price, self.source, None)
            self._by_price[id(model_price)] = rates
        return rates


def _start_date_constraint() -> type:
    return _get_catalog().types.StartDateConstraint  # type: ignore[no-any-return]


def _scaled(now: Rates, table: Rates, then: Rates, source: str) -> Rates:
    """`now`'s rates, each bucket times the ratio of `table` to `then` for that bucket (tiers alike)."""
    was, to = then.effective(), table.effective()
    ratio = {bucket: (to[bucket] / rate if rate else _HALF) for bucket, rate in was.items()}

    def scale(rates: Rates, tiers: tuple[Tier, ...]) -> Rates:
        eff = rates.effective()
        return Rates(input=eff["input"] * ratio["input"], output=eff["output"] * ratio["output"],
                     cached_input=eff["cached_input"] * ratio["cached_input"],
                     cache_write=eff["cache_write"] * ratio["cache_write"],
                     cache_write_1h=eff["cache_write_1h"] * ratio["cache_write_1h"],
                     tiers=tiers, source=source, valid_from=rates.valid_from,
                     input_audio=None if rates.input_audio is None else rates.input_audio * ratio["input"],
                     output_audio=None if rates.output_audio is None else rates.output_audio * ratio["output"],
                     web_search=rates.web_search)  # fmt: skip

    return scale(now, tuple(Tier(t.threshold, scale(t.rates, ())) for t in now.tiers))


def _halved(rates: Rates) -> Rates:
    """`rates` at the Batch API's 50% of every token rate, tiers alike (as `_cost_of` halves a batch call's tokens)."""

    def half(r: Rates, tiers: tuple[Tier, ...]) -> Rates:
        eff = r.effective()
        return dataclasses.replace(
            r, input=eff["input"] * _HALF, output=eff["output"] * _HALF, cached_input=eff["cached_input"] * _HALF,
            cache_write=eff["cache_write"] * _HALF, cache_write_1h=eff["cache_write_1h"] * _HALF, tiers=tiers,
            input_audio=None if r.input_audio is None else r.input_audio * _HALF,
            output_audio=None if r.output_audio is None else r.output_audio * _HALF, source=r.source + HALVED,
        )  # fmt: skip

    return half(rates, tuple(Tier(t.threshold, half(t.rates, ())) for t in rates.tiers))


class _Unknown(NamedTuple):
    reason: str


_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|20\d{6})$")
_BRACKET_SUFFIX = re.compile(r"\[[^\]]*\]$")
_BEDROCK = re.compile(r"^(?:[a-z]{2,6}\.)?anthropic\.(.+?)(?:-v\d+(?::\d+)?)?$")


def _candidates(model: str) -> list[tuple[str, str, bool]]:
    """(name, provider hint from a prefix, is a fallback to another model id), best first."""
    out: list[tuple[str, str, bool]] = []
    seen: set[str] = set()

    def add(name: str, hint: str = "", fallback: bool = False) -> None:
        name = name.strip()
        if name and name.lower() not in seen:
            seen.add(name.lower())
            out.append((name, hint, fallback))

    add(model)
    name, hint = model.strip(), ""
    name = _BRACKET_SUFFIX.sub("", name)  # claude-sonnet-4-5[1m]
    add(name)
    if "/" in name:  # openai/gpt-4o, openrouter/anthropic/claude-…
        head, _, name = name.rpartition("/")
        hint = head.split("/")[-1].lower()
        add(name, hint)
    if m := _BEDROCK.match(name.lower()):  # (us.)anthropic.claude-haiku-4-5-20251001-v1:0
        name, hint = m.group(1), hint or "anthropic"
        add(name, hint)
    if "@" in name:  # Vertex: claude-haiku-4-5@20251001
        base, _, version = name.partition("@")
        add(f"{base}-{version}", hint)
        add(base, hint)
        name = base
    base = _DATE_SUFFIX.sub("", name)  # an unknown dated snapshot: its undated model
    if base != name:
        add(base, hint, True)
    return out


# --------------------------------------------------------------------------- the price book


class PriceBook:
    """The catalog plus an overrides file; prices calls at the rates in force at their timestamp."""

    def __init__(self, prices_file: str | os.PathLike[str] | None = None, *, use_env: bool = True,
                 warn_unpriced: bool = True) -> None:  # fmt: skip
        # warn_unpriced=False: no "recorded unpriced" warning (re-pricing, which keeps what it cannot price, says so itself)
        self.warn_unpriced = warn_unpriced
        if prices_file is None and use_env:
            prices_file = os.environ.get(ENV_PRICES_FILE) or None
        self.prices_file: str | None = None
        self._overrides: dict[str, list[_Override]] = {}
        if prices_file is not None:
            path = Path(os.path.abspath(os.path.expanduser(os.fspath(prices_file))))
            self._overrides, self.prices_file = _parse_overrides(path)
        self._override_providers: dict[str, str | None] = {
            rates.source: o.provider for entries in self._overrides.values() for o in entries for _, rates in o.periods
        }
        self._entries: dict[tuple[str | None, str], _Entry | _Unknown] = {}
        self._warned: set[tuple[str | None, str | None]] = set()
        self._warned_tiers: set[tuple[str | None, str, str]] = set()
        #: Why this book prices nothing (the prices file named by the environment cannot be read), or None.
        self.unreadable: str | None = None
        self._lock = threading.Lock()
        renew_locks_in_child(self)

    @classmethod
    def without_prices(cls, reason: str) -> PriceBook:
        """A book that prices nothing, for a prices file the environment names but that cannot be read (`reason`):
        calls are recorded unpriced (cost NULL), never at catalog prices the file may have meant to replace, so that
        `costtrack reprice` prices them once it is fixed."""
        book = cls(use_env=False)
        book.unreadable = reason
        return book

    def _renew_locks(self) -> None:
        self._lock = threading.Lock()

    # -- public API

    def rates(self, provider: str | None, model: str, at: datetime) -> Rates | None:
        """The rates for `model` at `at` (a per-hour model has `per_hour` set), or None if unknown."""
        entry = self._entries.get((provider, model))
        if entry is None:
            entry = self._resolve(provider, model)
        if isinstance(entry, _Unknown):
            return None
        return entry.rates_at(at)

    def batch_rates(self, provider: str | None, model: str, at: datetime) -> Rates | None:
        """The rates a call sent through the Batch API at `at` is billed at: the catalog's Batch table where it has one,
        else the standard rates halved (search fees as they are); None when the model is unknown."""
        rates, halve = self.priced_as(provider, model, at, batch=True)
        return _halved(rates) if halve and rates is not None and rates.per_hour is None else rates

    def priced_as(self, provider: str | None, model: str, at: datetime, *, batch: bool = False,
                  tier: str | None = None) -> tuple[Rates | None, bool]:  # fmt: skip
        """The rates of a call sent through the Batch API (`batch`) or served at service tier `tier`, and whether
        its cost is still to be halved: the Batch API's 50%, where the catalog has no Batch rates of its own."""
        entry = self._entries.get((provider, model))
        if entry is None:
            entry = self._resolve(provider, model)
        if isinstance(entry, _Unknown):
            return None, False
        return entry.priced_as(at, priced_tier(tier), batch)

    def cost(self, provider: str | None, model: str | None, usage: Usage, at: datetime, *,
             batch: bool = False, tier: str | None = None, warn: bool = True) -> Price:  # fmt: skip
        """The USD cost of one call, or Price(None, …) when it cannot be priced per token.

        `tier`: the service tier the answer says it was served at (OpenAI's `flex`, `priority`...), priced at the
        catalog's rates for that tier where it has them (else standard, with a warning unless `warn` is False);
        None is the standard tier.
        """
        if not model:
            self._warn_unpriced(provider, model, "the call has no model name")
            return Price(None, None)
        if tier is not None:
            tier = priced_tier(tier)
        entry = self._entries.get((provider, model))
        if entry is None:
            entry = self._resolve(provider, model)
        if isinstance(entry, _Unknown):
            self._warn_unpriced(provider, model, entry.reason)
            return Price(None, None)
        if tier is None and not batch:
            rates = entry.rates_at(at)
        else:
            rates, halve = entry.priced_as(at, tier, batch)
            if tier is not None and warn and not batch and rates is not None and not rates.source.endswith(f"({tier})"):
                self._warn_tier(provider, model, tier)
            batch = halve
        if rates is None:
            self._warn_unpriced(provider, model, "its prices-file entries start after the call")
            return Price(None, None)
        if rates.per_hour is not None:
            return Price(None, rates.source)
        source = rates.source if not batch else rates.source + HALVED
        # tuple.__new__: a NamedTuple's own __new__ is Python code, slower than the sum above
        return _new_tuple(Price, (float(_cost_of(rates, usage, batch)), source))

    def file_provider(self, rates: Rates) -> str | None:
        """The provider a prices-file entry is restricted to, for `rates` read from it (else None)."""
        return self._override_providers.get(rates.source)

    def providers(self) -> list[str]:
        """Every provider a price can be looked up under: the catalog's, the prices file's, the self-hosted kinds and
        the others `wrap` records (azure), sorted."""
        names = {p.id for p in _get_catalog().snapshot.providers} | set(SELF_HOSTED_PROVIDERS) | {"azure"}
        names |= {entry.provider for entries in self._overrides.values() for entry in entries if entry.provider}
        return sorted(names)

    def file_providers(self, model: str) -> tuple[str | None, ...]:
        """The providers of the prices file's entries for `model` (None: an entry for any provider), file order."""
        for name, _, _ in _candidates(model):
            entries = self._overrides.get(name.lower())
            if entries:
                return tuple(entry.provider for entry in entries)
        return ()

    def cost_of(self, rates: Rates, usage: Usage, *, batch: bool = False) -> Decimal:
        """The exact USD cost of `usage` at `rates` (batch: 50% of every bucket; see `priced_as`)."""
        _check_per_token(rates)
        return _cost_of(rates, usage, batch)

    def clear_cache(self) -> None:
        """Forget resolved models (they are resolved again on their next lookup)."""
        self._entries.clear()

    # -- resolution

    def _warn_tier(self, provider: str | None, model: str, tier: str) -> None:
        """Once per model and tier: an answer served at a tier the catalog has no rates for is priced standard."""
        key = (provider, model, tier)
        if self.warn_unpriced and key not in self._warned_tiers:
            self._warned_tiers.add(key)  # checked before log_once's lock: a call at that tier pays a set lookup
            log_once(f"pricing.tier:{provider}:{model}:{tier}",
                     "costtrack: no %r rates for model %r (provider %r) in the price catalog: its calls served at that "
                     "tier are priced at the standard rates (tag costtrack.service_tier=%s)", tier, model, provider, tier)  # fmt: skip

    def _warn_unpriced(self, provider: str | None, model: str | None, reason: str) -> None:
        if not self.warn_unpriced:
            return
        if self.unreadable is not None:
            log_once("pricing.unreadable", "costtrack: %s; every call is recorded unpriced (cost NULL) until it is fixed: "
                     "then `costtrack reprice` prices them", self.unreadable)  # fmt: skip
            return
        key = (provider, model)
        if key in self._warned:
            return
        self._warned.add(key)
        where = f"set its prices in a prices file (${ENV_PRICES_FILE} or costtrack.configure(prices_file=...))"
        log_once(
            f"pricing.unpriced:{provider}:{model}",
            "costtrack: no price for model %r (provider %r): %s; its calls are recorded unpriced (cost NULL) - %s",
            model, provider, reason, where,
        )  # fmt: skip

    def _override(self, name: str, provider: str) -> _Override | None:
        entries = self._overrides.get(name.lower())
        if not entries:
            return None
        generic = None
        for entry in entries:
            if entry.provider is None:
                generic = entry
            elif entry.provider == provider:
                return entry
        if generic is None and not provider and len(entries) == 1:
            return entries[0]  # no provider given (e.g. the CLI): the file's only entry, whatever its provider
        return generic

    def _resolve(self, provider: str | None, model: str) -> _Entry | _Unknown:
        key = (provider, model)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._resolve_uncached(provider, model)
                self._entries[key] = entry
        return entry

    def _resolve_uncached(self, provider: str | None, model: str) -> _Entry | _Unknown:
        if self.unreadable is not None:
            return _Unknown(self.unreadable)
        prov = (provider or "").strip().lower()
        self_hosted = prov in SELF_HOSTED_PROVIDERS
        candidates = _candidates(model)
        if not prov:
            # No provider: an `openai/` or `anthropic/` prefix means that provider's own entry (its price
            # history, its cache rates) before another listing of the full name (OpenRouter's `openai/o3`).
            head, _, rest = model.strip().partition("/")
            if rest and "/" not in rest and head.lower() in _FIRST_PARTY:
                entry = self._resolve_candidates(model, candidates, prov, self_hosted, own=head.lower())
                if entry is not None:
                    return entry
        entry = self._resolve_candidates(model, candidates, prov, self_hosted)
        if entry is not None:
            return entry
        if self_hosted:
            return _Unknown(f"not in the prices file and not a catalog model (self-hosted provider {prov!r})")
        return _Unknown("not in the genai-prices catalog or the prices file")

    def _resolve_candidates(self, model: str, candidates: list[tuple[str, str, bool]], prov: str,
                            self_hosted: bool, own: str = "", overrides: bool = True) -> _Entry | _Unknown | None:  # fmt: skip
        """The first candidate name in the overrides file (unless not `overrides`) or the catalog (`own`: only
        that provider's catalog)."""
        catalog: _Catalog | None = None
        for name, hint, fallback in candidates:
            override = self._override(name, prov) if overrides else None
            if override is not None:
                underneath = functools.partial(self._resolve_candidates, model, candidates, prov, self_hosted, own, overrides=False)
                return self._with_earlier(override, name, underneath)
            if catalog is None:
                catalog = _get_catalog()
            if own:  # only a name the provider lists verbatim: `anthropic/claude-opus-4.6-fast` is not Opus 4.6
                found = catalog.find_own(name, own)
                if found is not None and not _is_exact_alias(found, name.lower()):
                    found = None
            elif self_hosted:
                found = catalog.find(name, "", strict=True)
                if found is not None and found.id.lower().startswith(_OPEN_WEIGHTS):
                    found = None  # served by the app's own machines: the catalog's price is a host's (OpenRouter's)
            else:
                found = catalog.find(name, prov or hint, strict=False)
            if found is None:
                continue
            override = self._override(found.id, prov) if overrides else None  # an override under the id covers its aliases
            if override is not None:
                underneath = functools.partial(self._catalog_entry, catalog, found, model if fallback else None)
                return self._with_earlier(override, found.id, underneath)
            return self._catalog_entry(catalog, found, model if fallback else None)
        return None

    def _with_earlier(self, override: _Override, name: str, underneath: Callable[[], _Entry | _Unknown | None]) -> _Entry:
        """`override`'s entry; for one whose entries are all dated, what prices calls before the first of them:
        the file's entry for any provider that a provider's own entry hides, else what the file does not override."""
        entry = override.entry()
        if override.dated_only:
            generic = None
            if override.provider is not None:
                generic = next((o for o in self._overrides.get(name.lower(), ()) if o.provider is None), None)
            if generic is not None:
                entry.before = self._with_earlier(generic, name, underneath)
            else:
                entry.before = underneath() or _Unknown("its prices-file entries start after the call")
        return entry

    def _catalog_entry(self, catalog: _Catalog, model: ModelInfo, fallback_from: str | None) -> _Entry | _Unknown:
        owner = catalog.owner(model)
        source = f"genai-prices {catalog.version}:{owner.id if owner else '?'}/{model.id}"
        if fallback_from is not None:
            source += f" (fallback from {fallback_from})"
        types = catalog.types
        try:
            # Service-tier and Batch prices come from the catalog model itself, looked up per variant and day.
            variants = model if model.price_variants else None
            if isinstance(model.prices, types.ModelPrice):
                return _Entry(fixed=_rates_from_model_price(model.prices, catalog.source_of(model.prices, source), None),
                              variants=variants)  # fmt: skip
            conditional = model.prices
            if all(c.constraint is None or isinstance(c.constraint, types.StartDateConstraint) for c in conditional):
                periods = tuple(
                    (
                        c.constraint.start_date if c.constraint is not None else None,
                        _rates_from_model_price(
                            c.prices, catalog.source_of(c.prices, source), c.constraint.start_date if c.constraint is not None else None
                        ),
                    )
                    for c in conditional
                )
                return _Entry(periods=periods, source=source, variants=variants)
            for c in conditional:  # time-of-day prices: validate now, pick per call
                _rates_from_model_price(c.prices, source, None)
            return _Entry(model=model, source=source, variants=variants)
        except _NotTokenPriced as exc:
            return _Unknown(f"{source} prices it in units other than tokens ({exc.args[0]})")


_default: PriceBook | None = None
_default_lock = threading.Lock()


@renews_in_child
def _renew_module_locks() -> None:
    global _catalog_lock, _default_lock
    _catalog_lock, _default_lock = threading.Lock(), threading.Lock()


#: Seconds a fork waits for a price-catalog load under way in another thread (it takes ~150 ms).
_FORK_WAIT = 10.0


def _settle_catalog_before_fork() -> None:
    """Let a price-catalog load under way in another thread (the writer's, ~1 s after a process's first call) finish
    before a fork: a child forked during it inherited genai-prices' import half done, its module lock held by a thread
    the child does not have, and hung at its first priced call."""
    if _catalog is None and _catalog_lock.acquire(timeout=_FORK_WAIT):
        _catalog_lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_settle_catalog_before_fork)


def default_pricebook() -> PriceBook:
    """The process-wide PriceBook (prices file from ${COSTTRACK_PRICES_FILE}), built on first use."""
    global _default
    book = _default
    if book is None:
        with _default_lock:
            if _default is None:
                _default = PriceBook()
            book = _default
    return book
