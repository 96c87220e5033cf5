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

__all__ = ["DEMO_TAGS", "Step", "run", "workload"]

#: The tags of every call the demo makes: how a later demo finds (and replaces) an earlier one's records.
DEMO_TAGS = {"source": "costtrack-demo"}

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
#: The policies the reply drafter is given with every ticket: sent in full each time, with no cache_control
#: marker (the team never added one), so the provider bills all of it at the full input rate.
POLICIES = [
    "Greet the customer by name and restate the problem in one sentence.",
    "Refunds: only for charges in the last 30 days; anything older goes to the billing team.",
    "Outages: link the status page and never give an estimated time of recovery.",
    "Security reports: thank the reporter and forward the ticket to security@, without details in the reply.",
    "Plan changes take effect at the next billing cycle; downgrades keep data for 90 days.",
    "Never ask for passwords, API keys or full card numbers.",
    "Data exports: CSV from Settings > Data, JSON through the API; both include deleted items for 30 days.",
    "Close with the help article that matches the ticket's category and an offer to follow up.",
]  # fmt: skip
HANDBOOK = "You draft replies for the agents of Acme Cloud's support desk; an agent edits and sends them.\n" + "\n".join(
    f"Rule {section}.{i + 1}: {rule} (see the support handbook, section {section})"
    for section in range(1, 9)
    for i, rule in enumerate(POLICIES)
)
CUSTOMERS = ["Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Alan", "Radia"]
#: Share of UTC hours' traffic for the interactive endpoints: users in Europe and the Americas, quiet at night.
HOURLY = (1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 7, 8, 8, 8, 7, 6, 5, 4, 3, 2, 2, 1)
#: Share of the chat streams the user stops (Stop button, closed tab) before the answer ends.
STOPPED_STREAMS = 0.12


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
    """A month of a capstone app's traffic: repeats, over-sized models, streams, long prompts, bursts, a nightly job.

    When calls happen matters to the audit (cache TTLs, prompt caches that stay warm a
    few minutes), so each feature keeps its own rhythm: interactive features follow the
    hours people work; support agents draft replies in bursts, working through the
    queue; the nightly digest runs at 02:00 UTC, one call after the other. The calls
    fall in [end - days, end).
    """
    rng = random.Random(seed)
    # By default the month ends at the last UTC midnight, so that a seed always gives the same times of day.
    end = end or datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    endpoints: list[tuple[str, float, Callable[[], Callable[[dict[str, Any]], Any]]]] = [
        # Ticket triage on gpt-4o: short answers from an expensive model, many repeated tickets.
        ("/api/classify", 0.3, lambda: _classify(rng)),
        # Summaries on gpt-4o, some streamed to the UI; popular documents are summarised again and again.
        ("/api/summarize", 0.2, lambda: _summarize(rng)),
        # Chat on claude-sonnet-4-5 with a long cached system prompt, streamed; some users press Stop.
        ("/api/chat", 0.18, lambda: _chat(rng)),
        # Reply drafts on claude-sonnet-4-5: a long policy prompt sent with every ticket, never cached.
        ("/api/draft-reply", 0.1, lambda: _draft_reply(rng)),
        # Search embeddings.
        ("/api/search", 0.12, lambda: _embed(rng)),
        # A nightly digest nobody waits for (a Batch API candidate), on claude-haiku-4-5.
        ("/jobs/nightly-digest", 0.06, lambda: _digest(rng)),
        # Structured extraction on gpt-4o-mini via the Responses API.
        ("/api/extract", 0.04, lambda: _extract(rng)),
    ]
    makers = {name: make for name, _, make in endpoints}
    picked = rng.choices([name for name, _, _ in endpoints], [weight for _, weight, _ in endpoints], k=calls)
    moments: list[tuple[datetime, str, str]] = []
    for name in makers:
        n = picked.count(name)
        if name == "/api/draft-reply":
            moments += _bursts(rng, n, start, end, name)
        elif name == "/api/chat":
            # Conversations: 2 to 6 turns, 15 s to 3 min apart. The cached system prompt (a 5-minute cache)
            # stays warm through a conversation and between close ones, and is written again after a lull.
            moments += _bursts(rng, n, start, end, name, who="user", people=40, sizes=(2, 6), gaps=(15, 180))
        elif name == "/jobs/nightly-digest":
            moments += [(at, name, "cron") for at in _nightly(rng, n, start, end)]
        else:
            moments += [(_working_hours(rng, start, end), name, f"user{rng.randint(1, 40)}") for _ in range(n)]
    moments.sort(key=lambda m: m[0])
    for at, name, user in moments:
        yield Step(at=at, endpoint=name, user=user, call=makers[name]())


def _working_hours(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A moment in [start, end), more likely in the hours people work (HOURLY)."""
    span = (end - start).total_seconds()
    top = max(HOURLY)
    while True:
        at = start + timedelta(seconds=rng.uniform(0, span))
        if rng.random() * top < HOURLY[at.hour]:
            return at


def _bursts(rng: random.Random, n: int, start: datetime, end: datetime, endpoint: str, *, who: str = "agent",
            people: int = 6, sizes: tuple[int, int] = (3, 8), gaps: tuple[float, float] = (20, 150)) -> list[tuple[datetime, str, str]]:  # fmt: skip
    """`n` calls in bursts of `sizes` calls, `gaps` seconds apart: by default an agent working through the ticket
    queue (3 to 8 drafts, 20 s to 2.5 min apart); a chat user's conversation is one too."""
    out: list[tuple[datetime, str, str]] = []
    while len(out) < n:
        size = min(rng.randint(*sizes), n - len(out))
        pauses = [rng.uniform(*gaps) for _ in range(size - 1)]
        first = min(_working_hours(rng, start, end), end - timedelta(seconds=sum(pauses) + 1))
        agent = f"{who}{rng.randint(1, people)}"
        at = first
        for i in range(size):
            out.append((at, endpoint, agent))
            if i < size - 1:
                at += timedelta(seconds=pauses[i])
    return out


def _nightly(rng: random.Random, n: int, start: datetime, end: datetime) -> list[datetime]:
    """`n` calls of a job that starts at 02:00 UTC every night and makes its calls one after the other.

    A call every 45 s, closer when a night has more calls than 45 s apart would fit before `end` (or within 20 h).
    """
    first = start.replace(hour=2, minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(days=1)
    nights = [first + timedelta(days=d) for d in range(max((end - first).days + 1, 1)) if first + timedelta(days=d) < end]
    nights = nights or [start]
    per_night: dict[datetime, int] = {}
    for _ in range(n):
        night = rng.choice(nights)
        per_night[night] = per_night.get(night, 0) + 1
    out = []
    for night, k in per_night.items():
        room = min((end - night).total_seconds(), 20 * 3600.0)
        step = min(45.0, room / (k + 1))
        out += [night + timedelta(seconds=step * (i + rng.uniform(0, 0.1))) for i in range(k)]
    return out


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
    # Some users stop the answer after a few words (Stop button, closed tab): the app stops reading the stream.
    stop_after = rng.randint(2, 12) if rng.random() < STOPPED_STREAMS else None

    def call(c: dict[str, Any]) -> Any:
        with c["anthropic"].messages.stream(
            model="claude-sonnet-4-5", max_tokens=400, system=system, messages=[{"role": "user", "content": question}]
        ) as stream:
            if stop_after is None:
                return stream.get_final_text()
            shown = []
            for text in stream.text_stream:
                shown.append(text)
                if len(shown) >= stop_after:
                    break
            return "".join(shown)

    return call


def _draft_reply(rng: random.Random) -> Callable[[dict[str, Any]], Any]:
    ticket = (f"Ticket #{rng.randint(10_000, 99_999)} from {rng.choice(CUSTOMERS)} "
              f"({rng.choice(['free', 'team', 'business'])} plan): {rng.choice(TICKETS)}")  # fmt: skip
    return lambda c: c["anthropic"].messages.create(
        model="claude-sonnet-4-5", max_tokens=500, system=HANDBOOK,
        messages=[{"role": "user", "content": f"Draft a reply to this ticket.\n\n{ticket}"}],
    )  # fmt: skip


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

    # The simulator's clock is the month's: its prompt caches expire between calls minutes or hours apart.
    simulator = Simulator(seed=seed, error_rate=error_rate, latency=latency, sleep=clock.sleep, chunk_delay=0.03,
                          clock=lambda: clock.now().timestamp())  # fmt: skip
    tracker.now = clock.now
    tracker.clock = clock.monotonic
    clients = {
        "openai": tracker.wrap(openai_client(simulator, max_retries=1)),
        "anthropic": tracker.wrap(anthropic_client(simulator, max_retries=1)),
    }
    outcome = {"ok": 0, "failed": 0}
    for step in workload(calls, seed=seed):
        clock.start_step(step.at)
        with context(endpoint=step.endpoint, user=step.user, tags=DEMO_TAGS):
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
