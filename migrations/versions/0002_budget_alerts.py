"""The budget_alerts table: which budget thresholds have fired in which period.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "budget_alerts",
        sa.Column("budget_key", sa.String(255), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("threshold", sa.String(32), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spend_usd", sa.Double(), nullable=True),
        sa.Column("budget_usd", sa.Double(), nullable=True),
        sa.Column("fired_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("budget_key", "period_start", "threshold", name="pk_budget_alerts"),
    )


def downgrade() -> None:
    op.drop_table("budget_alerts")
