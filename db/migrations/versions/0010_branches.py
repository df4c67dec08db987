"""branches: a chain of shops, each with its staff group and managers; the branch of every
sale, quote and store day, and the home branch of every card

Every existing row belongs to branch 1, the shop the settings describe (STORE_*, STAFF_CHAT_ID):
an upgrade is a chain of one with nothing for the owner to do. The new columns are plain
`ADD COLUMN`s with a constant default (no copy of a ledger of millions of rows on either engine).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    branches = op.create_table(
        "branches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=256), server_default="", nullable=False),
        sa.Column("hours", sa.String(length=128), server_default="", nullable=False),
        sa.Column("phone", sa.String(length=32), server_default="", nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("staff_chat_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_branches")),
        sa.UniqueConstraint("name", name=op.f("uq_branches_name")),
        sa.UniqueConstraint("staff_chat_id", name=op.f("uq_branches_staff_chat_id")),
    )
    # Branch 1 (the first row of an empty table, so that PostgreSQL's sequence counts it): its
    # details are the settings' (services.branches), so the row holds none of them.
    op.bulk_insert(branches, [{"name": "", "created_at": datetime.now(UTC).replace(tzinfo=None)}])
    op.create_table(
        "branch_managers",
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("tg_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_branch_managers_branch_id_branches")
        ),
        sa.PrimaryKeyConstraint("branch_id", "tg_id", name=op.f("pk_branch_managers")),
    )
    op.create_index("ix_branch_managers_tg_id", "branch_managers", ["tg_id"])
    op.create_table(
        "staff_branches",
        sa.Column("tg_id", sa.BigInteger(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("chosen_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_staff_branches_branch_id_branches")
        ),
        sa.PrimaryKeyConstraint("tg_id", "branch_id", name=op.f("pk_staff_branches")),
    )
    for table in ("purchases", "sale_drafts", "cards"):
        op.add_column(
            table, sa.Column("branch_id", sa.Integer(), server_default="1", nullable=False)
        )
    op.create_index(
        "ix_purchases_branch",
        "purchases",
        ["branch_id", "created_at", "card_id", "voided_at", "amount", "discount_amount"],
    )
    # The store's daily totals per branch: the key becomes (day, branch).
    with op.batch_alter_table("store_days", recreate="always") as batch:
        batch.add_column(sa.Column("branch_id", sa.Integer(), server_default="1", nullable=False))
        batch.drop_constraint("pk_store_days", type_="primary")
        batch.create_primary_key("pk_store_days", ["day", "branch_id"])


def downgrade() -> None:
    with op.batch_alter_table("store_days", recreate="always") as batch:
        batch.drop_constraint("pk_store_days", type_="primary")
        batch.drop_column("branch_id")
        batch.create_primary_key("pk_store_days", ["day"])
    op.drop_index("ix_purchases_branch", table_name="purchases")
    for table in ("cards", "sale_drafts", "purchases"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("branch_id")
    op.drop_table("staff_branches")
    op.drop_index("ix_branch_managers_tg_id", table_name="branch_managers")
    op.drop_table("branch_managers")
    op.drop_table("branches")
