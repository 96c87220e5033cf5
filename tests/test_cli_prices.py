"""`costtrack prices show|cost`: JSON output, exit codes, one-line errors without tracebacks."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from costtrack.cli import run
from costtrack.pricing import ENV_PRICES_FILE

MTOK = Decimal(10**6)


@pytest.fixture(autouse=True)
def _no_env_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PRICES_FILE, raising=False)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code = run(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def run_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = run(list(argv))
    out = capsys.readouterr()
    assert code == 2
    assert out.out == ""
    err = out.err.strip()
    assert err.startswith("costtrack: error: ") and "\n" not in err and "Traceback" not in err
    return err


# ------------------------------------------------------------------ show


def test_show_json_rates_and_source(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "prices", "show", "gpt-4o-mini", "--provider", "openai", "--at", "2025-09-01", "--json")
    assert data["rates"] == {"input": 0.15, "cached_input": 0.075, "cache_write": None, "cache_write_1h": None, "output": 0.6,
                             "input_audio": None, "output_audio": None, "web_search_per_1k": 10.0}  # fmt: skip
    assert data["effective_rates"]["cache_write"] == 0.15  # unpriced bucket: billed at the input rate
    assert data["source"].endswith(":openai/gpt-4o-mini") and data["tiers"] == []
    assert data["at"].startswith("2025-09-01")


def test_show_json_tiers(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "prices", "show", "claude-sonnet-4-5", "-p", "anthropic", "--json")
    assert data["rates"] == {"input": 3.0, "cached_input": 0.3, "cache_write": 3.75, "cache_write_1h": 6.0, "output": 15.0,
                             "input_audio": None, "output_audio": None, "web_search_per_1k": 10.0}  # fmt: skip
    assert data["tiers"] == [
        {"above_input_tokens": 200000,
         "rates": {"input": 6.0, "cached_input": 0.6, "cache_write": 7.5, "cache_write_1h": 12.0, "output": 22.5,
                   "input_audio": None, "output_audio": None, "web_search_per_1k": 10.0}},
    ]  # fmt: skip


def test_show_price_history(capsys: pytest.CaptureFixture[str]) -> None:
    before = run_json(capsys, "prices", "show", "o3", "--at", "2025-06-09", "--json")
    after = run_json(capsys, "prices", "show", "o3", "--at", "2025-06-10T00:00:00Z", "--json")
    assert (before["rates"]["input"], before["rates"]["output"]) == (10.0, 40.0)
    assert (after["rates"]["input"], after["rates"]["output"]) == (2.0, 8.0)
    assert after["valid_from"] == "2025-06-10"


def test_show_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["prices", "show", "claude-sonnet-4-5", "--provider", "anthropic"]) == 0
    out = capsys.readouterr().out
    assert "3.75" in out and "22.5" in out and "200,000" in out
    assert "genai-prices" in out and "anthropic/claude-sonnet-4-5" in out


def test_show_prints_model_names_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    """Names with an emoji code (`:free`) or brackets (`[1m]`) are neither turned into emoji nor read as markup."""
    assert run(["prices", "show", "openai/gpt-oss-20b:free"]) == 0
    out = capsys.readouterr().out
    assert "openai/gpt-oss-20b:free" in out and "\U0001f193" not in out
    assert run(["prices", "show", "claude-sonnet-4-5[1m]"]) == 0
    assert "claude-sonnet-4-5[1m]" in capsys.readouterr().out


def test_show_unknown_model_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = run_error(capsys, "prices", "show", "no-such-model-x", "--provider", "openai")
    assert "no-such-model-x" in err


def test_show_bad_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--at" in run_error(capsys, "prices", "show", "gpt-4o", "--at", "last tuesday")


def test_show_per_hour_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "p.toml"
    prices.write_text('[models."llama3.1:8b"]\nper_hour = 0.8\n')
    data = run_json(capsys, "prices", "show", "llama3.1:8b", "-p", "ollama", "--prices-file", str(prices), "--json")
    assert data["per_hour"] == 0.8 and data["source"].startswith("overrides:")


@pytest.mark.parametrize("provider", ["openai-compatible", "ollama"])
def test_show_embedding_model_on_a_local_server_is_priced_like_chat(capsys: pytest.CaptureFixture[str], provider: str) -> None:
    chat = run_json(capsys, "prices", "show", "gpt-4o-mini", "-p", provider, "--json")
    embedding = run_json(capsys, "prices", "show", "text-embedding-3-small", "-p", provider, "--json")
    assert chat["source"].endswith(":openai/gpt-4o-mini")
    assert embedding["source"].endswith(":openai/text-embedding-3-small") and embedding["rates"]["input"] == 0.02


def test_openai_prefix_without_provider_uses_openai_history(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "prices", "cost", "openai/o3", "--at", "2025-06-01", "--input-tokens", "1000000",
                    "--output-tokens", "0", "--json")  # fmt: skip
    assert data["cost_usd"] == 10.0 and ":openai/o3" in data["price_source"]
    shown = run_json(capsys, "prices", "show", "openai/gpt-4o", "--at", "2025-01-01", "--json")
    assert shown["source"].endswith(":openai/gpt-4o") and shown["rates"]["cached_input"] == 1.25


README_PRICES = """\
[models."my-finetune"]
provider = "openai"      # optional: the entry then prices only that provider's calls
input = 0.30
output = 1.20
cached_input = 0.15      # optional
cache_write = 0.375      # optional, 5-minute writes
cache_write_1h = 0.60    # optional

[models."llama3.1:8b"]   # a self-hosted model: priced per hour for the API-vs-self-hosted comparisons
per_hour = 0.80
"""


def test_prices_file_model_of_one_provider_found_without_provider(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "good.toml"
    prices.write_text(README_PRICES)
    data = run_json(capsys, "prices", "show", "my-finetune", "--prices-file", str(prices), "--json")
    assert data["provider"] == "openai" and data["rates"]["input"] == 0.3 and data["source"].startswith("overrides:")
    assert run(["prices", "show", "my-finetune", "--prices-file", str(prices)]) == 0
    assert "provider: openai" in capsys.readouterr().out
    assert run(["prices", "cost", "my-finetune", "--input-tokens", "1000000", "--output-tokens", "0",
                "--prices-file", str(prices)]) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "$0.3" and "provider: openai" in out[-1]


def test_prices_file_model_of_other_providers_is_named_in_the_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "p.toml"
    prices.write_text(README_PRICES + '[models."two-a"]\nmodel = "two"\nprovider = "openai"\ninput = 1\noutput = 1\n'
                      '[models."two-b"]\nmodel = "two"\nprovider = "azure"\ninput = 2\noutput = 2\n')  # fmt: skip
    err = run_error(capsys, "prices", "show", "my-finetune", "-p", "anthropic", "--prices-file", str(prices))
    assert "'openai'" in err and "-p openai" in err
    err = run_error(capsys, "prices", "show", "two", "--prices-file", str(prices))
    assert "'openai', 'azure'" in err and "-p" in err


# ------------------------------------------------------------------ cost


def test_cost_json_gpt_4o_mini_cached(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "prices", "cost", "gpt-4o-mini", "--input-tokens", "2048", "--cached-tokens", "1536",
                    "--output-tokens", "120", "--at", "2025-09-01", "--json")  # fmt: skip
    expected = (Decimal(512) * Decimal("0.15") + Decimal(1536) * Decimal("0.075") + Decimal(120) * Decimal("0.60")) / MTOK
    assert data["cost_usd"] == float(expected)
    assert Decimal(data["cost_usd_exact"]) == expected
    assert data["price_source"].endswith(":openai/gpt-4o-mini")


def test_cost_audio_tokens_and_web_searches(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "prices", "cost", "gpt-audio", "--input-tokens", "1000", "--audio-input-tokens", "800",
                    "--output-tokens", "500", "--audio-output-tokens", "400", "--at", "2026-11-02", "--json")  # fmt: skip
    # gpt-audio: text $2.50 / $10, audio $32 / $64 per 1M tokens
    expected = (Decimal(200) * Decimal("2.5") + Decimal(800) * 32 + Decimal(100) * 10 + Decimal(400) * 64) / MTOK
    assert Decimal(data["cost_usd_exact"]) == expected
    assert data["breakdown_usd"]["input_audio"] == float(Decimal(800) * 32 / MTOK)
    searched = run_json(capsys, "prices", "cost", "claude-sonnet-4-5", "--input-tokens", "9000", "--output-tokens", "400",
                        "--web-searches", "2", "--at", "2025-09-01", "--json")  # fmt: skip
    assert Decimal(searched["cost_usd_exact"]) == (Decimal(9000) * 3 + Decimal(400) * 15) / MTOK + Decimal("0.02")
    assert searched["breakdown_usd"]["web_search"] == 0.02
    err = run_error(capsys, "prices", "cost", "gpt-audio", "--input-tokens", "100", "--audio-input-tokens", "200",
                    "--output-tokens", "1")  # fmt: skip
    assert "--audio-input-tokens 200 is more than the uncached input (100)" in err


def test_cost_anthropic_cache_writes_and_batch(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["prices", "cost", "claude-haiku-4-5", "-p", "anthropic", "--input-tokens", "10000", "--cached-tokens",
            "2000", "--cache-write-tokens", "3000", "--cache-write-1h-tokens", "1000", "--output-tokens", "500",
            "--reasoning-tokens", "100", "--at", "2025-09-01", "--json"]  # fmt: skip
    # haiku 4.5: $1 input, $0.10 read, $1.25 5m write, $2 1h write, $5 output (reasoning inside the 500).
    expected = (Decimal(5000) * 1 + Decimal(2000) * Decimal("0.10") + Decimal(2000) * Decimal("1.25")
                + Decimal(1000) * 2 + Decimal(500) * 5) / MTOK  # fmt: skip
    assert run_json(capsys, *argv)["cost_usd"] == float(expected)
    batch = run_json(capsys, *argv, "--batch")
    assert batch["cost_usd"] == float(expected / 2) and batch["batch"] is True


def test_cost_batch_follows_the_batch_table_and_service_tier_its_rates(capsys: pytest.CaptureFixture[str]) -> None:
    """--batch prices as a recorded batch call is (the catalog's Batch table where it has one, else half);
    --service-tier as a call served at that tier (o3 flex: $1 input, $0.25 cached, $4 output)."""
    turbo = ["prices", "cost", "gpt-3.5-turbo-1106", "--input-tokens", "1000000", "--output-tokens", "1000000",
             "--at", "2026-11-01", "--batch", "--json"]  # fmt: skip
    data = run_json(capsys, *turbo)
    assert data["cost_usd"] == 3.0 and data["price_source"].endswith("(batch)")
    assert sum(data["breakdown_usd"].values()) == 3.0
    flex = run_json(capsys, "prices", "cost", "o3", "--input-tokens", "6000", "--cached-tokens", "4000",
                    "--output-tokens", "5000", "--at", "2026-11-01", "--service-tier", "flex", "--json")  # fmt: skip
    assert flex["cost_usd"] == float((2000 * Decimal(1) + 4000 * Decimal("0.25") + 5000 * Decimal(4)) / MTOK)
    assert flex["price_source"].endswith("(flex)") and flex["service_tier"] == "flex"
    error = run_error(capsys, "prices", "cost", "o3", "--input-tokens", "1", "--output-tokens", "1", "--batch",
                      "--service-tier", "flex")  # fmt: skip
    assert "--batch and --service-tier" in error


def test_cost_at_a_tier_the_catalog_lacks_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """A tier the catalog has no rates for priced at the standard rates without a word (review finding): still priced
    so, as a recorded call would be, with a note on stderr; the standard tier's names get none. A name that is no
    service tier at all (a misspelling) is refused: it printed the note and exited 0 (CLI review)."""
    argv = ["prices", "cost", "o3", "--input-tokens", "1000", "--output-tokens", "10", "--at", "2026-11-01", "--json"]
    standard = run_json(capsys, *argv)
    assert run([*argv, "--service-tier", "scale"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["cost_usd"] == standard["cost_usd"]
    assert "no 'scale' rates for o3" in out.err
    assert run([*argv, "--service-tier", "flexx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'flexx' is not a service tier" in err
    assert run([*argv, "--service-tier", "default"]) == 0
    assert capsys.readouterr().err == ""


def test_cost_o3_history_and_tier(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["prices", "cost", "o3", "--input-tokens", "1000", "--output-tokens", "1000", "--json"]
    assert run_json(capsys, *base, "--at", "2025-06-01")["cost_usd"] == float((1000 * Decimal(10) + 1000 * Decimal(40)) / MTOK)
    assert run_json(capsys, *base, "--at", "2025-06-10")["cost_usd"] == float((1000 * Decimal(2) + 1000 * Decimal(8)) / MTOK)
    tier = ["prices", "cost", "claude-sonnet-4-5", "--output-tokens", "0", "--json"]
    assert run_json(capsys, *tier, "--input-tokens", "200000")["cost_usd"] == 0.6
    assert run_json(capsys, *tier, "--input-tokens", "200001")["cost_usd"] == 1.200006


def test_cost_plain_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["prices", "cost", "text-embedding-3-small", "--input-tokens", "1000000", "--output-tokens", "0"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "$0.02" and "openai/text-embedding-3-small" in out


def test_cost_with_prices_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."my-model"]\ninput = 0.5\noutput = 1.5\n')
    data = run_json(capsys, "prices", "cost", "my-model", "--input-tokens", "1000", "--output-tokens", "1000",
                    "--prices-file", str(prices), "--json")  # fmt: skip
    assert data["cost_usd"] == float((1000 * Decimal("0.5") + 1000 * Decimal("1.5")) / MTOK)
    assert data["price_source"] == f"overrides:{prices.resolve()}:my-model"


def test_cost_with_env_prices_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."env-model"]\ninput = 1\noutput = 1\n')
    monkeypatch.setenv(ENV_PRICES_FILE, str(prices))
    data = run_json(capsys, "prices", "cost", "env-model", "--input-tokens", "1000000", "--output-tokens", "0", "--json")
    assert data["cost_usd"] == 1.0


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--input-tokens", "100", "--cached-tokens", "80", "--cache-write-tokens", "30", "--output-tokens", "1"], "--input-tokens"),
        (["--input-tokens", "100", "--output-tokens", "10", "--reasoning-tokens", "11"], "--reasoning-tokens"),
        (["--input-tokens", "100", "--cache-write-tokens", "10", "--cache-write-1h-tokens", "20", "--output-tokens", "1"], "1-hour"),
        (["--input-tokens", "-5", "--output-tokens", "1"], "--input-tokens"),
        (["--input-tokens", "abc", "--output-tokens", "1"], "--input-tokens"),
        (["--output-tokens", "1"], "--input-tokens"),
    ],
)
def test_cost_inconsistent_counts_are_one_line_errors(capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str) -> None:
    assert fragment in run_error(capsys, "prices", "cost", "gpt-4o", *extra)


def test_cost_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    err = run_error(capsys, "prices", "cost", "llama3.1:8b", "-p", "ollama", "--input-tokens", "1", "--output-tokens", "1")
    assert "llama3.1:8b" in err


def test_cost_per_hour_model_has_no_call_price(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "p.toml"
    prices.write_text('[models."llama3.1:8b"]\nper_hour = 0.8\n')
    err = run_error(capsys, "prices", "cost", "llama3.1:8b", "-p", "ollama", "--input-tokens", "1",
                    "--output-tokens", "1", "--prices-file", str(prices))  # fmt: skip
    assert "per hour" in err


@pytest.mark.parametrize(
    "text", ['[models."m"]\ninput = -1\noutput = 1\n', "not toml [", '[models."m"]\nprice = 1\n'],
)
def test_malformed_prices_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    prices = tmp_path / "bad.toml"
    prices.write_text(text)
    err = run_error(capsys, "prices", "cost", "gpt-4o", "--input-tokens", "1", "--output-tokens", "1",
                    "--prices-file", str(prices))  # fmt: skip
    assert str(prices.resolve()) in err


def test_missing_prices_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.toml"
    err = run_error(capsys, "prices", "show", "gpt-4o", "--prices-file", str(missing))
    assert "missing.toml" in err


def test_a_model_whose_file_prices_start_later_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "dated.toml"
    prices.write_text('[models."new-model"]\nsince = 2026-01-01\ninput = 3\noutput = 3\n')
    assert run(["prices", "show", "new-model", "--prices-file", str(prices), "--at", "2025-06-01"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "start later" in err and "2025-06-01" in err
    assert run(["prices", "show", "new-model", "--prices-file", str(prices), "--at", "2026-06-01"]) == 0


def test_an_option_missing_its_value_points_at_its_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["prices", "cost", "gpt-4o", "--input-tokens"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("(see `costtrack prices cost --help`)")


def test_prices_for_any_provider_say_when_a_provider_has_its_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without -p the entry for any provider is shown; a provider's own entry (what its calls get) is pointed at."""
    prices = tmp_path / "two.toml"
    prices.write_text('[models."mini1"]\nmodel = "gpt-4o-mini"\nprovider = "openai"\ninput = 1\noutput = 1\n'
                      '[models."mini2"]\nmodel = "gpt-4o-mini"\ninput = 2\noutput = 2\n')  # fmt: skip
    argv = ["prices", "cost", "gpt-4o-mini", "--prices-file", str(prices), "--input-tokens", "1000000", "--output-tokens", "0", "--json"]
    assert run(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["cost_usd"] == 2.0 and "get that entry (see -p openai)" in captured.err
    assert run([*argv, "-p", "openai"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["cost_usd"] == 1.0 and captured.err == ""


def test_an_unknown_provider_is_an_error_not_ignored(capsys, tmp_path):
    """`-p nosuch` was ignored: exit 0 with OpenAI's price and "provider": "nosuch" in the JSON (review finding)."""
    for argv in (["prices", "show", "gpt-4o", "-p", "nosuch"],
                 ["prices", "cost", "gpt-4o", "-p", "nosuch", "--input-tokens", "1000", "--output-tokens", "1", "--json"],
                 ["calc", "-m", "gpt-4o", "-p", "nosuch", "--requests-per-day", "100", "--input-tokens", "5",
                  "--output-tokens", "5"]):  # fmt: skip
        message = run_error(capsys, *argv)
        assert message.startswith("costtrack: error: unknown provider 'nosuch': use one of openai, anthropic")
    assert run_json(capsys, "prices", "show", "gpt-4o", "-p", "Azure", "--json")["provider"] == "Azure"
    prices = tmp_path / "p.toml"
    prices.write_text('[models."house"]\nprovider = "inhouse"\ninput = 1\noutput = 2\n')
    assert run_json(capsys, "prices", "show", "house", "-p", "inhouse", "--json", "--prices-file", str(prices))["rates"]["input"] == 1
    # A model the file prices for every provider takes any name, as `wrap(provider="mygateway")` records it
    prices.write_text('[models."house"]\ninput = 1\noutput = 2\n')
    assert run_json(capsys, "prices", "show", "house", "-p", "mygateway", "--json", "--prices-file", str(prices))["rates"]["input"] == 1
