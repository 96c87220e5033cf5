"""PriceBook: costs against hand-computed price-sheet values (USD per 1M tokens), never the implementation's."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from costtrack.errors import PricesFileError
from costtrack.logs import reset_once
from costtrack.pricing import ENV_PRICES_FILE, Price, PriceBook, Rates, Tier, cost_breakdown, default_pricebook
from costtrack.usage import Usage

MTOK = Decimal(10**6)
AT = datetime(2025, 9, 1, 12, 0, tzinfo=timezone.utc)  # a date with settled list prices for every model below


def usd(*terms: tuple[int, str]) -> Decimal:
    """Hand-computed exact cost: sum of tokens x list price (USD per 1M tokens)."""
    return sum((Decimal(tokens) * Decimal(price) for tokens, price in terms), Decimal(0)) / MTOK


@pytest.fixture
def book(monkeypatch: pytest.MonkeyPatch) -> PriceBook:
    monkeypatch.delenv(ENV_PRICES_FILE, raising=False)
    return PriceBook()


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    reset_once()


def write(tmp_path: Path, text: str, name: str = "prices.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ------------------------------------------------------------------ list prices


def test_gpt_4o(book: PriceBook) -> None:
    price = book.cost("openai", "gpt-4o", Usage(input=1000, output=500), AT)
    # gpt-4o: $2.50 input, $10.00 output per 1M tokens.
    assert price.cost_usd == float(Decimal(1000) * Decimal("2.50") / MTOK + Decimal(500) * Decimal("10.00") / MTOK)
    assert price.price_source is not None and price.price_source.startswith("genai-prices ")
    assert price.price_source.endswith(":openai/gpt-4o")


def test_gpt_4o_mini_cached_input_at_half_price(book: PriceBook) -> None:
    usage = Usage(input=2048, cached_input=1536, output=120)
    price = book.cost("openai", "gpt-4o-mini", usage, AT)
    # gpt-4o-mini: $0.15 input, $0.075 cached input (half), $0.60 output; 2048 - 1536 = 512 uncached.
    expected = Decimal(512) * Decimal("0.15") / MTOK + Decimal(1536) * Decimal("0.075") / MTOK + Decimal(120) * Decimal("0.60") / MTOK
    assert price.cost_usd == float(expected)
    assert book.cost_of(book.rates("openai", "gpt-4o-mini", AT), usage) == expected  # exact Decimal


def test_text_embedding_3_small(book: PriceBook) -> None:
    price = book.cost("openai", "text-embedding-3-small", Usage(input=812), AT)
    assert price.cost_usd == float(Decimal(812) * Decimal("0.02") / MTOK)


def test_claude_sonnet_4_5_cache_buckets(book: PriceBook) -> None:
    # Anthropic reported input_tokens=1000, cache_read=20000, cache_creation=5000 (3000 of them 1h): total 26000.
    usage = Usage(input=26000, cached_input=20000, cache_write=5000, cache_write_1h=3000, output=800)
    price = book.cost("anthropic", "claude-sonnet-4-5", usage, AT)
    # $3 input, $0.30 cache read (0.1x), $3.75 5m write (1.25x), $6 1h write (2x), $15 output.
    expected = usd((1000, "3"), (20000, "0.30"), (2000, "3.75"), (3000, "6"), (800, "15"))
    assert price.cost_usd == float(expected)


def test_claude_haiku_4_5_cache_buckets(book: PriceBook) -> None:
    usage = Usage(input=10000, cached_input=2000, cache_write=3000, cache_write_1h=1000, output=500)
    rates = book.rates("anthropic", "claude-haiku-4-5", AT)
    assert rates is not None
    # $1 input, $0.10 cache read, $1.25 5m write, $2 1h write, $5 output.
    expected = usd((5000, "1"), (2000, "0.10"), (2000, "1.25"), (1000, "2"), (500, "5"))
    assert book.cost_of(rates, usage) == expected
    assert sum(cost_breakdown(rates, usage).values()) == expected


def test_pitfall_3_anthropic_cache_writes_priced_once_at_their_own_rates(book: PriceBook) -> None:
    """Pitfall 3: writes are not charged twice nor at the input rate; 1-hour writes are 2x input, not the 5m rate."""
    only_5m = book.cost("anthropic", "claude-haiku-4-5", Usage(input=4000, cache_write=4000), AT)
    only_1h = book.cost("anthropic", "claude-haiku-4-5", Usage(input=4000, cache_write=4000, cache_write_1h=4000), AT)
    assert only_5m.cost_usd == float(usd((4000, "1.25")))  # not 4000 x ($1 + $1.25), not 4000 x $1
    assert only_1h.cost_usd == float(usd((4000, "2")))  # 2x input, never the $1.25 5-minute rate
    # A model whose sheet has no 1h rate still bills 1h writes at 2x input, not at its 5m rate.
    rates = Rates(input=Decimal("1"), output=Decimal("5"), cache_write=Decimal("1.25"))
    assert book.cost_of(rates, Usage(input=1000, cache_write=1000, cache_write_1h=1000)) == usd((1000, "2"))


def test_pitfall_4_cached_tokens_not_counted_twice(book: PriceBook) -> None:
    """Pitfall 4: cached tokens are inside input; they are billed once, at the cached rate."""
    all_cached = book.cost("openai", "gpt-4o", Usage(input=10000, cached_input=10000), AT)
    assert all_cached.cost_usd == float(usd((10000, "1.25")))  # not $2.50 + $1.25 per token
    none_cached = book.cost("openai", "gpt-4o", Usage(input=10000), AT)
    assert all_cached.cost_usd * 2 == none_cached.cost_usd


def test_reasoning_tokens_not_double_counted(book: PriceBook) -> None:
    # o3 after 2025-06-10: $2 input, $8 output; 1500 output tokens of which 1200 reasoning.
    price = book.cost("openai", "o3", Usage(input=100, output=1500, reasoning=1200), AT)
    assert price.cost_usd == float(usd((100, "2"), (1500, "8")))
    o4 = book.cost("openai", "o4-mini", Usage(input=100, output=1500, reasoning=1500), AT)
    assert o4.cost_usd == float(usd((100, "1.10"), (1500, "4.40")))


# ------------------------------------------------------------------ audio tokens, web searches


def test_audio_tokens_at_their_own_rates_and_as_text_without_them() -> None:
    rates = Rates(input=Decimal("2.5"), output=Decimal("10"), input_audio=Decimal("32"), output_audio=Decimal("64"))
    usage = Usage(input=1000, output=500, audio_input=800, audio_output=400)
    expected = usd((200, "2.5"), (800, "32"), (100, "10"), (400, "64"))
    assert PriceBook.cost_of(PriceBook(use_env=False), rates, usage) == expected
    assert sum(cost_breakdown(rates, usage).values()) == expected
    text_only = Rates(input=Decimal("2.5"), output=Decimal("10"))  # a sheet with no audio rate: billed as text
    assert PriceBook(use_env=False).cost_of(text_only, usage) == usd((1000, "2.5"), (500, "10"))


def test_web_searches_are_billed_per_thousand_and_not_halved_by_batch(book: PriceBook) -> None:
    """Anthropic's Batch tables list no web-search fee: it stays at the standard $10 per 1,000 (as genai-prices bills
    a bucket a variant does not name)."""
    usage = Usage(input=9000, output=400, web_searches=2)
    plain = book.cost("anthropic", "claude-sonnet-4-5", usage, AT)
    assert plain.cost_usd == float(usd((9000, "3"), (400, "15")) + Decimal("0.02"))
    batch = book.cost("anthropic", "claude-sonnet-4-5", usage, AT, batch=True)
    assert batch.cost_usd == float(usd((9000, "1.5"), (400, "7.5")) + Decimal("0.02"))
    rates = book.rates("anthropic", "claude-sonnet-4-5", AT)
    assert rates is not None and sum(cost_breakdown(rates, usage).values()) == usd((9000, "3"), (400, "15")) + Decimal("0.02")


def test_prices_file_audio_and_web_search_rates(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [models."my-voice"]
        input = 1
        output = 2
        input_audio = 10
        output_audio = 20
        web_search = 5
    """)
    book = PriceBook(path, use_env=False)
    price = book.cost("openai", "my-voice", Usage(input=1000, output=100, audio_input=600, audio_output=50, web_searches=4), AT)
    assert price.cost_usd == float(usd((400, "1"), (600, "10"), (50, "2"), (50, "20")) + Decimal("0.02"))


# ------------------------------------------------------------------ model names


@pytest.mark.parametrize(
    ("provider", "model", "catalog_id", "in_rate", "out_rate"),
    [
        ("openai", "gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini", "0.15", "0.60"),
        ("openai", "gpt-4o-2024-08-06", "openai/gpt-4o", "2.50", "10"),
        ("openai", "openai/gpt-4o", "openai/gpt-4o", "2.50", "10"),
        ("anthropic", "claude-haiku-4-5-20251001", "anthropic/claude-haiku-4-5", "1", "5"),
        ("anthropic", "claude-haiku-4-5@20251001", "anthropic/claude-haiku-4-5", "1", "5"),
        ("anthropic", "anthropic/claude-sonnet-4-5", "anthropic/claude-sonnet-4-5", "3", "15"),
        ("anthropic", "claude-sonnet-4-5[1m]", "anthropic/claude-sonnet-4-5", "3", "15"),
        ("anthropic", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5", "3", "15"),
        ("anthropic", "us.anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic/claude-haiku-4-5", "1", "5"),
        ("azure", "gpt-4o-mini", "openai/gpt-4o-mini", "0.15", "0.60"),
        ("openai-compatible", "openai/gpt-4o", "openai/gpt-4o", "2.50", "10"),
    ],
)
def test_pitfall_5_snapshots_prefixed_and_suffixed_names_are_priced(
    book: PriceBook, caplog: pytest.LogCaptureFixture, provider: str, model: str, catalog_id: str, in_rate: str,
    out_rate: str,
) -> None:  # fmt: skip
    """Pitfall 5: dated, `provider/`-prefixed, `@date` and `[1m]` names match their model, never $0."""
    with caplog.at_level(logging.WARNING, logger="costtrack"):
        price = book.cost(provider, model, Usage(input=1000, output=100), AT)
    assert price.cost_usd == float(usd((1000, in_rate), (100, out_rate)))
    assert price.price_source is not None and price.price_source.endswith(":" + catalog_id)
    assert caplog.records == []


def test_gpt_4o_2024_05_13_is_its_own_entry(book: PriceBook) -> None:
    price = book.cost("openai", "gpt-4o-2024-05-13", Usage(input=1000, output=1000), AT)
    assert price.cost_usd == float(usd((1000, "5"), (1000, "15")))  # not gpt-4o's $2.50/$10
    assert price.price_source is not None and price.price_source.endswith(":openai/gpt-4o-2024-05-13")


def test_unknown_dated_snapshot_falls_back_to_its_model_and_says_so(book: PriceBook) -> None:
    price = book.cost("openai", "gpt-4o-2099-01-01", Usage(input=1000, output=1000), AT)
    assert price.cost_usd == float(usd((1000, "2.50"), (1000, "10")))
    assert price.price_source is not None
    assert ":openai/gpt-4o " in price.price_source and "fallback from gpt-4o-2099-01-01" in price.price_source


def test_self_hosted_models_are_unpriced_not_zero(book: PriceBook, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="costtrack"):
        assert book.cost("ollama", "llama3.1:8b", Usage(input=100, output=10), AT) == Price(None, None)
        # A name the catalog would match by prefix (deepseek-r1 → DeepSeek's API price) stays unpriced locally.
        assert book.cost("ollama", "deepseek-r1:8b", Usage(input=100, output=10), AT) == Price(None, None)
    assert len(caplog.records) == 2


@pytest.mark.parametrize("provider", ["openai-compatible", "ollama", "vllm", "llamacpp"])
def test_self_hosted_exact_openai_ids_are_priced_alike_chat_or_embedding(
    book: PriceBook, caplog: pytest.LogCaptureFixture, provider: str
) -> None:
    """An exact OpenAI id through a local server (a proxy) is OpenAI's price, an embedding model like a chat one."""
    with caplog.at_level(logging.WARNING, logger="costtrack"):
        chat = book.cost(provider, "gpt-4o-mini", Usage(input=1000, output=100), AT)
        embedding = book.cost(provider, "text-embedding-3-small", Usage(input=812), AT)
        large = book.cost(provider, "text-embedding-3-large", Usage(input=1000), AT)
    assert chat.cost_usd == float(usd((1000, "0.15"), (100, "0.60")))
    assert embedding.cost_usd == float(usd((812, "0.02")))
    assert embedding.price_source is not None and embedding.price_source.endswith(":openai/text-embedding-3-small")
    assert large.cost_usd == float(usd((1000, "0.13")))
    assert caplog.records == []
    # Still only exact OpenAI/Anthropic ids: local models, even ones another API lists verbatim, stay unpriced.
    for local in ("nomic-embed-text", "meta-llama/Llama-3.1-8B-Instruct", "gpt-4o-mini-local"):
        assert book.rates(provider, local, AT) is None, local


def test_openai_or_anthropic_prefix_without_provider_is_that_providers_own_entry(book: PriceBook) -> None:
    """`openai/o3` with no provider is OpenAI's o3 (its price history), not OpenRouter's listing of the name."""
    before = book.rates(None, "openai/o3", datetime(2025, 6, 1, tzinfo=timezone.utc))
    after = book.rates(None, "openai/o3", datetime(2025, 6, 10, tzinfo=timezone.utc))
    assert before is not None and (before.input, before.output) == (Decimal(10), Decimal(40))
    assert after is not None and (after.input, after.output) == (Decimal(2), Decimal(8))
    assert before.source.endswith(":openai/o3 (amended by costtrack)") and after.source.endswith(":openai/o3")
    gpt_4o = book.rates(None, "openai/gpt-4o", datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert gpt_4o is not None and gpt_4o.source.endswith(":openai/gpt-4o") and gpt_4o.cached_input == Decimal("1.25")
    sonnet = book.rates(None, "anthropic/claude-sonnet-4-5", AT)
    assert sonnet is not None and sonnet.source.endswith(":anthropic/claude-sonnet-4-5")
    # Only a name the provider lists verbatim: OpenRouter's batch variant keeps its own (half) price.
    batch = book.rates(None, "anthropic/claude-sonnet-4.5:batch", AT)
    assert batch is not None and ":openrouter/" in batch.source and batch.input == Decimal("1.5")
    # With a provider, the provider decides: OpenRouter's own listing.
    routed = book.rates("openrouter", "openai/o3", datetime(2025, 6, 1, tzinfo=timezone.utc))
    assert routed is not None and ":openrouter/" in routed.source


# ------------------------------------------------------------------ history, tiers, batch


def test_pitfall_11_price_history_o3_both_sides_of_2025_06_10(book: PriceBook) -> None:
    """Pitfall 11: each call is priced at the rates in force at its timestamp; a price cut doesn't rewrite the past."""
    usage = Usage(input=1_000_000, output=1_000_000)
    before = book.cost("openai", "o3", usage, datetime(2025, 6, 9, 23, 59, 59, tzinfo=timezone.utc))
    after = book.cost("openai", "o3", usage, datetime(2025, 6, 10, 0, 0, tzinfo=timezone.utc))
    assert before.cost_usd == float(usd((1_000_000, "10"), (1_000_000, "40")))
    assert after.cost_usd == float(usd((1_000_000, "2"), (1_000_000, "8")))
    rates = book.rates("openai", "o3", datetime(2025, 7, 1, tzinfo=timezone.utc))
    assert rates is not None and rates.valid_from == date(2025, 6, 10)


def test_price_period_uses_the_utc_date(book: PriceBook) -> None:
    usage = Usage(input=1_000_000)
    # 2025-06-10 01:00 at UTC+05:00 is still 2025-06-09 in UTC: the old $10 price.
    local = datetime(2025, 6, 10, 1, 0, tzinfo=timezone(timedelta(hours=5)))
    assert book.cost("openai", "o3", usage, local).cost_usd == 10.0
    naive = datetime(2025, 6, 10, 0, 30)  # naive = UTC
    assert book.cost("openai", "o3", usage, naive).cost_usd == 2.0


def test_long_context_tier_boundary_claude_sonnet_4_5(book: PriceBook) -> None:
    at_threshold = book.cost("anthropic", "claude-sonnet-4-5", Usage(input=200_000), AT)
    above = book.cost("anthropic", "claude-sonnet-4-5", Usage(input=200_001), AT)
    assert at_threshold.cost_usd == float(Decimal(200_000) * Decimal("3") / MTOK) == 0.60
    assert above.cost_usd == float(Decimal(200_001) * Decimal("6") / MTOK) == 1.200006


def test_long_context_tier_applies_to_every_bucket(book: PriceBook) -> None:
    # Total input 250,000 (cache reads and writes count toward the threshold): tier rates everywhere.
    usage = Usage(input=250_000, cached_input=150_000, cache_write=60_000, cache_write_1h=10_000, output=1_000)
    price = book.cost("anthropic", "claude-sonnet-4-5", usage, AT)
    # Over 200k: $6 input, $0.60 read, $7.50 5m write, $12 1h write, $22.50 output.
    expected = usd((40_000, "6"), (150_000, "0.60"), (50_000, "7.50"), (10_000, "12"), (1_000, "22.50"))
    assert price.cost_usd == float(expected)
    rates = book.rates("anthropic", "claude-sonnet-4-5", AT)
    assert rates is not None and [t.threshold for t in rates.tiers] == [200_000]
    assert isinstance(rates.tiers[0], Tier) and rates.tiers[0].rates.output == Decimal("22.5")


def test_batch_is_half_of_every_bucket(book: PriceBook) -> None:
    usage = Usage(input=10000, cached_input=2000, cache_write=3000, cache_write_1h=1000, output=500)
    standard = usd((5000, "1"), (2000, "0.10"), (2000, "1.25"), (1000, "2"), (500, "5"))
    batch = book.cost("anthropic", "claude-haiku-4-5", usage, AT, batch=True)
    assert batch.cost_usd == float(standard * Decimal("0.5"))
    gpt = book.cost("openai", "gpt-4o", Usage(input=1000, output=1000), AT, batch=True)
    assert gpt.cost_usd == float(usd((1000, "1.25"), (1000, "5")))
    # Batch uses the standard rates in force at the timestamp: o3 before its price cut.
    old = book.cost("openai", "o3", Usage(input=1000, output=1000), datetime(2025, 5, 1, tzinfo=timezone.utc), batch=True)
    assert old.cost_usd == float(usd((1000, "5"), (1000, "20")))


NOV_2026 = datetime(2026, 11, 1, tzinfo=timezone.utc)  # after the catalog's Batch tables start (2026-10-14)


def test_batch_follows_the_batch_tables_where_they_differ_from_half(book: PriceBook) -> None:
    """OpenAI's Batch table: gpt-3.5-turbo-1106 at its standard $1/$2 (it was halved), gpt-4o's cached input at the
    standard $1.25 (the table lists no batch rate for it); before the table's date, the same rule on the rates of then."""
    turbo = book.cost("openai", "gpt-3.5-turbo-1106", Usage(input=1_000_000, output=1_000_000), NOV_2026, batch=True)
    assert turbo.cost_usd == float(usd((1_000_000, "1"), (1_000_000, "2"))) == 3.0
    assert turbo.price_source is not None and turbo.price_source.endswith(":openai/gpt-3.5-turbo-1106 (batch)")
    usage = Usage(input=10_000, cached_input=4_000, output=5_000)
    expected = float(usd((6_000, "1.25"), (4_000, "1.25"), (5_000, "5")))  # input and output halved, cached not
    for at in (NOV_2026, AT):
        assert book.cost("openai", "gpt-4o", usage, at, batch=True).cost_usd == expected
    # o3 before its cut: $10 / $2.50 cached / $40 then; the table halves input and output, keeps cached input.
    o3 = book.cost("openai", "o3", usage, datetime(2025, 5, 1, tzinfo=timezone.utc), batch=True)
    assert o3.cost_usd == float(usd((6_000, "5"), (4_000, "2.5"), (5_000, "20")))
    # Long context in a batch: the table's tiered rates (Sonnet 4.5 over 200k: $3 input, $11.25 output).
    sonnet = book.cost("anthropic", "claude-sonnet-4-5", Usage(input=250_000, output=1_000), NOV_2026, batch=True)
    assert sonnet.cost_usd == float(usd((250_000, "3"), (1_000, "11.25")))
    # No Batch table for the model: half of every bucket.
    embedding = book.cost("openai", "text-embedding-3-small", Usage(input=1_000_000), NOV_2026, batch=True)
    opus = book.cost("anthropic", "claude-opus-4-1", Usage(input=1000, output=100), NOV_2026, batch=True)
    assert embedding.cost_usd == 0.01 and opus.cost_usd == float(usd((1000, "7.5"), (100, "37.5")))
    assert opus.price_source is not None and opus.price_source.endswith(":anthropic/claude-opus-4-1 (batch 50%)")


def test_catalog_corrections_o3_launch_cached_rate_and_sonnet_4_long_context(book: PriceBook) -> None:
    """Two catalog errors a review found against the price sheets, corrected on a private copy of the catalog."""
    import genai_prices.data

    before_cut = datetime(2025, 6, 1, tzinfo=timezone.utc)
    o3 = book.cost("openai", "o3", Usage(input=10_000, cached_input=8_000, output=5_000), before_cut)
    assert o3.cost_usd == float(usd((2_000, "10"), (8_000, "2.50"), (5_000, "40"))) == 0.24  # the catalog said $0.50 cached
    assert o3.price_source is not None and o3.price_source.endswith(":openai/o3 (amended by costtrack)")
    after_cut = book.cost("openai", "o3", Usage(input=10_000, cached_input=8_000, output=5_000), AT)
    assert after_cut.cost_usd == float(usd((2_000, "2"), (8_000, "0.50"), (5_000, "8")))
    assert after_cut.price_source is not None and after_cut.price_source.endswith(":openai/o3")  # that period is as it was
    # Claude Sonnet 4 above 200k input tokens: $6 input, $0.60 read, $7.50 5m write, $12 1h write, $22.50 output.
    usage = Usage(input=250_000, cached_input=150_000, cache_write=60_000, cache_write_1h=20_000, output=4_000)
    long = book.cost("anthropic", "claude-sonnet-4-20250514", usage, AT)
    assert long.cost_usd == float(usd((40_000, "6"), (150_000, "0.6"), (40_000, "7.5"), (20_000, "12"), (4_000, "22.5"))) == 0.96
    assert book.cost("anthropic", "claude-sonnet-4-20250514", Usage(input=200_000), AT).cost_usd == 0.6
    assert long.price_source is not None and long.price_source.endswith(":anthropic/claude-sonnet-4-0 (amended by costtrack)")
    # genai-prices' own objects are left as they were, for any other library in the process.
    [openai] = [p for p in genai_prices.data.providers if p.id == "openai"]
    [stock] = [m for m in openai.models if m.id == "o3"]
    assert stock.prices[0].prices.cache_read_mtok == Decimal("0.5")


@pytest.mark.parametrize("provider", ["ollama", "vllm", "llamacpp", "openai-compatible"])
def test_self_hosted_open_weight_openai_models_are_unpriced(book: PriceBook, provider: str) -> None:
    """gpt-oss runs on the app's own machines: the catalog's price for it is a host's (OpenRouter's), not the app's."""
    for name in ("gpt-oss-20b", "openai/gpt-oss-20b", "gpt-oss:20b", "gpt-oss-120b"):
        assert book.cost(provider, name, Usage(input=1000, output=100), AT) == Price(None, None), name
    hosted = book.cost("openrouter", "openai/gpt-oss-20b", Usage(input=1000, output=100), AT)
    assert hosted.cost_usd is not None and hosted.cost_usd > 0


@pytest.mark.parametrize(
    ("provider", "model", "usage", "at"),
    [
        ("openai", "gpt-4o-mini", Usage(input=2048, cached_input=1536, output=120), AT),
        ("openai", "o3", Usage(input=5000, output=700, reasoning=500), datetime(2025, 5, 1, tzinfo=timezone.utc)),
        ("openai", "o3", Usage(input=5000, cached_input=1000, output=700, reasoning=500), datetime(2025, 7, 1, tzinfo=timezone.utc)),
        ("anthropic", "claude-sonnet-4-5", Usage(input=26000, cached_input=20000, cache_write=5000, cache_write_1h=3000, output=800), AT),
        ("anthropic", "claude-sonnet-4-5", Usage(input=250_000, cached_input=150_000, cache_write=60_000, cache_write_1h=10_000, output=1_000), AT),
    ],
)
def test_agrees_with_genai_prices_calc_price(book: PriceBook, provider: str, model: str, usage: Usage, at: datetime) -> None:
    """The same semantics as genai-prices itself (standard processing) where both apply."""
    import genai_prices

    theirs = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input, cache_read_tokens=usage.cached_input, cache_write_tokens=usage.cache_write,
            cache_write_5m_tokens=usage.cache_write_5m, cache_write_1h_tokens=usage.cache_write_1h,
            output_tokens=usage.output,
        ),
        model, provider_id=provider, genai_request_timestamp=at,
    ).total_price  # fmt: skip
    ours = book.rates(provider, model, at)
    assert ours is not None and book.cost_of(ours, usage) == theirs


# ------------------------------------------------------------------ unknown models


def test_pitfall_5_unknown_model_is_unpriced_not_zero_with_exactly_one_warning(book: PriceBook, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="costtrack"):
        for _ in range(3):
            assert book.cost("openai", "gpt-nonexistent-9", Usage(input=10, output=10), AT) == Price(None, None)
        assert PriceBook(use_env=False).cost("openai", "gpt-nonexistent-9", Usage(input=1), AT) == Price(None, None)
    warnings = [r for r in caplog.records if r.name == "costtrack" and r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per (provider, model) per process, not per book
    assert "gpt-nonexistent-9" in warnings[0].getMessage()
    assert book.rates("openai", "gpt-nonexistent-9", AT) is None


def test_each_unknown_provider_model_pair_warns_once(book: PriceBook, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="costtrack"):
        book.cost("openai", "mystery-a", Usage(input=1), AT)
        book.cost("openai", "mystery-b", Usage(input=1), AT)
        book.cost("azure", "mystery-a", Usage(input=1), AT)
        book.cost("openai", "mystery-a", Usage(input=1), AT)
    assert len(caplog.records) == 3


def test_missing_model_name_is_unpriced(book: PriceBook) -> None:
    assert book.cost("openai", None, Usage(input=10), AT) == Price(None, None)


def test_non_token_priced_catalog_model_is_unpriced(book: PriceBook) -> None:
    # whisper-1 is priced per audio hour: no per-token price, so unpriced rather than $0.
    assert book.cost("openai", "whisper-1", Usage(input=10, output=10), AT).cost_usd is None


# ------------------------------------------------------------------ overrides file


def test_overrides_values_and_source(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [models."my-model"]
        provider = "openai"
        input = 0.5
        output = 1.5
        cached_input = 0.05
        cache_write = 0.6
        cache_write_1h = 1.0
    """)  # fmt: skip
    book = PriceBook(path, use_env=False)
    usage = Usage(input=10000, cached_input=4000, cache_write=3000, cache_write_1h=1000, output=2000)
    price = book.cost("openai", "my-model", usage, AT)
    assert price.cost_usd == float(usd((3000, "0.5"), (4000, "0.05"), (2000, "0.6"), (1000, "1.0"), (2000, "1.5")))
    assert price.price_source == f"overrides:{path.resolve()}:my-model"
    assert book.prices_file == str(path.resolve())
    # provider = "openai" only: another provider does not see it.
    assert book.cost("anthropic", "my-model", usage, AT) == Price(None, None)


def test_overrides_win_over_the_catalog_and_cover_its_aliases(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [models."gpt-4o"]
        input = 2
        output = 8
    """)  # fmt: skip
    book = PriceBook(path, use_env=False)
    for name in ("gpt-4o", "gpt-4o-2024-08-06", "openai/gpt-4o"):
        price = book.cost("openai", name, Usage(input=1000, output=1000), AT)
        assert price.cost_usd == float(usd((1000, "2"), (1000, "8"))), name
        assert price.price_source is not None and price.price_source.startswith("overrides:")
    # gpt-4o-2024-05-13 is a catalog entry of its own: the gpt-4o override does not capture it.
    own = book.cost("openai", "gpt-4o-2024-05-13", Usage(input=1000), AT)
    assert own.cost_usd == float(usd((1000, "5")))


def test_overrides_without_cache_rates_fall_back_to_input(tmp_path: Path) -> None:
    book = PriceBook(write(tmp_path, '[models."m"]\ninput = 1\noutput = 2\n'), use_env=False)
    usage = Usage(input=1000, cached_input=500, output=10)
    assert book.cost("vllm", "m", usage, AT).cost_usd == float(usd((500, "1"), (500, "1"), (10, "2")))


def test_overrides_per_hour_model(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, """
        [models."llama3.1:8b"]
        per_hour = 0.8
    """)  # fmt: skip
    book = PriceBook(path, use_env=False)
    with caplog.at_level(logging.WARNING, logger="costtrack"):
        price = book.cost("ollama", "llama3.1:8b", Usage(input=100, output=100), AT)
    assert price == Price(None, f"overrides:{path.resolve()}:llama3.1:8b")
    assert caplog.records == []  # priced per hour: not a missing price
    rates = book.rates("ollama", "llama3.1:8b", AT)
    assert rates is not None and rates.per_hour == Decimal("0.8")
    with pytest.raises(ValueError, match="per hour"):
        book.cost_of(rates, Usage(input=1))


def test_overrides_single_provider_entry_found_without_provider(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [models."my-finetune"]
        provider = "openai"
        input = 0.30
        output = 1.20
        [models."two-a"]
        model = "two"
        provider = "openai"
        input = 1
        output = 1
        [models."two-b"]
        model = "two"
        provider = "azure"
        input = 2
        output = 2
    """)  # fmt: skip
    book = PriceBook(path, use_env=False)
    rates = book.rates(None, "my-finetune", AT)
    assert rates is not None and rates.input == Decimal("0.30") and rates.source.endswith(":my-finetune")
    assert book.file_provider(rates) == "openai"
    assert book.rates("anthropic", "my-finetune", AT) is None  # another provider still does not see it
    # Two providers' entries and no provider given: ambiguous, not guessed.
    assert book.rates(None, "two", AT) is None
    assert book.file_providers("two") == ("openai", "azure")
    azure = book.rates("azure", "two", AT)
    assert azure is not None and azure.input == 2 and book.file_provider(azure) == "azure"


def test_overrides_provider_specific_entry_beats_generic(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [models."qwen"]
        input = 1
        output = 1
        [models."qwen-on-vllm"]
        model = "qwen"
        provider = "vllm"
        input = 0.1
        output = 0.1
    """)  # fmt: skip
    book = PriceBook(path, use_env=False)
    assert book.cost("vllm", "qwen", Usage(input=1_000_000), AT).cost_usd == 0.1
    assert book.cost("ollama", "qwen", Usage(input=1_000_000), AT).cost_usd == 1.0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[models."m"\ninput = 1\n', "not valid TOML"),
        ('[models."m"]\ninput = 1\noutput = 2\ninptu = 3\n', "unknown key 'inptu'"),
        ('[models."m"]\ninput = -1\noutput = 2\n', "must not be negative"),
        ('[models."m"]\ninput = "cheap"\noutput = 2\n', "must be a number"),
        ('[models."m"]\ninput = true\noutput = 2\n', "must be a number"),
        ('[models."m"]\ninput = nan\noutput = 2\n', "finite"),
        ('[models."m"]\ninput = 1\n', "no output price"),
        ('[models."m"]\nper_hour = 1\ninput = 1\noutput = 1\n', "either per hour or per token"),
        ('[prices."m"]\ninput = 1\noutput = 1\n', "unknown top-level key 'prices'"),
        ('[models]\nm = 3\n', "must be a table"),
        ('[models."m"]\ninput = 1\noutput = 2\nsince = "last week"\n', "must be the date these prices start"),
        ('[models."m"]\ninput = 1\noutput = 2\nsince = 2026-01-01T10:00:00\n', "must be the date these prices start"),
        ('[models."m"]\ninput = 1\noutput = 2\nsince = "2026-01-01T10:00"\n', "must be the date these prices start"),
        ('[models."a"]\nmodel = "m"\ninput = 1\noutput = 2\nsince = 2025-09-01\n'
         '[models."b"]\nmodel = "m"\ninput = 3\noutput = 4\nsince = 2025-09-01\n', "priced twice for any provider from 2025-09-01"),
        ('[models."a"]\nmodel = "m"\ninput = 1\noutput = 2\n[models."b"]\nmodel = "m"\ninput = 3\noutput = 4\n',
         "give each a different since"),
    ],
)
def test_malformed_overrides_file_raises_prices_file_error(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PricesFileError) as info:
        PriceBook(path, use_env=False)
    message = str(info.value)
    assert fragment in message and str(path.resolve()) in message
    assert "\n" not in message  # one line, says what to fix


def test_overrides_with_since_are_a_price_history(tmp_path: Path) -> None:
    """Entries of one model with `since` dates: each call is priced at the entry in force on its day."""
    path = write(tmp_path, """
        [models."my-ft-model"]
        input = 1
        output = 2

        [models."my-ft-model-from-october"]
        model = "my-ft-model"
        since = 2025-10-01
        input = 3
        output = 6

        [models."my-ft-model-2026"]
        model = "my-ft-model"
        since = "2026-01-01"
        input = 0.5
        output = 1
    """)
    book = PriceBook(path, use_env=False)
    usage = Usage(input=1_000_000, output=1_000_000)

    def at(day: str) -> Price:
        return book.cost("openai", "my-ft-model", usage, datetime.fromisoformat(day).replace(tzinfo=timezone.utc))

    assert at("2025-08-15") == Price(3.0, f"overrides:{path.resolve()}:my-ft-model")
    assert at("2025-09-30T23:59:59") == Price(3.0, f"overrides:{path.resolve()}:my-ft-model")
    assert at("2025-10-01") == Price(9.0, f"overrides:{path.resolve()}:my-ft-model-from-october")
    assert at("2026-03-01") == Price(1.5, f"overrides:{path.resolve()}:my-ft-model-2026")
    assert book.rates("openai", "my-ft-model", datetime(2025, 10, 2, tzinfo=timezone.utc)).valid_from == date(2025, 10, 1)


def test_dated_only_entries_price_nothing_before_their_first_date(tmp_path: Path) -> None:
    """Entries that all carry `since` leave earlier calls to what they override: the catalog, the file's entry for
    any provider, or nothing (unpriced) for a model only the file knows."""
    path = write(tmp_path, """
        [models."gpt-4o-2026"]
        model = "gpt-4o"
        provider = "openai"
        since = 2026-01-01
        input = 1
        output = 2

        [models."mine-any"]
        model = "mine"
        input = 5
        output = 5

        [models."mine-openai-2026"]
        model = "mine"
        provider = "openai"
        since = 2026-01-01
        input = 7
        output = 7

        [models."new-model"]
        since = 2026-01-01
        input = 3
        output = 3
    """)
    book = PriceBook(path, use_env=False)
    usage = Usage(input=1_000_000, output=1_000_000)
    before, after = datetime(2025, 6, 1, tzinfo=timezone.utc), datetime(2026, 2, 1, tzinfo=timezone.utc)
    # gpt-4o: the catalog's $2.50 / $10 before, the file's $1 / $2 from 2026.
    old = book.cost("openai", "gpt-4o", usage, before)
    assert old.cost_usd == 12.5 and old.price_source.startswith("genai-prices")
    assert book.cost("openai", "gpt-4o", usage, after).cost_usd == 3.0
    # mine: OpenAI's own entry from 2026; before it, the entry for any provider.
    assert book.cost("openai", "mine", usage, before) == Price(10.0, f"overrides:{path.resolve()}:mine-any")
    assert book.cost("openai", "mine", usage, after) == Price(14.0, f"overrides:{path.resolve()}:mine-openai-2026")
    # new-model: nothing priced it before 2026.
    assert book.cost("openai", "new-model", usage, before) == Price(None, None)
    assert book.cost("openai", "new-model", usage, after).cost_usd == 6.0
    # A batch before the file's history: the catalog's Batch table for gpt-4o (cached input at its standard $1.25),
    # as if the file did not override it; from 2026, the file's rates halved.
    cached = Usage(input=1_000_000, cached_input=400_000, output=1_000_000)
    old_batch = book.cost("openai", "gpt-4o", cached, before, batch=True)
    assert old_batch.cost_usd == float(usd((600_000, "1.25"), (400_000, "1.25"), (1_000_000, "5")))
    assert old_batch.price_source is not None and old_batch.price_source.endswith(":openai/gpt-4o (batch)")
    assert book.cost("openai", "gpt-4o", cached, after, batch=True).cost_usd == float(usd((1_000_000, "0.5"), (1_000_000, "1")))
    assert book.rates("openai", "new-model", before) is None


def test_missing_overrides_file_raises_prices_file_error(tmp_path: Path) -> None:
    with pytest.raises(PricesFileError, match="does not exist"):
        PriceBook(tmp_path / "nope.toml", use_env=False)


def test_env_var_prices_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = write(tmp_path, '[models."env-model"]\ninput = 1\noutput = 1\n', "env.toml")
    arg_file = write(tmp_path, '[models."arg-model"]\ninput = 1\noutput = 1\n', "arg.toml")
    monkeypatch.setenv(ENV_PRICES_FILE, str(env_file))
    assert PriceBook().cost("openai", "env-model", Usage(input=10**6), AT).cost_usd == 1.0
    explicit = PriceBook(arg_file)  # the argument wins over the environment
    assert explicit.prices_file == str(arg_file.resolve())
    assert explicit.rates("openai", "env-model", AT) is None
    assert PriceBook(use_env=False).prices_file is None
    monkeypatch.setenv(ENV_PRICES_FILE, str(tmp_path / "missing.toml"))
    with pytest.raises(PricesFileError, match=r"missing\.toml"):
        PriceBook()


# ------------------------------------------------------------------ the process, speed


def test_default_pricebook_is_one_instance() -> None:
    assert default_pricebook() is default_pricebook()


def test_import_does_not_load_genai_prices() -> None:
    code = "import sys, costtrack.pricing; print('genai_prices' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_repeated_model_is_resolved_once(book: PriceBook, monkeypatch: pytest.MonkeyPatch) -> None:
    book.cost("openai", "gpt-4o", Usage(input=1), AT)
    monkeypatch.setattr(book, "_resolve_uncached", lambda *a: pytest.fail("resolved again"))
    for day in (AT, datetime(2024, 1, 1, tzinfo=timezone.utc)):
        assert book.cost("openai", "gpt-4o", Usage(input=10**6), day).cost_usd == 2.5


def test_no_provider_matches_by_name(book: PriceBook) -> None:
    # No provider (e.g. the CLI): the name alone, OpenAI/Anthropic first among providers listing it verbatim.
    rates = book.rates(None, "text-embedding-3-small", AT)
    assert rates is not None and rates.input == Decimal("0.02") and rates.source.endswith(":openai/text-embedding-3-small")
    assert book.rates(None, "claude-haiku-4-5@20251001", AT).input == Decimal("1")  # type: ignore[union-attr]
    assert book.rates(None, "llama3.1:8b", AT) is None


def test_time_of_day_prices_follow_genai_prices(book: PriceBook) -> None:
    """Catalog prices with other constraints (DeepSeek off-peak) are picked per call, as genai-prices does."""
    import genai_prices

    for hour in (2, 18):
        at = datetime(2025, 9, 1, hour, tzinfo=timezone.utc)
        theirs = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=1000, output_tokens=1000), "deepseek-chat", provider_id="deepseek",
            genai_request_timestamp=at,
        ).total_price  # fmt: skip
        rates = book.rates("deepseek", "deepseek-chat", at)
        assert rates is not None and book.cost_of(rates, Usage(input=1000, output=1000)) == theirs


_FORK_DURING_CATALOG_LOAD = """
import os, sys, threading, time
from costtrack import pricing
assert "genai_prices" not in sys.modules
threading.Thread(target=pricing._get_catalog, daemon=True).start()
deadline = time.monotonic() + 30
while "genai_prices.data" not in sys.modules and time.monotonic() < deadline:
    time.sleep(0)  # hand the GIL to the loader until genai-prices' data module is being imported
pid = os.fork()
if pid == 0:
    pricing._get_catalog()
    os._exit(0)
waited = time.monotonic()
while time.monotonic() - waited < 20:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("child exit", os.waitstatus_to_exitcode(status))
        break
    time.sleep(0.01)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("child hung")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_during_the_catalog_load_waits_for_it() -> None:
    """A child forked while another thread imported genai-prices (the writer's first pricing, ~150 ms) inherited the
    import's module lock held for good and hung at its first priced call (durability review)."""
    run = subprocess.run([sys.executable, "-c", _FORK_DURING_CATALOG_LOAD], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "child exit 0", run.stdout + run.stderr
