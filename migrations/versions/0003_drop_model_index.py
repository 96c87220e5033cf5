"""Drop the (model, timestamp) index on records: no query needs it, and every insert paid for it.

Budgets by model ask for ``model = ? OR model_requested = ?``, which one index on
model cannot serve; reports group by ``coalesce(model_requested, model)``. The one
query that used it (stats' unpriced models) scanned it whole, which a table scan (or,
with a time window, the timestamp index) does as well. Without it a SQLite insert
updates four B-trees instead of five (the table, its primary key and two indexes):
10-20% more records per second in benchmarks/bench_ingest.py.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_records_model_timestamp", table_name="records")


def downgrade() -> None:
    op.create_index("ix_records_model_timestamp", "records", ["model", "timestamp"])
