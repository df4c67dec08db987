"""import status (running → finishing → done) and the ids of the cards an import created

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, as in 0003 (a batch copy would drop `imports`, which purchases point
    # at). Imports recorded before this revision were single transactions: they are done.
    op.add_column(
        "imports",
        sa.Column("status", sa.String(length=16), server_default="done", nullable=False),
    )
    op.add_column("imports", sa.Column("cards_from", sa.Integer(), nullable=True))
    op.add_column("imports", sa.Column("cards_to", sa.Integer(), nullable=True))


def downgrade() -> None:
    for column in ("cards_to", "cards_from", "status"):
        op.drop_column("imports", column)
