"""What a replay aggregates: token buckets, groups of calls, daily spend, and the period's Replay."""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from datetime import datetime
from decimal import Decimal

from ..calc import DAYS_PER_MONTH

_MTOK = Decimal(1_000_000)
_ZERO = Decimal(0)
_THOUSAND = Decimal(1000)  # web searches are priced per 1,000: x 1,000 per 1M


@dataclass(frozen=True)
class Buckets:
    """Token buckets of a set of calls, each billed at its own rate."""

    uncached: int = 0
    cached: int = 0
    write_5m: int = 0
    write_1h: int = 0
    output: int = 0
    # Billed apart (see usage.EXTRA_TAGS): the audio parts of `uncached` and `output`, and server-side web searches.
    audio_in: int = 0
    audio_out: int = 0
    searches: int = 0

    def __add__(self, other: Buckets) -> Buckets:
        return Buckets(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def __sub__(self, other: Buckets) -> Buckets:
        return Buckets(*(a - b for a, b in zip(astuple(self), astuple(other))))

    def price(self, rates: dict[str, Decimal]) -> float:
        """The USD cost of these tokens at `rates` (Rates.effective(): USD per 1M tokens, web searches per 1,000; a
        model with no search fee bills none)."""
        total = (self.uncached * rates["input"] + self.cached * rates["cached_input"]
                 + self.write_5m * rates["cache_write"] + self.write_1h * rates["cache_write_1h"]
                 + self.output * rates["output"])  # fmt: skip
        if self.audio_in or self.audio_out or self.searches:
            total += (self.audio_in * (rates["input_audio"] - rates["input"])
                      + self.audio_out * (rates["output_audio"] - rates["output"])
                      + self.searches * rates.get("web_search_per_1k", _ZERO) * _THOUSAND)  # fmt: skip
        return float(total / _MTOK)


@dataclass(frozen=True)
class Failed:
    """What the failed calls (status error) of a group cost and hold: they got no answer."""

    spend_usd: float = 0.0
    tokens_input: int = 0
    tokens_output: int = 0
    tokens_cached_input: int = 0
    unpriced_calls: int = 0

    def __add__(self, other: Failed) -> Failed:
        return Failed(*(a + b for a, b in zip(astuple(self), astuple(other))))


@dataclass
class Group:
    """The calls of one (endpoint, provider, requested model, answered model) in the period.

    `live_*`: the priced calls that reached the provider (not response-cache hits), whose
    tokens a swap reprices; `hit_*`: the part of them a response cache with the replay's
    TTL would have answered.
    """

    endpoint: str
    provider: str
    model_key: str  # the requested model (the answered one when none was recorded)
    model: str  # the answered model
    calls: int = 0
    requests: int = 0  # first attempts: the app's requests (retries and escalations excluded)
    errors: int = 0
    failed: Failed = field(default_factory=Failed)  # the spend and tokens of the `errors` calls
    cache_hits: int = 0
    saved_usd: float = 0.0  # cost_saved_usd of the cache hits
    spend_usd: float = 0.0
    batched_calls: int = 0  # sent through a Batch API already (tagged costtrack.batch=true)
    batched_spend_usd: float = 0.0  # what they cost, at the batch price
    unpriced_calls: int = 0
    per_hour_calls: int = 0  # of a self-hosted model priced per hour: no per-call cost (the hours served are its cost)
    unreadable_calls: int = 0  # of the unpriced ones: a usage count costtrack could not read (its model may have a price)
    tokens_input: int = 0
    tokens_output: int = 0
    tokens_cached_input: int = 0
    long_context_calls: int = 0
    tiered_calls: int = 0  # served at a service tier other than the standard one (flex, priority, fast: tag costtrack.service_tier)
    live_spend_usd: float = 0.0
    live: Buckets = field(default_factory=Buckets)
    sent_input: int = 0  # tokens of the calls that reached the provider (not cache hits), priced or not
    sent_output: int = 0
    served: int = 0  # successful calls that reached the provider
    served_input: int = 0
    served_output: int = 0
    min_input: int | None = None  # smallest input of a served call
    latency_n: int = 0
    latency_sum_ms: float = 0.0
    first: datetime | None = None
    last: datetime | None = None
    would_hit: int = 0  # calls a response cache with the replay's TTL would have answered
    hit_spend_usd: float = 0.0  # what they cost
    hit: Buckets = field(default_factory=Buckets)  # their tokens (priced calls only)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.endpoint, self.provider, self.model_key, self.model)

    @property
    def rest_spend_usd(self) -> float:
        """Spend of the live calls a cache would not have answered."""
        return self.live_spend_usd - self.hit_spend_usd

    @property
    def rest(self) -> Buckets:
        return self.live - self.hit

    @property
    def cached_share(self) -> float:
        """Share of input tokens read from the provider's prompt cache."""
        return self.tokens_cached_input / self.tokens_input if self.tokens_input else 0.0


@dataclass(frozen=True)
class DayRow:
    """Spend and calls of one requested and answered model on one UTC day."""

    day: str
    model_key: str  # the requested model (the answered one when none was recorded)
    calls: int
    spend_usd: float
    model: str = ""  # the answered model (the requested one when none was recorded)


@dataclass(frozen=True)
class Replay:
    """The period's calls, aggregated once for every what-if."""

    since: datetime | None
    until: datetime | None
    cache_ttl: float | None
    groups: list[Group]
    daily: list[DayRow] = field(default_factory=list)
    #: (first, last) call of the whole app in the period, when `groups` hold only some endpoints: monthly
    #: projections then use the app's span, as the audit does (an endpoint seen on 3 days of 30 is not 10x it).
    app_span: tuple[datetime, datetime] | None = None

    @property
    def calls(self) -> int:
        return sum(g.calls for g in self.groups)

    @property
    def requests(self) -> int:
        return sum(g.requests for g in self.groups)

    @property
    def spend_usd(self) -> float:
        return sum(g.spend_usd for g in self.groups)

    @property
    def first(self) -> datetime | None:
        return min((g.first for g in self.groups if g.first), default=None)

    @property
    def last(self) -> datetime | None:
        return max((g.last for g in self.groups if g.last), default=None)

    @property
    def span_days(self) -> float:
        """Days from the first call to the last (may be under one)."""
        first, last = self.app_span or (self.first, self.last)
        return 0.0 if first is None or last is None else (last - first).total_seconds() / 86400

    @property
    def days(self) -> float:
        """Days the records span (first to last call), at least one day: the denominator of monthly projections."""
        return max(self.span_days, 1.0)

    def endpoints(self) -> list[str]:
        return sorted({g.endpoint for g in self.groups})


def monthly(amount: float, days: float) -> float:
    """An amount observed over `days` days, scaled to a month of 30 days."""
    return amount * DAYS_PER_MONTH / days
