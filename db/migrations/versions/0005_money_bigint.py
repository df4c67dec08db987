"""money and totals as 64-bit integers on every engine

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 12:00:00

A chain's figures outgrow a 32-bit integer: 21 million roubles in kopecks. SQLite's INTEGER is
64-bit already (nothing to do there, and a batch copy of the ledger would take minutes);
PostgreSQL's INTEGER is 32-bit, so the money columns become BIGINT.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = {
    "purchases": ("amount", "discount_amount", "paid_amount"),
    "sale_drafts": ("amount", "discount_amount", "paid_amount"),
    "cards": ("purchase_total",),
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, columns in MONEY.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, columns in MONEY.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
