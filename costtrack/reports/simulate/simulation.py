"""A scenario played on a replay: per-endpoint actual and simulated cost, and each lever's savings."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Engine

from ...errors import ConfigError
from ...pricing import PriceBook
from ..calc import BATCH_DISCOUNT
from .aggregates import Buckets, Group, Replay, monthly
from .batch_scope import resolve_batch_scope
from .queries import period_where, tiered_query
from .replay import replay
from .scenarios import Scenario, Swap

_HALF = float(BATCH_DISCOUNT)


@dataclass(frozen=True)
class EndpointResult:
    """One endpoint's actual and simulated cost, and each lever's part of the difference."""

    endpoint: str
    calls: int
    requests: int
    actual_usd: float
    simulated_usd: float
    cache_savings_usd: float
    swap_savings_usd: float
    batch_savings_usd: float
    would_hit: int
    unpriced_calls: int
    per_hour_calls: int = 0  # of self-hosted models priced per hour: their cost is the hours served, no call's

    @property
    def savings_usd(self) -> float:
        return self.actual_usd - self.simulated_usd

    @property
    def savings_share(self) -> float | None:
        return self.savings_usd / self.actual_usd if self.actual_usd else None

    @property
    def unknown(self) -> bool:
        """No call of it has a per-call cost (unpriced, or priced per hour): its dollar figures are unknown, never $0."""
        return not self.actual_usd and (self.unpriced_calls > 0 or self.per_hour_calls > 0)

    def shown(self, value: float) -> float | str | None:
        """One of its dollar figures as a table shows it: None (unpriced) or "per hour" when unknown."""
        if not self.unknown:
            return value
        return "per hour" if not self.unpriced_calls else None

    def as_dict(self) -> dict[str, Any]:
        def money(value: float) -> float | None:
            return None if self.unknown else round(value, 10)

        return {
            "endpoint": self.endpoint, "calls": self.calls, "requests": self.requests,
            "actual_usd": money(self.actual_usd), "simulated_usd": money(self.simulated_usd),
            "savings_usd": money(self.savings_usd), "savings_share": self.savings_share,
            "cache_savings_usd": money(self.cache_savings_usd), "swap_savings_usd": money(self.swap_savings_usd),
            "batch_savings_usd": money(self.batch_savings_usd), "would_be_cache_hits": self.would_hit,
            "unpriced_calls": self.unpriced_calls, "per_hour_calls": self.per_hour_calls,
        }  # fmt: skip


@dataclass(frozen=True)
class Simulation:
    """A scenario played on a period: per endpoint and in total, with the rates used."""

    scenario: Scenario
    replay: Replay
    endpoints: list[EndpointResult]
    total: EndpointResult
    rates: dict[str, dict[str, float]] = field(default_factory=dict)  # swap target → USD per 1M tokens
    notes: list[str] = field(default_factory=list)

    @property
    def days(self) -> float:
        return self.replay.days

    def monthly(self, amount: float) -> float:
        return monthly(amount, self.days)

    def as_dict(self) -> dict[str, Any]:
        from ...format import duration

        s = self.scenario
        return {
            "since": self.replay.since.isoformat() if self.replay.since else None,
            "until": self.replay.until.isoformat() if self.replay.until else None,
            "first": self.replay.first.isoformat() if self.replay.first else None,
            "last": self.replay.last.isoformat() if self.replay.last else None,
            "days": self.days,
            "scenario": {
                "cache_ttl_s": s.cache_ttl, "cache_ttl": duration(s.cache_ttl) if s.cache_ttl else None,
                "swaps": [{"from": w.source, "to": w.target,
                           "endpoints": sorted(w.endpoints) if w.endpoints is not None else None} for w in s.swaps],
                "batch_share": s.batch_share,
                "batch_endpoints": sorted(s.batch_endpoints) if s.batch_endpoints is not None else None,
            },
            "swap_rates_per_mtok": self.rates,
            "total": self.total.as_dict(),
            "monthly": {key: None if self.total.unknown else round(self.monthly(value), 10) for key, value in (
                ("actual_usd", self.total.actual_usd), ("simulated_usd", self.total.simulated_usd),
                ("savings_usd", self.total.savings_usd))},
            "endpoints": [e.as_dict() for e in self.endpoints],
            "notes": self.notes,
        }  # fmt: skip


def swap_rates(book: PriceBook, target: str, at: datetime) -> dict[str, Decimal]:
    """`target`'s effective rates at `at` (USD per 1M tokens); ConfigError when it has no per-token price."""
    rates = book.rates(None, target, at)
    if rates is None:
        raise ConfigError(
            f"no price for model {target!r}: check the name with `costtrack prices show {shlex.quote(target)}`, "
            "or add it to a prices file (--prices-file or $COSTTRACK_PRICES_FILE)"
        )
    if rates.per_hour is not None:
        raise ConfigError(f"{target} is priced per hour (self-hosted), not per token: swap to an API model")
    return rates.effective()


def _swaps_for(group: Group, swaps: Sequence[Swap]) -> list[Swap]:
    """The swaps that take a group's calls, all to one target (the first applies); two with different targets is an
    error (a dated snapshot and its alias name one model's calls: the second was ignored)."""
    found = [s for s in swaps if s.matches(group)]
    for other in found[1:]:
        if other.target.lower() != found[0].target.lower():
            raise ConfigError(f"--swap {found[0].label()} and --swap {other.label()} both take the calls asking for "
                              f"{group.model_key} answered by {group.model}: give one target per model")  # fmt: skip
    return found


def batch_discount(book: PriceBook, provider: str | None, model: str, at: datetime, tokens: Buckets) -> float:
    """The share of `tokens`' cost the Batch API takes off `model`'s calls: its Batch rates against its standard ones
    (PriceBook.batch_rates: OpenAI's bill some models' cached input at the standard cached rate; a model without a Batch
    table, half of every token rate)."""
    standard = book.rates(provider, model, at)
    if standard is None or standard.per_hour is not None:
        return _HALF  # no per-token price: the calls cost nothing known, so the share moves nothing
    rates = book.batch_rates(provider, model, at)
    assert rates is not None  # the model has rates
    before = tokens.price(standard.effective())
    if before <= 0:
        return _HALF
    return max(0.0, 1.0 - tokens.price(rates.effective()) / before)


def simulate(replay_: Replay, scenario: Scenario, book: PriceBook) -> Simulation:
    """Play `scenario` on the aggregates of `replay_` (whose TTL must be the scenario's, or it must have none)."""
    if scenario.cache_ttl and replay_.cache_ttl != scenario.cache_ttl:
        raise ValueError("the replay was read with another cache TTL than the scenario's")
    at = replay_.last or datetime.now().astimezone()
    targets: dict[str, dict[str, Decimal]] = {}
    for swap in scenario.swaps:
        if swap.target not in targets:
            targets[swap.target] = swap_rates(book, swap.target, at)
    use_cache = bool(scenario.cache_ttl)
    per_endpoint: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    notes: list[str] = []
    matched = {swap.label(): 0 for swap in scenario.swaps}
    long_swapped = 0
    tiered_swapped = 0
    unfeed: dict[str, int] = {}  # web searches swapped to a model with no known search fee, by that model
    for g in replay_.groups:
        cache_saving = g.hit_spend_usd if use_cache else 0.0
        taking = _swaps_for(g, scenario.swaps)
        swap = taking[0] if taking else None
        for named in taking:  # each names these calls: none is said to have found no call
            matched[named.label()] += g.calls
        swept = g.rest if use_cache else g.live  # the tokens the calls left to the provider bill
        if swap is not None:
            rates = targets[swap.target]
            if not rates["output"] and rates["input"] and g.live.output:
                # An embedding model: it writes no output, so pricing the calls' answers at $0 was a saving that is none.
                raise ConfigError(f"--swap {swap.label()}: {swap.target} bills no output tokens (an embedding model), "
                                  "and the calls it would take write answers: swap to a model that writes them")  # fmt: skip
            long_swapped += g.long_context_calls
            tiered_swapped += g.tiered_calls
            searches = g.rest.searches + (0 if use_cache else g.hit.searches)  # those the swap prices
            if searches and "web_search_per_1k" not in rates:
                unfeed[swap.target] = unfeed.get(swap.target, 0) + searches
            before = g.rest_spend_usd + (0.0 if use_cache else g.hit_spend_usd)
            after = g.rest.price(rates) + (0.0 if use_cache else g.hit.price(rates))
            swap_saving = before - after
            if abs(swap_saving) <= 1e-9 * max(abs(before), abs(after)):
                swap_saving = 0.0  # a swap to the same rates: float noise of the sums, not a saving ($-0.000000000000000014)
        else:
            swap_saving = 0.0
        remaining = g.spend_usd - cache_saving - swap_saving
        in_batch = scenario.batch_share and (scenario.batch_endpoints is None or g.endpoint in scenario.batch_endpoints)
        # Calls already sent through a Batch API were billed at its price: only the rest can move.
        unbatched = 1.0 - g.batched_spend_usd / g.spend_usd if g.spend_usd else 1.0
        batch_saving = 0.0
        if in_batch and remaining:
            # At the Batch rates of the model the calls then go to (the swap's target, if any).
            priced = (None, swap.target) if swap is not None else (g.provider, g.model)
            share = scenario.batch_share * batch_discount(book, *priced, at, swept)
            batch_saving = remaining * unbatched * share
        acc = per_endpoint.setdefault(g.endpoint, [0.0, 0.0, 0.0, 0.0])
        acc[0] += g.spend_usd
        acc[1] += cache_saving
        acc[2] += swap_saving
        acc[3] += batch_saving
        cnt = counts.setdefault(g.endpoint, [0, 0, 0, 0, 0])
        cnt[0] += g.calls
        cnt[1] += g.requests
        cnt[2] += g.would_hit if use_cache else 0
        cnt[3] += g.unpriced_calls
        cnt[4] += g.per_hour_calls
    rows = [
        EndpointResult(
            endpoint=name, calls=counts[name][0], requests=counts[name][1], actual_usd=a[0],
            simulated_usd=a[0] - a[1] - a[2] - a[3], cache_savings_usd=a[1], swap_savings_usd=a[2],
            batch_savings_usd=a[3], would_hit=counts[name][2], unpriced_calls=counts[name][3],
            per_hour_calls=counts[name][4],
        )
        for name, a in per_endpoint.items()
    ]  # fmt: skip
    rows.sort(key=lambda e: (-e.savings_usd, -e.actual_usd, e.endpoint))
    total = EndpointResult(
        endpoint="TOTAL", calls=sum(e.calls for e in rows), requests=sum(e.requests for e in rows),
        actual_usd=sum(e.actual_usd for e in rows), simulated_usd=sum(e.simulated_usd for e in rows),
        cache_savings_usd=sum(e.cache_savings_usd for e in rows), swap_savings_usd=sum(e.swap_savings_usd for e in rows),
        batch_savings_usd=sum(e.batch_savings_usd for e in rows), would_hit=sum(e.would_hit for e in rows),
        unpriced_calls=sum(e.unpriced_calls for e in rows), per_hour_calls=sum(e.per_hour_calls for e in rows),
    )  # fmt: skip
    for label, calls in matched.items():
        if not calls:
            notes.append(f"--swap {label}: no call in the period used {label.split('=')[0]}")
    for target, searches in unfeed.items():
        notes.append(f"{searches:,} web searches were swapped to {target}, which has no known search fee: priced at $0 "
                     "there (the saving counts their fees)")
    if tiered_swapped:
        notes.append(f"{tiered_swapped:,} calls of the swapped models were served at a service tier (flex, priority, fast; tag "
                     "costtrack.service_tier): the target is priced at its standard rates, so the saving includes the tier's "
                     "difference")  # fmt: skip
    if long_swapped:
        notes.append(f"{long_swapped:,} swapped calls had over 128K input tokens: long-context tiers are not applied")
    if scenario.batch_share and scenario.batch_endpoints is not None and not scenario.batch_endpoints:
        notes.append("no non-interactive endpoint found for the Batch API share: name them with --batch-endpoints, "
                     "or use --batch-endpoints all")  # fmt: skip
    if total.unpriced_calls:
        notes.append(f"{total.unpriced_calls:,} unpriced calls are left out of both costs (their cost is unknown)")
    rates = {name: {k: float(v) for k, v in r.items()} for name, r in targets.items()}
    return Simulation(scenario=scenario, replay=replay_, endpoints=rows, total=total, rates=rates, notes=notes)


def run(engine: Engine, book: PriceBook, *, since: datetime | None, until: datetime | None,
        cache_ttl: float | None = None, swaps: Sequence[Swap] = (), batch_share: float = 0.0,
        batch_endpoints: str = "noninteractive") -> Simulation:  # fmt: skip
    """Read the period once and play the scenario on it (what `costtrack simulate` does)."""
    rep = replay(engine, since=since, until=until, cache_ttl=cache_ttl)
    return play(engine, rep, book, cache_ttl=cache_ttl, swaps=swaps, batch_share=batch_share,
                batch_endpoints=batch_endpoints)  # fmt: skip


def play(engine: Engine, rep: Replay, book: PriceBook, *, cache_ttl: float | None = None, swaps: Sequence[Swap] = (),
         batch_share: float = 0.0, batch_endpoints: str = "noninteractive",
         where: ColumnElement[bool] | None = None) -> Simulation:  # fmt: skip
    """Play a scenario on `rep`, read from `engine` (`where`: its records besides the period, e.g. `--endpoint`), with
    what only some scenarios need read first: the calls served at a service tier (a swap's note), the non-interactive
    endpoints (a Batch API share)."""
    if swaps:
        count_tiered(engine, rep, period_where(rep.since, rep.until, where))
    scope = resolve_batch_scope(engine, rep, batch_endpoints, where=where) if batch_share else None
    scenario = Scenario(cache_ttl=cache_ttl, swaps=tuple(swaps), batch_share=batch_share, batch_endpoints=scope)
    return simulate(rep, scenario, book)


def count_tiered(engine: Engine, rep: Replay, where: ColumnElement[bool]) -> None:
    """Set each group's calls served at a service tier (see Group.tiered_calls): a query of its own, run only when a
    swap needs them."""
    with engine.connect() as conn:
        rows = conn.execute(tiered_query(engine.dialect.name, where)).all()
    groups = {(g.endpoint, g.provider, g.model_key, g.model): g for g in rep.groups}
    for row in rows:
        group = groups.get((row.endpoint, row.provider, row.model_key, row.model_answered))
        if group is not None:
            group.tiered_calls = int(row.tiered)
