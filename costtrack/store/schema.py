"""The `records` table: one row per CallRecord, its columns exactly the record's fields
(and `budget_alerts`: which budget alerts have fired, see costtrack/budgets/monitor.py).

SQLAlchemy Core only. Timestamps are stored in UTC: `timestamptz` on Postgres,
and on SQLite the text form ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC, fixed width, so it
sorts and compares correctly as text). Values read back are timezone-aware (UTC).

The Alembic migrations in ``costtrack.migrations`` create this table; a change here
needs a new migration (tests compare the two).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

__all__ = ["INSERT_COLUMNS", "UTCDateTime", "budget_alerts", "metadata", "records"]

#: Constraint and index names are fixed so migrations can refer to them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored in UTC; naive values are taken to be UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        else:
            value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            # SQLite has no time zone type: store the UTC wall time.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


_Tags = JSON().with_variant(JSONB(), "postgresql")

records = Table(
    "records",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("timestamp", UTCDateTime(), nullable=False),
    Column("provider", Text, nullable=False),
    Column("model", Text),
    Column("model_requested", Text),
    Column("operation", Text, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("tokens_input", BigInteger, nullable=False, default=0),
    Column("tokens_output", BigInteger, nullable=False, default=0),
    Column("tokens_cached_input", BigInteger, nullable=False, default=0),
    Column("tokens_cache_write", BigInteger, nullable=False, default=0),
    Column("tokens_reasoning", BigInteger, nullable=False, default=0),
    Column("cost_usd", Double),
    Column("latency_ms", Double),
    Column("ttft_ms", Double),
    Column("cache_hit", Boolean(create_constraint=False), nullable=False, default=False),
    Column("cost_saved_usd", Double),
    Column("status", String(16), nullable=False, default="ok"),
    Column("error_type", Text),
    Column("request_hash", Text),
    Column("attempt", Integer, nullable=False, default=1),
    Column("user", Text),
    Column("tags", _Tags, nullable=False),
    Column("price_source", Text),
    Column("tokens_cache_write_1h", BigInteger, nullable=False, default=0),
    Column("request_body", Text),
    Column("response_body", Text),
    # (timestamp, id) rather than timestamp alone: the read helpers page through
    # the table in (timestamp, id) order, and this index serves that and every
    # timestamp-range query.
    Index(None, "timestamp", "id"),
    # Per-endpoint budgets and reports seek on this one. There is no index on model:
    # model budgets ask for model OR model_requested, which one index cannot serve
    # (migration 0003 dropped it; inserts are faster without it).
    Index(None, "endpoint", "timestamp"),
)

#: Column names in table order (the order of CallRecord's fields).
INSERT_COLUMNS: tuple[str, ...] = tuple(c.name for c in records.columns)

#: Budget alerts already sent: one row per (budget, period, threshold). The primary key
#: makes "fire once" hold across processes and restarts: the process whose INSERT
#: succeeds sends the alert, the others see a conflict and stay quiet (costtrack/budgets/monitor.py).
budget_alerts = Table(
    "budget_alerts",
    metadata,
    Column("budget_key", String(255), primary_key=True),
    Column("period_start", UTCDateTime(), primary_key=True),
    # The threshold fraction as text ("0.5", "1"), or "projected" for the projection alert.
    Column("threshold", String(32), primary_key=True),
    Column("fired_at", UTCDateTime(), nullable=False),
    Column("spend_usd", Double),
    Column("budget_usd", Double),
    Column("fired_by", Text),  # host:pid of the process that sent it
)
