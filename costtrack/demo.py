"""The demo workload: a capstone app's month of calls through real wrapped SDK clients, offline."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .call_context import context
from .simulator import Simulator, anthropic_client, openai_client
from .tracker import Tracker

__all__ = ["Step", "workload", "run"]

TICKETS = [
    "My invoice shows a double charge for October.", "The app crashes when I upload a PNG.",
    "How do I reset my password?", "Can I export my data to CSV?", "The dashboard is slow since Monday.",
    "I want to cancel my subscription.", "Is there a student discount?", "The API returns 500 on /v1/items.",
    "Where can I find my API key?", "Dark mode makes the charts unreadable.", "Please add SSO with Google.",
    "Two-factor codes arrive late.", "Refund for the annual plan, please.", "The mobile app logs me out.",
    "Search does not find accented names.", "Webhook retries flood our server.",
]  # fmt: skip
TOPICS = [
    "quarterly revenue", "onboarding survey", "incident postmortem", "user interviews", "churn analysis",
    "pricing experiment", "support backlog", "latency regression", "hiring plan", "roadmap review",
    "security audit", "marketing funnel",
]  # fmt: skip
STYLE_GUIDE = (
    "You are the support assistant of Acme Cloud. Follow the style guide: be concise, cite the relevant help "
    "article, never promise refunds, escalate legal questions. " * 60
)


@dataclass(frozen=True)
class Step:
    """One call of the workload: when, for which feature, and how to make it."""

    at: datetime
    endpoint: str
    user: str
    call: Callable[[dict[str, Any]], Any]


def _document(topic: str, n: int) -> str:
    return f"Report on {topic} (part {n}). " + " ".join(f"Finding {i}: the {topic} metric moved by {i * 3 % 17}%." for i in range(60))


def workload(calls: int = 3000, *, seed: int = 7, days: int = 30, end: datetime | None = None) -> Iterator[Step]:
    """A month of a capstone app's traffic: repeats, over-sized models, streams, prompt caching, errors."""
    rng = random.Random(seed)
    end = end or datetime.now(timezone.utc)
    start = end - timedelta(days=days)
    endpoints: list[tuple[str, float, Callable[[], Callable[[dict[str, Any]], Any]]]] = [
        # Ticket triage on gpt-4o: short answers from an expensive model, many repeated tickets.
        ("/api/classify", 0.34, lambda: _classify(rng)),
        # Summaries on gpt-4o, some streamed to the UI; popular documents are summarised again and again.
        ("/api/summarize", 0.22, lambda: _summarize(rng)),
        # Chat on claude-sonnet-4-5 with a long cached system prompt, streamed.
        ("/api/chat", 0.2, lambda: _chat(rng)),
        # Search embeddings.
        ("/api/search", 0.14, lambda: _embed(rng)),
        # A nightly digest nobody waits for (a Batch API candidate), on claude-haiku-4-5.
        ("/jobs/nightly-digest", 0.06, lambda: _digest(rng)),
        # Structured extraction on gpt-4o-mini via the Responses API.
        ("/api/extract", 0.04, lambda: _extract(rng)),
    ]
    weights = [weight for _, weight, _ in endpoints]
    moments = sorted(start + timedelta(seconds=rng.uniform(0, days * 86400)) for _ in range(calls))
    for at in moments:
        endpoint, _, make = rng.choices(endpoints, weights)[0]
        yield Step(at=at, endpoint=endpoint, user=f"user{rng.randint(1, 40)}", call=make())


def _classify(rng: random.Random) -> Callable[[dict[str, Any]], Any]:
    ticket = rng.choice(TICKETS[:8]) if rng.random() < 0.7 else rng.choice(TICKETS)
    messages = [
        {"role": "system", "content": "Classify the ticket as billing, bug, account, feature or other. One word."},
        {"role": "user", "content": ticket},
    ]
    return lambda c: c["openai"].chat.completions.create(model="gpt-4o", messages=messages, temperature=0, max_tokens=5)


def _summarize(rng: random.Random) -> Callable[[dict[str, Any]], Any]:
    topic = rng.choice(TOPICS[:4]) if rng.random() < 0.6 else rng.choice(TOPICS)
    messages = [{"role": "user", "content": "Summarise in five bullet points:\n" + _document(topic, rng.randint(1, 3))}]
    if rng.random() < 0.4:
        def streamed(c: dict[str, Any]) -> Any:
            return "".join(
                chunk.choices[0].delta.content or ""
                for chunk in c["openai"].chat.completions.create(model="gpt-4o", messages=messages, max_tokens=300, stream=True)
            )
        return streamed
    return lambda c: c["openai"].chat.completions.create(model="gpt-4o", messages=messages, max_tokens=300)


def _chat(rng: random.Random) -> Callable[[dict[str, Any]], Any]:
    question = f"{rng.choice(TICKETS)} (conversation {rng.randint(1, 500)})"
    system = [{"type": "text", "text": STYLE_GUIDE, "cache_control": {"type": "ephemeral"}}]

    def call(c: dict[str, Any]) -> Any:
        with c["anthropic"].messages.stream(
            model="claude-sonnet-4-5", max_tokens=400, system=system, messages=[{"role": "user", "content": question}]
        ) as stream:
            return stream.get_final_text()

    return call


def _embed(rng: random.Random) -> Callable[[dict[str, Any]], Any]:
    text = rng.choice(TICKETS) + " " + rng.choice(TOPICS)
    return lambda c: c["openai"].embeddings.create(model="text-embedding-3-small", input=text)


def _digest(rng: random.Random) -> Callable[[dict[str, Any]], Any]:
    topic = rng.choice(TOPICS)
    content = "Write tonight's digest of these notes:\n" + _document(topic, rng.randint(1, 9))
    return lambda c: c["anthropic"].messages.create(
        model="claude-haiku-4-5", max_tokens=800, messages=[{"role": "user", "content": content}]
    )


def _extract(rng: random.Random) -> Callable[[dict[str, Any]], Any]:
    ticket = rng.choice(TICKETS)
    return lambda c: c["openai"].responses.create(
        model="gpt-4o-mini", input=f"Extract product, severity and sentiment as JSON: {ticket}", max_output_tokens=120
    )


def run(
    tracker: Tracker,
    calls: int = 3000,
    *,
    seed: int = 7,
    error_rate: float = 0.02,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Run the workload into `tracker`; return how many calls succeeded and failed (as the app saw them).

    Time is simulated: each call happens at its moment of the month, and the
    simulated providers' latencies advance a clock instead of sleeping, so a
    month of traffic with realistic latencies runs in seconds.
    """
    clock = _SimulatedTime()
    latency_rng = random.Random(seed + 1)

    def latency(request: Any) -> float:
        # Seconds before the first byte: slower for bigger models, with a long tail.
        base = 0.9 if b"gpt-4o-mini" in request.content or b"haiku" in request.content else 1.4
        if request.url.path.endswith("/embeddings"):
            base = 0.15
        return base * latency_rng.lognormvariate(0, 0.35)

    simulator = Simulator(seed=seed, error_rate=error_rate, latency=latency, sleep=clock.sleep, chunk_delay=0.03)
    tracker.now = clock.now
    tracker.clock = clock.monotonic
    clients = {
        "openai": tracker.wrap(openai_client(simulator, max_retries=1)),
        "anthropic": tracker.wrap(anthropic_client(simulator, max_retries=1)),
    }
    outcome = {"ok": 0, "failed": 0}
    for step in workload(calls, seed=seed):
        clock.start_step(step.at)
        with context(endpoint=step.endpoint, user=step.user, tags={"source": "demo"}):
            try:
                step.call(clients)
                outcome["ok"] += 1
            except Exception:  # noqa: BLE001 - the demo app shrugs off provider errors, as apps do
                outcome["failed"] += 1
        if progress is not None:
            progress(1)
    tracker.flush()
    return outcome


class _SimulatedTime:
    """The demo's clocks: wall time jumps to each call's moment; waiting advances time instead of sleeping."""

    def __init__(self) -> None:
        self.at = datetime.now(timezone.utc)
        self.elapsed = 0.0
        self._step_began = 0.0

    def start_step(self, at: datetime) -> None:
        """The next call starts at `at` (simulated wall time)."""
        self.at = at
        self._step_began = self.elapsed

    def now(self) -> datetime:
        return self.at + timedelta(seconds=self.elapsed - self._step_began)

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.elapsed += seconds
