"""Data rights: export everything stored about a person, erase it, marketing opt-out, retention.

Erasure keeps the ledger whole. The client row stays (anonymised: every personal column NULL,
`erased_at` set) and so do its cards and purchases, so every KPI of a past period — revenue,
purchases, active cards, LTV, cards bound at the end of a past period, NPS scores — adds up
exactly as before. What goes:

* the client's Telegram id, first/last name, username, phone, birthday, consent record, the
  survey comments they wrote, and their answer to why they take part (the `motivations` row,
  comment and all: the digest's counts of reasons lose that answer);
* their Telegram id wherever else it appears: audit-event actors, binding attempts, delivery
  chat ids, and any JSON detail that repeats one of the personal values;
* pending messages to them (deliveries → skipped);
* their invite code (`services.referrals`): referral rows hold only client ids and stay, so the
  referral figures of past periods add up as before.

Their cards are blocked with `block_reason = "erased"`: `client_id` keeps pointing at the
anonymised row (so per-client aggregates and the "bound at the end of P" history do not
change), but nobody can use or rebind the card, and the anonymised row can never be reached
again — it has no Telegram id. If the person comes back with /start they are a new client.

Staff ledgers (`purchases.cashier_id`, `sale_drafts`) are the store's accounting records of its
employees' actions and are left alone even if the erased person also works there; audit events
lose the actor id wherever it is the erased person's Telegram id (privacy first: the ledger
still says which cashier recorded which sale).

Every public coroutine takes the `Database` and runs its work as units of work: an erasure is
one unit (all of it or nothing), a retention pass one short unit per client. Two erasures of
one person at once (a double tap) take turns on the client's row: the second finds nobody.
"""

from __future__ import annotations

import json
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Text, and_, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session

from db.database import Database
from db.engine import scrub_wal
from db.models import (
    AuditEvent,
    BindAttempt,
    Card,
    CardStatus,
    Client,
    ConversationState,
    Delivery,
    DeliveryStatus,
    Motivation,
    Offer,
    Purchase,
    Survey,
)
from db.sql import greatest
from services import audit, campaigns, referrals

ERASED_REASON = "erased"
EXPORT_FORMAT = 1
_SCRUBBED = "[erased]"


# ------------------------------------------------------------------------------------ export


def _iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value.isoformat()


def _major(minor: int, exponent: int) -> str:
    """Minor units as an exact decimal string in major units (`250050` → `"2500.50"`)."""
    if exponent == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}"


def find_client(session: Session, tg_id: int, *, for_update: bool = False) -> Client | None:
    """The client with this Telegram id (a unit's helper); `for_update` locks the row."""
    statement = select(Client).where(Client.tg_id == tg_id)
    if for_update:
        statement = statement.with_for_update()
    return session.scalar(statement)


@dataclass(frozen=True)
class Membership:
    """What the privacy screens show about someone stored: their consent."""

    consent_at: datetime | None
    consent_version: str | None


async def membership(db: Database, tg_id: int) -> Membership | None:
    """The person's consent record; None when nothing is stored about them."""
    return await db.read(_membership, tg_id)


def _membership(session: Session, tg_id: int) -> Membership | None:
    client = find_client(session, tg_id)
    return None if client is None else Membership(client.consent_at, client.consent_version)


async def export_client_data(
    db: Database, tg_id: int, *, exponent: int = 2, currency: str | None = None
) -> dict[str, Any] | None:
    """Everything stored about the Telegram user `tg_id`, JSON-ready; None if nothing is."""
    return await db.read(_export_client_data, tg_id, exponent, currency)


def _export_client_data(
    session: Session, tg_id: int, exponent: int, currency: str | None
) -> dict[str, Any] | None:
    client = find_client(session, tg_id)
    if client is None:
        return None
    cards = session.scalars(select(Card).where(Card.client_id == client.id)).all()
    card_numbers = {card.id: card.number for card in cards}
    purchases = session.scalars(
        select(Purchase)
        .where(Purchase.card_id.in_(list(card_numbers)))
        .order_by(Purchase.created_at, Purchase.id)
    ).all()
    surveys = session.scalars(
        select(Survey).where(Survey.client_id == client.id).order_by(Survey.created_at)
    ).all()
    offers = session.scalars(
        select(Offer).where(Offer.client_id == client.id).order_by(Offer.created_at)
    ).all()
    motivation = session.get(Motivation, client.id)
    deliveries = session.scalars(
        select(Delivery)
        .where(or_(Delivery.client_id == client.id, Delivery.chat_id == tg_id))
        .order_by(Delivery.due_at, Delivery.id)
    ).all()
    events = session.scalars(
        select(AuditEvent)
        # Their own events; not what they did as an employee to other people's records.
        .where(
            or_(
                AuditEvent.client_id == client.id,
                and_(AuditEvent.actor_id == tg_id, AuditEvent.client_id.is_(None)),
            )
        )
        .order_by(AuditEvent.at, AuditEvent.id)
    ).all()
    attempts = session.scalars(
        select(BindAttempt).where(BindAttempt.tg_id == tg_id).order_by(BindAttempt.at)
    ).all()
    consent_events = [
        event for event in events if "consent" in event.action or "marketing" in event.action
    ]
    return {
        "format": EXPORT_FORMAT,
        "currency": currency,
        "profile": {
            "telegram_id": client.tg_id,
            "first_name": client.first_name,
            "last_name": client.last_name,
            "username": client.username,
            "language": client.language,
            "phone": client.phone,
            "birthday": _iso(client.birthday),
            "member_since": _iso(client.created_at),
            "last_seen_at": _iso(client.last_seen_at),
            "marketing_messages": not client.marketing_opt_out,
            "reachable": client.reachable,
        },
        "consent": {
            "accepted_at": _iso(client.consent_at),
            "policy_version": client.consent_version,
            "history": [_event(event) for event in consent_events],
        },
        "cards": [
            {
                "number": card.number,
                "discount_pct": card.base_pct,
                "segment": card.segment,
                "kind": card.kind,
                "status": card.status,
                "issued_at": _iso(card.issued_at),
                "bound_at": _iso(card.bound_at),
                "blocked_at": _iso(card.blocked_at),
            }
            for card in cards
        ],
        "purchases": [
            {
                "id": p.id,
                "card": card_numbers.get(p.card_id),
                "at": _iso(p.created_at),
                "amount": _major(p.amount, exponent),
                "discount_pct": p.discount_pct,
                "discount": _major(p.discount_amount, exponent),
                "paid": _major(p.paid_amount, exponent),
                "offer_id": p.offer_id,
                "source": p.source,
                "voided_at": _iso(p.voided_at),
            }
            for p in purchases
        ],
        "surveys": [
            {
                "purchase_id": s.purchase_id,
                "asked_at": _iso(s.sent_at or s.created_at),
                "score": s.score,
                "answered_at": _iso(s.answered_at),
                "comment": s.comment,
            }
            for s in surveys
        ],
        "why_you_take_part": None
        if motivation is None
        else {
            "asked_at": _iso(motivation.asked_at),
            "answered_at": _iso(motivation.answered_at),
            "reason": motivation.reason,
            "comment": motivation.comment,
        },
        "offers": [
            {
                "id": o.id,
                "kind": o.kind,
                "bonus_pct": o.bonus_pct,
                "valid_from": _iso(o.valid_from),
                "valid_until": _iso(o.valid_until),
                "redeemed_purchase_id": o.redeemed_purchase_id,
                "redeemed_at": _iso(o.redeemed_at),
                "cancelled_at": _iso(o.cancelled_at),
            }
            for o in offers
        ],
        "deliveries": [
            {
                "kind": d.kind,
                "marketing": d.marketing,
                "status": d.status,
                "due_at": _iso(d.due_at),
                "sent_at": _iso(d.sent_at),
                "attempts": d.attempts,
                "content": d.payload,
            }
            for d in deliveries
        ],
        "referrals": referrals.member_data(session, client.id),
        "campaigns": campaigns.member_campaigns(session, client.id),
        "card_binding_attempts": [
            {"at": _iso(a.at), "card": a.card_number, "success": a.success} for a in attempts
        ],
        "events": [_event(event) for event in events],
    }


def _event(event: AuditEvent) -> dict[str, Any]:
    return {"at": _iso(event.at), "action": event.action, "details": event.details or {}}


def export_json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False).encode("utf-8")


# ----------------------------------------------------------------------------------- erasure


def _personal_values(client: Client) -> list[str]:
    values = [client.first_name, client.last_name, client.username, client.phone]
    if client.username:
        values.append(f"@{client.username}")
    if client.birthday is not None:
        values.append(client.birthday.isoformat())
    if client.tg_id is not None:
        values.append(str(client.tg_id))
    # Very short values ("A", "Li") would scrub unrelated text: names of 3+ characters only.
    return sorted({v for v in values if v and len(v.strip()) >= 3}, key=len, reverse=True)


def _scrub(value: Any, needles: list[str], tg_id: int | None) -> Any:
    """Replace every personal value inside a JSON document (keys kept, values scrubbed)."""
    if isinstance(value, dict):
        return {key: _scrub(item, needles, tg_id) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item, needles, tg_id) for item in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and tg_id is not None and value == tg_id:
        return None
    if isinstance(value, str):
        for needle in needles:
            if needle in value:
                value = value.replace(needle, _SCRUBBED)
        return value
    return value


def _erase(session: Session, client: Client, *, now: datetime, reason: str, language: str) -> None:
    """Anonymise one client inside the caller's unit of work."""
    tg_id = client.tg_id
    needles = _personal_values(client)
    comment_rows = [
        *session.scalars(
            select(Survey.comment).where(Survey.client_id == client.id, Survey.comment.is_not(None))
        ),
        *session.scalars(
            select(Motivation.comment).where(
                Motivation.client_id == client.id, Motivation.comment.is_not(None)
            )
        ),
    ]
    # A comment may be repeated in an audit event (e.g. "detractor said ..."); only comments
    # long enough to be unambiguous are searched for.
    needles = sorted(
        set(needles) | {c for c in comment_rows if c and len(c) >= 8}, key=len, reverse=True
    )

    # Audit events about or by the person: the actor id goes, personal values in details too.
    conditions = [AuditEvent.client_id == client.id]
    if tg_id is not None:
        conditions.append(AuditEvent.actor_id == tg_id)
    # JSON columns are stored with non-ASCII characters escaped (\uXXXX): search both forms.
    forms = {form for n in needles for form in (n, json.dumps(n)[1:-1])}
    conditions += [cast(AuditEvent.details, Text).contains(form, autoescape=True) for form in forms]
    for event in session.scalars(select(AuditEvent).where(or_(*conditions))).all():
        if tg_id is not None and event.actor_id == tg_id:
            event.actor_id = None
        if event.details:
            event.details = _scrub(event.details, needles, tg_id)

    session.execute(
        update(Delivery)
        .where(Delivery.client_id == client.id, Delivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.SKIPPED, last_error=ERASED_REASON, next_attempt_at=None)
    )
    delivery_conditions = [Delivery.client_id == client.id]
    delivery_conditions += [
        cast(Delivery.payload, Text).contains(f, autoescape=True) for f in forms
    ]
    if tg_id is not None:
        delivery_conditions.append(Delivery.chat_id == tg_id)
    for delivery in session.scalars(select(Delivery).where(or_(*delivery_conditions))).all():
        if tg_id is not None and delivery.chat_id == tg_id:
            delivery.chat_id = None
            if delivery.status == DeliveryStatus.PENDING:
                delivery.status = DeliveryStatus.SKIPPED
                delivery.last_error = ERASED_REASON
        if delivery.payload:
            delivery.payload = _scrub(delivery.payload, needles, tg_id)
    if tg_id is not None:
        session.execute(delete(BindAttempt).where(BindAttempt.tg_id == tg_id))
        # Their half-finished conversations (bot/fsm_storage.py keys "fsm:bot:chat:user:…").
        session.execute(delete(ConversationState).where(ConversationState.key.like(f"%:{tg_id}:%")))

    session.execute(update(Survey).where(Survey.client_id == client.id).values(comment=None))
    session.execute(delete(Motivation).where(Motivation.client_id == client.id))
    referrals.erase(session, client.id)  # the invite code; referral rows hold only ids
    session.execute(
        update(Card)
        .where(Card.client_id == client.id, Card.status != CardStatus.BLOCKED)
        .values(status=CardStatus.BLOCKED, blocked_at=now, block_reason=ERASED_REASON)
    )
    # The card image may show the holder's name: forget it (a new one is drawn if ever needed).
    session.execute(
        update(Card).where(Card.client_id == client.id).values(image_key=None, image_file_id=None)
    )

    client.tg_id = None
    client.first_name = None
    client.last_name = None
    client.username = None
    client.phone = None
    client.birthday = None
    client.language = language
    client.consent_at = None
    client.consent_version = None
    client.last_seen_at = None
    client.reachable = False
    client.marketing_opt_out = True
    client.erased_at = now
    # No personal data in the event: the anonymised row id is enough to find what changed.
    audit.record(session, "client.erased", at=now, client_id=client.id, reason=reason)


async def erase_client(
    db: Database,
    tg_id: int,
    now: datetime,
    *,
    reason: str = "request",
    default_language: str = "ru",
) -> bool:
    """Erase the person's personal data (see the module docstring). False: nothing stored."""
    erased = await db.write(_erase_client, tg_id, now, reason, default_language)
    if erased:
        await _leave_no_bytes(db)
    return erased


def _erase_client(
    session: Session, tg_id: int, now: datetime, reason: str, default_language: str
) -> bool:
    client = find_client(session, tg_id, for_update=True)
    if client is None:
        return False
    _erase(session, client, now=now, reason=reason, language=default_language)
    session.commit()
    return True


async def _leave_no_bytes(db: Database) -> None:
    """The erased values are zeroed in the database file (`secure_delete`); the log still holds
    older page images until a checkpoint: run it now (`db.engine.scrub_wal`)."""
    await db.write(scrub_wal)


# --------------------------------------------------------------------------------- marketing


async def set_marketing(db: Database, tg_id: int, enabled: bool, now: datetime) -> bool | None:
    """Turn offers and surveys on/off; returns the new state, None for a non-member."""
    return await db.write(_set_marketing, tg_id, enabled, now)


def _set_marketing(session: Session, tg_id: int, enabled: bool, now: datetime) -> bool | None:
    # One conditional update: of two taps at once, one changes the setting (and is audited).
    changed = session.scalar(
        update(Client)
        .where(Client.tg_id == tg_id, Client.marketing_opt_out.is_(enabled))
        .values(marketing_opt_out=not enabled)
        .returning(Client.id)
        .execution_options(synchronize_session=False)
    )
    if changed is None:
        return None if find_client(session, tg_id) is None else enabled
    if not enabled:
        # Already-queued offers and surveys are not sent either.
        session.execute(
            update(Delivery)
            .where(
                Delivery.client_id == changed,
                Delivery.marketing.is_(True),
                Delivery.status == DeliveryStatus.PENDING,
            )
            .values(status=DeliveryStatus.SKIPPED, last_error="opted out", next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )
    audit.record(session, "marketing.on" if enabled else "marketing.off", at=now, client_id=changed)
    session.commit()
    return enabled


async def marketing_enabled(db: Database, tg_id: int) -> bool | None:
    return await db.read(_marketing_enabled, tg_id)


def _marketing_enabled(session: Session, tg_id: int) -> bool | None:
    client = find_client(session, tg_id)
    return None if client is None else not client.marketing_opt_out


# --------------------------------------------------------------------------------- retention


def months_before(moment: datetime, months: int) -> datetime:
    """The same wall-clock moment `months` calendar months earlier (day clamped: 31 → 30)."""
    total = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(total, 12)
    month += 1
    day = min(moment.day, monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


async def anonymise_inactive(
    db: Database, now: datetime, months: int, *, default_language: str = "ru"
) -> int:
    """Erase clients with no purchase and no contact for `months` months; returns how many."""
    if months < 1:
        raise ValueError("months must be at least 1")
    ids = await db.read(_inactive_clients, months_before(now, months))
    erased = 0
    for client_id in ids:  # one short transaction per client
        erased += await db.write(_erase_inactive, client_id, now, default_language)
    if erased:
        await _leave_no_bytes(db)
    return erased


def _inactive_clients(session: Session, cutoff: datetime) -> list[int]:
    last_purchase = (
        select(Card.client_id.label("client_id"), func.max(Purchase.created_at).label("last"))
        .join(Purchase, Purchase.card_id == Card.id)
        .where(Card.client_id.is_not(None))
        .group_by(Card.client_id)
        .subquery()
    )
    last_activity = greatest(
        func.coalesce(last_purchase.c.last, Client.created_at),
        func.coalesce(Client.last_seen_at, Client.created_at),
        Client.created_at,
    )
    return list(
        session.scalars(
            select(Client.id)
            .outerjoin(last_purchase, last_purchase.c.client_id == Client.id)
            .where(Client.erased_at.is_(None), Client.tg_id.is_not(None))
            .where(last_activity < cutoff)
            .order_by(Client.id)
        ).all()
    )


def _erase_inactive(session: Session, client_id: int, now: datetime, default_language: str) -> int:
    client = session.get(Client, client_id, with_for_update=True)
    if client is None or client.erased_at is not None:
        return 0
    _erase(session, client, now=now, reason="retention", language=default_language)
    session.commit()
    return 1
