"""examples/: each script runs as a user would run it, against a local OpenAI/Anthropic-compatible server over TCP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

from servers import LLMServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def server():
    with LLMServer(tokens=6) as running:
        yield running


def environment(tmp_path: Path, **env: str) -> dict[str, str]:
    """The user's environment without keys, costtrack settings or proxies (the server is local), plus `env`."""
    skip = ("OPENAI_", "ANTHROPIC_", "COSTTRACK_")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(skip) and not k.lower().endswith("_proxy")}
    clean.update(COSTTRACK_DATABASE_URL=f"sqlite:///{tmp_path / 'example.db'}",
                 COSTTRACK_OUTBOX_DIR=str(tmp_path / "outbox"), **env)  # fmt: skip
    return clean


def run_example(name: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          cwd=tmp_path, env=environment(tmp_path, **env), timeout=120)  # fmt: skip


def stored(tmp_path: Path) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "costtrack", "export", "--format", "jsonl", "--since", "2000-01-01"],
                         capture_output=True, text=True, cwd=tmp_path, env=environment(tmp_path), timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_openai_quickstart_records_a_call_and_a_stream(server, tmp_path) -> None:
    run = run_example("openai_quickstart.py", tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=server.url)
    assert run.returncode == 0, run.stderr
    records = stored(tmp_path)
    assert [(r["endpoint"], r["user"], r["status"]) for r in records] == [
        ("/api/summarize", None, "ok"), ("/api/chat", "demo-user", "ok")]  # fmt: skip
    assert all(r["tokens_input"] > 0 and r["tokens_output"] == 6 and r["cost_usd"] > 0 for r in records)
    assert records[1]["ttft_ms"] is not None


def test_anthropic_quickstart_records_both_streams(server, tmp_path) -> None:
    run = run_example("anthropic_quickstart.py", tmp_path, ANTHROPIC_API_KEY="sk-ant-test",
                      ANTHROPIC_BASE_URL=server.root)  # fmt: skip
    assert run.returncode == 0, run.stderr
    records = stored(tmp_path)
    assert [(r["provider"], r["endpoint"], r["status"]) for r in records] == [("anthropic", "/api/support", "ok")] * 2
    assert all(r["tokens_output"] == 6 and r["cost_usd"] > 0 for r in records)


def test_local_server_example_records_the_provider_from_the_url(server, tmp_path) -> None:
    run = run_example("local_server.py", tmp_path, server.url, "llama3.1:8b")
    assert run.returncode == 0, run.stderr
    (record,) = stored(tmp_path)
    assert record["endpoint"] == "/api/local" and record["model_requested"] == "llama3.1:8b"
    assert record["tokens_output"] == 6 and record["cost_usd"] is None  # a local model has no list price


def test_local_server_example_without_a_server_says_what_to_do(tmp_path) -> None:
    run = run_example("local_server.py", tmp_path, f"http://127.0.0.1:{free_port()}/v1", "llama3.1:8b")
    assert run.returncode == 1 and "no server answers" in run.stderr and "Traceback" not in run.stderr
    (record,) = stored(tmp_path)
    assert record["status"] == "error" and record["error_type"] == "connection_error"


@pytest.mark.parametrize("name", ["openai_quickstart.py", "anthropic_quickstart.py"])
def test_quickstarts_without_a_key_say_what_to_do(name, tmp_path) -> None:
    run = run_example(name, tmp_path)
    assert run.returncode == 1 and "API_KEY" in run.stderr and "Traceback" not in run.stderr
