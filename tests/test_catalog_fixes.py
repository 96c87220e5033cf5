"""Catalog corrections: made on copies, and only to the prices they were written against."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from costtrack.catalog_fixes import amended, prices_in, with_values


@pytest.fixture
def catalog():
    from genai_prices import data, types

    return data.providers, types


def _model(providers, provider_id: str, model_id: str):
    [provider] = [p for p in providers if p.id == provider_id]
    [model] = [m for m in provider.models if m.id == model_id]
    return model


def test_corrections_are_copies_and_mark_only_the_prices_they_change(catalog) -> None:
    providers, types = catalog
    fixed, corrected = amended(providers, types)
    stock, ours = _model(providers, "openai", "o3"), _model(fixed, "openai", "o3")
    assert ours is not stock and stock.prices[0].prices.cache_read_mtok == Decimal("0.5")
    assert ours.prices[0].prices.cache_read_mtok == Decimal("2.5")
    assert [id(p) in corrected for p in prices_in(ours)] == [True, False]  # the launch period only
    sonnet = _model(fixed, "anthropic", "claude-sonnet-4-0")
    assert [id(p) in corrected for p in prices_in(sonnet)] == [True]
    assert _model(fixed, "anthropic", "claude-haiku-4-5") is _model(providers, "anthropic", "claude-haiku-4-5")
    for name, audio in (("gpt-4o-audio-preview", (40, 80)), ("gpt-4o-mini-audio-preview", (10, 20))):
        stock, ours = _model(providers, "openai", name), _model(fixed, "openai", name)
        assert stock.prices.input_audio_mtok is None and (ours.prices.input_audio_mtok, ours.prices.output_audio_mtok) == audio
        assert [id(p) in corrected for p in prices_in(ours)] == [True]


def test_a_catalog_release_with_other_prices_is_left_as_it_is(catalog) -> None:
    """A later genai-prices that fixes or reorders o3's periods is not 'corrected' into a wrong price."""
    providers, types = catalog
    o3 = _model(providers, "openai", "o3")
    cut_first = dataclasses.replace(o3, prices=list(reversed(o3.prices)))
    [openai] = [p for p in providers if p.id == "openai"]
    release = [dataclasses.replace(openai, models=[cut_first if m is o3 else m for m in openai.models])]
    fixed, corrected = amended(release, types)
    assert _model(fixed, "openai", "o3") is cut_first
    assert not any(id(p) in corrected for p in prices_in(cut_first))


def test_an_audio_preview_model_with_audio_rates_of_its_own_is_left_as_it_is(catalog) -> None:
    """A later genai-prices that lists the audio rates itself keeps them (costtrack's copy never overwrites them)."""
    providers, types = catalog
    stock = _model(providers, "openai", "gpt-4o-audio-preview")
    listed = dataclasses.replace(stock, prices=with_values(stock.prices, input_audio_mtok=Decimal(41),
                                                           output_audio_mtok=Decimal(81)))  # fmt: skip
    [openai] = [p for p in providers if p.id == "openai"]
    release = [dataclasses.replace(openai, models=[listed if m is stock else m for m in openai.models])]
    fixed, corrected = amended(release, types)
    assert _model(fixed, "openai", "gpt-4o-audio-preview") is listed and id(listed.prices) not in corrected
