"""The Batch API's scope: which endpoints are non-interactive, by name or by their `interactive` tag."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.sql import ColumnElement

from ...errors import ConfigError
from ...store.schema import records
from .aggregates import Replay
from .execution import execute
from .queries import period_where
from .sql import has_tag, tag_text

#: Words of an endpoint's name that mark it non-interactive (a Batch API candidate).
NONINTERACTIVE_WORDS = frozenset({"job", "jobs", "batch", "batches", "nightly", "cron", "scheduled", "offline",
                                  "backfill", "worker", "workers"})  # fmt: skip
_FALSE = ("false", "0", "no")
_TRUE = ("true", "1", "yes")


@dataclass(frozen=True)
class Interactivity:
    """Why an endpoint counts as non-interactive: its name, or its records' `interactive` tag."""

    endpoint: str
    reason: str


def _name_is_noninteractive(endpoint: str) -> bool:
    words = {w for w in re.split(r"[^a-z0-9]+", endpoint.lower()) if w}
    return bool(words & NONINTERACTIVE_WORDS)


def interactive_query(dialect: str, where: ColumnElement[bool]) -> Any:
    """Per endpoint, the values of the `interactive` tag its records carry."""
    flag = tag_text(dialect, "interactive")
    return (
        select(records.c.endpoint, flag.label("flag"), func.count().label("calls"))
        .where(where, has_tag(dialect, "interactive"))
        .group_by(records.c.endpoint, flag)
    )


def classify_interactivity(endpoints: Iterable[str], tag_rows: Iterable[Any]) -> list[Interactivity]:
    """Endpoints nobody waits on: tagged ``interactive=false``, or named like a job (/jobs/, batch, nightly, cron, ...).

    A name match is overruled by records tagged ``interactive=true`` on that endpoint.
    """
    tagged: dict[str, set[str]] = {}
    for row in tag_rows:
        tagged.setdefault(row.endpoint, set()).add(str(row.flag).lower())
    out: list[Interactivity] = []
    for endpoint in sorted(set(endpoints)):
        flags = tagged.get(endpoint, set())
        if flags & set(_FALSE):
            out.append(Interactivity(endpoint, "tagged interactive=false"))
        elif _name_is_noninteractive(endpoint) and not flags & set(_TRUE):
            out.append(Interactivity(endpoint, "named like a job"))
    return out


def noninteractive_endpoints(engine: Engine, endpoints: Iterable[str], *, since: datetime | None = None,
                             until: datetime | None = None,
                             where: ColumnElement[bool] | None = None) -> list[Interactivity]:  # fmt: skip
    """`classify_interactivity` of `endpoints`, reading the tags of [since, until)."""
    rows = execute(engine, interactive_query(engine.dialect.name, period_where(since, until, where)))
    return classify_interactivity(endpoints, rows)


def resolve_batch_scope(engine: Engine, replay_: Replay, spec: str, *,
                        where: ColumnElement[bool] | None = None) -> frozenset[str] | None:  # fmt: skip
    """`noninteractive` (the default), `all`, or a comma-separated list of endpoints → the batch scope."""
    spec = spec.strip()
    if spec == "all":
        return None
    if spec == "noninteractive":
        found = noninteractive_endpoints(engine, replay_.endpoints(), since=replay_.since, until=replay_.until, where=where)
        return frozenset(i.endpoint for i in found)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigError("--batch-endpoints is empty: give noninteractive, all, or endpoints separated by commas")
    known = set(replay_.endpoints())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"--batch-endpoints: no calls on {unknown[0]!r} in the period; endpoints seen: {', '.join(sorted(known))}"
        )
    return frozenset(names)
