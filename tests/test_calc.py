"""`costtrack calc`: API vs self-hosted figures for the course's scenarios, computed by hand here, not copied.

The course's own outputs are wrong in places (its "$3.15/month" for 100 req/day on
gpt-4o-mini at 500 in / 200 out is really 100 x 30 x (500 x 0.15 + 200 x 0.60) / 1e6
= $0.585); every expected value below is computed independently from list prices.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer

import costtrack.cli as cli
from costtrack.cli import calc as calc_cli
from costtrack.errors import ConfigError
from costtrack.pricing import ENV_PRICES_FILE
from costtrack.records import CallRecord
from costtrack.reports import calc as core

# List prices, USD per 1M tokens (reference/pricing-notes.md).
MINI_IN, MINI_CACHED, MINI_OUT = 0.15, 0.075, 0.60
GPT4O_IN, GPT4O_OUT = 2.50, 10.00

# The course's hardware, by hand: monthly cost of one GPU at 8 h/day, months of 30 days.
RTX4090_8H = 1600 / (3 * 12) + 450 / 1000 * 8 * 30 * 0.12 + 0  # 44.444... + 12.96
A100_8H = 10000 / (4 * 12) + 400 / 1000 * 8 * 30 * 0.12 + 50  # 208.333... + 11.52 + 50
CLOUD_GPU = 1500.0


def per_request(tin: float, tout: float, rin: float, rout: float) -> float:
    return (tin * rin + tout * rout) / 1e6


def api_month(rpd: float, tin: float, tout: float, rin: float, rout: float) -> float:
    return rpd * 30 * per_request(tin, tout, rin, rout)


@pytest.fixture(autouse=True)
def _no_env_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PRICES_FILE, raising=False)


@pytest.fixture(autouse=True)
def _calc_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `costtrack calc` through the real `costtrack.cli.run`, registering it on a copy when the app lacks it."""
    names = {info.name or getattr(info.callback, "__name__", None) for info in cli.app.registered_commands}
    if "calc" in names:
        return
    app = typer.Typer(name="costtrack", add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    app.registered_commands = list(cli.app.registered_commands)
    app.registered_groups = list(cli.app.registered_groups)
    app.command("calc")(calc_cli.calc)
    monkeypatch.setattr(cli, "app", app)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = cli.run(["calc", *argv, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def run_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = cli.run(["calc", *argv])
    out = capsys.readouterr()
    assert code == 2, (out.out, out.err)
    assert out.out == ""
    err = out.err.strip()
    assert err.startswith("costtrack: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


COURSE = ("--input-tokens", "500", "--output-tokens", "200", "--hours-per-day", "8")


def mini_price() -> core.ApiPrice:
    return core.ApiPrice("gpt-4o-mini", Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))


def gpt4o_price() -> core.ApiPrice:
    return core.ApiPrice("gpt-4o", Decimal("2.50"), Decimal("10.00"), Decimal("1.25"))


def hardware(name: str) -> core.Hardware:
    hw = core.load_hardware().get(name)
    assert hw is not None
    return hw


def scenario(rpd: float, price: core.ApiPrice, hw: str = "rtx4090", **kw: Any) -> core.Scenario:
    return core.Scenario(workload=core.Workload.per_request(rpd, 500, 200), api=price, hardware=hardware(hw), **kw)


# ------------------------------------------------------------------ the course's scenarios, computed


@pytest.mark.parametrize(
    ("rpd", "price", "rin", "rout"),
    [
        (100, mini_price, MINI_IN, MINI_OUT),
        (10_000, mini_price, MINI_IN, MINI_OUT),
        (100, gpt4o_price, GPT4O_IN, GPT4O_OUT),
        (10_000, gpt4o_price, GPT4O_IN, GPT4O_OUT),
    ],
)
def test_api_monthly_cost_of_course_scenarios(rpd: int, price: Any, rin: float, rout: float) -> None:
    result = core.calculate(scenario(rpd, price()))
    expected = api_month(rpd, 500, 200, rin, rout)
    assert result.cloud.monthly_usd == pytest.approx(expected, rel=1e-12)
    assert result.cloud.per_1k_usd == pytest.approx(1000 * per_request(500, 200, rin, rout), rel=1e-12)


def test_course_numbers_corrected() -> None:
    # The course prints $3.15 and $315.00: the arithmetic gives $0.585 and $58.50.
    assert core.calculate(scenario(100, mini_price())).cloud.monthly_usd == pytest.approx(0.585, abs=1e-12)
    assert core.calculate(scenario(10_000, mini_price())).cloud.monthly_usd == pytest.approx(58.50, abs=1e-9)
    assert core.calculate(scenario(100, gpt4o_price())).cloud.monthly_usd == pytest.approx(9.75, abs=1e-12)
    assert core.calculate(scenario(10_000, gpt4o_price())).cloud.monthly_usd == pytest.approx(975.0, abs=1e-9)


@pytest.mark.parametrize(("name", "monthly"), [("rtx4090", RTX4090_8H), ("a100_40gb", A100_8H), ("cloud_gpu", CLOUD_GPU)])
def test_hardware_monthly_cost(name: str, monthly: float) -> None:
    result = core.calculate(scenario(100, mini_price(), name))
    assert result.local.monthly_usd == pytest.approx(monthly, rel=1e-12)
    assert result.local.gpus == 1
    assert result.local.per_1k_usd == pytest.approx(monthly / (100 * 30) * 1000, rel=1e-12)
    assert sum(result.local.breakdown_per_gpu_usd.values()) == pytest.approx(monthly, rel=1e-12)


def test_rtx4090_breakdown() -> None:
    parts = core.calculate(scenario(100, mini_price())).local.breakdown_per_gpu_usd
    assert parts["depreciation"] == pytest.approx(1600 / 36)
    assert parts["power"] == pytest.approx(12.96)
    assert parts["maintenance"] == 0
    assert RTX4090_8H == pytest.approx(57.40444, abs=1e-5)


@pytest.mark.parametrize(
    ("hw", "monthly", "price", "rin", "rout"),
    [
        ("rtx4090", RTX4090_8H, mini_price, MINI_IN, MINI_OUT),
        ("rtx4090", RTX4090_8H, gpt4o_price, GPT4O_IN, GPT4O_OUT),
        ("a100_40gb", A100_8H, mini_price, MINI_IN, MINI_OUT),
        ("a100_40gb", A100_8H, gpt4o_price, GPT4O_IN, GPT4O_OUT),
        ("cloud_gpu", CLOUD_GPU, mini_price, MINI_IN, MINI_OUT),
        ("cloud_gpu", CLOUD_GPU, gpt4o_price, GPT4O_IN, GPT4O_OUT),
    ],
)
def test_breakeven_without_capacity_limit(hw: str, monthly: float, price: Any, rin: float, rout: float) -> None:
    # Self-hosted is fixed, the API is linear: they cross where rpd x 30 x per-request cost = monthly.
    expected = monthly / (30 * per_request(500, 200, rin, rout))
    result = core.calculate(scenario(100, price(), hw))
    assert result.breakeven_requests_per_day == pytest.approx(expected, rel=1e-12)
    # The breakeven does not depend on the volume it was computed from.
    again = core.calculate(scenario(10_000, price(), hw))
    assert again.breakeven_requests_per_day == pytest.approx(expected, rel=1e-12)


def test_breakeven_values_by_hand() -> None:
    assert core.calculate(scenario(100, mini_price())).breakeven_requests_per_day == pytest.approx(9812.7255, abs=1e-3)
    assert core.calculate(scenario(100, gpt4o_price())).breakeven_requests_per_day == pytest.approx(588.7635, abs=1e-3)
    assert core.calculate(scenario(100, gpt4o_price(), "a100_40gb")).breakeven_requests_per_day == pytest.approx(
        2767.7265, abs=1e-3
    )
    assert core.calculate(scenario(100, mini_price(), "cloud_gpu")).breakeven_requests_per_day == pytest.approx(
        1500 / 0.00585, rel=1e-12
    )


def test_recommendation_follows_cost() -> None:
    low = core.calculate(scenario(100, mini_price()))
    assert low.recommendation == "api"
    assert any(r.startswith("volume:") and "9,813 requests/day" in r for r in low.reasons)
    # 10,000/day on gpt-4o-mini: $58.50 against $57.40 for the RTX 4090 (capacity not checked).
    high = core.calculate(scenario(10_000, mini_price()))
    assert high.recommendation == "self-hosted"
    assert any(r.startswith("capacity: not checked") for r in high.reasons)


# ------------------------------------------------------------------ capacity


def test_gpus_needed_at_peak() -> None:
    # 10,000 requests over 8 h = 0.3472/s on average; 3x peak = 1.0417/s; 0.5/s per GPU -> 2.08 -> 3 GPUs.
    thr = core.Throughput(requests_per_s=0.5)
    result = core.calculate(scenario(10_000, mini_price(), throughput=thr))
    assert result.local.peak_requests_per_s == pytest.approx(10_000 / (8 * 3600) * 3)
    assert result.local.gpus == 3
    assert result.local.monthly_usd == pytest.approx(3 * RTX4090_8H)
    # Capacity of one GPU at the peak factor: 0.5/s x 8 h / 3 = 4,800 requests/day.
    assert result.gpu_capacity_requests_per_day == pytest.approx(4800)


def test_gpus_exactly_at_capacity_is_not_rounded_up() -> None:
    thr = core.Throughput(requests_per_s=0.5)
    w = core.Workload.per_request(9600, 500, 200)  # peak = 1.0/s exactly = 2 GPUs
    assert core.gpus_needed(w, 8, 3, thr) == 2
    assert core.gpus_needed(core.Workload.per_request(9601, 500, 200), 8, 3, thr) == 3
    assert core.gpus_needed(core.Workload.per_request(9600, 500, 200), 8, 3, core.Throughput()) == 1


def test_gpus_from_tokens_per_second() -> None:
    # Peak output: 10,000 x 200 tokens over 8 h, x3 = 208.33 tokens/s; 100 tokens/s per GPU -> 3 GPUs.
    w = core.Workload.per_request(10_000, 500, 200)
    assert core.gpus_needed(w, 8, 3, core.Throughput(tokens_per_s=100)) == 3
    assert core.gpus_needed(w, 8, 3, core.Throughput(tokens_per_s=210)) == 1
    # Both limits given: the tighter one decides.
    assert core.gpus_needed(w, 8, 3, core.Throughput(requests_per_s=10, tokens_per_s=100)) == 3


def test_breakeven_null_when_a_gpu_saturates_first() -> None:
    # One RTX 4090 carries 4,800 requests/day at 0.5/s: less than the 9,813/day it needs to pay for itself.
    result = core.calculate(scenario(100, mini_price(), throughput=core.Throughput(requests_per_s=0.5)))
    assert result.breakeven_requests_per_day is None
    assert result.recommendation == "api"
    assert any("saturates at 4,800 requests/day" in r for r in result.reasons)
    assert all(row.cheaper == "api" for row in result.volumes)


@pytest.mark.parametrize("gpu_rps", [0.5, 1.0, 2.0, 5.0])
def test_breakeven_matches_brute_force(gpu_rps: float) -> None:
    """The smallest whole request rate where self-hosted <= API, found by scanning, agrees with the formula."""
    thr = core.Throughput(requests_per_s=gpu_rps)
    result = core.calculate(scenario(100, mini_price(), throughput=thr))
    per_req = per_request(500, 200, MINI_IN, MINI_OUT)
    capacity = gpu_rps * 8 * 3600 / 3

    def local(r: int) -> float:
        return max(1, math.ceil(round(r / capacity, 9))) * RTX4090_8H

    found = next((r for r in range(1, 60_000) if local(r) <= r * 30 * per_req), None)
    if found is None:
        assert result.breakeven_requests_per_day is None
    else:
        assert result.breakeven_requests_per_day is not None
        assert math.ceil(result.breakeven_requests_per_day) == found


def test_volume_table_per_day() -> None:
    thr = core.Throughput(requests_per_s=2.0)  # 19,200 requests/day per GPU
    result = core.calculate(scenario(100, mini_price(), throughput=thr))
    rows = {row.requests_per_day: row for row in result.volumes}
    assert sorted(rows) == [100, 1_000, 10_000, 100_000]
    assert rows[100_000].requests_per_month == 3_000_000
    assert rows[100_000].cloud_monthly_usd == pytest.approx(api_month(100_000, 500, 200, MINI_IN, MINI_OUT))
    assert rows[100_000].gpus == math.ceil(100_000 / 19_200)
    assert rows[100_000].local_monthly_usd == pytest.approx(6 * RTX4090_8H)
    assert [rows[v].cheaper for v in (100, 1_000, 10_000, 100_000)] == ["api", "api", "self-hosted", "self-hosted"]


def test_cached_and_batch_shares() -> None:
    w = core.Workload.per_request(1000, 500, 200, cached_share=0.5, batch_share=0.5)
    monthly = float(core.api_monthly(w, mini_price()))
    per_req = (250 * MINI_IN + 250 * MINI_CACHED + 200 * MINI_OUT) / 1e6
    assert monthly == pytest.approx(1000 * 30 * per_req * (0.5 + 0.5 * 0.5))


def test_batch_share_at_the_models_batch_rates() -> None:
    # OpenAI's Batch table for gpt-4o: input $1.25, cached input $1.25 (the standard cached rate), output $5.
    price = core.ApiPrice("gpt-4o", Decimal("2.5"), Decimal("10"), Decimal("1.25"),
                          batch=(Decimal("1.25"), Decimal("1.25"), Decimal("5")))  # fmt: skip
    w = core.Workload.per_request(1000, 1000, 100, cached_share=0.8, batch_share=0.5)
    standard = (200 * 2.5 + 800 * 1.25 + 100 * 10) / 1e6  # $0.0025 a request
    batched = (200 * 1.25 + 800 * 1.25 + 100 * 5) / 1e6  # $0.00175: 30% off, not 50%
    assert float(core.api_monthly(w, price)) == pytest.approx(1000 * 30 * (0.5 * standard + 0.5 * batched))


def test_cli_batch_share_uses_the_catalogs_batch_rates(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ("--requests-per-day", "1000", "--input-tokens", "1000", "--output-tokens", "100", "--cached-share", "0.8",
             "--hardware", "rtx4090")  # fmt: skip
    plain = run_json(capsys, "--model", "gpt-4o", *flags)["cloud"]["monthly_usd"]
    batched = run_json(capsys, "--model", "gpt-4o", *flags, "--batch-share", "1")["cloud"]["monthly_usd"]
    assert plain == pytest.approx(1000 * 30 * 0.0025)
    assert batched == pytest.approx(1000 * 30 * 0.00175)
    # Claude's Message Batches halve every rate, cache reads too: 200 x $1.50 + 800 x $0.15 + 100 x $7.50 = $0.00117.
    claude = run_json(capsys, "--model", "claude-sonnet-4-5", *flags, "--batch-share", "1")["cloud"]["monthly_usd"]
    assert claude == pytest.approx(1000 * 30 * 0.00117)


def test_private_data_and_latency_override_cost() -> None:
    private = core.calculate(scenario(100, mini_price(), private_data=True))
    assert private.recommendation == "self-hosted"
    assert private.reasons[0].startswith("privacy:") and "more" in private.reasons[0]
    fast = core.calculate(scenario(100, mini_price(), latency_critical=True))
    assert fast.recommendation == "self-hosted"
    assert fast.reasons[0].startswith("latency:")


def test_rented_gpu_by_the_hour() -> None:
    hw = core.Hardware(name="h", rent_per_hour=2.0)
    assert hw.monthly(8) == Decimal("480")  # 2 x 8 x 30
    assert hardware("cloud_gpu").monthly(8) == Decimal("1500")


def test_monthly_tokens_like_the_course_calculator() -> None:
    # 10M tokens/month, 30% output: 7M in + 3M out.
    w = core.Workload.monthly_tokens(10_000_000, 0.3)
    assert float(core.api_monthly(w, mini_price())) == pytest.approx(7 * MINI_IN + 3 * MINI_OUT)  # $2.85
    assert float(core.api_monthly(w, gpt4o_price())) == pytest.approx(7 * GPT4O_IN + 3 * GPT4O_OUT)  # $47.50
    result = core.calculate(core.Scenario(workload=w, api=mini_price(), hardware=hardware("rtx4090")))
    assert result.breakeven_requests_per_day is None
    assert result.breakeven_monthly_tokens == pytest.approx(RTX4090_8H / (2.85 / 10_000_000))
    assert [row.monthly_tokens for row in result.volumes] == pytest.approx([1e6, 1e7, 1e8, 1e9])


@pytest.mark.parametrize(
    ("text", "value"), [("10M", 1e7), ("1.5k", 1500), ("2,000", 2000), ("1e6", 1e6), ("250", 250), ("1B", 1e9)]
)
def test_parse_amount(text: str, value: float) -> None:
    assert core.parse_amount(text, "--x") == value


@pytest.mark.parametrize("text", ["10MB", "ten", "-5", "1,00", "", "M"])
def test_parse_amount_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        core.parse_amount(text, "--x")


def test_shipped_hardware_profiles() -> None:
    catalog = core.load_hardware()
    assert sorted(catalog.profiles) == ["a100_40gb", "cloud_gpu", "rtx4090"]
    assert catalog.electricity_per_kwh == 0.12
    rtx = catalog.profiles["rtx4090"]
    assert (rtx.hardware_cost, rtx.power_watts, rtx.lifespan_years, rtx.maintenance_per_month) == (1600, 450, 3, 0)
    assert catalog.profiles["cloud_gpu"].rented


# ------------------------------------------------------------------ CLI


def test_cli_json_schema_and_values(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--model", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--hardware", "rtx4090")
    assert set(data["cloud"]) == {"monthly_usd", "per_1k_usd"}
    assert set(data["local"]) == {"monthly_usd", "per_1k_usd", "gpus"}
    assert {"breakeven_requests_per_day", "recommendation", "reasons", "volumes", "inputs"} <= set(data)
    assert data["cloud"]["monthly_usd"] == pytest.approx(0.585)
    assert data["local"]["monthly_usd"] == pytest.approx(RTX4090_8H)
    assert data["local"]["gpus"] == 1
    assert data["breakeven_requests_per_day"] == pytest.approx(RTX4090_8H / (30 * 0.000195))
    assert data["recommendation"] == "api"
    assert data["inputs"]["price_source"].endswith("openai/gpt-4o-mini")
    assert [v["requests_per_day"] for v in data["volumes"]] == [100, 1000, 10000, 100000]


def test_cli_capacity_and_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        capsys, "--model", "gpt-4o", "--requests-per-day", "10K", *COURSE, "--hardware", "a100_40gb",
        "--gpu-requests-per-s", "0.4", "--peak-factor", "2", "--electricity-per-kwh", "0.30", "--maintenance-per-month", "0",
    )  # fmt: skip
    per_gpu = 10000 / 48 + 0.4 * 8 * 30 * 0.30
    # Peak: 10,000 / 28,800 s x 2 = 0.694/s; 0.4/s per GPU -> 1.74 -> 2 GPUs.
    assert data["local"]["gpus"] == 2
    assert data["local"]["monthly_usd"] == pytest.approx(2 * per_gpu)
    assert data["cloud"]["monthly_usd"] == pytest.approx(975.0)
    # One GPU carries 0.4 x 28,800 / 2 = 5,760/day, more than it needs to break even.
    assert data["breakeven_requests_per_day"] == pytest.approx(per_gpu / (30 * per_request(500, 200, GPT4O_IN, GPT4O_OUT)))
    assert data["recommendation"] == "self-hosted"


def test_cli_rented_gpu_hourly(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--hardware", "cloud_gpu",
                    "--gpu-hourly", "1.5")  # fmt: skip
    assert data["local"]["monthly_usd"] == pytest.approx(1.5 * 8 * 30)


def test_cli_per_hour_model_from_prices_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."llama3.1:8b"]\nper_hour = 0.8\n')
    data = run_json(capsys, "-m", "gpt-4o", "--requests-per-day", "100", *COURSE, "--hardware", "llama3.1:8b",
                    "--prices-file", str(prices))  # fmt: skip
    assert data["local"]["monthly_usd"] == pytest.approx(0.8 * 8 * 30)


def test_cli_compare_cheapest_first(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--requests-per-day", "1000", *COURSE,
                    "--models", "gpt-4o,gpt-4o-mini,claude-haiku-4-5,a100_40gb,cloud_gpu")  # fmt: skip
    rows = data["compare"]
    expected = {
        "gpt-4o-mini": api_month(1000, 500, 200, MINI_IN, MINI_OUT),  # 5.85
        "gpt-4o": api_month(1000, 500, 200, GPT4O_IN, GPT4O_OUT),  # 97.50
        "claude-haiku-4-5": api_month(1000, 500, 200, 1.00, 5.00),  # 45.00
        "rtx4090": RTX4090_8H,
        "a100_40gb": A100_8H,
        "cloud_gpu": CLOUD_GPU,
    }
    assert [r["name"] for r in rows] == sorted(expected, key=expected.__getitem__)
    for row in rows:
        assert row["monthly_usd"] == pytest.approx(expected[row["name"]])
    kinds = {r["name"]: r["kind"] for r in rows}
    assert kinds["gpt-4o"] == "api" and kinds["cloud_gpu"] == "self-hosted"
    # No --model: the headline uses the cheapest API model.
    assert data["inputs"]["model"] == "gpt-4o-mini"


def test_cli_compare_default_set(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--compare", "--monthly-tokens", "10M", "--output-share", "0.3")
    rows = data["compare"]
    names = [r["name"] for r in rows]
    assert {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "claude-haiku-4-5", "rtx4090", "a100_40gb", "cloud_gpu"} <= set(names)
    monthly = [r["monthly_usd"] for r in rows]
    assert monthly == sorted(monthly)
    by_name = {r["name"]: r["monthly_usd"] for r in rows}
    assert by_name["gpt-4o-mini"] == pytest.approx(7 * MINI_IN + 3 * MINI_OUT)
    assert by_name["claude-sonnet-4-5"] == pytest.approx(7 * 3.00 + 3 * 15.00)  # the course's $66
    assert data["cloud"]["per_1k_usd"] is None  # no request count in token mode
    assert data["breakeven_requests_per_day"] is None and data["breakeven_monthly_tokens"] > 0


def test_cli_table_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.run(["calc", "-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE])
    out = capsys.readouterr().out
    assert code == 0
    assert "$0.5850" in out and "$57.4044" in out
    assert "Breakeven: 9,813 requests/day" in out
    assert "Recommendation: API" in out
    assert "requests/day" in out and "requests/month" in out


# ------------------------------------------------------------------ --from-db

NOW = datetime.now(timezone.utc).replace(microsecond=0)
START = NOW - timedelta(days=25)


def seed(tracker: Any) -> None:
    """201 gpt-4o-mini-heavy calls over exactly 20 days, plus records --from-db must leave out."""
    step = timedelta(days=20) / 200
    for i in range(201):
        claude = i % 4 == 0  # 51 claude calls, 150 gpt-4o-mini: the most-called priced model is gpt-4o-mini
        tracker.add(CallRecord(
            timestamp=START + i * step, provider="anthropic" if claude else "openai",
            model="claude-haiku-4-5" if claude else "gpt-4o-mini", operation="chat", endpoint="/api/summarize",
            tokens_input=1000, tokens_cached_input=250, tokens_output=300, cost_usd=0.0001, latency_ms=800.0,
            price_source="test",
        ))  # fmt: skip
    # Left out: errors, response-cache hits, calls older than --since, and benchmark runs.
    tracker.add(CallRecord(timestamp=START, provider="openai", model="gpt-4o-mini", operation="chat",
                           endpoint="/api/summarize", status="error", error_type="timeout"))  # fmt: skip
    tracker.add(CallRecord(timestamp=START, provider="openai", model="gpt-4o-mini", operation="chat", endpoint="/api/summarize",
                           tokens_input=1000, tokens_output=300, cache_hit=True, cost_usd=0.0, price_source="test"))  # fmt: skip
    tracker.add(CallRecord(timestamp=NOW - timedelta(days=45), provider="openai", model="gpt-4o", operation="chat",
                           endpoint="/api/summarize", tokens_input=99999, tokens_output=99999, cost_usd=1.0,
                           price_source="test"))  # fmt: skip
    # A benchmark: 10 calls started 1 s apart, 1 s each, 100 output tokens: 10 s wall, 1 request/s, 100 tokens/s.
    bench_start = NOW - timedelta(days=1)
    for i in range(10):
        tracker.add(CallRecord(timestamp=bench_start + timedelta(seconds=i), provider="ollama", model="llama3.1:8b",
                               operation="chat", endpoint="bench:llama3.1:8b", tokens_input=500, tokens_output=100,
                               latency_ms=1000.0))  # fmt: skip
    assert tracker.flush(10)


def test_workload_from_db(tracker: Any, database_url: str) -> None:
    from costtrack.store.database import make_engine

    seed(tracker)
    engine = make_engine(database_url)
    try:
        profile = core.workload_from_db(engine, since=NOW - timedelta(days=30))
        bench = core.bench_throughput(engine, since=NOW - timedelta(days=30))
    finally:
        engine.dispose()
    assert profile is not None
    assert profile.calls == 201
    assert profile.days == pytest.approx(20)
    assert profile.requests_per_day == pytest.approx(201 / 20)
    assert (profile.input_tokens, profile.output_tokens, profile.cached_share) == (1000, 300, 0.25)
    assert (profile.top_provider, profile.top_model) == ("openai", "gpt-4o-mini")
    [run] = bench
    assert run.endpoint == "bench:llama3.1:8b" and run.calls == 10
    assert run.seconds == pytest.approx(10.0)
    assert run.requests_per_s == pytest.approx(1.0) and run.tokens_per_s == pytest.approx(100.0)


def test_cli_from_db(tracker: Any, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(tracker)
    data = run_json(capsys, "--from-db", "--database-url", database_url, "--hours-per-day", "8")
    rpd = 201 / 20
    # Calls to two models, 150 to gpt-4o-mini and 51 to claude-haiku-4-5 ($1 input, $0.10 cached, $5 output per 1M):
    # each bucket at the models' rates weighted by their tokens, not all at the most-called one's.
    def mix(uncached: float, cached: float, output: float) -> float:
        mini = uncached * MINI_IN + cached * MINI_CACHED + output * MINI_OUT
        haiku = uncached * 1.0 + cached * 0.10 + output * 5.0
        return (150 * mini + 51 * haiku) / 201 / 1e6

    assert data["inputs"]["model"] == "recorded mix of 2 models"
    assert data["inputs"]["workload"]["requests_per_day"] == pytest.approx(rpd)
    assert data["cloud"]["monthly_usd"] == pytest.approx(rpd * 30 * mix(750, 250, 300))
    assert len(data["from_db"]["workload"]["models"]) == 2
    # The workload's flags price as the mix would (one blended rate for every token ignored them: diff review).
    cached = run_json(capsys, "--from-db", "--database-url", database_url, "--cached-share", "0.9", "--output-tokens", "50")
    assert cached["cloud"]["monthly_usd"] == pytest.approx(rpd * 30 * mix(100, 900, 50))
    # The Batch API at each model's Batch table: gpt-4o-mini $0.075 input, $0.075 cached (not halved), $0.30 output;
    # claude-haiku-4-5 $0.50, $0.05, $2.50.
    batched = run_json(capsys, "--from-db", "--database-url", database_url, "--batch-share", "1")
    per_request = (150 * (750 * 0.075 + 250 * 0.075 + 300 * 0.30) + 51 * (750 * 0.5 + 250 * 0.05 + 300 * 2.5)) / 201 / 1e6
    assert batched["cloud"]["monthly_usd"] == pytest.approx(rpd * 30 * per_request)
    assert data["inputs"]["gpu_throughput"]["tokens_per_s"] == pytest.approx(100.0)
    assert data["inputs"]["gpu_throughput"]["source"].startswith("measured: bench:llama3.1:8b")
    assert data["local"]["gpus"] == 1
    assert data["from_db"]["workload"]["calls"] == 201

    # The measured throughput sizes the peak: 10,000/day x 300 tokens over 8 h, x3 = 312.5 tokens/s -> 4 GPUs.
    data = run_json(capsys, "--from-db", "--database-url", database_url, "--requests-per-day", "10000", "-m", "gpt-4o")
    assert data["local"]["gpus"] == 4
    assert data["local"]["monthly_usd"] == pytest.approx(4 * RTX4090_8H)
    # One GPU: 100 tokens/s x 28,800 s / 3 / 300 tokens = 3,200 requests/day.
    assert data["gpu_capacity_requests_per_day"] == pytest.approx(3200)
    per_req_4o = (750 * GPT4O_IN + 250 * 1.25 + 300 * GPT4O_OUT) / 1e6
    be = RTX4090_8H / (30 * per_req_4o)
    assert be < 3200
    assert data["breakeven_requests_per_day"] == pytest.approx(be)


def test_cli_from_db_with_one_model_prices_it_at_its_rates(tracker: Any, database_url: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    for i in range(21):
        tracker.add(CallRecord(timestamp=START + timedelta(days=i), provider="openai", model="gpt-4o-mini", operation="chat",
                               endpoint="/api/summarize", tokens_input=1000, tokens_cached_input=250, tokens_output=300,
                               cost_usd=0.0001, price_source="test"))  # fmt: skip
    assert tracker.flush(10)
    data = run_json(capsys, "--from-db", "--database-url", database_url)
    assert data["inputs"]["model"] == "gpt-4o-mini"
    per_req = (750 * MINI_IN + 250 * MINI_CACHED + 300 * MINI_OUT) / 1e6
    assert data["cloud"]["monthly_usd"] == pytest.approx(21 / 20 * 30 * per_req)
    compared = run_json(capsys, "--from-db", "--database-url", database_url, "--compare")
    assert compared["inputs"]["model"] == "gpt-4o-mini"


def test_cli_from_db_prices_on_the_models_priced_today(tracker: Any, database_url: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A model recorded with a cost but without a price today (a fine-tune priced by an old prices file) left one model
    in the mix, and calc fell back to the most-called model, the unpriced one: an error (quick review)."""
    for i in range(21):
        for model in ("acme-llm", "acme-llm", "gpt-4o-mini"):
            tracker.add(CallRecord(timestamp=START + timedelta(days=i), provider="openai", model=model, operation="chat",
                                   endpoint="/api/summarize", tokens_input=1000, tokens_cached_input=250,
                                   tokens_output=300, cost_usd=0.0001, price_source="test"))  # fmt: skip
    assert tracker.flush(10)
    data = run_json(capsys, "--from-db", "--database-url", database_url)
    assert data["inputs"]["model"] == "gpt-4o-mini"
    per_req = (750 * MINI_IN + 250 * MINI_CACHED + 300 * MINI_OUT) / 1e6
    assert data["cloud"]["monthly_usd"] == pytest.approx(63 / 20 * 30 * per_req)


def test_cli_from_db_with_no_model_priced_today_names_them(tracker: Any, database_url: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    for model in ("acme-llm", "acme-2"):
        tracker.add(CallRecord(timestamp=START, provider="openai", model=model, operation="chat", endpoint="/api/x",
                               tokens_input=100, tokens_output=10, cost_usd=0.0001, price_source="test"))  # fmt: skip
    assert tracker.flush(10)
    err = run_error(capsys, "--from-db", "--database-url", database_url)
    assert "none of the recorded models has a per-token price today (acme-2, acme-llm)" in err or \
        "none of the recorded models has a per-token price today (acme-llm, acme-2)" in err, err


def test_cli_from_db_compare_lists_the_recorded_mix(tracker: Any, database_url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    seed(tracker)
    data = run_json(capsys, "--from-db", "--database-url", database_url, "--compare")
    assert data["inputs"]["model"] == "recorded mix of 2 models"
    names = [row["name"] for row in data["compare"]]
    assert "recorded mix of 2 models" in names and "gpt-4o-mini" in names


def test_cli_from_db_with_only_unpriced_models_says_so(tracker: Any, database_url: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """It said "give --model ..., or --from-db", --from-db given (review finding)."""
    for i in range(3):
        tracker.add(CallRecord(timestamp=START + timedelta(hours=i), provider="ollama", model="llama3.1:8b", operation="chat",
                               endpoint="/api/chat", tokens_input=500, tokens_output=100))  # fmt: skip
    assert tracker.flush(10)
    err = run_error(capsys, "--from-db", "--database-url", database_url)
    assert "none of the 3 recorded calls has a priced model" in err and "give --model" in err


def test_owned_hardware_rented_by_the_flags_is_labelled_rented(capsys: pytest.CaptureFixture[str]) -> None:
    """`--gpu-monthly 100` on the default profile printed "NVIDIA RTX 4090 (owned): rent $100.00" (review finding)."""
    data = run_json(capsys, "-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--gpu-monthly", "100")
    hardware = data["inputs"]["hardware"]
    assert hardware["label"] == "NVIDIA RTX 4090 (rented)" and hardware["rented"] is True


def test_cli_from_db_empty(empty_sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = run_error(capsys, "--from-db", "--database-url", empty_sqlite_url)
    assert "no calls of the app recorded" in err and "--requests-per-day" in err


def _bench_run(tracker: Any, start: datetime, *, endpoint: str, provider: str, run: str, concurrency: int, calls: int,
               gap_s: float, tokens: int) -> None:  # fmt: skip
    for i in range(calls):
        tracker.add(CallRecord(timestamp=start + timedelta(seconds=i * gap_s), provider=provider, model="llama3.1:8b",
                               operation="chat", endpoint=endpoint, tokens_input=500, tokens_output=tokens, latency_ms=1000.0,
                               tags={"bench_run": run, "concurrency": concurrency}))  # fmt: skip


def test_bench_throughput_is_a_self_hosted_endpoints_best_run(tracker: Any, database_url: str) -> None:
    """Review finding: the fastest bench:* endpoint was taken, an API target's too (the GPU sized on OpenAI's speed),
    and a run's wall time spanned every run of the endpoint, idle time between them included (25 tokens/s where each
    run measured 340-1,200)."""
    from costtrack.store.database import make_engine

    day = NOW - timedelta(days=1)
    # The API target: 20 calls 0.1 s apart, 100 tokens each: ~1,000 tokens/s, faster than the GPU, and not one.
    _bench_run(tracker, day, endpoint="bench:api", provider="openai", run="r1", concurrency=8, calls=20, gap_s=0.1, tokens=100)
    # The local model: run r1 at concurrency 1 (10 calls 1 s apart: 10 s, 100 tokens/s), run r2 an hour later at
    # concurrency 4 (10 calls 0.25 s apart: 3.25 s, ~307.7 tokens/s).
    _bench_run(tracker, day, endpoint="bench:local", provider="ollama", run="r1", concurrency=1, calls=10, gap_s=1.0, tokens=100)
    _bench_run(tracker, day + timedelta(hours=1), endpoint="bench:local", provider="ollama", run="r2", concurrency=4,
               calls=10, gap_s=0.25, tokens=100)  # fmt: skip
    assert tracker.flush(10)
    engine = make_engine(database_url)
    try:
        [best] = core.bench_throughput(engine, since=NOW - timedelta(days=30))
    finally:
        engine.dispose()
    assert (best.endpoint, best.run, best.concurrency, best.calls) == ("bench:local", "r2", "4", 10)
    assert best.seconds == pytest.approx(9 * 0.25 + 1.0) and best.tokens_per_s == pytest.approx(1000 / 3.25)
    assert best.throughput().source == "measured: bench:local, run r2, concurrency 4 (10 calls in 3.2 s)"


def test_an_endpoint_named_like_bench_in_another_case_is_app_traffic_to_calc_too(tracker: Any, database_url: str) -> None:
    """calc --from-db used LIKE: SQLite left a `Bench:eval` endpoint out of the workload, Postgres kept it, and the
    other reports kept it on both (review finding)."""
    from costtrack.store.database import make_engine

    for i in range(4):
        tracker.add(CallRecord(timestamp=NOW - timedelta(days=1, minutes=i), provider="openai", model="gpt-4o-mini",
                               operation="chat", endpoint="Bench:eval" if i % 2 else "/api/chat", tokens_input=100,
                               tokens_output=10, cost_usd=0.0001, price_source="test"))  # fmt: skip
    assert tracker.flush(10)
    engine = make_engine(database_url)
    try:
        profile = core.workload_from_db(engine, since=NOW - timedelta(days=30))
    finally:
        engine.dispose()
    assert profile is not None and profile.calls == 4


def test_cli_from_db_with_bench_runs_only_takes_the_workload_from_the_flags(tracker: Any, database_url: str,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A local model benchmarked before the app had traffic: --from-db refused, whatever the flags said (review finding)."""
    _bench_run(tracker, NOW - timedelta(days=1), endpoint="bench:local", provider="ollama", run="r1", concurrency=2,
               calls=10, gap_s=1.0, tokens=100)  # fmt: skip
    assert tracker.flush(10)
    err = run_error(capsys, "--from-db", "--database-url", database_url)
    assert "no calls of the app recorded" in err and "1 bench run" in err
    data = run_json(capsys, "--from-db", "--database-url", database_url, "-m", "gpt-4o-mini", "--requests-per-day", "1000",
                    "--input-tokens", "500", "--output-tokens", "200")  # fmt: skip
    assert data["inputs"]["workload"]["requests_per_day"] == 1000
    assert data["inputs"]["gpu_throughput"]["tokens_per_s"] == pytest.approx(100.0)
    assert data["inputs"]["gpu_throughput"]["source"].startswith("measured: bench:local, run r1, concurrency 2")


# ------------------------------------------------------------------ CLI errors: one line, exit 2


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["-m", "no-such-model", "--requests-per-day", "100", *COURSE], "costtrack prices show"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--hardware", "h100"], "a100_40gb, cloud_gpu, rtx4090"),
        (["-m", "gpt-4o-mini", "--monthly-tokens", "10MB"], "--monthly-tokens '10MB' is not a number"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "-100", *COURSE], "must not be negative"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--power-watts", "-450"], "--power-watts -450 must not be negative"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--cached-share", "1.5"], "--cached-share"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", "--input-tokens", "500", "--output-tokens", "200",
          "--hours-per-day", "25"], "--hours-per-day"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100"], "missing --input-tokens, --output-tokens"),
        (["--requests-per-day", "100", *COURSE], "give --model"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--hardware", "cloud_gpu", "--hardware-cost", "10"],
         "--gpu-monthly or --gpu-hourly"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--hours-per-day", "abc"], "--hours-per-day"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--models", "gpt-4o,nope"], "costtrack prices show nope"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--peak-factor", "0.5"], "--peak-factor"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--volumes", "1K,x"], "--volumes"),
        (["-m", "gpt-4o-mini", "--output-share", "0.3", "--requests-per-day", "100", *COURSE], "--monthly-tokens"),
        (["-m", "gpt-4o-mini", "--from-db", "--since", "yesterday"], "--since 'yesterday'"),
        # A --since without --from-db was never read, a bad one never checked (review finding)
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--since", "7x"], "--since 7x goes with --from-db"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--gpu-tokens-per-s", "nan"], "not a finite number"),
        # Finite inputs out of any real range, whose figures overflow (each was a traceback)
        (["-m", "gpt-4o-mini", "--requests-per-day", "1e308", "--input-tokens", "1e308", "--output-tokens", "100"],
         "input tokens per day is too large"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--hardware-cost", "1e308"], "too large to compute"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--gpu-hourly", "1e308"], "too large to compute"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--lifespan-years", "1e-308"], "too large to compute"),
        (["-m", "gpt-4o-mini", "--requests-per-day", "100", *COURSE, "--gpu-monthly", "1e308", "--compare"],
         "too large to compute"),
    ],
)
def test_cli_errors(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    err = run_error(capsys, *argv)
    assert needle in err, err


@pytest.mark.parametrize("form", [["--compare", "gpt-4o,claude-haiku-4-5"], ["--compare=gpt-4o,claude-haiku-4-5"]])
def test_cli_compare_takes_an_optional_model_list(capsys: pytest.CaptureFixture[str], form: list[str]) -> None:
    # The spelling, `--compare [MODEL,...]`, means the same as `--models MODEL,...`.
    given = run_json(capsys, "--requests-per-day", "1000", *COURSE, *form)
    listed = run_json(capsys, "--requests-per-day", "1000", *COURSE, "--models", "gpt-4o,claude-haiku-4-5")
    assert given["compare"] == listed["compare"]
    assert {r["name"] for r in given["compare"] if r["kind"] == "api"} == {"gpt-4o", "claude-haiku-4-5"}


def test_a_recorded_mix_applies_the_long_context_tier_a_request_reaches() -> None:
    """The mix took every model's base rates, where one model's own price takes the tier its requests reach (claude-
    sonnet-4-5 above 200K input tokens: $6 input, $22.50 output per 1M; quick review)."""
    from costtrack.pricing import PriceBook

    profile = core.DbWorkload(calls=2, first=None, last=None, days=1.0, requests_per_day=2.0, input_tokens=300_000,
                              output_tokens=1000, cached_share=0.0, top_model="gpt-4o-mini", top_provider="openai",
                              mean_latency_ms=None, models=(("anthropic", "claude-sonnet-4-5", 300_000, 0, 1000),
                                                            ("openai", "gpt-4o-mini", 300_000, 0, 1000)))  # fmt: skip
    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    long = profile.mix_price(PriceBook(), at, input_tokens=300_000)
    short = profile.mix_price(PriceBook(), at, input_tokens=1000)
    assert long is not None and short is not None
    assert long.input == (Decimal(6) + Decimal("0.15")) / 2 and long.output == (Decimal("22.5") + Decimal("0.6")) / 2
    assert short.input == (Decimal(3) + Decimal("0.15")) / 2 and short.output == (Decimal(15) + Decimal("0.6")) / 2
