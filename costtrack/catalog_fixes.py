"""Corrections costtrack makes to the genai-prices catalog, each against a provider's price sheet, on copies."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .logs import log

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, ModelPrice, Provider

__all__ = ["amended", "prices_in", "with_values"]


def amended(providers: list[Provider], types: Any) -> tuple[list[Provider], set[int]]:
    """The catalog's providers with costtrack's corrections of its prices, and the ids of the prices corrected.

    Made on copies: genai-prices' own objects stay as they are for any other library in the process. Each
    correction names its source; the price_source of a call priced at a corrected price says it was amended.
    """
    dec = Decimal

    def o3_launch(model: ModelInfo) -> ModelInfo:
        # OpenAI's o3 launch price sheet (2025-04-16): $10 input, $2.50 cached input, $40 output; the 2025-06-10
        # cut took 80% off each. The catalog gives the first period the cut's $0.50 cached rate.
        first, *rest = model.prices  # type: ignore[misc]
        if (first.prices.input_mtok, first.prices.cache_read_mtok) != (dec(10), dec("0.5")):
            raise ValueError("o3's first price period is not the one corrected here")
        launch = dataclasses.replace(first, prices=with_values(first.prices, cache_read_mtok=dec("2.5")))
        return dataclasses.replace(model, prices=[launch, *rest])

    def sonnet_4_long_context(model: ModelInfo) -> ModelInfo:
        # Anthropic's price sheet: Claude Sonnet 4, like Sonnet 4.5, bills a request of more than 200K input tokens
        # (its 1M-token context) at $6 input and $22.50 output, cache rates alike doubled; the catalog has Sonnet 4 flat.
        price = model.prices
        if not isinstance(price, types.ModelPrice) or (price.input_mtok, price.output_mtok) != (dec(3), dec(15)):
            raise ValueError("Sonnet 4's prices are not the flat ones corrected here")

        def tiered(value: Decimal | None, factor: str) -> Any:
            return None if value is None else types.TieredPrices(value, [types.Tier(200_000, value * dec(factor))])

        return dataclasses.replace(model, prices=with_values(
            price, input_mtok=tiered(price.input_mtok, "2"), cache_write_mtok=tiered(price.cache_write_mtok, "2"),
            cache_read_mtok=tiered(price.cache_read_mtok, "2"), cache_write_1h_mtok=tiered(price.cache_write_1h_mtok, "2"),
            output_mtok=tiered(price.output_mtok, "1.5"),
        ))  # fmt: skip

    def audio_rates(text: tuple[str, str], audio: tuple[str, str]) -> Callable[[ModelInfo], ModelInfo]:
        # OpenAI's price sheet bills the audio-preview models' audio tokens at their own rates (gpt-4o-audio-preview's
        # 2024-12-17 and 2025-06-03 snapshots: $40 input, $80 output; gpt-4o-mini-audio-preview's: $10 and $20), as
        # it does gpt-audio's; the catalog has their text rates only, so audio was billed as text (9 to 38x too low).
        def fix(model: ModelInfo) -> ModelInfo:
            price = model.prices
            if not isinstance(price, types.ModelPrice) or (price.input_mtok, price.output_mtok) != tuple(map(dec, text)):
                raise ValueError("the audio-preview model's text rates are not the ones corrected here")
            if getattr(price, "input_audio_mtok", None) is not None or getattr(price, "output_audio_mtok", None) is not None:
                raise ValueError("the catalog has audio rates of its own for it")
            rates = with_values(price, input_audio_mtok=dec(audio[0]), output_audio_mtok=dec(audio[1]))
            return dataclasses.replace(model, prices=rates)

        return fix

    fixes: dict[tuple[str, str], Callable[[ModelInfo], ModelInfo]] = {
        ("openai", "o3"): o3_launch,
        ("anthropic", "claude-sonnet-4-0"): sonnet_4_long_context,
        ("openai", "gpt-4o-audio-preview"): audio_rates(("2.5", "10"), ("40", "80")),
        ("openai", "gpt-4o-mini-audio-preview"): audio_rates(("0.15", "0.6"), ("10", "20")),
    }
    out, corrected = [], set()
    for provider in providers:
        if any((provider.id, model.id) in fixes for model in provider.models):
            models = []
            for model in provider.models:
                fix = fixes.get((provider.id, model.id))
                if fix is not None:
                    try:
                        before = {id(price) for price in prices_in(model)}
                        model = fix(model)
                        corrected.update(id(price) for price in prices_in(model) if id(price) not in before)
                    except (AttributeError, TypeError, ValueError, AssertionError):
                        # A catalog release shaped otherwise: its own data, uncorrected.
                        log.debug("costtrack: the catalog's %s/%s is not as expected; left as it is",
                                  provider.id, model.id)  # fmt: skip
                models.append(model)
            provider = dataclasses.replace(provider, models=models)
        out.append(provider)
    return out, corrected


def prices_in(model: ModelInfo) -> list[ModelPrice]:
    """A catalog model's standard prices: its one ModelPrice, or each dated period's."""
    prices = model.prices
    return [prices] if not isinstance(prices, list) else [conditional.prices for conditional in prices]


def with_values(price: ModelPrice, **values: Any) -> ModelPrice:
    """A copy of a catalog ModelPrice with `values` set."""
    copied = copy.copy(price)
    for name, value in values.items():
        if not hasattr(copied, name):
            raise AttributeError(name)
        setattr(copied, name, value)
    return copied
