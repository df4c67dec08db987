"""Owner tools on cards and people: block a lost card, unbind a card, the staff overview."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEvent, Card, CardStatus, Client, Purchase
from services import audit
from services.cards import get_registered

LOST_REASON = "lost"


@dataclass(frozen=True)
class CardChange:
    """What an owner action did; `notify_*` is set when the bound client can be told."""

    number: str
    changed: bool  # False: nothing to do (already blocked / not bound)
    notify_tg_id: int | None = None
    notify_language: str | None = None


async def _reachable_holder(session: AsyncSession, card: Card) -> Client | None:
    if card.client_id is None:
        return None
    client = await session.get(Client, card.client_id)
    if client is None or client.tg_id is None or not client.reachable:
        return None
    return client


async def block_card(
    session: AsyncSession, text: str, *, actor_id: int, now: datetime, reason: str = LOST_REASON
) -> CardChange:
    """Block a card (lost or stolen): the till refuses it from now on. Idempotent."""
    card = await get_registered(session, text)
    if card.status == CardStatus.BLOCKED:
        return CardChange(card.number, changed=False)
    previous = card.status
    card.status = CardStatus.BLOCKED
    card.blocked_at = now
    card.block_reason = reason
    audit.record(
        session,
        "card.blocked",
        at=now,
        actor_id=actor_id,
        card_id=card.id,
        client_id=card.client_id,
        reason=reason,
        previous_status=previous,
    )
    holder = await _reachable_holder(session, card)
    await session.commit()
    return CardChange(
        card.number,
        changed=True,
        notify_tg_id=holder.tg_id if holder else None,
        notify_language=holder.language if holder else None,
    )


async def unbind_card(
    session: AsyncSession, text: str, *, actor_id: int, now: datetime
) -> CardChange:
    """Detach a card from its Telegram account (to hand it to someone else, or after a
    mistaken binding). The status is kept: an issued card stays issued."""
    card = await get_registered(session, text)
    if card.client_id is None:
        return CardChange(card.number, changed=False)
    holder = await _reachable_holder(session, card)
    audit.record(
        session,
        "card.unbound",
        at=now,
        actor_id=actor_id,
        card_id=card.id,
        client_id=card.client_id,
    )
    card.client_id = None
    card.bound_at = None
    card.image_key = None
    card.image_file_id = None
    await session.commit()
    return CardChange(
        card.number,
        changed=True,
        notify_tg_id=holder.tg_id if holder else None,
        notify_language=holder.language if holder else None,
    )


@dataclass(frozen=True)
class CashierActivity:
    tg_id: int
    purchases: int
    last_at: datetime


@dataclass(frozen=True)
class AuditLine:
    at: datetime
    action: str
    actor_id: int | None
    card_number: str | None
    client_id: int | None
    purchase_id: int | None


@dataclass(frozen=True)
class StaffOverview:
    cashiers: list[CashierActivity]
    events: list[AuditLine]


async def staff_overview(
    session: AsyncSession, *, since: datetime, cashiers: int = 20, events: int = 20
) -> StaffOverview:
    """Who recorded purchases since `since` (most recent first) and the latest audit events."""
    activity = await session.execute(
        select(Purchase.cashier_id, func.count(), func.max(Purchase.created_at))
        .where(Purchase.cashier_id.is_not(None), Purchase.created_at >= since)
        .group_by(Purchase.cashier_id)
        .order_by(func.max(Purchase.created_at).desc())
        .limit(cashiers)
    )
    latest = await session.execute(
        select(
            AuditEvent.at,
            AuditEvent.action,
            AuditEvent.actor_id,
            Card.number,
            AuditEvent.client_id,
            AuditEvent.purchase_id,
        )
        .outerjoin(Card, Card.id == AuditEvent.card_id)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(events)
    )
    return StaffOverview(
        cashiers=[CashierActivity(int(tg), int(n), last) for tg, n, last in activity.all()],
        events=[AuditLine(*row) for row in latest.all()],
    )
