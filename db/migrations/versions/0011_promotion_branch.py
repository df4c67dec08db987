"""promotion branch: a happy hour for one branch of a chain (NULL: every branch)

Every existing promotion keeps running in every branch. A plain `ADD COLUMN` of a nullable
column on both engines (no copy of the table).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("promotions", sa.Column("branch_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("promotions") as batch:
        batch.drop_column("branch_id")
