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
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from db.models import (
    Card,
    CardStatus,
    Client,
    Delivery,
    Offer,
    OfferKind,
    Purchase,
    WinbackAssignment,
)
from db.sql import days_between
from services import delivery

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

OFFER_KIND = "offer"


@dataclass(frozen=True)
class WinbackResult:
    eligible: int
    control: int
    offered: int


def _contactable() -> list[object]:
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


async def winback_candidates(
    session: AsyncSession, settings: Settings, now: datetime
) -> list[tuple[int, int, datetime]]:
    """(client id, tg id, last purchase) of every client eligible for win-back now."""
    cooldown_days = max(settings.engagement.winback_cooldown_days, 1)
    recent = (
        select(WinbackAssignment.id)
        .where(
            WinbackAssignment.client_id == Client.id,
            WinbackAssignment.assigned_at > now - timedelta(days=cooldown_days),
        )
        .exists()
    )
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
    rows = (
        await session.execute(
            select(Client.id, Client.tg_id, last.c.last_at)
            .join(last, last.c.client_id == Client.id)
            .where(
                *_contactable(),
                last.c.last_at <= now - timedelta(days=settings.engagement.winback_min_days),
                ~recent,
            )
            .order_by(Client.id)
        )
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
        for client_id, gap in await session.execute(
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
    session: AsyncSession,
    settings: Settings,
    now: datetime,
    rng: random.Random | None = None,
) -> WinbackResult:
    """Assign today's eligible clients to offer/control and enqueue the offers. Commits."""
    rng = rng or random.Random()
    candidates = await winback_candidates(session, settings, now)
    window_until = now + timedelta(days=settings.engagement.winback_valid_days)
    control = offered = 0
    for client_id, tg_id, last_at in candidates:
        in_control = rng.random() * 100 < settings.engagement.winback_holdout_pct
        assignment = WinbackAssignment(
            client_id=client_id,
            assigned_at=now,
            control=in_control,
            window_until=window_until,
            last_purchase_at=last_at,
        )
        if in_control:
            session.add(assignment)
            control += 1
            continue
        offer = Offer(
            client_id=client_id,
            kind=OfferKind.WINBACK,
            bonus_pct=settings.engagement.winback_bonus_pct,
            valid_from=now,
            valid_until=window_until,
            created_at=now,
        )
        session.add(offer)
        await session.flush()
        assignment.offer_id = offer.id
        session.add(assignment)
        await session.flush()
        await delivery.enqueue(
            session,
            key=f"winback:{assignment.id}",
            kind=OFFER_KIND,
            chat_id=tg_id,
            client_id=client_id,
            payload={"offer_id": offer.id},
            due_at=now,
            marketing=True,
        )
        offered += 1
    await session.commit()
    return WinbackResult(eligible=len(candidates), control=control, offered=offered)


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


async def birthday_sweep(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """Birthday offers due today (store date), once a year per client. Commits."""
    if settings.engagement.birthday_bonus_pct <= 0:
        return 0
    today = now.astimezone(settings.store.tz).date()
    clients = (
        await session.execute(
            select(Client.id, Client.tg_id, Client.birthday)
            .where(*_contactable(), Client.birthday.is_not(None))
            .order_by(Client.id)
        )
    ).all()
    due = []
    for client_id, tg_id, birthday in clients:
        target = birthday_due(birthday, today, settings.engagement.birthday_days_before)
        if target is not None:
            due.append((client_id, tg_id, f"birthday:{client_id}:{target.year}"))
    if not due:
        return 0
    done = set(
        (
            await session.scalars(
                select(Delivery.key).where(Delivery.key.in_([key for _, _, key in due]))
            )
        ).all()
    )
    created = 0
    for client_id, tg_id, key in due:
        if key in done:
            continue
        offer = Offer(
            client_id=client_id,
            kind=OfferKind.BIRTHDAY,
            bonus_pct=settings.engagement.birthday_bonus_pct,
            valid_from=now,
            valid_until=now + timedelta(days=settings.engagement.birthday_valid_days),
            created_at=now,
        )
        session.add(offer)
        await session.flush()
        await delivery.enqueue(
            session,
            key=key,
            kind=OFFER_KIND,
            chat_id=tg_id,
            client_id=client_id,
            payload={"offer_id": offer.id},
            due_at=now,
            marketing=True,
        )
        created += 1
    await session.commit()
    return created


@dataclass(frozen=True)
class OfferView:
    id: int
    kind: str
    bonus_pct: int
    valid_until: datetime
    usable: bool
    first_name: str | None


def view(session: Session, offer_id: int, now: datetime) -> OfferView | None:
    """A unit of work (`db.read(offers.view, offer_id, now)`)."""
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
