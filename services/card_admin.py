"""Owner tools on cards and people: block a lost card (and unblock it when it turns up), unbind
a card, the staff overview and the audit trail.

Each coroutine takes the `Database` and runs one unit of work. The changes lock the card's row
first (PostgreSQL: `FOR UPDATE`), so two owners (or two taps) changing one card take turns and
the second sees what the first did: one change, one audit event, one note to the holder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.database import Database
from db.models import AuditEvent, Card, CardStatus, Client, Purchase
from services import audit
from services.cards import get_registered
from services.errors import DomainError

LOST_REASON = "lost"
# Blocks the owner may lift: their own (a lost card that turned up). A card blocked because its
# holder erased their data or moved to another card must stay blocked (`privacy`, `wallet`).
UNBLOCKABLE: frozenset[str | None] = frozenset({LOST_REASON, None})


class CannotUnblock(DomainError):
    """A blocked card that must stay blocked. `reason`: the card's `block_reason` (`erased`,
    `replaced`, …), or `holder_erased` / `holder_has_card` (then `other_number` is set)."""

    def __init__(self, number: str, reason: str, other_number: str | None = None) -> None:
        super().__init__(f"card {number} cannot be unblocked: {reason}")
        self.number = number
        self.reason = reason
        self.other_number = other_number


@dataclass(frozen=True)
class CardChange:
    """What an owner action did; `notify_*` is set when the bound client can be told."""

    number: str
    changed: bool  # False: nothing to do (already blocked / not bound)
    notify_tg_id: int | None = None
    notify_language: str | None = None


def _reachable_holder(session: Session, card: Card) -> Client | None:
    if card.client_id is None:
        return None
    client = session.get(Client, card.client_id)
    if client is None or client.tg_id is None or not client.reachable:
        return None
    return client


async def block_card(
    db: Database, text: str, *, actor_id: int, now: datetime, reason: str = LOST_REASON
) -> CardChange:
    """Block a card (lost or stolen): the till refuses it from now on. Idempotent."""
    return await db.write(_block_card, text, actor_id, now, reason)


def _block_card(
    session: Session, text: str, actor_id: int, now: datetime, reason: str
) -> CardChange:
    card = get_registered(session, text, for_update=True)
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
    holder = _reachable_holder(session, card)
    session.commit()
    return CardChange(
        card.number,
        changed=True,
        notify_tg_id=holder.tg_id if holder else None,
        notify_language=holder.language if holder else None,
    )


async def unbind_card(db: Database, text: str, *, actor_id: int, now: datetime) -> CardChange:
    """Detach a card from its Telegram account (to hand it to someone else, or after a
    mistaken binding). The status is kept: an issued card stays issued."""
    return await db.write(_unbind_card, text, actor_id, now)


def _unbind_card(session: Session, text: str, actor_id: int, now: datetime) -> CardChange:
    card = get_registered(session, text, for_update=True)
    if card.client_id is None:
        return CardChange(card.number, changed=False)
    holder = _reachable_holder(session, card)
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
    session.commit()
    return CardChange(
        card.number,
        changed=True,
        notify_tg_id=holder.tg_id if holder else None,
        notify_language=holder.language if holder else None,
    )


async def unblock_card(db: Database, text: str, *, actor_id: int, now: datetime) -> CardChange:
    """Lift a block made for a lost card: the card is issued again (in stock if it never was
    handed out) and its holder, if any, may use it again. Refuses (`CannotUnblock`) a card
    blocked for any other reason, a card whose holder's data is erased, and a card whose
    holder has linked another card since (one account holds one active card). Idempotent:
    an unblocked card is left alone (`changed=False`)."""
    return await db.write(_unblock_card, text, actor_id, now)


def _unblock_card(session: Session, text: str, actor_id: int, now: datetime) -> CardChange:
    card = get_registered(session, text)
    if card.client_id is not None:
        # The holder's row first, as a binding takes it (client, then card: no deadlock): a
        # replacement linked at this moment is seen below, or sees this card active again.
        session.execute(select(Client.id).where(Client.id == card.client_id).with_for_update())
    session.refresh(card, with_for_update=True)
    if card.status != CardStatus.BLOCKED:
        return CardChange(card.number, changed=False)
    reason = card.block_reason
    if reason not in UNBLOCKABLE:
        raise CannotUnblock(card.number, reason or "unknown")
    holder = None
    if card.client_id is not None:
        holder = session.get(Client, card.client_id)
        if holder is None or holder.erased_at is not None:
            raise CannotUnblock(card.number, "holder_erased")
        other = session.scalar(
            select(Card.number)
            .where(
                Card.client_id == card.client_id,
                Card.id != card.id,
                Card.status != CardStatus.BLOCKED,
            )
            .limit(1)
        )
        if other is not None:
            raise CannotUnblock(card.number, "holder_has_card", other)
    card.status = CardStatus.ISSUED if card.issued_at is not None else CardStatus.IN_STOCK
    card.blocked_at = None
    card.block_reason = None
    audit.record(
        session,
        "card.unblocked",
        at=now,
        actor_id=actor_id,
        card_id=card.id,
        client_id=card.client_id,
        previous_reason=reason,
        status=card.status,
    )
    tell = holder if holder is not None and holder.tg_id is not None and holder.reachable else None
    session.commit()
    return CardChange(
        card.number,
        changed=True,
        notify_tg_id=tell.tg_id if tell else None,
        notify_language=tell.language if tell else None,
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
    db: Database, *, since: datetime, cashiers: int = 20, events: int = 20
) -> StaffOverview:
    """Who recorded purchases since `since` (most recent first) and the latest audit events."""
    return await db.read(_staff_overview, since, cashiers, events)


def _staff_overview(session: Session, since: datetime, cashiers: int, events: int) -> StaffOverview:
    activity = session.execute(
        select(Purchase.cashier_id, func.count(), func.max(Purchase.created_at))
        .where(Purchase.cashier_id.is_not(None), Purchase.created_at >= since)
        .group_by(Purchase.cashier_id)
        .order_by(func.max(Purchase.created_at).desc(), Purchase.cashier_id)
        .limit(cashiers)
    )
    return StaffOverview(
        cashiers=[CashierActivity(int(tg), int(n), last) for tg, n, last in activity.all()],
        events=_audit_trail(session, None, events),
    )


async def audit_trail(
    db: Database, *, card_text: str | None = None, limit: int = 20
) -> list[AuditLine]:
    """The latest audit events, newest first; only those of one card with `card_text`."""
    return await db.read(_audit_trail, card_text, limit)


def _audit_trail(session: Session, card_text: str | None, limit: int) -> list[AuditLine]:
    query = (
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
        .limit(limit)
    )
    if card_text is not None:
        card = get_registered(session, card_text)
        query = query.where(AuditEvent.card_id == card.id)
    return [AuditLine(*row) for row in session.execute(query).all()]
