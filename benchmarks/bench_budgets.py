"""What budgets add to a call when no threshold is crossed: the in-memory check, reservation and settling.

    python benchmarks/bench_budgets.py [--calls 20000] [--rounds 5]

Part 1 times the budget work itself, per call, median of `--rounds` rounds:

- app thread, hard limit: ``BudgetMonitor.before_send`` (scope match, estimate from the
  request body, check and reserve under the lock) plus ``settling`` (taking the reservation
  when the call ends); with alert-only budgets the app thread does nothing but ``settling``;
- writer thread: ``record_built`` (count the priced record, release the reservation, check
  thresholds) plus ``record_stored`` (the writer's on_records hook).

Part 2 is a sanity check end to end: wrapped OpenAI calls through a mock transport with no
budget, an alert-only budget and a hard-limited one (far from its limit), interleaved in rounds
so drift hits all alike: median wall time per call on the app's thread, and CPU time per call
of the whole process (writer thread included). With a hard limit the request body is parsed on
the app's thread (for the estimate) instead of in the writer thread, which reuses it: more
wall time on the app's thread, not more CPU. Inside a real call the same code runs slower
than in part 1's tight loop (caches are cold after the SDK's own work). No database query
happens per call: totals are refreshed in the background (every 5 s by default).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import costtrack
from costtrack.budgets import Budget
from costtrack.call_context import current
from costtrack.calls import Call
from costtrack.records import CallRecord

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Summarise: " + "lorem ipsum " * 200}]
BODY = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 200}, separators=(",", ":")).encode()
ANSWER = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1763900000, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A short answer."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 612, "completion_tokens": 40, "total_tokens": 652},
}  # fmt: skip
CHAT_BODY = json.dumps(ANSWER).encode()


def handler(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": "application/json"}, content=CHAT_BODY)


def budgets(hard: bool) -> list[Budget]:
    # Large amounts: no threshold is crossed. Two budgets, one of them scoped, as a typical app has.
    return [
        Budget(monthly_usd=1_000_000, hard_limit=hard, on_alert=lambda a: None),
        Budget(monthly_usd=1_000_000, endpoint="/api/summarize", hard_limit=hard, on_alert=lambda a: None),
    ]


def micro(tmp: Path, calls: int, rounds: int) -> dict[str, float]:
    tracker = costtrack.Tracker(f"sqlite:///{tmp / 'micro.db'}", outbox_dir=tmp / "outbox", budgets=budgets(True))
    monitor = tracker.budget_monitor
    assert monitor is not None
    monitor.refresh()
    ctx = current()
    now = tracker.now()
    parse: list[float] = []
    app: list[float] = []
    writer: list[float] = []
    clock = time.perf_counter
    for _ in range(rounds):
        t_parse = t_app = t_writer = 0.0
        for _ in range(calls):
            # One call's whole cycle, as in an app: begin (check + reserve), end (settle), record built and stored.
            call = Call(tracker=tracker, provider="openai", api="openai", operation="chat.completions", context=ctx,
                        endpoint="/api/summarize", request_bytes=BODY, attempt=1, timestamp=now, started=0.0)  # fmt: skip
            t0 = clock()
            _ = call.body  # parsed here for the estimate; the writer thread reuses it (it would parse it anyway)
            t1 = clock()
            monitor.before_send(call)
            item = monitor.settling(call)
            t2 = clock()
            rec = CallRecord(timestamp=now, provider="openai", operation="chat.completions", endpoint="/api/summarize",
                             model="gpt-4o-mini-2024-07-18", cost_usd=0.000116)  # fmt: skip
            t3 = clock()
            monitor.record_built(rec, item.reservation)
            monitor.record_stored([rec])
            t4 = clock()
            t_parse += t1 - t0
            t_app += t2 - t1
            t_writer += t4 - t3
        parse.append(t_parse / calls)
        app.append(t_app / calls)
        writer.append(t_writer / calls)
        monitor.refresh()  # as the background thread does every few seconds
    tracker.close()
    return {
        "parse_us": statistics.median(parse) * 1e6,
        "app_us": statistics.median(app) * 1e6,
        "writer_us": statistics.median(writer) * 1e6,
    }


def end_to_end(tmp: Path, calls: int, rounds: int) -> dict[str, float]:
    configs = {"none": [], "alerts": budgets(False), "hard": budgets(True)}
    variants: dict[str, costtrack.Tracker] = {}
    clients = {}
    for name, items in configs.items():
        # One at a time: each tracker creates its database (migrations of different databases must not overlap).
        tracker = costtrack.Tracker(f"sqlite:///{tmp / name}.db", outbox_dir=tmp / f"outbox-{name}", budgets=items)
        http = httpx2.Client(transport=httpx2.MockTransport(handler))
        client = tracker.wrap(openai.OpenAI(api_key="sk-bench", max_retries=0, http_client=http), endpoint="/api/summarize")
        for _ in range(200):  # warm up: imports, the first refresh, price lookups
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=200)
        tracker.flush()
        if tracker.budget_monitor is not None:
            tracker.budget_monitor.refresh()
        variants[name], clients[name] = tracker, client
    walls: dict[str, list[float]] = {name: [] for name in clients}
    cpu: dict[str, list[float]] = {name: [] for name in clients}
    per_round = max(calls // rounds, 1)
    for _ in range(rounds):
        for name, client in clients.items():
            cpu0 = time.process_time()
            for _ in range(per_round):
                t0 = time.perf_counter()
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=200)
                walls[name].append(time.perf_counter() - t0)
            variants[name].flush()  # the writer's share (pricing, storing, budgets) counts in the CPU time
            cpu[name].append((time.process_time() - cpu0) / per_round)
    for t in variants.values():
        t.close()
    out = {name: statistics.median(w) * 1e6 for name, w in walls.items()}
    out.update({f"{name}_cpu": statistics.median(c) * 1e6 for name, c in cpu.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per round in part 1, in all in part 2")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        m = micro(tmp, args.calls, args.rounds)
        e = end_to_end(tmp, max(args.calls // 4, 1000), args.rounds)
    print(f"request body {len(BODY):,} bytes, 2 budgets (one scoped), no threshold crossed")
    print("Budget work per call (median of rounds):")
    print(f"  app thread, hard limit: estimate + check + reserve + settle  {m['app_us']:6.2f} us")
    print(f"    + parsing the request body (moved from the writer thread)  {m['parse_us']:6.2f} us"
          f"  = {m['app_us'] + m['parse_us']:.2f} us")
    print("  app thread, alert-only budgets                                 ~0 us (the call is queued as before)")
    print(f"  writer thread: count the record, release, thresholds, stored {m['writer_us']:6.2f} us")
    print("End to end, wrapped call through a mock transport (noisy: +/- several us between runs):")
    for label, key in (("wall time on the app's thread (median)", ""), ("CPU per call, all threads (median round)", "_cpu")):
        none, soft, hard = e["none" + key], e["alerts" + key], e["hard" + key]
        print(f"  {label:41s} no budget {none:6.1f} us | alert-only {soft:6.1f} us ({soft - none:+.1f}) | "
              f"hard limit {hard:6.1f} us ({hard - none:+.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
