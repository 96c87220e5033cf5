"""costtrack bench: measured against real OpenAI/Anthropic-compatible HTTP servers on 127.0.0.1 (tests/servers.py).

Delays are kept small (20-80 ms); a measured time is checked to be at least what
the server was told to take and at most a generous margin more (scheduling jitter).
"""

from __future__ import annotations

import json
import random
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from costtrack import Tracker
from costtrack.bench import (
    Bench,
    BenchError,
    Injection,
    Target,
    load_prompts,
    parse_concurrency,
    parse_duration,
    parse_inject,
    parse_targets,
    percentile,
    wait_ready,
)
from costtrack.errors import ConfigError

from servers import LLMServer

SLACK_MS = 30.0  # how much slower than configured a measurement may be (a loaded CI machine)


@pytest.fixture
def server() -> Iterator[Callable[..., LLMServer]]:
    """``server(**config)`` -> a started LLMServer; all stopped after the test."""
    started: list[LLMServer] = []

    def make(**config: Any) -> LLMServer:
        s = LLMServer(**config).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def sqlite_tracker(sqlite_url: str, outbox_dir: Any) -> Iterator[Tracker]:
    t = Tracker(sqlite_url, outbox_dir=outbox_dir)
    yield t
    t.close()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``cli(*args)`` -> (exit code, stdout, stderr) of `costtrack bench ARGS`."""
    from costtrack import cli as cli_module
    from costtrack.cli import bench as bench_cli

    if not any(c.name == "bench" for c in cli_module.app.registered_commands):
        cli_module.app.command("bench")(bench_cli.bench)  # until the lead registers it

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli_module.run(["bench", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def target(name: str, srv: LLMServer, model: str = "gpt-4o-mini", **kw: Any) -> Target:
    return Target(name, srv.url, model, api_key="sk-test", **kw)


def only(report: Any, name: str, level: int | None = None) -> Any:
    rows = [r for r in report.results if r.target == name and (level is None or r.concurrency == level)]
    assert len(rows) == 1, rows
    return rows[0]


# --------------------------------------------------------------------------- timing


def test_streamed_latency_and_ttft_match_the_server(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    srv = server(delay=0.04, token_delay=0.004, tokens=6)
    report = Bench([target("local", srv)], tracker=sqlite_tracker, requests=12, concurrency=(1, 3)).run()
    expected_total = 40.0 + 5 * 4.0
    for level in (1, 3):
        r = only(report, "local", level)
        assert (r.requests, r.ok, r.error_count) == (12, 12, 0)
        assert 40.0 - 1 <= r.ttft_ms["p50"] <= 40.0 + SLACK_MS
        assert expected_total - 1 <= r.latency_ms["p50"] <= expected_total + SLACK_MS
        assert r.latency_ms["p50"] <= r.latency_ms["p95"] <= r.latency_ms["p99"]
        assert r.output_tokens == 12 * 6
        assert r.output_tokens_per_s == pytest.approx(6 / (r.latency_ms["p50"] / 1000), rel=0.3)
        assert r.client_cpu_ms_per_request is not None and r.client_cpu_ms_per_request > 0
    # At concurrency 3 the server answers three at once: about three times the requests per second.
    assert only(report, "local", 3).requests_per_s > 2 * only(report, "local", 1).requests_per_s


def test_plain_answers_have_latency_and_no_ttft(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    srv = server(delay=0.03, token_delay=0.002, tokens=5)
    report = Bench([target("local", srv)], tracker=sqlite_tracker, requests=6, stream=False).run()
    r = only(report, "local")
    assert r.ttft_ms == {"p50": None, "p95": None, "p99": None}
    assert 38.0 - 1 <= r.latency_ms["p50"] <= 38.0 + SLACK_MS
    assert r.output_tokens == 30 and not r.stream
    assert all(body.get("stream") is None for body in srv.bodies)


def test_a_slower_server_measures_slower_and_targets_keep_their_order(
    server: Callable[..., LLMServer], sqlite_tracker: Tracker
) -> None:
    fast = server(delay=0.02, tokens=4)
    slow = server(delay=0.08, tokens=4)
    report = Bench([target("slow", slow), target("fast", fast)], tracker=sqlite_tracker, requests=6).run()
    assert [r.target for r in report.results] == ["slow", "fast"]
    s, f = only(report, "slow"), only(report, "fast")
    assert s.latency_ms["p50"] >= f.latency_ms["p50"] + 45
    assert s.ttft_ms["p50"] >= f.ttft_ms["p50"] + 45
    assert f.requests_per_s > s.requests_per_s


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 50) == 10.0
    assert percentile(values, 95) == 19.0
    assert percentile(values, 99) == 20.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


# --------------------------------------------------------------------------- errors


def test_every_fifth_request_failing_is_counted_exactly(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    srv = server(fail_every=5, tokens=3)
    report = Bench([target("flaky", srv)], tracker=sqlite_tracker, requests=20, concurrency=(4,)).run()
    r = only(report, "flaky")
    assert r.errors == {"rate_limit": 0, "timeout": 0, "5xx": 4, "connection": 0, "4xx": 0, "other": 0}
    assert (r.requests, r.ok) == (20, 16)
    records = sqlite_tracker.records()
    assert len(records) == 20
    failed = [x for x in records if x.status == "error"]
    assert len(failed) == 4 and {x.error_type for x in failed} == {"server_error"}


def test_rate_limited_after_n_requests(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    srv = server(rate_limit_after=7, tokens=2)
    report = Bench([target("api", srv)], tracker=sqlite_tracker, requests=12, concurrency=(3,)).run()
    r = only(report, "api")
    assert (r.ok, r.errors["rate_limit"], r.error_count) == (7, 5, 5)


def test_dropped_connections_and_timeouts_are_counted(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    dropping = server(drop_every=3, tokens=2)
    hanging = server(delay=0.5)
    report = Bench([target("drop", dropping), target("hang", hanging)], tracker=sqlite_tracker, requests=6,
                   concurrency=(3,), timeout=0.1).run()  # fmt: skip
    assert only(report, "drop").errors["connection"] == 2
    assert only(report, "drop").ok == 4
    hang = only(report, "hang")
    assert (hang.errors["timeout"], hang.ok) == (6, 0)
    assert hang.latency_ms["p50"] is None
    assert any("every request failed" in w for w in report.warnings)


# --------------------------------------------------------------------------- records


def test_every_request_is_recorded_with_endpoint_and_run_tags(server: Callable[..., LLMServer], tracker: Tracker) -> None:
    srv = server(tokens=3)
    bench = Bench([target("local", srv, model="llama3.1:8b", provider="ollama")], tracker=tracker, requests=5,
                  concurrency=(1, 2))  # fmt: skip
    report = bench.run()
    records = tracker.records()
    assert len(records) == 10
    assert {r.endpoint for r in records} == {"bench:local"}
    assert {r.tags["bench_run"] for r in records} == {report.run_id}
    assert sorted(r.tags["concurrency"] for r in records) == [1] * 5 + [2] * 5
    assert {r.provider for r in records} == {"ollama"}
    assert all(r.status == "ok" and r.tokens_output == 3 and r.ttft_ms is not None for r in records)


def test_records_feed_calc_from_db(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    from costtrack.reports.calc import bench_throughput
    from costtrack.store.database import make_engine

    srv = server(tokens=4, token_delay=0.002)
    Bench([target("local", srv, model="llama3.1:8b")], tracker=sqlite_tracker, requests=8, concurrency=(2,)).run()
    engine = make_engine(sqlite_tracker.database_url)
    [row] = bench_throughput(engine)
    engine.dispose()
    assert (row.endpoint, row.calls) == ("bench:local", 8)


# --------------------------------------------------------------------------- cost


def test_catalog_cost_per_request(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    from datetime import datetime, timezone

    from costtrack.usage import Usage

    srv = server(tokens=10)
    report = Bench([target("api", srv, provider="openai")], tracker=sqlite_tracker, requests=4,
                   prompts=["x" * 400]).run()  # fmt: skip
    r = only(report, "api")
    prompt_tokens = 400 // 4 + 4
    price = sqlite_tracker.pricebook.cost("openai", "gpt-4o-mini", Usage(input=prompt_tokens, output=10), datetime.now(timezone.utc))
    assert r.cost_basis == "catalog"
    assert r.cost_per_request_usd == pytest.approx(price.cost_usd)
    assert r.cost_per_1k_requests_usd == pytest.approx(price.cost_usd * 1000)
    stored = sum(x.cost_usd for x in sqlite_tracker.records())
    assert stored == pytest.approx(price.cost_usd * 4)


def test_per_hour_cost_over_measured_throughput(server: Callable[..., LLMServer], tmp_path: Path, sqlite_url: str) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."llama-local"]\nper_hour = 3.6\n')
    tracker = Tracker(sqlite_url, prices_file=prices)
    try:
        srv = server(delay=0.02, tokens=2)
        report = Bench([target("local", srv, model="llama-local")], tracker=tracker, requests=6, concurrency=(2,)).run()
    finally:
        tracker.close()
    r = only(report, "local")
    assert r.cost_basis == "per_hour"
    assert r.cost_per_request_usd == pytest.approx(3.6 / 3600 / (r.ok / r.wall_s), rel=1e-4)


def test_unpriced_model_is_unknown_not_zero(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    srv = server(tokens=2)
    report = Bench([target("local", srv, model="my-own-model")], tracker=sqlite_tracker, requests=2).run()
    assert only(report, "local").cost_per_1k_requests_usd is None
    assert any("no price for 'my-own-model'" in w for w in report.warnings)


# --------------------------------------------------------------------------- injected faults


def test_injected_errors_are_counted_and_recorded_like_real_ones(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    srv = server(tokens=2)
    injection = parse_inject("error-every:4,rate-limit-after:10")
    report = Bench([target("api", srv, inject=injection)], tracker=sqlite_tracker, requests=14, concurrency=(2,)).run()
    r = only(report, "api")
    # Requests 4 and 8 get a 500; 11..14 a 429 (12 is both: the rate limit wins).
    assert r.errors["5xx"] == 2 and r.errors["rate_limit"] == 4 and r.ok == 8
    assert r.injected == {"5xx": 2, "rate_limit": 4}
    assert srv.completions == 8  # injected failures never reach the server
    records = sqlite_tracker.records()
    assert len(records) == 14
    assert sorted(x.error_type or "" for x in records if x.status == "error") == ["rate_limit_exceeded"] * 4 + ["server_error"] * 2
    assert {x.tags["bench_inject"] for x in records} == {"error-every:4,rate-limit-after:10"}


def test_injected_latency_adds_to_ttft_and_latency(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    srv = server(delay=0.02, tokens=3)
    plain, slowed = target("plain", srv), target("slowed", srv, inject=parse_inject("latency:50ms"))
    report = Bench([plain, slowed], tracker=sqlite_tracker, requests=5).run()
    assert only(report, "slowed").ttft_ms["p50"] >= only(report, "plain").ttft_ms["p50"] + 40
    assert only(report, "slowed").latency_ms["p50"] >= 20 + 50 - 1


def test_injected_timeouts_and_connection_errors_follow_the_seed(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    srv = server(tokens=2)
    injection = parse_inject("timeout-rate:0.25,connection-error-rate:0.25,seed:7")
    rng = random.Random(7)
    expected: dict[Any, int] = {}
    for n in range(1, 21):
        fault = injection.fault(n, rng)
        expected[fault] = expected.get(fault, 0) + 1
    report = Bench([target("api", srv, inject=injection)], tracker=sqlite_tracker, requests=20, concurrency=(4,)).run()
    r = only(report, "api")
    assert r.errors["timeout"] == expected.get("timeout", 0) > 0
    assert r.errors["connection"] == expected.get("connection", 0) > 0
    assert r.ok == expected.get(None, 0)
    kinds = sorted(x.error_type or "" for x in sqlite_tracker.records() if x.status == "error")
    assert kinds == sorted(["timeout"] * r.errors["timeout"] + ["connection_error"] * r.errors["connection"])


# --------------------------------------------------------------------------- fallback chain


def test_fallback_chain_escalates_to_the_next_target(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    local_srv = server(tokens=2)
    api_srv = server(tokens=2)
    local = target("local", local_srv, model="llama3.1:8b", inject=parse_inject("error-every:2"))
    api = target("api", api_srv)
    report = Bench([local, api], tracker=sqlite_tracker, requests=10, fallback=["local", "api"]).run()
    assert only(report, "local").ok == 5
    chain = only(report, "local>api")
    assert (chain.ok, chain.error_count) == (10, 0)
    assert chain.answered_by == {"local": 5, "api": 5}
    assert chain.attempts == {"local": 10, "api": 5}
    assert chain.model == "llama3.1:8b>gpt-4o-mini"
    chain_records = [x for x in sqlite_tracker.records() if x.endpoint == "bench:local>api"]
    assert len(chain_records) == 15
    assert {x.tags["fallback_chain"] for x in chain_records} == {"llama3.1:8b>openai-compatible:gpt-4o-mini"}
    assert sum(1 for x in chain_records if x.tags.get("fallback_reason") == "server_error") == 5


# --------------------------------------------------------------------------- anthropic


@pytest.mark.parametrize("stream", [True, False])
def test_anthropic_target(server: Callable[..., LLMServer], sqlite_tracker: Tracker, stream: bool) -> None:
    srv = server(delay=0.03, tokens=4)
    [claude] = parse_targets([f"claude=anthropic:{srv.root}"], ["claude=claude-haiku-4-5"])
    assert claude.sdk == "anthropic"
    report = Bench([claude], tracker=sqlite_tracker, requests=4, stream=stream).run()
    r = only(report, "claude")
    assert (r.ok, r.output_tokens, r.provider) == (4, 16, "anthropic")
    assert r.latency_ms["p50"] >= 30 - 1
    assert (r.ttft_ms["p50"] is not None) is stream
    assert r.cost_basis == "catalog" and r.cost_per_request_usd and r.cost_per_request_usd > 0
    records = sqlite_tracker.records()
    assert {(x.provider, x.operation, x.endpoint) for x in records} == {("anthropic", "messages", "bench:claude")}
    assert srv.requests[0] == ("POST", "/v1/messages")


# --------------------------------------------------------------------------- readiness


def test_wait_ready_measures_a_server_that_starts_late(server: Callable[..., LLMServer]) -> None:
    import time

    start = time.monotonic()
    srv = server(start_delay=0.3)
    ready = wait_ready([target("local", srv)], start=start, interval=0.02, timeout=5)
    assert 0.3 <= ready["local"] <= 0.3 + 0.25


def test_wait_ready_waits_for_the_model_list_not_just_the_port(server: Callable[..., LLMServer]) -> None:
    srv = server(models_ready_after=0.2)
    ready = wait_ready([target("local", srv)], interval=0.02, timeout=5)
    assert 0.2 - 0.05 <= ready["local"] <= 0.2 + 0.25
    assert ("GET", "/v1/models") in srv.requests


def test_wait_ready_with_an_injected_clock(fake_clock: Any) -> None:
    answers = {"api": [True], "local": [False, False, False, True]}
    seen: list[str] = []

    def probe(t: Target) -> bool:
        seen.append(t.name)
        return answers[t.name].pop(0)

    targets = [Target("api", "http://127.0.0.1:9/v1", "m"), Target("local", "http://127.0.0.1:9/v1", "m")]
    start = fake_clock()
    fake_clock.advance(0.5)  # the command started half a second before the first probe
    ready = wait_ready(targets, start=start, interval=2.0, clock=fake_clock, sleep=fake_clock.sleep, probe=probe)
    assert ready == {"api": 0.5, "local": 6.5}
    assert fake_clock.sleeps == [2.0, 2.0, 2.0]
    assert seen == ["api", "local", "local", "local", "local"]


def test_wait_ready_gives_up_after_the_timeout(fake_clock: Any) -> None:
    with pytest.raises(BenchError, match="did not answer GET /models within 10 s"):
        wait_ready([Target("local", "http://127.0.0.1:9/v1", "m")], interval=1.0, timeout=10, clock=fake_clock,
                   sleep=fake_clock.sleep, probe=lambda t: False)  # fmt: skip
    assert len(fake_clock.sleeps) == 10


def test_wait_ready_refused_key_is_an_error(server: Callable[..., LLMServer]) -> None:
    srv = server(require_key="right")
    with pytest.raises(BenchError, match="refuses the API key"):
        wait_ready([Target("api", srv.url, "m", api_key="wrong")], interval=0.01, timeout=2)


# --------------------------------------------------------------------------- interruption and the client's own cost


def test_stop_keeps_what_was_measured(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    srv = server(delay=0.02, tokens=2)
    done: list[str] = []
    bench = Bench([target("a", srv), target("b", srv)], tracker=sqlite_tracker, requests=40, concurrency=(2,))

    def progress(label: str) -> None:
        done.append(label)
        if len(done) == 6:
            bench.stop()

    bench.on_progress = progress
    report = bench.run()
    assert report.interrupted
    [r] = report.results  # "b" never started
    assert r.target == "a" and r.interrupted and 6 <= r.requests < 40
    assert r.ok == r.requests
    ok_records = [x for x in sqlite_tracker.records() if x.status == "ok"]
    assert len(ok_records) == r.ok  # flushed; requests cut mid-flight are recorded as errors


@pytest.fixture
def ctrl_c_raises() -> Any:
    """Ctrl-C raising KeyboardInterrupt, as in a terminal: a shell's background job inherits SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_keeps_partial_results(server: Callable[..., LLMServer], sqlite_tracker: Tracker, ctrl_c_raises: None) -> None:
    srv = server(delay=0.02, tokens=2)
    calls = 0

    def progress(label: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C

    report = Bench([target("a", srv)], tracker=sqlite_tracker, requests=30, concurrency=(2,), on_progress=progress).run()
    assert report.interrupted
    [r] = report.results
    assert r.interrupted and 4 <= r.ok < 30


def test_client_bound_run_is_warned_about(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    srv = server(tokens=2)
    ticks = iter(range(0, 10_000, 50))  # every reading of the CPU clock 50 s later: a saturated client
    bench = Bench([target("a", srv)], tracker=sqlite_tracker, requests=3, cpu_clock=lambda: float(next(ticks)))
    report = bench.run()
    r = only(report, "a")
    assert r.client_cpu_share is not None and r.client_cpu_share >= 0.8
    assert any("the client, not the target, may limit these figures" in w for w in report.warnings)


# --------------------------------------------------------------------------- prompts


def test_docs_are_summarised_in_turn(server: Callable[..., LLMServer], sqlite_tracker: Tracker, tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("alpha document")
    (tmp_path / "b.txt").write_text("beta document")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    prompts = load_prompts(docs=tmp_path)
    assert len(prompts) == 2 and "alpha document" in prompts[0] and prompts[0].startswith("Summarize")
    srv = server(tokens=1)
    Bench([target("a", srv)], tracker=sqlite_tracker, requests=4, prompts=prompts).run()
    sent = sorted(body["messages"][0]["content"].split("\n\n", 1)[1] for body in srv.bodies)
    assert sent == ["alpha document", "alpha document", "beta document", "beta document"]
    assert all(body["max_tokens"] == 200 and body["stream_options"] == {"include_usage": True} for body in srv.bodies)


# --------------------------------------------------------------------------- parsing


def test_parse_inject() -> None:
    inj = parse_inject("latency:200ms,error-rate:10%,rate-limit-after:20,timeout-rate:0.05,error-status:503,seed:3")
    assert inj == Injection(latency_s=0.2, error_rate=0.1, rate_limit_after=20, timeout_rate=0.05, error_status=503,
                            seed=3, spec=inj.spec)  # fmt: skip
    assert parse_duration("1.5s") == 1.5 and parse_duration("2") == 2.0 and parse_duration("250ms") == 0.25
    for bad in ("latency", "latency:fast", "error-rate:2", "bogus:1", "error-every:0", "error-status:200",
                "error-rate:0.6,timeout-rate:0.6", "latency:1s,latency:2s"):  # fmt: skip
        with pytest.raises(ConfigError):
            parse_inject(bad)


def test_parse_targets_keys_and_sdks(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"OPENAI_API_KEY": "sk-openai", "MY_KEY": "sk-mine"}
    targets = parse_targets(
        ["api=https://api.openai.com/v1", "local=http://localhost:11434/v1/", "gw=openai:http://127.0.0.1:4000/v1",
         "claude=anthropic:https://api.anthropic.com"],
        ["api=gpt-4o-mini", "local=llama3.1:8b", "gw=gpt-4o", "claude=claude-haiku-4-5"],
        api_key_envs=["gw=MY_KEY", "claude=MY_KEY"], providers=["gw=openai"], environ=env,
    )  # fmt: skip
    by = {t.name: t for t in targets}
    assert by["api"].api_key == "sk-openai" and by["local"].api_key != "sk-openai"  # your key stays with its API
    assert by["local"].base_url == "http://localhost:11434/v1" and by["local"].recorded_provider == "ollama"
    assert by["gw"].api_key == "sk-mine" and by["gw"].recorded_provider == "openai"
    assert by["claude"].sdk == "anthropic" and by["claude"].models_url == "https://api.anthropic.com/v1/models"
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        parse_targets(["api=https://api.openai.com/v1"], ["api=gpt-4o-mini"], environ={})
    assert parse_concurrency("1,4,16") == (1, 4, 16)
    for bad in ("0", "1,,2", "a", "2,2", "-1"):
        with pytest.raises(ConfigError):
            parse_concurrency(bad)


# --------------------------------------------------------------------------- the command


def test_cli_json_schema(server: Callable[..., LLMServer], cli: Callable[..., tuple[int, str, str]], sqlite_url: str) -> None:
    fast, slow = server(delay=0.01, tokens=3), server(delay=0.04, tokens=3, fail_every=4)
    code, out, err = cli(
        "--target", f"api={fast.url}", "--model", "api=gpt-4o-mini", "--target", f"local={slow.url}",
        "--model", "local=llama3.1:8b", "--requests", "8", "--concurrency", "1,2", "--wait-ready", "local",
        "--inject", "api=rate-limit-after:6", "--json", "--database-url", sqlite_url,
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert set(data) >= {"results", "startup_s", "run_id", "warnings", "interrupted"}
    assert set(data["startup_s"]) == {"local"} and data["startup_s"]["local"] >= 0
    assert [(r["target"], r["concurrency"]) for r in data["results"]] == [("api", 1), ("api", 2), ("local", 1), ("local", 2)]
    for r in data["results"]:
        assert set(r) >= {"target", "model", "concurrency", "requests", "errors", "latency_ms", "ttft_ms",
                          "output_tokens_per_s", "requests_per_s", "cost_per_1k_requests_usd"}  # fmt: skip
        assert set(r["latency_ms"]) == set(r["ttft_ms"]) == {"p50", "p95", "p99"}
        assert set(r["errors"]) == {"rate_limit", "timeout", "5xx", "connection", "4xx", "other"}
        assert r["requests"] == 8
    api1 = data["results"][0]
    assert api1["errors"]["rate_limit"] == 2 and api1["injected"] == {"rate_limit": 2}
    assert data["results"][2]["errors"]["5xx"] == 2
    assert api1["cost_per_1k_requests_usd"] > 0
    assert data["results"][2]["cost_per_1k_requests_usd"] is None  # llama3.1:8b has no price here


def test_cli_table_and_chart(server: Callable[..., LLMServer], cli: Callable[..., tuple[int, str, str]], sqlite_url: str,
                             tmp_path: Path) -> None:  # fmt: skip
    a, b = server(delay=0.01, tokens=2), server(delay=0.02, tokens=2)
    chart = tmp_path / "latency.png"
    code, out, err = cli(
        "-t", f"api={a.url}", "-m", "api=gpt-4o-mini", "-t", f"local={b.url}", "-m", "local=llama3.1:8b", "-n", "4",
        "--fallback", "local,api", "--chart", str(chart), "--database-url", sqlite_url, "--no-stream",
    )  # fmt: skip
    assert code == 0, err
    assert "costtrack bench" in out and "local>api" in out and "fallback local>api" in out
    assert "ttft" not in out  # no TTFT columns without streams
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_fits_narrow_terminals(server: Callable[..., LLMServer], sqlite_tracker: Tracker) -> None:
    from rich.console import Console

    from costtrack.cli.bench import render

    srv = server(tokens=2)
    report = Bench([target("api", srv), target("local", srv, model="llama3.1:8b")], tracker=sqlite_tracker,
                   requests=2, concurrency=(1, 2)).run()  # fmt: skip
    for width, columns in ((180, "p99"), (100, "p95")):
        console = Console(width=width, record=True)
        render(report, console)
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= width
        assert columns in text and "api" in text and "local" in text
    assert "p99" not in text.split("(a wider")[0]  # the narrow table drops it


def test_cli_interrupt_prints_partial_results(server: Callable[..., LLMServer], cli: Callable[..., tuple[int, str, str]],
                                              sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                              ctrl_c_raises: None) -> None:  # fmt: skip
    import costtrack.bench as core

    srv = server(delay=0.01, tokens=2)
    original = core.Bench.__init__
    count = 0

    def progress(label: str) -> None:
        nonlocal count
        count += 1
        if count == 4:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.on_progress = progress

    monkeypatch.setattr(core.Bench, "__init__", init)
    code, out, err = cli("-t", f"a={srv.url}", "-m", "a=m", "-n", "50", "--json", "--database-url", sqlite_url)
    assert code == 130
    data = json.loads(out)
    assert data["interrupted"] and data["results"][0]["interrupted"] and data["results"][0]["requests"] < 50
    assert "interrupted" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no targets"),
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "b=x"), "no target named 'b'"),
        (("-t", "a=http://127.0.0.1:9/v1"), "has no model"),
        (("-t", "a=ftp://host/v1", "-m", "a=x"), "not an http(s) URL"),
        (("-t", "a=not a url", "-m", "a=x"), "not an http(s) URL"),
        (("-t", "a=http://127.0.0.1:99999/v1", "-m", "a=x"), "port 99999 is not a TCP port"),  # every request failed (CLI review)
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--inject", "a=latency"), "not key:value"),
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--inject", "a=explode:1"), "unknown key"),
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--inject", "z=latency:1s"), "no target named 'z'"),
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--wait-ready", "z"), "no target named 'z'"),
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--fallback", "a,z"), "no target named 'z'"),
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--fallback", "a"), "at least two"),
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "-c", "1,0"), "--concurrency"),
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--timeout", "nan"), "--timeout must be"),  # it sent, then failed
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--wait-ready", "a", "--ready-timeout", "nan"), "--ready-timeout"),
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--api-key-env", "a=COSTTRACK_NO_SUCH_VAR"), "is not set"),
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--prompt", "p", "--docs", "."), "one of --prompt"),
        (("-t", "a", "-m", "a=x"), "not NAME=VALUE"),
        (("-t", "a=http://127.0.0.1:9/v1", "-t", "a=http://127.0.0.1:9/v1", "-m", "a=x"), "given twice"),
        # Out of any real range: the run was taken and never ended (review finding)
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "-n", "99999999999999999999"), "give at most 1,000,000"),
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "-c", "1,100000"), "give at most 10,000"),
        # A missing file said "cannot be read as UTF-8 text (FileNotFoundError)"
        (("-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--prompt-file", "/no/such/p.txt"), "/no/such/p.txt: No such file"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(cli: Callable[..., tuple[int, str, str]], sqlite_url: str, args: tuple[str, ...],
                                          message: str) -> None:  # fmt: skip
    code, out, err = cli(*args, "--database-url", sqlite_url)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("costtrack: error: ") and message in err, err
    assert out == ""


# --------------------------------------------------------------------------- a target that never answers


def test_cli_target_with_nothing_listening_exits_1_naming_it(cli: Callable[..., tuple[int, str, str]], sqlite_url: str) -> None:
    from servers import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: every connection is refused at once
    code, out, err = cli("-t", f"api={dead}", "-m", "api=gpt-4o-mini", "-n", "2", "--database-url", sqlite_url)
    assert code == 1, err  # the run happened (table printed, requests recorded) but measured nothing
    assert err.count("\n") == 1 and err.startswith("costtrack: error: "), err  # one line: no warnings around it
    assert "target api failed (connection 2)" in err and "first error: Connection error." in err
    assert "Connect call failed" in err and "is it running?" in err
    assert "event loop" not in err and "Traceback" not in err
    assert "none to price" in out and "unpriced" not in out  # gpt-4o-mini has a price: there was nothing to price


def test_failed_fast_requests_do_not_blame_the_client(sqlite_tracker: Tracker) -> None:
    from servers import free_port

    ticks = iter(range(0, 10_000, 50))  # a CPU clock as busy as in test_client_bound_run_is_warned_about
    dead = Target("dead", f"http://127.0.0.1:{free_port()}/v1", "gpt-4o-mini", api_key="sk-test")
    report = Bench([dead], tracker=sqlite_tracker, requests=3, cpu_clock=lambda: float(next(ticks))).run()
    r = only(report, "dead")
    assert (r.ok, r.errors["connection"]) == (0, 3)
    assert not any("the client, not the target" in w for w in report.warnings), report.warnings
    assert r.first_error is not None and "Connect call failed" in r.first_error
    assert [(f.target, f.requests) for f in report.failed_targets()] == [("dead", 3)]
    assert len(sqlite_tracker.records()) == 3  # still recorded


def test_cli_one_dead_target_among_healthy_ones_exits_1_after_the_results(
    server: Callable[..., LLMServer], cli: Callable[..., tuple[int, str, str]], sqlite_url: str
) -> None:
    from servers import free_port

    srv = server(tokens=2)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    code, out, err = cli("-t", f"api={srv.url}", "-m", "api=gpt-4o-mini", "-t", f"local={dead}", "-m", "local=llama3.1:8b",
                         "-n", "2", "-c", "1,2", "--json", "--database-url", sqlite_url)  # fmt: skip
    assert code == 1
    data = json.loads(out)  # the results are printed in full before the error
    by = {(r["target"], r["concurrency"]): r for r in data["results"]}
    assert by["api", 1]["ok"] == 2 and by["api", 1]["cost_per_1k_requests_usd"] > 0 and by["api", 1]["first_error"] is None
    assert by["local", 2]["ok"] == 0 and "Connect call failed" in by["local", 2]["first_error"]
    [error] = [line for line in err.splitlines() if line.startswith("costtrack: error: ")]
    assert err.endswith(error + "\n") and "target local failed (connection 4)" in error and "target api" not in error
    assert "every request failed" not in err  # said once, by the error line


def test_cli_refused_requests_name_the_status_and_what_to_check(
    server: Callable[..., LLMServer], cli: Callable[..., tuple[int, str, str]], sqlite_url: str
) -> None:
    srv = server(require_key="sk-not-this-one")
    code, _, err = cli("-t", f"api={srv.url}", "-m", "api=gpt-4o-mini", "-n", "2", "--database-url", sqlite_url)
    assert code == 1
    assert err.count("\n") == 1 and "target api failed (4xx 2)" in err and "first error: Error code: 401" in err
    assert "check the model name and the API key" in err


def test_a_chart_onto_the_records_database_is_refused(tmp_path, capsys):
    """`bench --database-url sqlite:///b.db --chart b.db` turned the records database into a PNG (diff review)."""
    from costtrack.cli import run

    database = tmp_path / "b.db"
    assert run(["bench", "-t", "a=http://127.0.0.1:9/v1", "-m", "a=x", "--database-url", f"sqlite:///{database}",
                "--chart", str(database)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the records database itself" in err
    assert not database.exists()
