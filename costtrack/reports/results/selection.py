"""Which records a side of the comparison is (a period, a tag, or both), and the error when a side has none."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Engine, and_, func, select
from sqlalchemy.sql import ColumnElement

from ...errors import ConfigError
from ...format import when
from ...store.schema import records
from ..simulate import has_tag, period_where, tag_filter

__all__ = ["NoRecords", "Selection", "shared_records"]


@dataclass(frozen=True)
class Selection:
    """Which records a side of the comparison is: a period, a tag, or both."""

    label: str
    since: datetime | None = None
    until: datetime | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def where(self, dialect: str) -> ColumnElement[bool]:
        cond = period_where(self.since, self.until)
        for key, value in self.tags:
            cond = and_(cond, has_tag(dialect, key), tag_filter(dialect, key, value))
        return cond

    def describe(self) -> str:
        parts = []
        if self.since is not None or self.until is not None:
            parts.append(f"from {when(self.since) if self.since else 'the first record'} "
                         f"up to {when(self.until) if self.until else 'now'}")
        if self.tags:
            parts.append("tag " + ", ".join(f"{k}={v}" for k, v in self.tags))
        return ", ".join(parts) or "all records"

    @property
    def period_days(self) -> float | None:
        """The length of an explicit period in days (None without both ends)."""
        if self.since is None or self.until is None:
            return None
        return (self.until - self.since).total_seconds() / 86400

    def overlaps(self, other: Selection) -> bool:
        """Whether both are periods that intersect (with tags, telling the runs apart is the tags' job: the same tags
        on both sides, over intersecting periods, select the same records)."""
        if (self.tags or other.tags) and self.tags != other.tags:
            return False
        start = max(self.since or datetime.min.replace(tzinfo=timezone.utc),
                    other.since or datetime.min.replace(tzinfo=timezone.utc))  # fmt: skip
        end = min(self.until or datetime.max.replace(tzinfo=timezone.utc),
                  other.until or datetime.max.replace(tzinfo=timezone.utc))  # fmt: skip
        return start < end


def shared_records(engine: Engine, one: Selection, other: Selection) -> int:
    """How many records both selections take: tags on different keys (run=baseline, ab_arm=A) or a period and a tag
    can select the same records, which `overlaps` cannot tell without reading them."""
    dialect = engine.dialect.name
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(records)
                                .where(and_(one.where(dialect), other.where(dialect)))).scalar_one())  # fmt: skip


class NoRecords(ConfigError):
    """A selection without a single record (the CLI adds where the records are)."""

    def __init__(self, flags: list[str], selections: list[Selection]) -> None:
        super().__init__("; ".join(f"no records in {f} ({s.describe()})" for f, s in zip(flags, selections)))
        self.flags = flags
        self.selections = selections
