"""`costtrack calc`: API vs self-hosted cost of a workload, GPUs for its peak, breakeven and a recommendation."""

from __future__ import annotations

import math
import shlex
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import ConfigError
from ..format import count, pct, usd
from ..reports import calc as core
from . import _common

if TYPE_CHECKING:
    from rich.console import Console

    from ..pricing import PriceBook

__all__ = ["calc", "render"]

_Num = Optional[float]


def calc(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="API model priced from the catalog, e.g. gpt-4o-mini.")] = None,
    provider: Annotated[Optional[str], typer.Option("--provider", "-p", help="Provider of --model (openai, anthropic, ...).")] = None,
    requests_per_day: Annotated[Optional[str], typer.Option("--requests-per-day", help="Requests per day, e.g. 100 or 10K.")] = None,
    input_tokens: Annotated[Optional[str], typer.Option("--input-tokens", help="Mean input tokens per request (cached included).")] = None,
    output_tokens: Annotated[Optional[str], typer.Option("--output-tokens", help="Mean output tokens per request.")] = None,
    cached_share: Annotated[_Num, typer.Option("--cached-share", help="Share of input tokens read from the prompt cache, 0-1.")] = None,
    batch_share: Annotated[_Num, typer.Option("--batch-share", help="Share of requests sent through the Batch API (at the model's Batch rates: mostly half), 0-1.")] = None,
    monthly_tokens: Annotated[Optional[str], typer.Option("--monthly-tokens", help="Workload as tokens per month (e.g. 10M), as in the course's calculator.")] = None,
    output_share: Annotated[_Num, typer.Option("--output-share", help="With --monthly-tokens: share of them that are output, 0-1 (default 0.3).")] = None,
    hardware: Annotated[str, typer.Option("--hardware", help="Self-hosted profile: rtx4090, a100_40gb, cloud_gpu, or a per_hour model of the prices file.")] = "rtx4090",
    hours_per_day: Annotated[float, typer.Option("--hours-per-day", help="Hours a day the GPUs serve (and draw power).")] = 8.0,
    hardware_cost: Annotated[_Num, typer.Option("--hardware-cost", help="Purchase price per GPU, USD (owned hardware).")] = None,
    power_watts: Annotated[_Num, typer.Option("--power-watts", help="Power draw per GPU, watts (owned hardware).")] = None,
    electricity_per_kwh: Annotated[_Num, typer.Option("--electricity-per-kwh", help="Electricity price, USD per kWh (default 0.12).")] = None,
    lifespan_years: Annotated[_Num, typer.Option("--lifespan-years", help="Years the hardware is depreciated over.")] = None,
    maintenance_per_month: Annotated[_Num, typer.Option("--maintenance-per-month", help="Maintenance per GPU and month, USD.")] = None,
    gpu_hourly: Annotated[_Num, typer.Option("--gpu-hourly", help="Rented GPU: USD per hour (billed hours/day x 30).")] = None,
    gpu_monthly: Annotated[_Num, typer.Option("--gpu-monthly", help="Rented GPU: USD per month.")] = None,
    gpu_requests_per_s: Annotated[_Num, typer.Option("--gpu-requests-per-s", help="Requests per second one GPU serves.")] = None,
    gpu_tokens_per_s: Annotated[_Num, typer.Option("--gpu-tokens-per-s", help="Output tokens per second one GPU generates (all streams).")] = None,
    peak_factor: Annotated[float, typer.Option("--peak-factor", help="Peak load as a multiple of the average rate over --hours-per-day.")] = core.DEFAULT_PEAK_FACTOR,
    compare: Annotated[bool, typer.Option("--compare", help="Also price the workload on the curated API models and every hardware profile; `--compare MODEL,...` names the models instead (as --models).")] = False,
    models: Annotated[Optional[str], typer.Option("--models", help="Comma-separated models for --compare (implies it), e.g. gpt-4o,claude-haiku-4-5.")] = None,
    private_data: Annotated[bool, typer.Option("--private-data", help="The data must not leave your infrastructure.")] = False,
    latency_critical: Annotated[bool, typer.Option("--latency-critical", help="Network and provider queueing latency are not acceptable.")] = False,
    volumes: Annotated[Optional[str], typer.Option("--volumes", help="Volumes for the table: requests/day (or monthly tokens), e.g. 100,1K,10K.")] = None,
    from_db: Annotated[bool, typer.Option("--from-db", help="Take the workload (and bench:* throughput) from the recorded calls.")] = False,
    since: Annotated[str, typer.Option("--since", help="With --from-db: records newer than this, e.g. 30d or 2026-11-01.")] = "30d",
    database_url: _common.DatabaseOption = None,
    prices_file: Annotated[Optional[Path], typer.Option("--prices-file", help="TOML price overrides (default: $COSTTRACK_PRICES_FILE).", dir_okay=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Compare a workload's monthly cost on an API model and on self-hosted GPUs; recommend one."""
    try:
        data, result = _run(**locals())
    except ConfigError as exc:
        _common.fail(str(exc))
    if as_json:
        _common.print_json(data)
    else:
        from rich.console import Console

        render(result, Console(), extra=data)


def _run(**o: Any) -> tuple[dict[str, Any], core.CalcResult]:
    from ..pricing import PriceBook

    now = datetime.now(timezone.utc)
    _check_numbers(o)
    if o["since"] != "30d" and not o["from_db"]:
        raise ConfigError(f"--since {o['since']} goes with --from-db (it picks the records the workload is read from)")
    book = PriceBook(o["prices_file"])
    catalog = core.load_hardware()

    extra: dict[str, Any] = {}
    profile: core.DbWorkload | None = None
    bench: list[core.BenchThroughput] = []
    if o["from_db"]:
        profile, bench = _read_db(o, now)
        extra["from_db"] = {"since": o["since"], "workload": None if profile is None else profile.as_dict(),
                            "bench": [b.as_dict() for b in bench]}  # fmt: skip
        if profile is None and not _workload_given(o):
            # Only benchmark runs (a local model measured before the app has traffic): the flags give the workload.
            raise ConfigError(
                f"no calls of the app recorded since {_since_text(o, now)} (bench:* endpoints excluded): give the workload "
                "with --requests-per-day, --input-tokens and --output-tokens (--from-db then measures the GPU from "
                f"{len(bench)} bench run{'s' if len(bench) != 1 else ''}), record calls with costtrack.wrap(...) or "
                "`costtrack demo`, or widen --since"
            )  # fmt: skip
    workload = _workload(o, profile)

    hw = _hardware(o, catalog, book, now)
    throughput = _throughput(o, bench)

    want_compare = o["compare"] or o["models"] is not None
    rows: list[core.CompareRow] | None = None
    model, provider = o["model"], _common.check_provider(book, o["provider"], o["model"])
    # Without --model the records price the API side: several models priced today as their mix, one at its rates.
    mix = None
    if model is None and profile is not None:
        today = profile.priced_today(book, now)
        if len(today) >= 2:
            mix = profile.mix_price(book, now, workload.input_tokens)
        elif today:
            (provider, model), = today
        elif profile.models:
            names = ", ".join(m for _, m, *_ in profile.models[:3]) + (", ..." if len(profile.models) > 3 else "")
            raise ConfigError(f"none of the recorded models has a per-token price today ({names}): give --model (an "
                              "API model such as gpt-4o-mini), or add them to a prices file (--prices-file)")  # fmt: skip
    if want_compare:
        apis, others = _compare_options(o, book, now, workload, catalog, hw, model, provider)
        if mix is not None:
            apis.append(mix)
        try:
            rows = core.compare(workload, apis, others, hours_per_day=o["hours_per_day"], peak_factor=o["peak_factor"],
                                throughput=throughput)  # fmt: skip
        except ArithmeticError:
            raise ConfigError(_TOO_LARGE) from None
        if model is None and mix is None:
            cheapest = next((r for r in rows if r.kind == "api"), None)
            if cheapest is None:
                raise ConfigError("--models lists no API model: add one (e.g. gpt-4o-mini), or give --model")
            model = cheapest.name
            provider = next((a.provider for a in apis if a.model == model), None)
    if model is None and mix is None and profile is not None:
        raise ConfigError(
            f"none of the {profile.calls:,} recorded calls has a priced model to compare with (unpriced models are not "
            "API prices): give --model (an API model such as gpt-4o-mini), or --compare to use the cheapest"
        )
    if model is None and mix is None:
        raise ConfigError(
            "give --model (an API model such as gpt-4o-mini), or --from-db to use your recorded models, "
            "or --compare to use the cheapest"
        )
    api = mix if mix is not None else _api_price(book, provider, model, now, workload)

    scenario = core.Scenario(
        workload=workload, api=api, hardware=hw, hours_per_day=o["hours_per_day"], peak_factor=o["peak_factor"],
        throughput=throughput, private_data=o["private_data"], latency_critical=o["latency_critical"],
    )  # fmt: skip
    points = _volumes(o["volumes"])
    try:
        result = core.calculate(scenario, points, rows)
        data = result.as_dict()
    except ArithmeticError:  # OverflowError, and decimal's Overflow and InvalidOperation
        raise ConfigError(_TOO_LARGE) from None
    if not _all_finite(data):
        raise ConfigError(_TOO_LARGE)
    data.update(extra)
    return data, result


# Inputs each finite but out of any real range (1e308 requests a day, a lifespan of 1e-300 years).
_TOO_LARGE = "the inputs give figures too large to compute: give amounts of a realistic size"


def _all_finite(value: Any) -> bool:
    """No number in a JSON-like value is an infinity or NaN."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    return True


# --------------------------------------------------------------------------- inputs


def _amount(value: str | None, what: str) -> float | None:
    return None if value is None else core.parse_amount(value, what)


_NON_NEGATIVE = ("cached_share", "batch_share", "output_share", "hardware_cost", "power_watts", "electricity_per_kwh",
                 "lifespan_years", "maintenance_per_month", "gpu_hourly", "gpu_monthly", "gpu_requests_per_s",
                 "gpu_tokens_per_s", "hours_per_day", "peak_factor")  # fmt: skip


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_numbers(o: dict[str, Any]) -> None:
    for name in _NON_NEGATIVE:
        value = o[name]
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"{_flag(name)} {value:g} is not a finite number")
        if value is not None and value < 0:
            raise ConfigError(f"{_flag(name)} {value:g} must not be negative")
    for name in ("cached_share", "batch_share", "output_share"):
        value = o[name]
        if value is not None and value > 1:
            raise ConfigError(f"{_flag(name)} {value:g} is a share: give a number from 0 to 1 (0.3 for 30%)")
    for name in ("lifespan_years", "gpu_requests_per_s", "gpu_tokens_per_s", "hours_per_day"):
        if o[name] == 0:
            raise ConfigError(f"{_flag(name)} must be more than 0")
    if o["hours_per_day"] > 24:
        raise ConfigError(f"--hours-per-day {o['hours_per_day']:g} is more than a day: give 24 or less")
    if o["peak_factor"] < 1:
        raise ConfigError(f"--peak-factor {o['peak_factor']:g} must be 1 or more: the peak is at least the average rate")


def _read_db(o: dict[str, Any], now: datetime) -> tuple[core.DbWorkload | None, list[core.BenchThroughput]]:
    """The app's workload (None: no call of the app in the period) and the self-hosted bench runs, from the records."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..periods import parse_since

    start = parse_since(o["since"], now)
    try:
        engine = _common.read_engine(o["database_url"])
        profile = core.workload_from_db(engine, since=start)
        bench = core.bench_throughput(engine, since=start)
    except SQLAlchemyError as exc:
        raise ConfigError(_common.database_error(exc)) from None
    return profile, bench


def _since_text(o: dict[str, Any], now: datetime) -> str:
    from ..periods import parse_since

    return f"{parse_since(o['since'], now):%Y-%m-%d %H:%M} UTC"


def _workload_given(o: dict[str, Any]) -> bool:
    """Whether the flags alone describe the workload (per request, or in monthly tokens)."""
    per_request = all(o[k] is not None for k in ("requests_per_day", "input_tokens", "output_tokens"))
    return per_request or o["monthly_tokens"] is not None


def _workload(o: dict[str, Any], profile: core.DbWorkload | None) -> core.Workload:
    rpd = _amount(o["requests_per_day"], "--requests-per-day")
    tin = _amount(o["input_tokens"], "--input-tokens")
    tout = _amount(o["output_tokens"], "--output-tokens")
    monthly = _amount(o["monthly_tokens"], "--monthly-tokens")
    if rpd is not None and rpd <= 0:
        raise ConfigError("--requests-per-day must be more than 0")
    if o["output_share"] is not None and monthly is None:
        raise ConfigError("--output-share goes with --monthly-tokens: give both, or --input-tokens and --output-tokens")
    cached = o["cached_share"]
    batch = o["batch_share"] or 0.0
    if monthly is not None:
        if tin is not None or tout is not None:
            raise ConfigError("give --monthly-tokens (with --output-share) or --input-tokens/--output-tokens, not both")
        if o["from_db"]:
            raise ConfigError("give --monthly-tokens or --from-db, not both")
        if monthly <= 0:
            raise ConfigError("--monthly-tokens must be more than 0")
        share = 0.3 if o["output_share"] is None else o["output_share"]
        return core.Workload.monthly_tokens(monthly, share, requests_per_day=rpd, cached_share=cached or 0.0,
                                            batch_share=batch)  # fmt: skip
    if profile is not None:  # flags win over the recorded profile
        return core.Workload.per_request(
            rpd if rpd is not None else profile.requests_per_day,
            tin if tin is not None else profile.input_tokens,
            tout if tout is not None else profile.output_tokens,
            cached_share=cached if cached is not None else profile.cached_share, batch_share=batch,
        )  # fmt: skip
    missing = [flag for flag, value in (("--requests-per-day", rpd), ("--input-tokens", tin), ("--output-tokens", tout))
               if value is None]  # fmt: skip
    if missing:
        raise ConfigError(
            f"missing {', '.join(missing)}: describe the workload with --requests-per-day, --input-tokens and "
            "--output-tokens, or --monthly-tokens and --output-share, or use --from-db"
        )
    assert rpd is not None and tin is not None and tout is not None
    return core.Workload.per_request(rpd, tin, tout, cached_share=cached or 0.0, batch_share=batch)


_OWNED_ONLY = ("hardware_cost", "power_watts", "lifespan_years")


def _hardware(o: dict[str, Any], catalog: core.HardwareCatalog, book: PriceBook, now: datetime) -> core.Hardware:
    name = o["hardware"].strip()
    hw = catalog.get(name)
    if hw is None:
        rates = book.rates(None, name, now) if name else None
        if rates is None or rates.per_hour is None:
            names = ", ".join(sorted(catalog.profiles))
            what = "is an API model priced per token (use it as --model)" if rates is not None else "is not a hardware profile"
            raise ConfigError(
                f"--hardware {name!r} {what}: use one of {names}, or a self-hosted model priced "
                "per_hour in the prices file"
            )
        hw = core.Hardware(name=name, label=f"{name} (self-hosted, ${rates.per_hour}/h)", rent_per_hour=float(rates.per_hour),
                           electricity_per_kwh=catalog.electricity_per_kwh, source=rates.source)  # fmt: skip
    rented = hw.rented or o["gpu_hourly"] is not None or o["gpu_monthly"] is not None
    if rented:
        given = [_flag(k) for k in _OWNED_ONLY if o[k] is not None]
        if given:
            raise ConfigError(
                f"{given[0]} is for owned hardware, and {name} is rented here: set the rent with --gpu-monthly or --gpu-hourly"
            )
        if o["gpu_hourly"] is not None and o["gpu_monthly"] is not None:
            raise ConfigError("give --gpu-hourly or --gpu-monthly, not both")
    changes: dict[str, Any] = {k: o[k] for k in (*_OWNED_ONLY, "maintenance_per_month", "electricity_per_kwh")
                               if o[k] is not None}  # fmt: skip
    if o["gpu_hourly"] is not None:
        changes.update(rent_per_hour=o["gpu_hourly"], rent_per_month=None)
    if o["gpu_monthly"] is not None:
        changes.update(rent_per_month=o["gpu_monthly"], rent_per_hour=None)
    if rented and not hw.rented and hw.label.endswith(" (owned)"):
        changes["label"] = hw.label[: -len(" (owned)")] + " (rented)"  # a profile of owned hardware, rented by the flags
    if changes:
        hw = replace(hw, **changes, source=f"{hw.source} (overridden by flags)")
    return hw


def _throughput(o: dict[str, Any], bench: list[core.BenchThroughput]) -> core.Throughput:
    if o["gpu_requests_per_s"] is not None or o["gpu_tokens_per_s"] is not None:
        return core.Throughput(requests_per_s=o["gpu_requests_per_s"], tokens_per_s=o["gpu_tokens_per_s"], source="flags")
    if bench:
        return bench[0].throughput()
    return core.Throughput()


def _api_price(book: PriceBook, provider: str | None, model: str, at: datetime, workload: core.Workload) -> core.ApiPrice:
    rates = book.rates(provider, model, at)
    if rates is None:
        scope = f" for provider {provider!r}" if provider else ""
        raise ConfigError(
            f"no price for model {model!r}{scope}: check the name with `costtrack prices show {shlex.quote(model)}`, "
            "or add it to a prices file (--prices-file or $COSTTRACK_PRICES_FILE)"
        )
    if rates.per_hour is not None:
        raise ConfigError(
            f"{model} is a self-hosted model priced per hour: pass it as --hardware {model}, and an API model as --model"
        )
    return core.ApiPrice.from_rates(model, rates, provider=provider, input_tokens=workload.input_tokens,
                                    batch=book.batch_rates(provider, model, at))


def _compare_options(o: dict[str, Any], book: PriceBook, now: datetime, workload: core.Workload,
                     catalog: core.HardwareCatalog, hw: core.Hardware, model: str | None,
                     provider: str | None) -> tuple[list[core.ApiPrice], list[core.Hardware]]:  # fmt: skip
    apis: list[core.ApiPrice] = []
    hardware: list[core.Hardware] = [hw]
    if o["models"] is not None:
        names = [n.strip() for n in o["models"].split(",") if n.strip()]
        if not names:
            raise ConfigError("--compare (or --models) names no model: list models separated by commas, e.g. gpt-4o-mini,claude-haiku-4-5, or give --compare alone")
        for name in dict.fromkeys(names):
            if name.lower() == hw.name.lower():
                continue  # the --hardware option is already in
            if name.lower() in catalog.profiles:
                hardware.append(_with_electricity(catalog.profiles[name.lower()], o))
                continue
            rates = book.rates(None, name, now)
            if rates is None:
                raise ConfigError(
                    f"no price for model {name!r} in --models: check the name with `costtrack prices show {shlex.quote(name)}`, "
                    "or add it to a prices file (--prices-file or $COSTTRACK_PRICES_FILE)"
                )
            if rates.per_hour is not None:
                hardware.append(core.Hardware(name=name, label=f"{name} (self-hosted, ${rates.per_hour}/h)",
                                              rent_per_hour=float(rates.per_hour), source=rates.source))  # fmt: skip
            else:
                apis.append(core.ApiPrice.from_rates(name, rates, input_tokens=workload.input_tokens,
                                                     batch=book.batch_rates(None, name, now)))
    else:
        for prov, name in core.API_MODELS:
            rates = book.rates(prov, name, now)
            if rates is not None and rates.per_hour is None:  # a catalog without it: leave it out
                apis.append(core.ApiPrice.from_rates(name, rates, provider=prov, input_tokens=workload.input_tokens,
                                                     batch=book.batch_rates(prov, name, now)))
        hardware += [_with_electricity(p, o) for key, p in sorted(catalog.profiles.items()) if key != hw.name]
    if model is not None and all(a.model != model for a in apis):
        apis.append(_api_price(book, provider, model, now, workload))
    return apis, hardware


def _with_electricity(hw: core.Hardware, o: dict[str, Any]) -> core.Hardware:
    value = o["electricity_per_kwh"]
    return hw if value is None or hw.rented else hw.with_overrides(electricity_per_kwh=value)


def _volumes(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    parts = text.split(",")
    if not all(p.strip() for p in parts):  # `1,,2`: a volume lost (bench -c and --thresholds refuse it too)
        raise ConfigError(f"--volumes {text!r} has an empty item: list volumes separated by commas, e.g. 100,1K,10K,100K")
    values = tuple(core.parse_amount(p, "--volumes") for p in parts)
    if any(v <= 0 for v in values):
        raise ConfigError("--volumes must all be more than 0")
    return values


# --------------------------------------------------------------------------- output


def render(result: core.CalcResult, console: Console, extra: dict[str, Any] | None = None) -> None:
    """Print the comparison for people: both sides, breakeven, recommendation, volumes (and the comparison)."""
    from rich.markup import escape
    from rich.table import Table

    s = result.scenario
    w = s.workload
    hw = s.hardware
    cloud, local = result.cloud, result.local
    console.print(f"[bold]API ({escape(s.api.model)}) vs self-hosted ({escape(hw.name)}, {s.hours_per_day:g} h/day)[/]")
    if w.requests_per_day is not None:
        size = ""
        if w.input_tokens is not None and w.output_tokens is not None:
            size = f", {count(w.input_tokens)} input + {count(w.output_tokens)} output tokens per request"
        console.print(f"Workload: {count(w.requests_per_day)} requests/day ({count(w.requests_per_day * core.DAYS_PER_MONTH)}"
                      f"/month of 30 days){size}, {pct(w.cached_share)} of input cached, "
                      f"{pct(w.batch_share)} of requests batched", highlight=False)  # fmt: skip
    else:
        console.print(f"Workload: {count(w.monthly_tokens_total)} tokens/month, "
                      f"{count(w.input_tokens_per_day * core.DAYS_PER_MONTH)} input + "
                      f"{count(w.output_tokens_per_day * core.DAYS_PER_MONTH)} output", highlight=False)  # fmt: skip
    if extra and "from_db" in extra:
        db = extra["from_db"]["workload"]
        console.print(f"From the records since {extra['from_db']['since']}: {count(db['calls'])} calls over "
                      f"{db['days']:.1f} days", highlight=False)  # fmt: skip

    per_day = w.requests_per_day is not None
    tokens = w.monthly_tokens_total

    def unit_cost(monthly: float, per_1k: float | None) -> str:
        if per_day:
            return _opt_usd(per_1k)
        return usd(monthly / tokens * 1_000_000) if tokens else "-"

    unit_header = "per 1K requests" if per_day else "per 1M tokens"
    table = Table(title="Monthly cost (a month is 30 days)", title_justify="left")
    for header in ("option", "monthly", unit_header, "GPUs"):
        table.add_column(header, justify="left" if header == "option" else "right")
    table.add_row(f"API: {escape(s.api.model)}", usd(cloud.monthly_usd), unit_cost(cloud.monthly_usd, cloud.per_1k_usd), "-")
    table.add_row(f"self-hosted: {escape(hw.name)}", usd(local.monthly_usd), unit_cost(local.monthly_usd, local.per_1k_usd),
                  str(local.gpus))  # fmt: skip
    console.print(table)
    console.print(f"API rates per 1M tokens: {_rate(s.api.input)} input, {_rate(s.api.cached_input)} cached input, "
                  f"{_rate(s.api.output)} output ({escape(s.api.source)})", highlight=False)  # fmt: skip
    parts = " + ".join(f"{k} {usd(v)}" for k, v in local.breakdown_per_gpu_usd.items())
    console.print(f"Per GPU ({escape(hw.label or hw.name)}): {parts} = {usd(local.monthly_per_gpu_usd)}/month", highlight=False)

    if result.breakeven_requests_per_day is not None:
        b = result.breakeven_requests_per_day
        console.print(f"Breakeven: {count(_up(b))} requests/day ({count(_up(b * core.DAYS_PER_MONTH))}/month)", highlight=False)
    elif result.breakeven_monthly_tokens is not None and w.requests_per_day is None:
        console.print(f"Breakeven: {count(_up(result.breakeven_monthly_tokens))} tokens/month", highlight=False)
    else:
        console.print("Breakeven: never within capacity (self-hosting stays dearer at every volume)", highlight=False)
    if local.capacity_checked:
        cap = result.gpu_capacity_requests_per_day
        peak = (f"peak {local.peak_requests_per_s:.3g} requests/s" if local.peak_requests_per_s is not None
                else f"peak {local.peak_output_tokens_per_s:.3g} output tokens/s")  # fmt: skip
        console.print(f"Capacity: {peak} ({s.peak_factor:g}x the average over {s.hours_per_day:g} h/day) needs "
                      f"{local.gpus} GPU(s)" + (f"; one GPU carries {count(cap)} requests/day" if cap is not None else "")
                      + f" (throughput: {escape(s.throughput.source)})", highlight=False)  # fmt: skip
    label = "API" if result.recommendation == "api" else "self-hosted"
    console.print(f"[bold]Recommendation: {label}[/]")
    for reason in result.reasons:
        console.print(f"  - {escape(reason)}", highlight=False)

    if result.volumes:
        unit = "requests per day" if per_day else "tokens per month"
        vt = Table(title=f"By volume ({unit}): monthly cost on {escape(s.api.model)} vs {escape(hw.name)}", title_justify="left")
        heads = ("requests/day", "requests/month") if per_day else ("tokens/month",)
        for header in (*heads, "API", "self-hosted", "GPUs", "cheaper"):
            vt.add_column(header, justify="right")
        for row in result.volumes:
            first = ((count(row.requests_per_day), count(row.requests_per_month)) if per_day
                     else (count(row.monthly_tokens),))  # fmt: skip
            vt.add_row(*first, usd(row.cloud_monthly_usd), usd(row.local_monthly_usd), str(row.gpus), row.cheaper)
        console.print(vt)

    if result.compare:
        ct = Table(title="Compare: this workload's monthly cost, cheapest first", title_justify="left")
        for header in ("#", "option", "kind", "monthly", unit_header, "GPUs"):
            ct.add_column(header, justify="left" if header in ("option", "kind") else "right")
        for i, row in enumerate(result.compare, 1):
            ct.add_row(str(i), escape(row.name), row.kind, usd(row.monthly_usd),
                       unit_cost(row.monthly_usd, row.per_1k_usd),
                       "-" if row.gpus is None else str(row.gpus))  # fmt: skip
        console.print(ct)


def _opt_usd(value: float | None) -> str:
    return "-" if value is None else usd(value)


def _rate(value: Any) -> str:
    # A catalog rate as written ($0.075); a recorded mix's (spend over tokens) to a millionth of a dollar per 1M tokens.
    text = format(round(value, 6), "f")
    return "$" + (text.rstrip("0").rstrip(".") if "." in text else text)


def _up(value: float) -> int:
    import math

    return math.ceil(round(value, 9))
