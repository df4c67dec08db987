"""happy hours (promotions, the purchase's promo bonus), the store's daily totals, and why
members take part

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    money = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("bonus_pct", sa.Integer(), nullable=False),
        sa.Column("weekdays", sa.Integer(), nullable=False),
        sa.Column("starts_min", sa.Integer(), nullable=False),
        sa.Column("ends_min", sa.Integer(), nullable=False),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "bonus_pct BETWEEN 1 AND 99", name=op.f("ck_promotions_bonus_pct_range")
        ),
        sa.CheckConstraint("weekdays BETWEEN 1 AND 127", name=op.f("ck_promotions_weekdays_range")),
        sa.CheckConstraint(
            "starts_min >= 0 AND ends_min <= 1440 AND starts_min < ends_min",
            name=op.f("ck_promotions_window"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotions")),
        sa.UniqueConstraint("name", name=op.f("uq_promotions_name")),
    )
    # Plain columns (no FK): ADD COLUMN, not a copy of a ledger of millions of rows.
    for table in ("purchases", "sale_drafts"):
        op.add_column(table, sa.Column("promo_id", sa.Integer(), nullable=True))
        op.add_column(
            table, sa.Column("promo_pct", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_index(
        "ix_purchases_promo",
        "purchases",
        ["created_at", "voided_at", "amount", "discount_amount"],
        sqlite_where=sa.text("promo_id IS NOT NULL"),
        postgresql_where=sa.text("promo_id IS NOT NULL"),
    )
    op.create_table(
        "store_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("revenue", money, nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("revenue >= 0", name=op.f("ck_store_days_revenue_non_negative")),
        sa.CheckConstraint("checks >= 0", name=op.f("ck_store_days_checks_non_negative")),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_store_days")),
    )
    op.create_table(
        "motivations",
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("asked_at", sa.DateTime(), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_motivations_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_motivations")),
    )
    op.create_index("ix_motivations_answered", "motivations", ["answered_at"])


def downgrade() -> None:
    op.drop_index("ix_motivations_answered", table_name="motivations")
    op.drop_table("motivations")
    op.drop_table("store_days")
    op.drop_index("ix_purchases_promo", table_name="purchases")
    for table in ("sale_drafts", "purchases"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("promo_pct")
            batch.drop_column("promo_id")
    op.drop_table("promotions")
