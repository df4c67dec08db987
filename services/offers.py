"""Personal offers: win-back (with a random control group) and birthdays.

The till applies a valid, unredeemed offer automatically; this module only creates `Offer` rows
and the messages announcing them (`Delivery` kind "offer", marketing).

Win-back eligibility (`winback_sweep`): a client who is reachable, consented, not opted out,
not erased, has ≥ 1 non-voided purchase, and whose days since the last purchase are
≥ max(`WINBACK_MIN_DAYS`, `WINBACK_FACTOR` × median days between their own purchases) (one
purchase → just `WINBACK_MIN_DAYS`), with no win-back assignment in the last
`WINBACK_COOLDOWN_DAYS` (at least one day, so a second run on the same day never doubles).
Last purchases and the gaps between purchases are computed in SQL (window function) for the
clients past `WINBACK_MIN_DAYS` only; the median is taken per client in Python over that set.

Each eligible client independently lands in the control group with probability
`WINBACK_HOLDOUT_PCT` % (a Bernoulli draw, so small daily batches still feed the control group);
the assignment is recorded either way, and only the others get an offer.

Birthdays keep a control group the same way (`BIRTHDAY_HOLDOUT_PCT` %): every due client gets an
assignment of kind "birthday" (offered or control) once per birthday, so a control client is
not drawn again on the following days of the same birthday's window; the offered ones keep
their delivery key `birthday:<client>:<year>` as before.

The sweeps are units of work (`await offers.winback_sweep(db, …)`); `view` is a unit itself
(the delivery renderer reads with it). Two sweeps at once (two workers both running the jobs)
never give anyone a second offer: each client's row is locked before their eligibility is
checked again and the offer written, so the second sweep sees the first one's assignment or
message and leaves that client alone.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from db.database import Database
from db.models import (
    MAIN_BRANCH_ID,
    Branch,
    Card,
    CardStatus,
    Client,
    Delivery,
    Offer,
    OfferKind,
    Purchase,
    UTCDateTime,
    WinbackAssignment,
)
from db.prepared import Prepared
from db.sql import days_between
from services.delivery import OutboxMessage, queue_messages

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

OFFER_KIND = "offer"


@dataclass(frozen=True)
class WinbackResult:
    eligible: int
    control: int
    offered: int


def contactable() -> list[object]:
    """Clients an offer can reach and be used by: consented, reachable, not opted out, not
    erased, and holding a card the till accepts (an offer for someone whose only card is
    blocked could never be redeemed)."""
    usable_card = (
        select(Card.id)
        .where(Card.client_id == Client.id, Card.status != CardStatus.BLOCKED)
        .exists()
    )
    return [
        Client.tg_id.is_not(None),
        Client.erased_at.is_(None),
        Client.consent_at.is_not(None),
        Client.reachable.is_(True),
        Client.marketing_opt_out.is_(False),
        usable_card,
    ]


def _recent_winback(settings: Settings, now: datetime) -> Any:
    """A win-back assignment of the client within the cooldown (at least a day)."""
    cooldown_days = max(settings.engagement.winback_cooldown_days, 1)
    return (
        select(WinbackAssignment.id)
        .where(
            WinbackAssignment.client_id == Client.id,
            WinbackAssignment.kind == OfferKind.WINBACK,
            WinbackAssignment.assigned_at > now - timedelta(days=cooldown_days),
        )
        .exists()
    )


def winback_candidates(
    session: Session, settings: Settings, now: datetime
) -> list[tuple[int, int, datetime]]:
    """(client id, tg id, last purchase) of every client eligible for win-back now (a unit:
    `await db.read(offers.winback_candidates, settings, now)`)."""
    recent = _recent_winback(settings, now)
    last = (
        select(
            Card.client_id.label("client_id"),
            func.max(Purchase.created_at).label("last_at"),
        )
        .join(Purchase, Purchase.card_id == Card.id)
        .where(Card.client_id.is_not(None), Purchase.voided_at.is_(None))
        .group_by(Card.client_id)
        .subquery()
    )
    rows = session.execute(
        select(Client.id, Client.tg_id, last.c.last_at)
        .join(last, last.c.client_id == Client.id)
        .where(
            *contactable(),
            last.c.last_at <= now - timedelta(days=settings.engagement.winback_min_days),
            ~recent,
        )
        .order_by(Client.id)
    ).all()
    if not rows:
        return []
    ids = [row[0] for row in rows]
    gaps: dict[int, list[float]] = {}
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        previous = func.lag(Purchase.created_at).over(
            partition_by=Card.client_id, order_by=Purchase.created_at
        )
        ordered = (
            select(
                Card.client_id.label("client_id"),
                Purchase.created_at.label("at"),
                previous.label("prev_at"),
            )
            .join(Purchase, Purchase.card_id == Card.id)
            .where(Card.client_id.in_(chunk), Purchase.voided_at.is_(None))
            .subquery()
        )
        gap_days = days_between(ordered.c.at, ordered.c.prev_at)
        for client_id, gap in session.execute(
            select(ordered.c.client_id, gap_days).where(ordered.c.prev_at.is_not(None))
        ):
            gaps.setdefault(client_id, []).append(float(gap))
    eligible = []
    for client_id, tg_id, last_at in rows:
        client_gaps = gaps.get(client_id)
        threshold = float(settings.engagement.winback_min_days)
        if client_gaps:
            threshold = max(
                threshold, settings.engagement.winback_factor * statistics.median(client_gaps)
            )
        if (now - last_at).total_seconds() >= threshold * 86400 - 1e-6:
            eligible.append((client_id, tg_id, last_at))
    return eligible


async def winback_sweep(
    db: Database,
    settings: Settings,
    now: datetime,
    rng: random.Random | None = None,
) -> WinbackResult:
    """Assign today's eligible clients to offer/control and enqueue the offers."""
    return await db.write(_winback_sweep, settings, now, rng or random.Random())


def _still_eligible(session: Session, client_id: int, condition: Any) -> bool:
    """Lock the client's row, then check `condition` again: a sweep running at the same time
    (another worker) has then either finished with this client or not started on them. The
    check is a statement of its own, so that it sees what that sweep committed meanwhile."""
    session.execute(select(Client.id).where(Client.id == client_id).with_for_update())
    return session.scalar(select(Client.id).where(Client.id == client_id, condition)) is not None


def _assign(
    session: Session,
    assignment: WinbackAssignment,
    tg_id: int,
    bonus_pct: int,
    now: datetime,
    key: str | None,
) -> bool:
    """Record an automatic offer's assignment (win-back, birthday); unless it is in the control
    group, write the offer (valid until the assignment's window ends) and queue its message
    (`key`, else `<kind>:<assignment id>`). True when an offer was made."""
    if assignment.control:
        session.add(assignment)
        session.flush()
        return False
    offer = Offer(
        client_id=assignment.client_id,
        kind=assignment.kind,
        bonus_pct=bonus_pct,
        valid_from=now,
        valid_until=assignment.window_until,
        created_at=now,
    )
    session.add(offer)
    session.flush()
    assignment.offer_id = offer.id
    session.add(assignment)
    session.flush()
    message = OutboxMessage(
        key=key or f"{assignment.kind}:{assignment.id}",
        kind=OFFER_KIND,
        chat_id=tg_id,
        client_id=assignment.client_id,
        payload={"offer_id": offer.id},
        marketing=True,
    )
    queue_messages(session, [message], now)
    return True


def _winback_sweep(
    session: Session, settings: Settings, now: datetime, rng: random.Random
) -> WinbackResult:
    candidates = winback_candidates(session, settings, now)
    window_until = now + timedelta(days=settings.engagement.winback_valid_days)
    recent = _recent_winback(settings, now)
    eligible = control = offered = 0
    for client_id, tg_id, last_at in candidates:
        if not _still_eligible(session, client_id, ~recent):
            continue
        eligible += 1
        assignment = WinbackAssignment(
            kind=OfferKind.WINBACK,
            client_id=client_id,
            assigned_at=now,
            control=rng.random() * 100 < settings.engagement.winback_holdout_pct,
            window_until=window_until,
            last_purchase_at=last_at,
        )
        if _assign(session, assignment, tg_id, settings.engagement.winback_bonus_pct, now, None):
            offered += 1
        else:
            control += 1
    session.commit()
    return WinbackResult(eligible=eligible, control=control, offered=offered)


def _birthday_in(year: int, birthday: date) -> date:
    try:
        return birthday.replace(year=year)
    except ValueError:  # 29 February in a common year → 28 February
        return date(year, 2, 28)


def birthday_due(birthday: date, today: date, days_before: int) -> date | None:
    """This occurrence of the birthday if today is the day or within `days_before` before it."""
    for year in (today.year, today.year + 1):
        target = _birthday_in(year, birthday)
        if target - timedelta(days=days_before) <= today <= target:
            return target
    return None


async def birthday_sweep(
    db: Database, settings: Settings, now: datetime, rng: random.Random | None = None
) -> int:
    """Birthday offers due today (store date), once a year per client; how many were
    offered. Each due client lands in the control group with probability
    `BIRTHDAY_HOLDOUT_PCT` % (like win-back): recorded (`WinbackAssignment`, kind birthday),
    nothing sent, and not drawn again for this birthday."""
    if settings.engagement.birthday_bonus_pct <= 0:
        return 0
    return await db.write(_birthday_sweep, settings, now, rng or random.Random())


def _birthday_assigned(client_id: int, since: datetime) -> Any:
    """A birthday assignment (offered or control) of the client since `since`."""
    return (
        select(WinbackAssignment.id)
        .where(
            WinbackAssignment.client_id == client_id,
            WinbackAssignment.kind == OfferKind.BIRTHDAY,
            WinbackAssignment.assigned_at >= since,
        )
        .exists()
    )


def _birthday_sweep(session: Session, settings: Settings, now: datetime, rng: random.Random) -> int:
    tz = settings.store.tz
    today = now.astimezone(tz).date()
    days_before = settings.engagement.birthday_days_before
    clients = session.execute(
        select(Client.id, Client.tg_id, Client.birthday)
        .where(*contactable(), Client.birthday.is_not(None))
        .order_by(Client.id)
    ).all()
    due = []
    for client_id, tg_id, birthday in clients:
        target = birthday_due(birthday, today, days_before)
        if target is not None:
            # This birthday's window opens `days_before` days before it (store midnight).
            opens = datetime.combine(target - timedelta(days=days_before), time(), tz)
            due.append((client_id, tg_id, f"birthday:{client_id}:{target.year}", opens))
    if not due:
        return 0
    done = set(
        session.scalars(
            select(Delivery.key).where(Delivery.key.in_([due_[2] for due_ in due]))
        ).all()
    )
    window_until = now + timedelta(days=settings.engagement.birthday_valid_days)
    created = 0
    for client_id, tg_id, key, opens in due:
        if key in done:
            continue
        sent = select(Delivery.id).where(Delivery.key == key).exists()
        if not _still_eligible(session, client_id, ~sent & ~_birthday_assigned(client_id, opens)):
            continue
        assignment = WinbackAssignment(
            kind=OfferKind.BIRTHDAY,
            client_id=client_id,
            assigned_at=now,
            control=rng.random() * 100 < settings.engagement.birthday_holdout_pct,
            window_until=window_until,
        )
        if _assign(session, assignment, tg_id, settings.engagement.birthday_bonus_pct, now, key):
            created += 1
    session.commit()
    return created


@dataclass(frozen=True)
class OfferView:
    """An offer as the till, the wallet and its message show it: one shape for all three."""

    id: int
    kind: str
    bonus_pct: int
    valid_until: datetime
    usable: bool = True  # not redeemed, not cancelled, not expired
    first_name: str | None = None  # the holder's, for the message that announces it


@cache
def _active_statement() -> Prepared:
    offers = Offer.__table__.c
    now = bindparam("p_now", type_=UTCDateTime())
    return Prepared(
        select(offers.id, offers.kind, offers.bonus_pct, offers.valid_until)
        .where(offers.client_id == bindparam("p_client"), *Offer.active_at(now, offers))
        .order_by(offers.valid_until, offers.id)
    )


def active_offers(session: Session, client_id: int, now: datetime) -> list[OfferView]:
    """The client's offers usable at `now`, soonest to expire first: what the till applies
    and what the customer sees in /offers (the one query for both; the till reads it often)."""
    rows = _active_statement().execute(session, {"p_client": client_id, "p_now": now})
    return [OfferView(*row) for row in rows.all()]


def usual_branch(session: Session, settings: Settings, client_id: int) -> str | None:
    """The name of the client's usual branch: where most of their non-voided purchases were
    made (a tie goes to the branch of the latest one); None outside a chain (one branch row)
    or before a first purchase. One statement, read when a message is rendered."""
    usual = (
        select(Purchase.branch_id)
        .join(Card, Card.id == Purchase.card_id)
        .where(Card.client_id == client_id, Purchase.voided_at.is_(None))
        .group_by(Purchase.branch_id)
        .order_by(
            func.count().desc(), func.max(Purchase.created_at).desc(), Purchase.branch_id.desc()
        )
        .limit(1)
        .scalar_subquery()
    )
    chain = select(func.count()).select_from(Branch).scalar_subquery() > 1
    row = session.execute(select(Branch.id, Branch.name).where(chain, Branch.id == usual)).first()
    if row is None:
        return None
    return settings.store.name if row.id == MAIN_BRANCH_ID else row.name


def usual_branches() -> Any:
    """(client_id, branch_id): every client's usual branch, by the rule of `usual_branch`
    (most non-voided purchases, a tie to the latest one), for a whole audience at once."""
    per = (
        select(
            Card.client_id.label("client_id"),
            Purchase.branch_id.label("branch_id"),
            func.count().label("purchases"),
            func.max(Purchase.created_at).label("last_at"),
        )
        .join(Card, Card.id == Purchase.card_id)
        .where(Card.client_id.is_not(None), Purchase.voided_at.is_(None))
        .group_by(Card.client_id, Purchase.branch_id)
        .subquery()
    )
    rank = func.row_number().over(
        partition_by=per.c.client_id,
        order_by=(per.c.purchases.desc(), per.c.last_at.desc(), per.c.branch_id.desc()),
    )
    ranked = select(per.c.client_id, per.c.branch_id, rank.label("rank")).subquery()
    return select(ranked.c.client_id, ranked.c.branch_id).where(ranked.c.rank == 1)


def view(session: Session, offer_id: int, now: datetime) -> OfferView | None:
    """A unit that reads one offer (`await db.read(offers.view, offer_id, now)`)."""
    row = session.execute(
        select(Offer, Client.first_name)
        .join(Client, Client.id == Offer.client_id)
        .where(Offer.id == offer_id)
    ).first()
    if row is None:
        return None
    offer, first_name = row
    usable = offer.redeemed_at is None and offer.cancelled_at is None and offer.valid_until > now
    return OfferView(offer.id, offer.kind, offer.bonus_pct, offer.valid_until, usable, first_name)
