"""What budgets add to a call when no threshold is crossed: the in-memory check, reservation and settling.

    python benchmarks/bench_budgets.py [--calls 20000] [--rounds 5]

Part 1 is the target ("budget evaluation adds <= 10 us to a call when no threshold is
crossed"): wrapped OpenAI chat calls through a mock transport, with the budget monitor's two
entry points on the app's thread timed where costtrack calls them, inside each real call:

- ``BudgetMonitor.before_send`` (hard-limited budgets only): the scope test, the estimate (the
  request parsed into ``Call.body`` with jiter, tokens counted, priced from cached per-token rates), and the
  check and reservation under the lock;
- ``BudgetMonitor.settling``: wrapping the finished call so that the writer thread, building
  its record, settles its reservation (with alert-only budgets this is all the app's thread does).

Median per call over all calls (rounds interleaved with the alert-only variant so drift hits
both alike). Each figure includes one pair of ``perf_counter`` calls (~0.1 us). Inside a real
call the same code runs 2-3x slower than in a tight loop: the SDK's own work between two calls
leaves the caches cold.

Part 2 times the same work in a tight loop (warm caches: a floor, not what a call pays), and the
writer thread's share: taking the reservation and ``record_built`` (count the priced record,
release the reservation, check thresholds) plus ``record_stored`` (the writer's on_records hook).

Part 3 is a sanity check end to end: median wall time per call with no budget, alert-only
budgets and hard-limited ones (far from their limit), and CPU time per call of the whole
process (writer thread included). With a hard limit the request body is parsed on the app's
thread (for the estimate) instead of in the writer thread, which reuses it (``Call.body``): more
wall time on the app's thread, not more CPU. No database query happens per call: totals are
refreshed in the background (every 5 s by default).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import costtrack
from costtrack.budgets import Budget, BudgetMonitor
from costtrack.call_context import current
from costtrack.calls import Call
from costtrack.records import CallRecord

TARGET_US = 10.0
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


def wrapped(tmp: Path, name: str, items: list[Budget]) -> tuple[costtrack.Tracker, Any]:
    """A tracker with `items` and an OpenAI client wrapped by it, warmed up (imports, first refresh, prices)."""
    # One at a time: each tracker creates its database (migrations of different databases must not overlap).
    tracker = costtrack.Tracker(f"sqlite:///{tmp / name}.db", outbox_dir=tmp / f"outbox-{name}", budgets=items)
    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = tracker.wrap(openai.OpenAI(api_key="sk-bench", max_retries=0, http_client=http), endpoint="/api/summarize")
    for _ in range(200):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=200)
    tracker.flush()
    if tracker.budget_monitor is not None:
        tracker.budget_monitor.refresh()
    return tracker, client


class Timed:
    """Times a monitor's app-thread entry points where costtrack calls them (per call: their sum)."""

    def __init__(self, monitor: BudgetMonitor) -> None:
        self.per_call: list[float] = []
        self._current = 0.0
        before_send, settling, clock = monitor.before_send, monitor.settling, time.perf_counter

        def timed_before_send(call: Call) -> None:
            t0 = clock()
            try:
                before_send(call)
            finally:
                self._current += clock() - t0

        def timed_settling(call: Call) -> Any:
            t0 = clock()
            item = settling(call)
            self._current += clock() - t0
            return item

        monitor.before_send = timed_before_send  # type: ignore[method-assign]
        monitor.settling = timed_settling  # type: ignore[method-assign]

    def end_call(self) -> None:
        self.per_call.append(self._current)
        self._current = 0.0


def in_calls(tmp: Path, calls: int, rounds: int) -> dict[str, float]:
    variants = {name: wrapped(tmp, f"in-calls-{name}", budgets(name == "hard")) for name in ("hard", "alerts")}
    timers = {name: Timed(tracker.budget_monitor) for name, (tracker, _) in variants.items()}  # type: ignore[arg-type]
    per_round = max(calls // rounds, 1)
    for _ in range(rounds):
        for name, (tracker, client) in variants.items():
            timer = timers[name]
            for _ in range(per_round):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=200)
                timer.end_call()
            tracker.flush()
    out: dict[str, float] = {}
    for name, (tracker, _) in variants.items():
        tracker.close()
        times = timers[name].per_call
        out[name] = statistics.median(times) * 1e6
        out[f"{name}_p90"] = statistics.quantiles(times, n=10)[-1] * 1e6
    return out


def micro(tmp: Path, calls: int, rounds: int) -> dict[str, float]:
    tracker = costtrack.Tracker(f"sqlite:///{tmp / 'micro.db'}", outbox_dir=tmp / "outbox", budgets=budgets(True))
    monitor = tracker.budget_monitor
    assert monitor is not None
    monitor.refresh()
    ctx = current()
    now = tracker.now()
    app: list[float] = []
    writer: list[float] = []
    clock = time.perf_counter
    for _ in range(rounds):
        t_app = t_writer = 0.0
        for _ in range(calls):
            # One call's whole cycle, as in an app: begin (check + reserve), end (settle), record built and stored.
            call = Call(tracker=tracker, provider="openai", api="openai", operation="chat.completions", context=ctx,
                        endpoint="/api/summarize", request_bytes=BODY, attempt=1, timestamp=now, started=0.0)  # fmt: skip
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
            t_app += t2 - t1
            t_writer += t4 - t3
        app.append(t_app / calls)
        writer.append(t_writer / calls)
        monitor.refresh()  # as the background thread does every few seconds
    tracker.close()
    return {"app_us": statistics.median(app) * 1e6, "writer_us": statistics.median(writer) * 1e6}


def end_to_end(tmp: Path, calls: int, rounds: int) -> dict[str, float]:
    configs = {"none": [], "alerts": budgets(False), "hard": budgets(True)}
    variants = {name: wrapped(tmp, name, items) for name, items in configs.items()}
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    per_round = max(calls // rounds, 1)
    for _ in range(rounds):
        for name, (tracker, client) in variants.items():
            cpu0 = time.process_time()
            for _ in range(per_round):
                t0 = time.perf_counter()
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=200)
                walls[name].append(time.perf_counter() - t0)
            tracker.flush()  # the writer's share (pricing, storing, budgets) counts in the CPU time
            cpu[name].append((time.process_time() - cpu0) / per_round)
    for tracker, _ in variants.values():
        tracker.close()
    out = {name: statistics.median(w) * 1e6 for name, w in walls.items()}
    out.update({f"{name}_cpu": statistics.median(c) * 1e6 for name, c in cpu.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per round in part 2; parts 1 and 3 make a quarter of it in all")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        c = in_calls(tmp, max(args.calls // 4, 1000), args.rounds)
        m = micro(tmp, args.calls, args.rounds)
        e = end_to_end(tmp, max(args.calls // 4, 1000), args.rounds)
    print(f"request body {len(BODY):,} bytes, 2 budgets (one scoped), no threshold crossed")
    verdict = "met" if c["hard"] <= TARGET_US else "NOT met"
    print(f"Budget work on the app's thread inside real calls (median per call; target <= {TARGET_US:g} us: {verdict}):")
    print(f"  hard limit: scope, estimate, check + reserve, settle   {c['hard']:6.2f} us  (p90 {c['hard_p90']:.2f})")
    print(f"  alert-only budgets: settle (wrap the finished call)   {c['alerts']:6.2f} us  (p90 {c['alerts_p90']:.2f})")
    print("Same work in a tight loop (warm caches), median of rounds:")
    print(f"  app thread, hard limit                                {m['app_us']:6.2f} us")
    print(f"  writer thread: release, count the record, thresholds  {m['writer_us']:6.2f} us")
    print("End to end, wrapped call through a mock transport (noisy: +/- several us between runs):")
    for label, key in (("wall time on the app's thread (median)", ""), ("CPU per call, all threads (median round)", "_cpu")):
        none, soft, hard = e["none" + key], e["alerts" + key], e["hard" + key]
        print(f"  {label:41s} no budget {none:6.1f} us | alert-only {soft:6.1f} us ({soft - none:+.1f}) | "
              f"hard limit {hard:6.1f} us ({hard - none:+.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
