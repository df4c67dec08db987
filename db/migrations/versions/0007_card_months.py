"""per-card monthly purchase figures, and the time index covering what the KPI engine reads

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COVERED = ("created_at", "card_id", "voided_at", "amount", "discount_amount")


def upgrade() -> None:
    money = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "card_months",
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),  # YYYYMM, UTC
        sa.Column("purchases", sa.Integer(), nullable=False),
        sa.Column("revenue", money, nullable=False),
        sa.Column("discount", money, nullable=False),
        sa.PrimaryKeyConstraint("card_id", "month", name=op.f("pk_card_months")),
        sqlite_with_rowid=False,  # SQLite: rows stored in key order (card, month)
    )
    # Filled from the ledger (services.cards.refresh_totals keeps them from now on).
    if op.get_bind().dialect.name == "sqlite":
        month = (
            "(CAST(substr(created_at, 1, 4) AS INTEGER) * 100 "
            "+ CAST(substr(created_at, 6, 2) AS INTEGER))"
        )
    else:
        month = (
            "CAST(EXTRACT(YEAR FROM created_at) * 100 + EXTRACT(MONTH FROM created_at) AS INTEGER)"
        )
    op.execute(
        "INSERT INTO card_months (card_id, month, purchases, revenue, discount) "
        f"SELECT card_id, {month}, count(*), sum(amount), sum(discount_amount) "
        f"FROM purchases WHERE voided_at IS NULL GROUP BY card_id, {month}"
    )
    op.drop_index("ix_purchases_created", table_name="purchases")
    op.create_index("ix_purchases_created", "purchases", list(_COVERED))


def downgrade() -> None:
    op.drop_index("ix_purchases_created", table_name="purchases")
    op.create_index("ix_purchases_created", "purchases", ["created_at"])
    op.drop_table("card_months")
