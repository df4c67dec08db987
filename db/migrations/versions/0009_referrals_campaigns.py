"""referrals (invite codes, referred friends), the owner's campaigns and their members, and the
kind of an automatic offer's assignment (win-back or birthday, both with a control group)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "invite_codes",
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_invite_codes_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_invite_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_invite_codes_code")),
    )
    op.create_table(
        "referrals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ambassador_id", sa.Integer(), nullable=False),
        sa.Column("friend_id", sa.Integer(), nullable=False),
        sa.Column("joined_at", sa.DateTime(), nullable=False),
        sa.Column("first_purchase_id", sa.Integer(), nullable=True),
        sa.Column("first_purchase_at", sa.DateTime(), nullable=True),
        sa.Column("rewarded_at", sa.DateTime(), nullable=True),
        sa.Column("capped", sa.Boolean(), nullable=False),
        sa.Column("friend_offer_id", sa.Integer(), nullable=True),
        sa.Column("ambassador_offer_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ambassador_id"], ["clients.id"], name=op.f("fk_referrals_ambassador_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["friend_id"], ["clients.id"], name=op.f("fk_referrals_friend_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["friend_offer_id"], ["offers.id"], name=op.f("fk_referrals_friend_offer_id_offers")
        ),
        sa.ForeignKeyConstraint(
            ["ambassador_offer_id"],
            ["offers.id"],
            name=op.f("fk_referrals_ambassador_offer_id_offers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
        sa.UniqueConstraint("friend_id", name=op.f("uq_referrals_friend_id")),
    )
    op.create_index("ix_referrals_ambassador", "referrals", ["ambassador_id", "rewarded_at"])
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("audience_arg", sa.String(length=32), nullable=True),
        sa.Column("bonus_pct", sa.Integer(), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("holdout_pct", sa.Integer(), nullable=False),
        sa.Column("texts", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("window_until", sa.DateTime(), nullable=True),
        sa.Column("audience_size", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("holdout_size", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("bonus_pct BETWEEN 1 AND 99", name=op.f("ck_campaigns_bonus_pct_range")),
        sa.CheckConstraint(
            "holdout_pct BETWEEN 0 AND 50", name=op.f("ck_campaigns_holdout_pct_range")
        ),
        sa.CheckConstraint("valid_days >= 1", name=op.f("ck_campaigns_valid_days_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_table(
        "campaign_members",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("control", sa.Boolean(), nullable=False),
        sa.Column("offer_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_members_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_campaign_members_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"], name=op.f("fk_campaign_members_offer_id_offers")
        ),
        sa.PrimaryKeyConstraint("campaign_id", "client_id", name=op.f("pk_campaign_members")),
    )
    op.create_index("ix_campaign_members_client", "campaign_members", ["client_id"])
    # Win-back and birthday assignments share the table (both keep a random control group).
    op.add_column(
        "winback_assignments",
        sa.Column("kind", sa.String(length=16), server_default="winback", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("winback_assignments") as batch:
        batch.drop_column("kind")
    op.drop_index("ix_campaign_members_client", table_name="campaign_members")
    op.drop_table("campaign_members")
    op.drop_table("campaigns")
    op.drop_index("ix_referrals_ambassador", table_name="referrals")
    op.drop_table("referrals")
    op.drop_table("invite_codes")
