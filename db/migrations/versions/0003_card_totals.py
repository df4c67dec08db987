"""lifetime purchase figures per card (kept with every ledger write)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 19:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MINE = "p.card_id = cards.id AND p.voided_at IS NULL"


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy: dropping the old `cards` table would trip the foreign
    # keys of every purchase and client that points at it).
    op.add_column(
        "cards",
        sa.Column("purchase_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "cards",
        sa.Column("purchase_total", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("cards", sa.Column("last_purchase_at", sa.DateTime(), nullable=True))
    # Fill them from the ledger (services.cards.refresh_totals keeps them from now on).
    op.execute(
        "UPDATE cards SET "
        f"purchase_count = (SELECT count(*) FROM purchases p WHERE {_MINE}), "
        f"purchase_total = (SELECT coalesce(sum(p.amount), 0) FROM purchases p WHERE {_MINE}), "
        f"last_purchase_at = (SELECT max(p.created_at) FROM purchases p WHERE {_MINE})"
    )


def downgrade() -> None:
    for column in ("last_purchase_at", "purchase_total", "purchase_count"):
        op.drop_column("cards", column)
