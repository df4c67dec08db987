"""SQLAlchemy 2 typed models for the whole loyalty domain.

Conventions: money columns are integer minor units (kopecks/cents); timestamps are UTC
(`UTCDateTime` stores naive UTC text and hands back aware datetimes); enumerations are short
strings backed by `StrEnum`s so that raw SQL (imports, KPIs) can use them directly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

# Stable constraint names so that Alembic batch migrations can find them on SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The text form SQLAlchemy's SQLite dialect uses for DateTime; raw-SQL writers (imports)
# format timestamps the same way so that comparisons stay lexicographic and correct.
SQLITE_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# Money and money totals: 64-bit on every engine (PostgreSQL's INTEGER is 32-bit; SQLite's
# INTEGER is 64-bit already, and its schema stays as it was).
Money = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class CardStatus(StrEnum):
    IN_STOCK = "in_stock"
    ISSUED = "issued"
    BLOCKED = "blocked"


class CardKind(StrEnum):
    PRINTED = "printed"
    DIGITAL = "digital"


class Segment(StrEnum):
    B2C = "b2c"
    B2B = "b2b"


class PurchaseSource(StrEnum):
    BOT = "bot"
    IMPORT = "import"


class DraftStatus(StrEnum):
    OPEN = "open"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    REPLACED = "replaced"  # the same cashier quoted the same card again: only the newest stands


class OfferKind(StrEnum):
    WINBACK = "winback"
    BIRTHDAY = "birthday"
    WELCOME = "welcome"
    REFERRAL = "referral"  # services.referrals: a friend's first purchase rewards both sides
    CAMPAIGN = "campaign"  # services.campaigns: the owner's campaign to an audience


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after retries
    UNREACHABLE = "unreachable"  # 403: the user blocked the bot
    SKIPPED = "skipped"  # no longer wanted (opted out, erased, superseded)


# The first branch: the shop the settings describe (STORE_*, STAFF_CHAT_ID). Every row written
# before there were branches belongs to it.
MAIN_BRANCH_ID = 1


class Branch(Base):
    """A shop of the chain. Branch 1's name, address, hours, phone, location and staff group
    are the settings' (services.branches reads them there); its row holds only what the
    settings do not say (managers, closed_at)."""

    __tablename__ = "branches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    address: Mapped[str] = mapped_column(String(256), default="", server_default="")
    hours: Mapped[str] = mapped_column(String(128), default="", server_default="")
    phone: Mapped[str] = mapped_column(String(32), default="", server_default="")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    # The Telegram group of its cashiers: its members sell for this branch.
    staff_chat_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]  # a closed branch sells no more and keeps its history


class BranchManager(Base):
    """A Telegram user who sees one branch's figures and may void its sales."""

    __tablename__ = "branch_managers"
    __table_args__ = (Index("ix_branch_managers_tg_id", "tg_id"),)

    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), primary_key=True)
    tg_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StaffBranch(Base):
    """A staff member seen writing in a branch's group (so that the bot knows which groups to
    ask about them in a private chat), and the branch they chose to sell for (`/branch`)."""

    __tablename__ = "staff_branches"

    tg_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), primary_key=True)
    seen_at: Mapped[datetime]
    chosen_at: Mapped[datetime | None]


class Client(Base):
    """A Telegram user who agreed to the program's terms (nothing is stored before consent)."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Null once the client's data is erased: the row stays so that purchases keep adding up.
    tg_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    first_name: Mapped[str | None] = mapped_column(String(128))
    last_name: Mapped[str | None] = mapped_column(String(128))
    username: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="ru")
    consent_at: Mapped[datetime | None]
    consent_version: Mapped[str | None] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(String(32))
    birthday: Mapped[date | None] = mapped_column(Date)
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    marketing_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None]
    erased_at: Mapped[datetime | None]


class Card(Base):
    __tablename__ = "cards"
    __table_args__ = (
        CheckConstraint("base_pct BETWEEN 1 AND 99", name="base_pct_range"),
        Index("ix_cards_client_id", "client_id"),
        Index("ix_cards_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    base_pct: Mapped[int] = mapped_column(Integer)
    segment: Mapped[str] = mapped_column(String(8), default=Segment.B2C)
    kind: Mapped[str] = mapped_column(String(8), default=CardKind.PRINTED)
    status: Mapped[str] = mapped_column(String(16), default=CardStatus.IN_STOCK)
    pin: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    issued_at: Mapped[datetime | None]
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"))
    bound_at: Mapped[datetime | None]
    blocked_at: Mapped[datetime | None]
    block_reason: Mapped[str | None] = mapped_column(String(32))
    # Binding brute-force guard: failed attempts against this number; locked at the cap.
    bind_failures: Mapped[int] = mapped_column(Integer, default=0)
    bind_locked_at: Mapped[datetime | None]
    # The card image is uploaded once per version (tier/number/segment) and then re-sent by id.
    image_key: Mapped[str | None] = mapped_column(String(64))
    image_file_id: Mapped[str | None] = mapped_column(String(256))
    # Lifetime figures of the card's non-voided purchases, kept by `services.cards.
    # refresh_totals` in the transaction of every write to the purchases ledger (till, void,
    # history import). The KPI engine reads them so that it scans only the period and what
    # came after it, not all history; the till reads them for the card summary.
    purchase_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    purchase_total: Mapped[int] = mapped_column(Money, default=0, server_default=text("0"))
    last_purchase_at: Mapped[datetime | None]
    # The card's home branch: the one its printed range was made for (`cards add --branch`) or
    # that issued it; branch 1 otherwise. A card works at its tier in every branch.
    branch_id: Mapped[int] = mapped_column(Integer, server_default="1")


class ImportStatus(StrEnum):
    RUNNING = "running"  # rows going in; a crash here is rolled back (services.history_import)
    FINISHING = "finishing"  # every row is in; a crash here is rolled forward
    DONE = "done"


class Import(Base):
    """One imported file; the hash refuses the same file twice. Its rows go in over many short
    transactions: `status` makes the whole import all-or-nothing across them."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(
        String(16), default=ImportStatus.DONE, server_default=ImportStatus.DONE.value
    )
    # Ids of the cards this import created (contiguous per write, created at `created_at`):
    # what an interrupted import removes besides its purchases.
    cards_from: Mapped[int | None] = mapped_column(Integer)
    cards_to: Mapped[int | None] = mapped_column(Integer)


class Offer(Base):
    """A personal one-time bonus that the till applies automatically while valid."""

    __tablename__ = "offers"
    __table_args__ = (Index("ix_offers_client_valid", "client_id", "valid_until"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    kind: Mapped[str] = mapped_column(String(16))
    bonus_pct: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # No FK: purchases already reference offers, and a cycle would complicate SQLite DDL.
    redeemed_purchase_id: Mapped[int | None] = mapped_column(Integer)
    redeemed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    @classmethod
    def active_at(cls, now: Any, columns: Any = None) -> tuple[ColumnElement[bool], ...]:
        """Valid at `now`, not used, not withdrawn: the one-time bonus the till applies by
        itself and the customer sees in /offers (`now`: a datetime or a bound parameter).
        `columns`: the table's columns (`Offer.__table__.c`) for a plain Core statement."""
        c = cls if columns is None else columns
        return (
            c.valid_from <= now,
            c.valid_until > now,
            c.redeemed_purchase_id.is_(None),
            c.cancelled_at.is_(None),
        )


class Purchase(Base):
    """The ledger. Rows are never deleted; a void marks them and they stop counting."""

    __tablename__ = "purchases"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("discount_amount >= 0", name="discount_non_negative"),
        Index("ix_purchases_card_created", "card_id", "created_at"),
        # By time, covering what the KPI engine reads of the days a period shares with
        # months it only partly spans (services.kpi): those rows come from the index alone.
        Index(
            "ix_purchases_created",
            "created_at",
            "card_id",
            "voided_at",
            "amount",
            "discount_amount",
        ),
        # Covering index per card: the recounts of a card's lifetime and monthly figures
        # (services.cards) and the KPI engine's last-purchase seeks read only the index.
        Index(
            "ix_purchases_kpi", "card_id", "voided_at", "created_at", "amount", "discount_amount"
        ),
        # One branch's purchases by time, covering what its KPIs read (services.kpi).
        Index(
            "ix_purchases_branch",
            "branch_id",
            "created_at",
            "card_id",
            "voided_at",
            "amount",
            "discount_amount",
        ),
        # Only the purchases made under a happy hour, for the KPIs' promotions figures.
        Index(
            "ix_purchases_promo",
            "created_at",
            "voided_at",
            "amount",
            "discount_amount",
            sqlite_where=text("promo_id IS NOT NULL"),
            postgresql_where=text("promo_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"))
    amount: Mapped[int] = mapped_column(Money)  # gross, minor units
    discount_pct: Mapped[int] = mapped_column(Integer)
    discount_amount: Mapped[int] = mapped_column(Money)
    paid_amount: Mapped[int] = mapped_column(Money)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    # A happy hour's bonus (promotions): no FK, the column is added to a ledger of millions.
    promo_id: Mapped[int | None] = mapped_column(Integer)
    promo_pct: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cashier_id: Mapped[int | None] = mapped_column(BigInteger)
    # Where it was sold (no FK, like promo_id): the branch of the till's chat or cashier.
    branch_id: Mapped[int] = mapped_column(Integer, server_default="1")
    # A confirmed draft becomes exactly one purchase: the unique id is the last line of defence.
    draft_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    source: Mapped[str] = mapped_column(String(8), default=PurchaseSource.BOT)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"))
    created_at: Mapped[datetime]
    voided_at: Mapped[datetime | None]
    voided_by: Mapped[int | None] = mapped_column(BigInteger)


class CardMonth(Base):
    """A card's non-voided purchases in one calendar month (UTC, `month` = YYYYMM): their
    count, gross amount and discount. Kept by `services.cards.refresh_totals` in the
    transaction of every write to the purchases ledger, like the card's lifetime figures; the
    KPI engine reads a period's whole months here instead of every purchase in them."""

    __tablename__ = "card_months"
    # SQLite: the rows themselves in key order (card, month), so a per-card sum walks them
    # card by card with nothing to sort.
    __table_args__: ClassVar[dict[str, Any]] = {"sqlite_with_rowid": False}

    # No foreign key: derived figures, written in bulk by the history import while the cards
    # are locked, where a check per row tripled the time a till waited at its end. A card is
    # removed (an undone import's new card) only after its recount has removed its months.
    card_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # YYYYMM (202611): an integer, which SQLite compares many times faster than timestamp text.
    month: Mapped[int] = mapped_column(Integer, primary_key=True)
    purchases: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[int] = mapped_column(Money)  # gross, minor units
    discount: Mapped[int] = mapped_column(Money)


class SaleDraft(Base):
    """A quote shown to the cashier; ✅ turns it into a purchase by a conditional update."""

    __tablename__ = "sale_drafts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # opaque random token
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"))
    cashier_id: Mapped[int] = mapped_column(BigInteger)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    branch_id: Mapped[int] = mapped_column(Integer, server_default="1")
    message_id: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(Money)
    base_pct: Mapped[int] = mapped_column(Integer)
    amount_tier_pct: Mapped[int] = mapped_column(Integer, default=0)
    cumulative_tier_pct: Mapped[int] = mapped_column(Integer, default=0)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    offer_pct: Mapped[int] = mapped_column(Integer, default=0)
    promo_id: Mapped[int | None] = mapped_column(Integer)
    promo_pct: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    discount_pct: Mapped[int] = mapped_column(Integer)
    discount_amount: Mapped[int] = mapped_column(Money)
    paid_amount: Mapped[int] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16), default=DraftStatus.OPEN)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[int | None] = mapped_column(BigInteger)
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"))


class Survey(Base):
    """An NPS question after a purchase: score 0-10 and an optional comment."""

    __tablename__ = "surveys"
    __table_args__ = (
        CheckConstraint("score IS NULL OR score BETWEEN 0 AND 10", name="score_range"),
        Index("ix_surveys_client", "client_id"),
        Index("ix_surveys_answered", "answered_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"), unique=True)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    score: Mapped[int | None] = mapped_column(Integer)
    answered_at: Mapped[datetime | None]
    comment: Mapped[str | None] = mapped_column(Text)
    comment_at: Mapped[datetime | None]


class Promotion(Base):
    """A happy hour: +`bonus_pct` at the till on some weekdays between two store times, until
    an optional last day (store dates and times, as the owner sets them), in every branch or
    in one (`branch_id`)."""

    __tablename__ = "promotions"
    __table_args__ = (
        CheckConstraint("bonus_pct BETWEEN 1 AND 99", name="bonus_pct_range"),
        CheckConstraint("weekdays BETWEEN 1 AND 127", name="weekdays_range"),
        CheckConstraint(
            "starts_min >= 0 AND ends_min <= 1440 AND starts_min < ends_min", name="window"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    bonus_pct: Mapped[int] = mapped_column(Integer)
    weekdays: Mapped[int] = mapped_column(Integer)  # bit 0 Monday … bit 6 Sunday
    starts_min: Mapped[int] = mapped_column(Integer)  # minutes after midnight, store time
    ends_min: Mapped[int] = mapped_column(Integer)  # exclusive
    until: Mapped[date | None] = mapped_column(Date)  # the last store day, inclusive
    branch_id: Mapped[int | None] = mapped_column(Integer)  # one branch's; NULL: every branch
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]


class StoreDay(Base):
    """The till's daily totals for every customer, cardholders or not (`store-sales import`):
    what lets the KPIs show the share of revenue through cards."""

    __tablename__ = "store_days"
    __table_args__ = (
        CheckConstraint("revenue >= 0", name="revenue_non_negative"),
        CheckConstraint("checks >= 0", name="checks_non_negative"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)  # store date
    branch_id: Mapped[int] = mapped_column(Integer, primary_key=True, server_default="1")
    revenue: Mapped[int] = mapped_column(Money)  # minor units
    checks: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class Motivation(Base):
    """Why a member takes part, asked once after their third purchase: the discount, the store
    itself, convenience, or something else (free text)."""

    __tablename__ = "motivations"
    __table_args__ = (Index("ix_motivations_answered", "answered_at"),)

    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), primary_key=True)
    asked_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(String(16))  # discount|store|convenience|other
    comment: Mapped[str | None] = mapped_column(Text)


class WinbackAssignment(Base):
    """Who was eligible for an automatic offer (win-back, birthday: `kind`) and whether they
    got it or sat in the control group."""

    __tablename__ = "winback_assignments"
    __table_args__ = (Index("ix_winback_client", "client_id", "assigned_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(
        String(16), default=OfferKind.WINBACK, server_default=OfferKind.WINBACK.value
    )
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    assigned_at: Mapped[datetime]
    control: Mapped[bool] = mapped_column(Boolean)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    window_until: Mapped[datetime]
    last_purchase_at: Mapped[datetime | None]


class InviteCode(Base):
    """A member's invite code (`https://t.me/<bot>?start=r<code>`): opaque, not the card's."""

    __tablename__ = "invite_codes"

    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Referral(Base):
    """A friend who joined through a member's (the ambassador's) invite link; at the friend's
    first purchase both get a reward offer, unless the ambassador's monthly cap is reached."""

    __tablename__ = "referrals"
    __table_args__ = (Index("ix_referrals_ambassador", "ambassador_id", "rewarded_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ambassador_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    friend_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), unique=True)
    joined_at: Mapped[datetime]
    # The friend's first confirmed purchase (no FK, like offers.redeemed_purchase_id).
    first_purchase_id: Mapped[int | None] = mapped_column(Integer)
    first_purchase_at: Mapped[datetime | None]
    rewarded_at: Mapped[datetime | None]
    capped: Mapped[bool] = mapped_column(Boolean, default=False)
    friend_offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    ambassador_offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    revoked_at: Mapped[datetime | None]  # that first purchase was voided


class CampaignStatus(StrEnum):
    DRAFT = "draft"  # being put together (the wizard's preview)
    SENT = "sent"  # audience drawn, offers written, messages queued
    CANCELLED = "cancelled"


class Campaign(Base):
    """The owner's campaign: an offer (+`bonus_pct` for `valid_days`) and a message to an
    audience, a random `holdout_pct` of which gets nothing, to measure the lift."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint("bonus_pct BETWEEN 1 AND 99", name="bonus_pct_range"),
        CheckConstraint("holdout_pct BETWEEN 0 AND 50", name="holdout_pct_range"),
        CheckConstraint("valid_days >= 1", name="valid_days_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    audience: Mapped[str] = mapped_column(String(16))  # all | rfm | inactive | birthday
    audience_arg: Mapped[str | None] = mapped_column(String(32))
    bonus_pct: Mapped[int] = mapped_column(Integer)
    valid_days: Mapped[int] = mapped_column(Integer)
    holdout_pct: Mapped[int] = mapped_column(Integer)
    texts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # language → text
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    window_until: Mapped[datetime | None]
    audience_size: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    holdout_size: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class CampaignMember(Base):
    """One member of a sent campaign's audience: offered (`offer_id`) or in the hold-out."""

    __tablename__ = "campaign_members"
    __table_args__ = (Index("ix_campaign_members_client", "client_id"),)

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), primary_key=True)
    control: Mapped[bool] = mapped_column(Boolean)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))


class Delivery(Base):
    """Every proactive message: due, sent, attempts, outcome. The key makes sends idempotent."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"))
    marketing: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    due_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None]
    message_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BindAttempt(Base):
    """Card-binding attempts, for the per-user hourly limit that must survive restarts."""

    __tablename__ = "bind_attempts"
    __table_args__ = (Index("ix_bind_attempts_user_at", "tg_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tg_id: Mapped[int] = mapped_column(BigInteger)
    card_number: Mapped[str | None] = mapped_column(String(32))
    success: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime]


class AuditEvent(Base):
    """Who did what: binding, unbinding, voids, staff actions, imports, erasures."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(48))
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"))
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ProcessedUpdate(Base):
    """Update ids already handled, so that a webhook retry from Telegram is processed once."""

    __tablename__ = "processed_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime]


class ConversationState(Base):
    """Where a conversation is (aiogram's FSM state and data), so that a restart loses no step:
    a customer asked for a PIN, a cashier at the amount prompt (`bot/fsm_storage.py`). Used on
    the embedded default; several workers share Redis instead."""

    __tablename__ = "conversation_states"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime]
