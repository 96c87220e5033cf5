"""The pieces of the audit document: tables, opportunities, findings, options, and the audit itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..simulate import Replay, Scenario
from .thresholds import PROMPT_CACHE_LIFETIME_S

__all__ = ["Audit", "AuditOptions", "Column", "Finding", "Opportunity", "Table"]


@dataclass(frozen=True)
class Column:
    """A table column: its title and how its cells are formatted (a key of format.FORMATS, or text)."""

    title: str
    fmt: str = "text"

    @property
    def right(self) -> bool:
        return self.fmt != "text"


@dataclass
class Table:
    """Rows of raw values; the template formats each cell with its column's format."""

    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rows)


@dataclass
class Opportunity:
    """One thing to change, found in the records, with what it would save."""

    kind: str
    title: str
    description: str
    evidence: list[str]
    savings_usd: float | None  # over the period; None: cannot be quantified
    monthly_usd: float | None
    share: float | None  # of the period's spend
    effort: str
    effort_note: str
    notes: list[str]
    assumption: str
    metric: str  # success metric, "baseline → target"
    risks: list[str]
    evidence_table: Table | None = None
    per_endpoint: dict[str, float] = field(default_factory=dict)  # savings over the period, by endpoint
    scenario: Scenario | None = None  # the what-if on the simulate engine, when it is one
    command: str | None = None  # the `costtrack simulate` command that reproduces the figure
    rank: int = 0


@dataclass
class Finding:
    """What one detector found: opportunities, or why none."""

    kind: str
    name: str
    opportunities: list[Opportunity] = field(default_factory=list)
    nothing: str | None = None


@dataclass(frozen=True)
class AuditOptions:
    cache_ttl: float = 3600.0
    hardware: str = "rtx4090"
    hours_per_day: float = 8.0
    prompt_cache_lifetime: float = PROMPT_CACHE_LIFETIME_S
    workers: int = 2
    period_args: str = ""  # how the CLI named the period (--since ...), for the commands the audit prints
    database_args: str = ""  # and the database, when the CLI named one (--database-url ..., password masked)
    prices_args: str = ""  # and the prices file (--prices-file ...), for the commands that price

    @property
    def reading_args(self) -> str:
        """The prices file and the database, for a printed command that prices records."""
        return " ".join(a for a in (self.prices_args, self.database_args) if a)


@dataclass
class Audit:
    """Everything the audit template shows."""

    generated_at: datetime
    since: datetime | None
    until: datetime | None
    options: AuditOptions
    replay: Replay
    baseline_usd: float  # the priced spend: $0 when nothing is priced (see spend_known)
    baseline_monthly_usd: float
    days: float
    span_days: float
    inventory: Table
    latency: Table
    errors: Table
    error_rate: float
    failed_calls: int
    incomplete_calls: int
    cache_status: str
    cache_lines: list[str]
    unpriced: Table
    findings: list[Finding]
    opportunities: list[Opportunity]
    top: list[Opportunity]
    optimized_usd: float
    optimized_monthly_usd: float
    calculator: Table
    prices: Table
    per_request_tokens: Table
    breakeven: dict[str, Any]
    method: list[str]
    charts: list[Any] = field(default_factory=list)
    charts_note: str | None = None
    #: Timed calls per endpoint and latency bucket (stats.bucket_range): the latency distribution chart's data.
    latency_histogram: dict[str, dict[int, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: False when the period has unpriced calls and nothing priced: its spend is unknown, and reads so (never $0).
    spend_known: bool = True
    #: Calls of self-hosted models priced per hour: their cost is the hours served, in no total.
    per_hour_calls: int = 0
    #: Decimals of the operands shown in the document's formulas, so that each checks as printed (formulas.py).
    places: dict[str, Any] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return self.replay.calls

    @property
    def requests(self) -> int:
        return self.replay.requests

    @property
    def nothing_found(self) -> list[Finding]:
        return [f for f in self.findings if not f.opportunities]

    @property
    def savings_monthly_usd(self) -> float:
        return self.baseline_monthly_usd - self.optimized_monthly_usd
