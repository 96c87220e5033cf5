"""The state every analysis of the audit reads (the replay, prices, options) and the helpers they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.sql import ColumnElement

from ...pricing import PriceBook
from ..simulate import Group, Replay, count_tiered, monthly
from ..stats import known_spend
from .document import AuditOptions, Opportunity

__all__ = ["AuditContext", "error_rate"]


def error_rate(rep: Replay) -> float:
    """The share of the period's calls that failed."""
    calls = rep.calls
    return sum(g.errors for g in rep.groups) / calls if calls else 0.0


@dataclass
class AuditContext:
    """The period's replay, the price book and the options, with the helpers the analyses share."""

    engine: Engine
    book: PriceBook
    rep: Replay
    at: datetime
    where: ColumnElement[bool]
    options: AuditOptions
    dialect: str
    _rates: dict[tuple[str, str], dict[str, Decimal] | None] = field(default_factory=dict)
    _tiered_read: bool = False

    @property
    def baseline(self) -> float:
        """The period's recorded spend."""
        return self.rep.spend_usd

    @property
    def spend_known(self) -> bool:
        """Whether the period's spend is known: not when it has unpriced calls and nothing priced (never $0)."""
        return known_spend(self.baseline, sum(g.unpriced_calls for g in self.rep.groups)) is not None

    def monthly(self, amount: float) -> float:
        """An amount over the period, projected to a month."""
        return monthly(amount, self.rep.days)

    def share(self, amount: float) -> float | None:
        """An amount as a share of the period's spend."""
        return amount / self.baseline if self.baseline else None

    def rates(self, provider: str | None, model: str) -> dict[str, Decimal] | None:
        """A model's effective rates (USD per 1M tokens) at the period's last call; None when unpriced or per hour."""
        key = (provider or "", model)
        if key not in self._rates:
            found = self.book.rates(provider, model, self.at)
            self._rates[key] = None if found is None or found.per_hour is not None else found.effective()
        return self._rates[key]

    def read_tiered(self) -> None:
        """Read the groups' calls served at a service tier (Group.tiered_calls), once: only a model swap needs them."""
        if not self._tiered_read:
            count_tiered(self.engine, self.rep, self.where)
            self._tiered_read = True

    def opportunity(self, *, savings: float | None, per_endpoint: dict[str, float] | None = None,
                    **kw: Any) -> Opportunity:  # fmt: skip
        """An opportunity with its monthly figure and share of spend worked out from the period's saving."""
        return Opportunity(
            savings_usd=savings, monthly_usd=None if savings is None else self.monthly(savings),
            share=None if savings is None else self.share(savings), per_endpoint=per_endpoint or {}, **kw,
        )  # fmt: skip

    def by_endpoint(self) -> dict[str, list[Group]]:
        """The replay's groups per endpoint."""
        out: dict[str, list[Group]] = {}
        for g in self.rep.groups:
            out.setdefault(g.endpoint, []).append(g)
        return out

    def command(self, levers: str) -> str:
        """The `costtrack simulate` command for these levers over the audit's period."""
        args = " ".join(a for a in (self.options.period_args, self.options.reading_args) if a)
        return f"costtrack simulate {levers}{' ' + args if args else ''}"
