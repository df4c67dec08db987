"""The program's KPIs for a period of store-time days, as SQL aggregates (docs/design.md's table).

Period P = store-time dates `first`…`last` inclusive, turned into UTC bounds [start, end) by
`store_day_bounds`. Voided purchases never count. Money stays in minor units inside (`Kpis`);
`to_json` converts to major units. A ratio whose denominator is zero is `None`.

The public functions that take a `Session` (`compute`, `weekly_series`, `at_risk_cards`,
`anomalies`, `detractor_comments`) are the building blocks of units of work (`db.database`):
`services.reports.ReportService` runs them as long reads, `await db.report(...)`. They read
the same on SQLite and PostgreSQL: every count and sum goes through `_int` (PostgreSQL's `sum()`
of a BIGINT is `numeric`, a `Decimal` in Python), divisions happen in Python, and every
ordering ends on a unique key, so both engines return the same rows in the same order.

The whole KPI set takes a handful of queries, written with SQLAlchemy Core so that any dialect
with window functions works (SQLite ≥ 3.25, PostgreSQL, ...):

1. cards grouped by (segment, bound at the end of P) — inventory figures;
2. per card: its purchases in P and in the period before it — the whole calendar months from
   the cards' monthly figures (`CardMonth`), the days around them from the ledger's covering
   index by time — and after P, its lifetime figures kept on the card row
   (`Card.purchase_count/purchase_total/last_purchase_at`; both kept by
   `services.cards.refresh_totals`) minus what came after P, then RFM scores with `ntile(5)`
   over those cards, then grouped by (segment, bound, RFM segment): every purchase figure,
   retention, new buyers, LTV and the RFM counts come out of it — the history before the
   previous period is never read, and whole months are read as one row per card;
3. NPS answers in P; 4. win-back assignments made in P; 5. the impact comparisons: the bound
   cards' windows around their binding (one query), the store days of P (one or two).

RFM (over cards with ≥ 1 purchase up to the end of P; ties broken by card id):
  R = ntile(5) ordered by the last purchase (5 = most recent), F = ntile(5) by the number of
  purchases, M = ntile(5) by lifetime gross spend. Segments, first rule that matches wins:
    champions    R ≥ 4 and F ≥ 4 and M ≥ 4
    loyal        R ≥ 3 and F ≥ 3
    new          R ≥ 4 and F ≤ 2
    potential    R ≥ 3                      (R = 3, F ≤ 2)
    at_risk      R ≤ 2 and F ≥ 3            (used to buy often, not lately)
    hibernating  R = 2                      (F ≤ 2)
    lost         R = 1                      (F ≤ 2)

ROI: net revenue = revenue − discounts; program costs in P = PROGRAM_COST_MONTHLY × days(P) /
30.4375 (the mean month length) + CARD_UNIT_COST × cards issued in P;
roi_pct = (net revenue × GROSS_MARGIN_PCT / 100 − discounts − costs) / (discounts + costs) × 100.

Win-back (assignments made in P): a *return* is a non-voided purchase by any card of the client
within [assigned_at, window_until]; `lift` = return_rate_offered − return_rate_control (a
difference of shares, so 0.1 = ten percentage points), with its 95 % confidence interval
(`lift_low`, `lift_high`: `services.experiments`). It is the one causal figure: the hold-out
group is chosen at random. Birthday offers (`Kpis.birthday`) are measured the same way
(assignments of kind "birthday", window [assigned_at, valid until]).

Impact (`Kpis.impact`; comparisons, not effects — members choose to join):
  before_after  cards bound to Telegram before the end of P (`cards.bound_at`) with a purchase
                before binding and one after it (up to the end of P); per card the window
                w = min(binding − first purchase, end of P − binding, IMPACT_WINDOW_DAYS);
                purchases in [binding − w, binding) vs [binding, binding + w), pooled:
                frequency = purchases / Σw × FREQUENCY_DAYS, average check = gross / purchases.
  members_vs_paper  the `digital` and `paper` groups of `digital_vs_paper` (bound at the end of
                P or not): active cards, purchases, purchases per active card, average check.
  store         the store's daily totals (`store_days`) of P against the card purchases of the
                same days, paid (gross − discounts, what the till takes): card_share = card
                revenue / store revenue; average check of everyone else = (store revenue − card
                revenue) / (store checks − card purchases). None without store days.

Digest helpers: `weekly_series`, `at_risk_cards`, `anomalies`, `detractor_comments`.
Anomalous cashier: at least `CASHIER_MIN_PURCHASES` sales in the window and a discount share
(discounts / gross) above the mean of the other cashiers of the same branch + 2σ AND above
1.5 × their median (at least two other cashiers of that branch needed for a comparison); a
cashier's sales in each branch are judged on their own.

One branch (`compute(…, branch_id=B)`, `Kpis.branch_id`; None is the whole chain, as above):
  purchase figures  only B's purchases (`purchases.branch_id`): active cards = cards with a
                non-voided purchase in B in P; purchases, revenue, discounts, frequency,
                repeat, spend per card; retention = cards that bought in B in the previous
                period and again in B in P; RFM and LTV over the cards' purchases in B (one
                pass over B's history up to the end of P: `branch_scores`); new buyers = cards
                whose first purchase anywhere in the chain was made in B and fell in P.
  card inventory cards whose home branch (`cards.branch_id`) is B: cards total / issued /
                issued in P / bound, so activity rate, program costs and ROI too.
  NPS           answers in P about B's purchases (a survey tied to no purchase: branch 1).
  promotions    B's happy-hour purchases. Referrals: first purchases made in B and the
                referred friends' purchases in B; `joined` and `ambassadors` stay the chain's.
  win-back, birthday  the chain's (the trials assign clients, not shops).
  impact        before/after: the cards whose home branch is B (their purchases anywhere:
                binding is the chain's); members vs paper: B's wallets; store: B's own
                `store_days` against B's card purchases of those days.
The whole chain's store figures add up every branch's store days, each against that branch's
card purchases of its days. A chain of one: `compute(branch_id=1)` == `compute()`.
`by_branch` gives the per-branch table (the same figures per branch as `compute(branch_id)`)
from three grouped queries, not a `compute` per branch.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from db.models import (
    MAIN_BRANCH_ID,
    Branch,
    Card,
    CardMonth,
    Money,
    Offer,
    OfferKind,
    Purchase,
    Referral,
    StoreDay,
    Survey,
    UTCDateTime,
    WinbackAssignment,
)
from db.sql import days_between, days_later
from services import branches
from services.cards import month_key, month_of, next_month
from services.clock import store_day_bounds
from services.dates import parse_date
from services.errors import DomainError
from services.experiments import lift_ci, rate

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

MEAN_MONTH_DAYS = Decimal("30.4375")
MAX_PERIOD_DAYS = 3660
CASHIER_MIN_PURCHASES = 3
RFM_SEGMENTS = ("champions", "loyal", "potential", "new", "at_risk", "hibernating", "lost")
SEGMENTS = ("b2c", "b2b")
WALLETS = ("digital", "paper")
MONEY_KEYS = frozenset(
    {
        "revenue",
        "discount_total",
        "average_check",
        "spend_per_active_card",
        "ltv",
        "program_costs",
        "card_revenue",
        "average_check_cardholders",
        "average_check_others",
    }
)
IMPACT_WINDOW_DAYS = 90  # the longest window before and after binding a card compares
FREQUENCY_DAYS = 30  # before/after frequency: purchases per card per this many days
CAUSAL_FIGURE = "winback.lift"  # the one figure a hold-out makes causal (`Kpis.winback`)


class InvalidPeriod(DomainError):
    """A period argument could not be understood (`reason`: format | order | too_long)."""

    def __init__(self, reason: str, text: str = "") -> None:
        super().__init__(f"invalid period {text!r}: {reason}")
        self.reason = reason
        self.text = text


# ----------------------------------------------------------------------------- data


def as_int(value: Any) -> int:
    """A count or a sum as a Python int: NULL (no rows) is 0, and PostgreSQL's `numeric` (what
    its `sum()` of BIGINT returns, as `Decimal`) becomes an int like SQLite's integers."""
    return 0 if value is None else int(value)


@dataclass
class Core:
    """The core figures of a group of cards (the whole program, a segment, a wallet kind)."""

    cards_issued: int = 0
    active_cards: int = 0
    purchases: int = 0
    revenue: int = 0
    discount_total: int = 0
    repeat_cards: int = 0
    previous_active: int = 0
    retained: int = 0
    activity_rate: float | None = None
    average_check: float | None = None
    average_discount_pct: float | None = None
    frequency: float | None = None
    repeat_rate: float | None = None
    retention_rate: float | None = None
    spend_per_active_card: float | None = None

    def add(self, other: Core) -> None:
        for name in _ADDITIVE:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def finish(self) -> Core:
        self.activity_rate = rate(self.active_cards, self.cards_issued)
        self.average_check = rate(self.revenue, self.purchases)
        pct = rate(self.discount_total, self.revenue)
        self.average_discount_pct = None if pct is None else pct * 100
        self.frequency = rate(self.purchases, self.active_cards)
        self.repeat_rate = rate(self.repeat_cards, self.active_cards)
        self.retention_rate = rate(self.retained, self.previous_active)
        self.spend_per_active_card = rate(self.revenue, self.active_cards)
        return self


_ADDITIVE = (
    "cards_issued",
    "active_cards",
    "purchases",
    "revenue",
    "discount_total",
    "repeat_cards",
    "previous_active",
    "retained",
)


@dataclass
class Nps:
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    answers: int = 0
    score: float | None = None


@dataclass
class Winback:
    offered: int = 0
    control: int = 0
    redeemed: int = 0
    returned_offered: int = 0
    returned_control: int = 0
    redemption_rate: float | None = None
    return_rate_offered: float | None = None
    return_rate_control: float | None = None
    lift: float | None = None
    # The lift's 95 % confidence interval (services.experiments); None without both groups.
    lift_low: float | None = None
    lift_high: float | None = None


@dataclass
class Side:
    """One side of the before/after comparison: purchases and gross revenue in the windows,
    purchases per card per `FREQUENCY_DAYS` days, and the average check."""

    purchases: int = 0
    revenue: int = 0
    frequency: float | None = None
    average_check: float | None = None


@dataclass
class BeforeAfter:
    """Cards bound to Telegram by the end of P with purchases before and after binding: the
    same window before and after each card's binding (`window_days` is their mean)."""

    cards: int = 0
    window_days: float | None = None
    before: Side = field(default_factory=Side)
    after: Side = field(default_factory=Side)


@dataclass
class StoreFigures:
    """The store's own daily totals (`store_days`) of P against the card purchases of the
    same days; every figure is None when P has no store days."""

    days_covered: int = 0
    covered: list[tuple[date, date]] = field(default_factory=list)  # runs of days, inclusive
    revenue: int | None = None
    checks: int | None = None
    card_revenue: int | None = None  # paid by card purchases (gross − discounts)
    card_purchases: int | None = None
    card_share: float | None = None
    average_check_cardholders: float | None = None
    average_check_others: float | None = None


@dataclass
class Impact:
    """What the program goes along with — comparisons, not effects: members choose to join.
    The causal figure is the win-back hold-out lift (`CAUSAL_FIGURE`), computed once in
    `Kpis.winback`."""

    before_after: BeforeAfter = field(default_factory=BeforeAfter)
    # members = the `digital` wallet of `Kpis.digital_vs_paper`, paper = its `paper` one.
    members_vs_paper: dict[str, Core] = field(default_factory=dict)
    store: StoreFigures = field(default_factory=StoreFigures)


@dataclass
class PromotionFigures:
    """What was bought under happy hours (services.promotions) in the period, not voided:
    purchases, their gross revenue and their whole discount (of which the happy hour's bonus
    was a part)."""

    purchases: int = 0
    revenue: int = 0
    discount_total: int = 0


@dataclass
class Referrals:
    """Members' invitations (services.referrals): friends who joined in the period, referred
    friends whose first purchase fell in it (not voided), those friends' non-voided gross
    purchases in it, and the members with ≥ 1 rewarded referral (not taken back) by its end."""

    joined: int = 0
    first_purchases: int = 0
    revenue: int = 0
    ambassadors: int = 0


@dataclass
class Kpis:
    first: date
    last: date
    cards_total: int = 0
    cards_issued: int = 0
    cards_issued_in_period: int = 0
    cards_bound: int = 0
    active_cards: int = 0
    activity_rate: float | None = None
    purchases: int = 0
    revenue: int = 0
    discount_total: int = 0
    average_check: float | None = None
    average_discount_pct: float | None = None
    frequency: float | None = None
    repeat_rate: float | None = None
    retention_rate: float | None = None
    spend_per_active_card: float | None = None
    new_buyers: int = 0
    ltv: float | None = None
    nps: Nps = field(default_factory=Nps)
    program_costs: float = 0.0
    roi_pct: float | None = None
    rfm: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RFM_SEGMENTS, 0))
    by_segment: dict[str, Core] = field(default_factory=dict)
    digital_vs_paper: dict[str, Core] = field(default_factory=dict)
    winback: Winback = field(default_factory=Winback)
    birthday: Winback = field(default_factory=Winback)  # the birthday offers' hold-out
    impact: Impact = field(default_factory=Impact)
    promotions: PromotionFigures = field(default_factory=lambda: PromotionFigures())
    referrals: Referrals = field(default_factory=lambda: Referrals())
    branch_id: int | None = None  # the branch these figures are of; None: the whole chain

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


# --------------------------------------------------------------------------- periods


def previous_period(first: date, last: date) -> tuple[date, date]:
    """The equally long period just before `first`…`last`."""
    days = (last - first).days + 1
    return first - timedelta(days=days), first - timedelta(days=1)


_DAYS = re.compile(r"(\d{1,4})d")


def parse_period(args: str | None, today: date, default: str = "7d") -> tuple[date, date]:
    """`7d`/`30d`/`Nd` (the last N days up to today), `month` (this month so far), or two
    dates, inclusive: `2026-10-01 2026-10-31` or `01.10.2026 31.10.2026` (`services.dates`).
    Raises `InvalidPeriod`."""
    text = (args or "").strip().lower() or default
    parts = text.split()
    if len(parts) == 1 and (m := _DAYS.fullmatch(parts[0])):
        days = int(m.group(1))
        if days < 1:
            raise InvalidPeriod("format", text)
        if days > MAX_PERIOD_DAYS:
            raise InvalidPeriod("too_long", text)
        return today - timedelta(days=days - 1), today
    if parts == ["month"]:
        return today.replace(day=1), today
    if len(parts) == 2:
        try:
            first, last = parse_date(parts[0]), parse_date(parts[1])
        except ValueError as exc:
            raise InvalidPeriod("format", text) from exc
        if first > last:
            raise InvalidPeriod("order", text)
        if (last - first).days + 1 > MAX_PERIOD_DAYS:
            raise InvalidPeriod("too_long", text)
        return first, last
    raise InvalidPeriod("format", text)


# --------------------------------------------------------------------------- queries


def _not_voided() -> ColumnElement[bool]:
    return Purchase.voided_at.is_(None)


def _bound_at(end: datetime) -> ColumnElement[bool]:
    return and_(Card.client_id.is_not(None), Card.bound_at.is_not(None), Card.bound_at < end)


Span = tuple[datetime, datetime]


def _spans(first: datetime, last: datetime) -> tuple[Span | None, list[Span]]:
    """[first, last) as the whole calendar months (UTC) inside it — a range of month starts,
    or None — and the pieces of it outside them."""
    low = month_of(first)
    if low < first:
        low = next_month(low)
    high = month_of(last)
    if low >= high:
        return None, [(first, last)]
    return (low, high), [(a, b) for a, b in ((first, low), (high, last)) if a < b]


def _period_figures(prev_start: datetime, start: datetime, end: datetime) -> Any:
    """Per card with a purchase in [prev_start, end): its purchases, gross and discount in P =
    [start, end) and its purchases in the period before (`before`).

    Whole calendar months come from the cards' monthly figures (`CardMonth`), aggregated per
    card in one pass (SQLite walks the table in its key order, card by card; PostgreSQL
    hashes it in parallel); the days outside them from the ledger rows of those days (the
    covering `created_at` index); then the two per-card results are added up."""
    names = ("card_id", "n", "rev", "disc", "before")
    m, zero = CardMonth, literal_column("0")
    # The same types in every branch of the days' union, so that PostgreSQL flattens it into
    # one append it scans in parallel (a literal 0 beside a BIGINT column made it wrap the
    # branches in type conversions and read them in one process).
    none = cast(zero, Money)

    def labelled(*columns: Any) -> Select[Any]:
        return select(*(c.label(name) for c, name in zip(columns, names, strict=True)))

    def summed(rows: Any) -> Select[Any]:
        card_id, *figures = (rows.c[name] for name in names)
        return labelled(card_id, *(func.sum(f) for f in figures)).group_by(card_id)

    (prev_months, prev_days), (p_months, p_days) = _spans(prev_start, start), _spans(start, end)
    parts: list[Any] = []
    if prev_months is not None or p_months is not None:

        def within(months: Span) -> ColumnElement[bool]:
            return and_(m.month >= month_key(months[0]), m.month < month_key(months[1]))

        def when(months: Span | None, value: Any) -> Any:
            return zero if months is None else case((within(months), value), else_=zero)

        parts.append(
            labelled(
                m.card_id,
                func.sum(when(p_months, m.purchases)),
                func.sum(when(p_months, m.revenue)),
                func.sum(when(p_months, m.discount)),
                func.sum(when(prev_months, m.purchases)),
            )
            .where(or_(*(within(months) for months in (prev_months, p_months) if months)))
            .group_by(m.card_id)
        )
    one = literal_column("1")
    days = [
        labelled(Purchase.card_id, *figures).where(
            _not_voided(), Purchase.created_at >= a, Purchase.created_at < b
        )
        for pieces, figures in (
            (prev_days, (zero, none, none, one)),
            (p_days, (one, Purchase.amount, Purchase.discount_amount, zero)),
        )
        for a, b in pieces
    ]
    if days:  # none when both periods are whole months
        parts.append(summed(union_all(*days).subquery("days")))
    if len(parts) == 1:
        return parts[0].subquery("figures")
    return summed(union_all(*parts).subquery("parts")).subquery("figures")


def card_scores(prev_start: datetime, start: datetime, end: datetime) -> Any:
    """Per card with ≥ 1 purchase before `end`: figures in [start, end) (n, rev, disc),
    lifetime count and gross spend at `end` (life_n, life_total), first purchase in P (new),
    activity in [prev_start, start) (prev), last purchase before `end` (last_at), its segment
    and whether it was bound at `end`; then R/F/M scores and the named segment (rfm).

    The two periods' per-card figures come from `_period_figures` (whole months from the
    cards' monthly figures, the days around them from the ledger), the lifetime figures from
    the cards' rows (`cards.refresh_totals` keeps both): lifetime at `end` = lifetime now −
    what came after `end`, so history before the previous period is never read. A card's
    last purchase comes from its row unless it bought after `end` (then one index seek). The
    windows run over the per-card rows as they come (one pass, no join back: the planner's
    estimates stay sane on PostgreSQL).
    """
    during = _period_figures(prev_start, start, end)
    after = (
        select(
            Purchase.card_id,
            func.count().label("n"),
            func.sum(Purchase.amount).label("total"),
        )
        .where(_not_voided(), Purchase.created_at >= end)
        .group_by(Purchase.card_id)
        .subquery("after")
    )
    n = func.coalesce(during.c.n, 0)
    life_n = Card.purchase_count - func.coalesce(after.c.n, 0)
    inner = aliased(Purchase, name="p2")
    last_before_end = (
        select(func.max(inner.created_at))
        .where(inner.card_id == Card.id, inner.voided_at.is_(None), inner.created_at < end)
        .scalar_subquery()
    )
    last_at = case((after.c.n.is_(None), Card.last_purchase_at), else_=last_before_end)
    prev = case((func.coalesce(during.c.before, 0) > 0, 1), else_=0)
    per_card = (
        select(
            Card.id.label("card_id"),
            Card.segment.label("segment"),
            case((_bound_at(end), 1), else_=0).label("bound"),
            n.label("n"),
            func.coalesce(during.c.rev, 0).label("rev"),
            func.coalesce(during.c.disc, 0).label("disc"),
            life_n.label("life_n"),
            (Card.purchase_total - func.coalesce(after.c.total, 0)).label("life_total"),
            case((life_n == n, 1), else_=0).label("new"),
            prev.label("prev"),
            last_at.label("last_at"),
        )
        .select_from(Card)
        .outerjoin(during, during.c.card_id == Card.id)
        .outerjoin(after, after.c.card_id == Card.id)
        .where(life_n > 0)
        .subquery("per_card")
    )
    return _rfm(per_card)


def branch_scores(branch_id: int, prev_start: datetime, start: datetime, end: datetime) -> Any:
    """`card_scores` over one branch's purchases: per card with ≥ 1 purchase in the branch
    before `end`, the same columns, every figure counting only that branch's purchases, R/F/M
    scored among the branch's cards. One pass over the branch's history up to `end` (the
    covering index `ix_purchases_branch`: branch, then time); `new` = the card's first purchase
    anywhere in the chain is its first one in this branch in P (one index seek per active
    card: nothing of the card's is earlier)."""
    in_p = Purchase.created_at >= start
    before = and_(Purchase.created_at >= prev_start, Purchase.created_at < start)
    history = (
        select(
            Purchase.card_id.label("card_id"),
            func.sum(case((in_p, 1), else_=0)).label("n"),
            func.sum(case((in_p, Purchase.amount), else_=0)).label("rev"),
            func.sum(case((in_p, Purchase.discount_amount), else_=0)).label("disc"),
            func.sum(case((before, 1), else_=0)).label("before"),
            func.count().label("life_n"),
            func.sum(Purchase.amount).label("life_total"),
            func.max(Purchase.created_at).label("last_at"),
            func.min(case((in_p, Purchase.created_at))).label("first_in_p"),
        )
        .where(Purchase.branch_id == branch_id, _not_voided(), Purchase.created_at < end)
        .group_by(Purchase.card_id)
        .subquery("history")
    )
    earlier = aliased(Purchase, name="p2")
    first_anywhere = ~exists(
        select(earlier.id).where(
            earlier.card_id == history.c.card_id,
            earlier.voided_at.is_(None),
            earlier.created_at < history.c.first_in_p,
        )
    )
    n = history.c.n
    per_card = (
        select(
            history.c.card_id,
            Card.segment.label("segment"),
            case((_bound_at(end), 1), else_=0).label("bound"),
            n,
            history.c.rev,
            history.c.disc,
            history.c.life_n,
            history.c.life_total,
            case((and_(n > 0, first_anywhere), 1), else_=0).label("new"),
            case((history.c.before > 0, 1), else_=0).label("prev"),
            history.c.last_at,
        )
        .select_from(history)
        .join(Card, Card.id == history.c.card_id)
        .subquery("per_card")
    )
    return _rfm(per_card)


def _rfm(per_card: Any) -> Any:
    """Per-card rows (card_id, …, life_n, life_total, last_at) with R/F/M scores over them and
    the named RFM segment (`rfm`)."""
    scored = select(
        per_card,
        func.ntile(5).over(order_by=(per_card.c.last_at, per_card.c.card_id)).label("r"),
        func.ntile(5).over(order_by=(per_card.c.life_n, per_card.c.card_id)).label("f"),
        func.ntile(5).over(order_by=(per_card.c.life_total, per_card.c.card_id)).label("m"),
    ).subquery("scored")
    r, f, m = scored.c.r, scored.c.f, scored.c.m
    segment = case(
        (and_(r >= 4, f >= 4, m >= 4), literal("champions")),
        (and_(r >= 3, f >= 3), literal("loyal")),
        (and_(r >= 4, f <= 2), literal("new")),
        (r >= 3, literal("potential")),
        (f >= 3, literal("at_risk")),
        (r == 2, literal("hibernating")),
        else_=literal("lost"),
    )
    return select(*(scored.c[column.name] for column in per_card.c), segment.label("rfm")).subquery(
        "rfm"
    )


def _card_figures(
    session: Session, start: datetime, end: datetime, branch_id: int | None = None
) -> list[tuple[str, bool, int, int, int, int]]:
    """Card inventory per (segment, bound at the end); of one branch: the cards whose home
    branch (`cards.branch_id`) it is."""
    bound = case((_bound_at(end), 1), else_=0).label("bound")
    issued = func.sum(case((and_(Card.issued_at.is_not(None), Card.issued_at < end), 1), else_=0))
    in_period = func.sum(case((and_(Card.issued_at >= start, Card.issued_at < end), 1), else_=0))
    query = select(Card.segment, bound, func.count(), issued, in_period, func.sum(bound))
    if branch_id is not None:
        query = query.where(Card.branch_id == branch_id)
    rows = session.execute(query.group_by(Card.segment, bound))
    return [
        (s, bool(b), as_int(n), as_int(i), as_int(ip), as_int(nb))
        for s, b, n, i, ip, nb in rows.all()
    ]


def _purchase_figures(
    session: Session,
    prev_start: datetime,
    start: datetime,
    end: datetime,
    branch_id: int | None = None,
) -> list[tuple[Any, ...]]:
    """Per-card figures grouped per (segment, bound at the end, RFM segment): a few rows."""
    if branch_id is None:
        rfm = card_scores(prev_start, start, end)
    else:
        rfm = branch_scores(branch_id, prev_start, start, end)
    active = rfm.c.n > 0
    query = select(
        rfm.c.segment,
        rfm.c.bound,
        rfm.c.rfm,
        func.count().label("cards"),
        func.sum(case((active, 1), else_=0)),
        func.sum(rfm.c.n),
        func.sum(rfm.c.rev),
        func.sum(rfm.c.disc),
        func.sum(case((rfm.c.n >= 2, 1), else_=0)),
        func.sum(rfm.c.prev),
        func.sum(case((and_(rfm.c.prev > 0, active), 1), else_=0)),
        func.sum(case((and_(rfm.c.new > 0, active), 1), else_=0)),
        func.sum(rfm.c.life_total),
    ).group_by(rfm.c.segment, rfm.c.bound, rfm.c.rfm)
    return [
        (segment, bool(bound), rfm_segment, *(as_int(value) for value in figures))
        for segment, bound, rfm_segment, *figures in session.execute(query).all()
    ]


def _survey_branch() -> ColumnElement[int]:
    """The branch a survey is about: its purchase's (a survey tied to no purchase: the first
    shop's). Needs `Survey` outer-joined to `Purchase` on `purchase_id`."""
    return func.coalesce(Purchase.branch_id, literal(MAIN_BRANCH_ID))


def _nps_figures(promoters: Any, passives: Any, detractors: Any, answers: Any) -> Nps:
    nps = Nps(
        promoters=as_int(promoters),
        passives=as_int(passives),
        detractors=as_int(detractors),
        answers=as_int(answers),
    )
    diff = rate(nps.promoters - nps.detractors, nps.answers)
    nps.score = None if diff is None else diff * 100
    return nps


def _nps_columns() -> tuple[Any, ...]:
    score = Survey.score
    return (
        func.sum(case((score >= 9, 1), else_=0)),
        func.sum(case((and_(score >= 7, score <= 8), 1), else_=0)),
        func.sum(case((score <= 6, 1), else_=0)),
        func.count(),
    )


def _nps(session: Session, start: datetime, end: datetime, branch_id: int | None = None) -> Nps:
    """Survey answers given in [start, end); of one branch: those about its purchases."""
    query = select(*_nps_columns()).where(
        Survey.score.is_not(None),
        Survey.answered_at >= start,
        Survey.answered_at < end,
    )
    if branch_id is not None:
        query = query.outerjoin(Purchase, Purchase.id == Survey.purchase_id).where(
            _survey_branch() == branch_id
        )
    return _nps_figures(*session.execute(query).one())


def _winback(
    session: Session, start: datetime, end: datetime, kind: str = OfferKind.WINBACK
) -> Winback:
    """Assignments of `kind` (win-back or birthday) made in P, offered vs control."""
    wa = WinbackAssignment
    returned = exists(
        select(Purchase.id)
        .join(Card, Card.id == Purchase.card_id)
        .where(
            Card.client_id == wa.client_id,
            _not_voided(),
            Purchase.created_at >= wa.assigned_at,
            Purchase.created_at <= wa.window_until,
        )
    )
    redeemed = and_(Offer.id.is_not(None), Offer.redeemed_at.is_not(None))
    rows = session.execute(
        select(
            wa.control,
            func.count(),
            func.sum(case((redeemed, 1), else_=0)),
            func.sum(case((returned, 1), else_=0)),
        )
        .select_from(wa)
        .outerjoin(Offer, Offer.id == wa.offer_id)
        .where(wa.kind == kind, wa.assigned_at >= start, wa.assigned_at < end)
        .group_by(wa.control)
    )
    result = Winback()
    for control, n, red, ret in rows.all():
        if control:
            result.control, result.returned_control = as_int(n), as_int(ret)
        else:
            result.offered, result.redeemed, result.returned_offered = (
                as_int(n),
                as_int(red),
                as_int(ret),
            )
    result.redemption_rate = rate(result.redeemed, result.offered)
    result.return_rate_offered = rate(result.returned_offered, result.offered)
    result.return_rate_control = rate(result.returned_control, result.control)
    ci = lift_ci(result.returned_offered, result.offered, result.returned_control, result.control)
    result.lift, result.lift_low, result.lift_high = ci.lift, ci.low, ci.high
    return result


def _promotions(
    session: Session, start: datetime, end: datetime, branch_id: int | None = None
) -> PromotionFigures:
    """Purchases under a happy hour in [start, end): the partial index of promotion purchases
    (`ix_purchases_promo`) holds only those, so this reads none of the others."""
    query = select(
        func.count(Purchase.id),
        func.coalesce(func.sum(Purchase.amount), 0),
        func.coalesce(func.sum(Purchase.discount_amount), 0),
    ).where(
        Purchase.promo_id.is_not(None),
        Purchase.created_at >= start,
        Purchase.created_at < end,
        Purchase.voided_at.is_(None),
    )
    if branch_id is not None:
        query = query.where(Purchase.branch_id == branch_id)
    purchases, revenue, discount = session.execute(query).one()
    return PromotionFigures(int(purchases), int(revenue), int(discount))


def _referrals(
    session: Session, start: datetime, end: datetime, branch_id: int | None = None
) -> Referrals:
    """`Kpis.referrals` for [start, end): the referrals table is small (one row per referred
    friend); the friends' purchases come through their cards' index. Of one branch: the
    first purchases made there and the friends' purchases there; `joined` and `ambassadors`
    stay the chain's (joining is not done in a shop)."""
    r = Referral
    in_period = and_(r.joined_at >= start, r.joined_at < end)
    first = and_(r.first_purchase_at >= start, r.first_purchase_at < end, r.revoked_at.is_(None))
    rewarded = and_(
        r.rewarded_at < end, r.capped.is_(False), or_(r.revoked_at.is_(None), r.revoked_at >= end)
    )
    if branch_id is not None:
        first_sale = (
            select(Purchase.branch_id).where(Purchase.id == r.first_purchase_id).scalar_subquery()
        )
        first = and_(first, func.coalesce(first_sale, MAIN_BRANCH_ID) == branch_id)
    joined, firsts, ambassadors = session.execute(
        select(
            func.coalesce(func.sum(case((in_period, 1), else_=0)), 0),
            func.coalesce(func.sum(case((first, 1), else_=0)), 0),
            func.count(func.distinct(case((rewarded, r.ambassador_id)))),
        )
    ).one()
    spent = (
        select(func.coalesce(func.sum(Purchase.amount), 0))
        .join(Card, Card.id == Purchase.card_id)
        .join(r, r.friend_id == Card.client_id)
        .where(Purchase.created_at >= start, Purchase.created_at < end, _not_voided())
    )
    if branch_id is not None:
        spent = spent.where(Purchase.branch_id == branch_id)
    revenue = session.scalar(spent)
    return Referrals(as_int(joined), as_int(firsts), as_int(revenue), as_int(ambassadors))


def _least(*values: Any) -> Any:
    """The smallest of a few non-NULL expressions, per row (CASE: the same on every engine)."""
    smallest = values[0]
    for value in values[1:]:
        smallest = case((value < smallest, value), else_=smallest)
    return smallest


def _before_after(session: Session, end: datetime, branch_id: int | None = None) -> BeforeAfter:
    """Cards bound to Telegram before `end` (`cards.bound_at`: set by binding, cleared by
    unbinding) with a purchase before binding and one after it (before `end`). Per card the
    window w = min(binding − first purchase, `end` − binding, IMPACT_WINDOW_DAYS); purchases in
    [binding − w, binding) against [binding, binding + w), pooled over the cards.

    One query: the cards with their first purchase (an index seek each; whether they bought
    after binding mostly from their lifetime figures) and their windows as
    timestamps, computed once per card (a materialized CTE) — a window that reaches the first
    purchase or `end` is bounded by that very timestamp, exactly — then each card's purchases
    in its window read from the ledger's per-card covering index by range.

    Of one branch: the cards whose home branch it is, with their purchases in every branch
    (binding a card to Telegram is the chain's, not a shop's)."""
    at_end = bindparam("impact_end", end, type_=UTCDateTime())
    mine = (Purchase.card_id == Card.id, _not_voided())
    first = select(func.min(Purchase.created_at)).where(*mine).scalar_subquery()
    # A purchase in [binding, end): the card's last purchase says so when it came before
    # `end` (a period up to today); otherwise one index seek.
    bought_after = and_(
        Card.last_purchase_at >= Card.bound_at,
        or_(
            Card.last_purchase_at < at_end,
            exists(
                select(Purchase.id).where(
                    *mine, Purchase.created_at >= Card.bound_at, Purchase.created_at < at_end
                )
            ),
        ),
    )
    home = [] if branch_id is None else [Card.branch_id == branch_id]
    cards = (
        select(Card.id.label("card_id"), Card.bound_at.label("bound_at"), first.label("first_at"))
        .where(
            Card.client_id.is_not(None),
            Card.bound_at.is_not(None),
            Card.bound_at < at_end,
            bought_after,
            *home,
        )
        .cte("bound_cards")
        .prefix_with("MATERIALIZED")  # each card's first purchase: one seek
    )
    spans = (
        select(
            cards.c.card_id,
            cards.c.bound_at,
            cards.c.first_at,
            days_between(cards.c.bound_at, cards.c.first_at).label("before"),
            days_between(at_end, cards.c.bound_at).label("after"),
        )
        .where(cards.c.first_at < cards.c.bound_at)
        .cte("spans")
        .prefix_with("MATERIALIZED")
    )
    bound, before, after = spans.c.bound_at, spans.c.before, spans.c.after
    cap = literal(float(IMPACT_WINDOW_DAYS))
    w = _least(before, after, cap)
    windows = (
        select(
            spans.c.card_id,
            bound,
            case(
                (and_(before <= after, before <= cap), spans.c.first_at),
                else_=days_later(bound, -w),
            ).label("lo"),
            case((and_(after <= before, after <= cap), at_end), else_=days_later(bound, w)).label(
                "hi"
            ),
            w.label("w"),
        )
        .cte("windows")
        .prefix_with("MATERIALIZED")
    )
    is_before = Purchase.created_at < windows.c.bound_at
    n, days, n_before, rev_before, n_after, rev_after = session.execute(
        select(
            select(func.count()).select_from(windows).scalar_subquery(),
            select(func.sum(windows.c.w)).scalar_subquery(),
            func.sum(case((is_before, 1), else_=0)),
            func.sum(case((is_before, Purchase.amount), else_=0)),
            func.sum(case((is_before, 0), else_=1)),
            func.sum(case((is_before, 0), else_=Purchase.amount)),
        )
        .select_from(windows)
        .join(Purchase, Purchase.card_id == windows.c.card_id)
        .where(
            _not_voided(),
            Purchase.created_at >= windows.c.lo,
            Purchase.created_at < windows.c.hi,
        )
    ).one()
    cards_n, card_days = as_int(n), float(days or 0)

    def side(purchases: Any, revenue: Any) -> Side:
        per_day = rate(as_int(purchases), card_days)
        return Side(
            purchases=as_int(purchases),
            revenue=as_int(revenue),
            frequency=None if per_day is None else per_day * FREQUENCY_DAYS,
            average_check=rate(as_int(revenue), as_int(purchases)),
        )

    return BeforeAfter(
        cards=cards_n,
        window_days=rate(card_days, cards_n),
        before=side(n_before, rev_before),
        after=side(n_after, rev_after),
    )


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as runs of consecutive days, each (first, last) inclusive."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _store(session: Session, settings: Settings, kpis: Kpis) -> StoreFigures:
    """The store days of P against the card purchases of those very days and branches: each
    branch's days against that branch's card purchases (the whole period's figures when every
    branch that could sell has every day, else one more sum over the covered runs, branches
    with the same runs together). The chain's figures add up every branch's days; `covered`
    and `days_covered` are the days at least one branch has."""
    query = select(StoreDay.branch_id, StoreDay.day, StoreDay.revenue, StoreDay.checks).where(
        StoreDay.day >= kpis.first, StoreDay.day <= kpis.last
    )
    if kpis.branch_id is not None:
        query = query.where(StoreDay.branch_id == kpis.branch_id)
    rows = session.execute(query.order_by(StoreDay.day, StoreDay.branch_id)).all()
    if not rows:
        return StoreFigures()
    days_of: dict[int, list[date]] = {}
    for branch, day, _revenue, _checks in rows:
        days_of.setdefault(int(branch), []).append(day)
    covered = _runs(sorted({day for _branch, day, _revenue, _checks in rows}))
    whole = [(kpis.first, kpis.last)]
    selling = (
        {kpis.branch_id}
        if kpis.branch_id is not None
        else {MAIN_BRANCH_ID, *session.scalars(select(Branch.id))}
    )
    runs_of = {branch: _runs(days) for branch, days in days_of.items()}
    if set(runs_of) >= selling and all(runs == whole for runs in runs_of.values()):
        card_revenue, card_purchases = kpis.revenue - kpis.discount_total, kpis.purchases
    else:
        tz = settings.store.tz
        alike: dict[tuple[tuple[date, date], ...], list[int]] = {}
        for branch, runs in sorted(runs_of.items()):
            alike.setdefault(tuple(runs), []).append(branch)
        inside = [
            and_(
                Purchase.branch_id.in_(ids),
                or_(
                    *(
                        and_(Purchase.created_at >= start, Purchase.created_at < end)
                        for start, end in (store_day_bounds(a, b, tz) for a, b in runs)
                    )
                ),
            )
            for runs, ids in alike.items()
        ]
        n, paid = session.execute(
            select(func.count(), func.sum(Purchase.amount - Purchase.discount_amount)).where(
                _not_voided(), or_(*inside)
            )
        ).one()
        card_purchases, card_revenue = as_int(n), as_int(paid)
    revenue = sum(as_int(revenue) for _branch, _day, revenue, _checks in rows)
    checks = sum(as_int(checks) for _branch, _day, _revenue, checks in rows)
    others = checks - card_purchases
    return StoreFigures(
        days_covered=len({day for _branch, day, _revenue, _checks in rows}),
        covered=covered,
        revenue=revenue,
        checks=checks,
        card_revenue=card_revenue,
        card_purchases=card_purchases,
        card_share=rate(card_revenue, revenue),
        average_check_cardholders=rate(card_revenue, card_purchases),
        # None when the store's figures are below the cards' own (incomplete totals).
        average_check_others=(
            rate(revenue - card_revenue, others) if others > 0 and revenue >= card_revenue else None
        ),
    )


def program_costs(settings: Settings, days: int, cards_issued: int) -> float:
    """Program costs of a period in minor units: the monthly cost pro rata + printed cards."""
    monthly = Decimal(settings.store.to_minor(settings.reports.program_cost_monthly))
    per_card = settings.store.to_minor(settings.reports.card_unit_cost)
    return float(monthly * days / MEAN_MONTH_DAYS + per_card * cards_issued)


def compute(
    session: Session,
    settings: Settings,
    first: date,
    last: date,
    *,
    impact: bool = True,
    branch_id: int | None = None,
) -> Kpis:
    """Every KPI of docs/design.md's table for the store-time days `first`…`last` inclusive.
    `impact=False` leaves out the program's impact (`Kpis.impact` stays empty): the period a
    report compares with does not show it, and it is the set's most expensive part.
    `branch_id`: the KPI set of that branch (see "One branch" in the module docstring)."""
    if first > last:
        raise InvalidPeriod("order", f"{first} {last}")
    tz = settings.store.tz
    start, end = store_day_bounds(first, last, tz)
    prev_first, prev_last = previous_period(first, last)
    prev_start, _ = store_day_bounds(prev_first, prev_last, tz)
    kpis = Kpis(first=first, last=last, branch_id=branch_id)
    segments = {s: Core() for s in SEGMENTS}
    wallets = {w: Core() for w in WALLETS}

    def group(segment: str, bound: bool) -> tuple[Core, Core]:
        seg = segments.setdefault(segment, Core())
        return seg, wallets["digital" if bound else "paper"]

    for segment, bound, total, issued, issued_in_p, n_bound in _card_figures(
        session, start, end, branch_id
    ):
        kpis.cards_total += total
        kpis.cards_issued += issued
        kpis.cards_issued_in_period += issued_in_p
        kpis.cards_bound += n_bound
        for core in group(segment, bound):
            core.cards_issued += issued

    life_cards = life_total = 0
    for row in _purchase_figures(session, prev_start, start, end, branch_id):
        segment, bound, rfm, cards, active, n, rev, disc, repeat, prev, retained, new, life = row
        part = Core(
            active_cards=active,
            purchases=n,
            revenue=rev,
            discount_total=disc,
            repeat_cards=repeat,
            previous_active=prev,
            retained=retained,
        )
        for core in group(segment, bound):
            core.add(part)
        kpis.rfm[rfm] = kpis.rfm.get(rfm, 0) + cards
        kpis.new_buyers += new
        life_cards += cards
        life_total += life

    total = Core()
    for core in segments.values():
        total.add(core)
    total.cards_issued = kpis.cards_issued
    total.finish()
    for name in ("active_cards", "purchases", "revenue", "discount_total"):
        setattr(kpis, name, getattr(total, name))
    for name in (
        "activity_rate",
        "average_check",
        "average_discount_pct",
        "frequency",
        "repeat_rate",
        "retention_rate",
        "spend_per_active_card",
    ):
        setattr(kpis, name, getattr(total, name))
    kpis.ltv = rate(life_total, life_cards)
    kpis.by_segment = {name: core.finish() for name, core in segments.items()}
    kpis.digital_vs_paper = {name: core.finish() for name, core in wallets.items()}
    kpis.nps = _nps(session, start, end, branch_id)
    kpis.winback = _winback(session, start, end)
    kpis.birthday = _winback(session, start, end, OfferKind.BIRTHDAY)
    kpis.promotions = _promotions(session, start, end, branch_id)
    kpis.referrals = _referrals(session, start, end, branch_id)
    if impact:
        kpis.impact = Impact(
            before_after=_before_after(session, end, branch_id),
            members_vs_paper={"members": wallets["digital"], "paper": wallets["paper"]},
            store=_store(session, settings, kpis),
        )

    kpis.program_costs = program_costs(settings, kpis.days, kpis.cards_issued_in_period)
    margin = float(settings.reports.gross_margin_pct) / 100
    gain = (kpis.revenue - kpis.discount_total) * margin - kpis.discount_total
    roi = rate(gain - kpis.program_costs, kpis.discount_total + kpis.program_costs)
    kpis.roi_pct = None if roi is None else roi * 100
    return kpis


# -------------------------------------------------------------------------- branches


@dataclass
class BranchFigures:
    """One row of the per-branch table (`by_branch`): the branch's purchases in P, their
    gross revenue and discounts, the cards that bought there, the NPS of the answers about its
    purchases, and the cards whose first purchase in the chain was made there in P."""

    branch_id: int
    name: str
    purchases: int = 0
    revenue: int = 0
    discount_total: int = 0
    active_cards: int = 0
    average_check: float | None = None
    average_discount_pct: float | None = None
    nps: float | None = None
    nps_answers: int = 0
    new_buyers: int = 0


def by_branch(session: Session, settings: Settings, first: date, last: date) -> list[BranchFigures]:
    """The per-branch table of the store days `first`…`last`: every branch that is open or
    sold in P, biggest revenue first (then by name). Three grouped queries, whatever the
    number of branches: the period's purchases per branch (`ix_purchases_branch`, one range
    per branch), the survey answers per branch of their purchase, and the new buyers per
    branch of their first purchase (one index seek per card that bought in or after P)."""
    if first > last:
        raise InvalidPeriod("order", f"{first} {last}")
    start, end = store_day_bounds(first, last, settings.store.tz)
    known = branches.load(session, settings)
    rows = {b.id: BranchFigures(b.id, b.name) for b in known}
    sold = session.execute(
        select(
            Purchase.branch_id,
            func.count(),
            func.sum(Purchase.amount),
            func.sum(Purchase.discount_amount),
            func.count(func.distinct(Purchase.card_id)),
        )
        .where(
            Purchase.branch_id.in_(list(rows)),
            Purchase.created_at >= start,
            Purchase.created_at < end,
            _not_voided(),
        )
        .group_by(Purchase.branch_id)
    )
    for branch_id, n, revenue, discount, cards in sold.all():
        row = rows[int(branch_id)]
        row.purchases, row.revenue = as_int(n), as_int(revenue)
        row.discount_total, row.active_cards = as_int(discount), as_int(cards)
    where = _survey_branch()
    answers = session.execute(
        select(where, *_nps_columns())
        .select_from(Survey)
        .outerjoin(Purchase, Purchase.id == Survey.purchase_id)
        .where(Survey.score.is_not(None), Survey.answered_at >= start, Survey.answered_at < end)
        .group_by(where)
    )
    for branch_id, *figures in answers.all():
        if (row := rows.get(int(branch_id))) is not None:
            nps = _nps_figures(*figures)
            row.nps, row.nps_answers = nps.score, nps.answers
    for branch_id, n in _new_buyers(session, start, end):
        if (row := rows.get(branch_id)) is not None:
            row.new_buyers = n
    for row in rows.values():
        row.average_check = rate(row.revenue, row.purchases)
        pct = rate(row.discount_total, row.revenue)
        row.average_discount_pct = None if pct is None else pct * 100
    shown = [rows[b.id] for b in known if b.is_open or rows[b.id].purchases]
    return sorted(shown, key=lambda row: (-row.revenue, row.name, row.branch_id))


def _new_buyers(session: Session, start: datetime, end: datetime) -> list[tuple[int, int]]:
    """(branch, cards) of the cards whose first non-voided purchase anywhere fell in [start,
    end), by the branch it was made in: per card that bought at or after `start` (its row
    says so), its first purchase (an index seek) and that purchase's branch."""
    p = aliased(Purchase, name="p")
    first_at = (
        select(func.min(p.created_at))
        .where(p.card_id == Card.id, p.voided_at.is_(None))
        .scalar_subquery()
    )
    firsts = (
        select(Card.id.label("card_id"), first_at.label("first_at"))
        .where(Card.last_purchase_at >= start)
        .subquery("firsts")
    )
    q = aliased(Purchase, name="q")
    where_sold = (
        select(q.branch_id)
        .where(
            q.card_id == firsts.c.card_id,
            q.voided_at.is_(None),
            q.created_at == firsts.c.first_at,
        )
        .order_by(q.id)
        .limit(1)
        .scalar_subquery()
    )
    news = (
        select(where_sold.label("branch_id"))
        .where(firsts.c.first_at >= start, firsts.c.first_at < end)
        .subquery("news")
    )
    rows = session.execute(select(news.c.branch_id, func.count()).group_by(news.c.branch_id)).all()
    return [(int(branch_id), as_int(n)) for branch_id, n in rows if branch_id is not None]


# ----------------------------------------------------------------------------- JSON


def _major(value: float | int | None, exponent: int) -> float | None:
    if value is None:
        return None
    return round(float(Decimal(str(value)).scaleb(-exponent)), 2)


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _plain(data: dict[str, Any], exponent: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = _plain(value, exponent)
        elif key in MONEY_KEYS:
            out[key] = _major(value, exponent)
        elif isinstance(value, float):
            out[key] = _ratio(value)
        else:
            out[key] = value
    return out


_CORE_JSON = (
    "cards_issued",
    "active_cards",
    "activity_rate",
    "purchases",
    "revenue",
    "discount_total",
    "average_check",
    "average_discount_pct",
    "frequency",
    "repeat_rate",
    "retention_rate",
    "spend_per_active_card",
)


def core_json(core: Core) -> dict[str, Any]:
    return {name: getattr(core, name) for name in _CORE_JSON}


_WALLET_JSON = ("active_cards", "purchases", "frequency", "average_check")


def impact_json(impact: Impact) -> dict[str, Any]:
    """`impact` of `kpi --json` (before `_plain` turns money into major units)."""
    store = asdict(impact.store)
    store["covered"] = [[a.isoformat(), b.isoformat()] for a, b in impact.store.covered]
    return {
        "before_after": asdict(impact.before_after),
        "members_vs_paper": {
            name: {key: getattr(core, key) for key in _WALLET_JSON}
            for name, core in impact.members_vs_paper.items()
        },
        "store": store,
        "causal": CAUSAL_FIGURE,
    }


def branch_json(row: BranchFigures, exponent: int) -> dict[str, Any]:
    """One row of `by_branch` in `kpi --json`: money in major units, ratios rounded."""
    return _plain(asdict(row), exponent)


def to_json(
    kpis: Kpis,
    exponent: int,
    rows: list[BranchFigures] | None = None,
    branch: str | None = None,
) -> dict[str, Any]:
    """The `kpi --json` contract: money in major units (2 decimals), ratios as numbers.
    `rows` (`by_branch`) become the `by_branch` list when given; `branch` (the name of the
    branch `kpis` is of) becomes `"branch"`."""
    data: dict[str, Any] = {"period": {"from": kpis.first.isoformat(), "to": kpis.last.isoformat()}}
    if branch is not None:
        data["branch"] = branch
    for f in fields(kpis):
        if f.name in ("first", "last", "branch_id"):
            continue
        value = getattr(kpis, f.name)
        if f.name in ("by_segment", "digital_vs_paper"):
            data[f.name] = {k: core_json(v) for k, v in value.items()}
        elif f.name in ("nps", "winback", "birthday", "promotions", "referrals"):
            data[f.name] = asdict(value)
        elif f.name == "impact":
            data[f.name] = impact_json(value)
        else:
            data[f.name] = value
    out = _plain(data, exponent)
    if rows is not None:
        out["by_branch"] = [branch_json(row, exponent) for row in rows]
    return out


def change_pct(current: float | int | None, previous: float | int | None) -> float | None:
    """Relative change in percent against the previous period; None without a base."""
    if current is None or not previous:
        return None
    return (current - previous) / abs(previous) * 100


# --------------------------------------------------------------------------- digest


@dataclass(frozen=True)
class WeekPoint:
    first: date
    last: date
    revenue: int
    active_cards: int
    nps_answers: int
    nps_score: float | None


def weekly_series(
    session: Session,
    settings: Settings,
    last: date,
    weeks: int = 12,
    branch_id: int | None = None,
) -> list[WeekPoint]:
    """Revenue, active cards and NPS per 7-day week ending `last` (oldest first), 2 queries;
    of the branch `branch_id`: its purchases and the answers about them."""
    bounds = []
    for i in range(weeks - 1, -1, -1):
        week_last = last - timedelta(days=7 * i)
        week_first = week_last - timedelta(days=6)
        bounds.append(
            (week_first, week_last, *store_day_bounds(week_first, week_last, settings.store.tz))
        )
    overall_start, overall_end = bounds[0][2], bounds[-1][3]

    def within(column: Any, s: datetime, e: datetime) -> ColumnElement[bool]:
        return and_(column >= s, column < e)

    here = [] if branch_id is None else [Purchase.branch_id == branch_id]
    # One small range query per week (index range scans), glued with UNION ALL.
    weekly = union_all(
        *(
            select(
                literal(i).label("week"),
                func.coalesce(func.sum(Purchase.amount), 0),
                func.count(func.distinct(Purchase.card_id)),
            ).where(_not_voided(), within(Purchase.created_at, s, e), *here)
            for i, (_f, _l, s, e) in enumerate(bounds)
        )
    )
    per_week = {int(w): (as_int(rev), as_int(act)) for w, rev, act in session.execute(weekly).all()}
    ncols = []
    for _f, _l, s, e in bounds:
        inside = within(Survey.answered_at, s, e)
        ncols.append(func.sum(case((and_(inside, Survey.score >= 9), 1), else_=0)))
        ncols.append(func.sum(case((and_(inside, Survey.score <= 6), 1), else_=0)))
        ncols.append(func.sum(case((inside, 1), else_=0)))
    answered = select(*ncols).where(
        Survey.score.is_not(None),
        Survey.answered_at >= overall_start,
        Survey.answered_at < overall_end,
    )
    if branch_id is not None:
        answered = answered.outerjoin(Purchase, Purchase.id == Survey.purchase_id).where(
            _survey_branch() == branch_id
        )
    nrow = session.execute(answered).one()
    series = []
    for i, (f, lst, _s, _e) in enumerate(bounds):
        promoters, detractors, answers = (as_int(nrow[3 * i + k]) for k in range(3))
        diff = rate(promoters - detractors, answers)
        revenue, active = per_week.get(i, (0, 0))
        series.append(
            WeekPoint(
                first=f,
                last=lst,
                revenue=revenue,
                active_cards=active,
                nps_answers=answers,
                nps_score=None if diff is None else diff * 100,
            )
        )
    return series


@dataclass(frozen=True)
class AtRiskCard:
    number: str
    last_purchase_at: datetime
    purchases: int
    total: int


def at_risk_cards(
    session: Session,
    settings: Settings,
    last: date,
    limit: int = 5,
    branch_id: int | None = None,
) -> list[AtRiskCard]:
    """The RFM `at_risk` cards at the end of `last`, biggest lifetime spend first; of the
    branch `branch_id`: scored over the cards' purchases there (their purchases, spend and
    last purchase in that branch)."""
    start, end = store_day_bounds(last, last, settings.store.tz)
    if branch_id is None:
        rfm = card_scores(start, start, end)
    else:
        rfm = branch_scores(branch_id, start, start, end)
    rows = session.execute(
        select(Card.number, rfm.c.last_at, rfm.c.life_n, rfm.c.life_total)
        .join(Card, Card.id == rfm.c.card_id)
        .where(rfm.c.rfm == "at_risk")
        .order_by(rfm.c.life_total.desc(), Card.number)
        .limit(limit)
    )
    return [AtRiskCard(num, at, as_int(n), as_int(total)) for num, at, n, total in rows.all()]


@dataclass(frozen=True)
class BusyCard:
    number: str
    day: date
    uses: int


@dataclass(frozen=True)
class GenerousCashier:
    cashier_id: int
    share_pct: float
    purchases: int
    others_mean_pct: float  # the mean share of the other cashiers of the same branch
    branch_id: int = MAIN_BRANCH_ID  # the branch where these sales were made


@dataclass(frozen=True)
class Anomalies:
    cards: list[BusyCard]
    cashiers: list[GenerousCashier]


def anomalies(
    session: Session,
    settings: Settings,
    first: date,
    last: date,
    branch_id: int | None = None,
) -> Anomalies:
    """Cards used more than ANOMALY_DAILY_USES times in one store day (in the whole chain, or
    in the branch `branch_id`); generous cashiers: a cashier's sales in a branch compared with
    the other cashiers' sales in that same branch (a cashier of two branches is judged in each
    on its own), of every branch or of `branch_id`."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    starts = [store_day_bounds(d, d, settings.store.tz)[0] for d in days]
    start, end = store_day_bounds(first, last, settings.store.tz)
    # The store day as an index computed in SQL from UTC bounds (DST-safe, any dialect).
    day_index = case(
        *((Purchase.created_at < s, literal(i - 1)) for i, s in enumerate(starts[1:], start=1)),
        else_=literal(len(days) - 1),
    ).label("day")
    here = [] if branch_id is None else [Purchase.branch_id == branch_id]
    busy = session.execute(
        select(Card.number, day_index, func.count().label("uses"))
        .join(Card, Card.id == Purchase.card_id)
        .where(_not_voided(), Purchase.created_at >= start, Purchase.created_at < end, *here)
        .group_by(Card.number, day_index)
        .having(func.count() > settings.reports.anomaly_daily_uses)
        .order_by(func.count().desc(), Card.number, day_index)
        .limit(20)
    )
    cards = [BusyCard(number, days[int(i)], as_int(uses)) for number, i, uses in busy.all()]
    per_cashier = session.execute(
        select(
            Purchase.branch_id,
            Purchase.cashier_id,
            func.count(),
            func.sum(Purchase.discount_amount),
            func.sum(Purchase.amount),
        )
        .where(
            _not_voided(),
            Purchase.cashier_id.is_not(None),
            Purchase.created_at >= start,
            Purchase.created_at < end,
            *here,
        )
        .group_by(Purchase.branch_id, Purchase.cashier_id)
        .order_by(Purchase.branch_id, Purchase.cashier_id)
    )
    shares: dict[int, dict[int, tuple[float, int]]] = {}
    for bid, cid, n, disc, gross in per_cashier.all():
        if n >= CASHIER_MIN_PURCHASES and gross:
            shares.setdefault(int(bid), {})[int(cid)] = (as_int(disc) / as_int(gross) * 100, n)
    generous = []
    for bid, cashiers in shares.items():
        for cid, (share, n) in cashiers.items():
            others = [s for other, (s, _n) in cashiers.items() if other != cid]
            if len(others) < 2:
                continue
            mean = statistics.fmean(others)
            if share > mean + 2 * statistics.pstdev(others) and share > 1.5 * statistics.median(
                others
            ):
                generous.append(GenerousCashier(cid, share, as_int(n), mean, bid))
    generous.sort(key=lambda g: (-g.share_pct, g.cashier_id, g.branch_id))
    return Anomalies(cards=cards, cashiers=generous)


@dataclass(frozen=True)
class Comment:
    score: int
    text: str
    answered_at: datetime


def detractor_comments(
    session: Session,
    settings: Settings,
    first: date,
    last: date,
    limit: int = 10,
    branch_id: int | None = None,
) -> list[Comment]:
    """What the period's detractors (0–6) wrote, newest first; of the branch `branch_id`:
    about its purchases."""
    start, end = store_day_bounds(first, last, settings.store.tz)
    query = select(Survey.score, Survey.comment, Survey.answered_at).where(
        Survey.score <= 6,
        Survey.comment.is_not(None),
        Survey.comment != "",
        Survey.answered_at >= start,
        Survey.answered_at < end,
    )
    if branch_id is not None:
        query = query.outerjoin(Purchase, Purchase.id == Survey.purchase_id).where(
            _survey_branch() == branch_id
        )
    rows = session.execute(query.order_by(Survey.answered_at.desc(), Survey.id.desc()).limit(limit))
    return [Comment(s, c, at) for s, c, at in rows.all()]
