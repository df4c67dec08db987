"""covering index for the KPI engine

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 17:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.create_index(
            "ix_purchases_kpi",
            ["card_id", "voided_at", "created_at", "amount", "discount_amount"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.drop_index("ix_purchases_kpi")
