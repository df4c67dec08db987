"""Sales at the till: identify a card, quote, confirm exactly once, cancel, void, issue.

Usage (every method commits its own unit of work; `now` is an aware UTC datetime)::

    sales = SalesService(session, settings, clock)
    card = await sales.identify_number("100 045")        # CardSummary
    card = await sales.identify_payload("c100045_…")     # signed QR payload → CardSummary
    draft = await sales.quote(card.card_id, 250000, cashier_id, chat_id, now)   # DraftView
    done = await sales.confirm(draft.id, actor_id, actor_is_owner, now)         # Confirmation
    done.already            # True when the draft had been confirmed before (same purchase)
    await sales.cancel(draft.id, actor_id, actor_is_owner, now)
    await sales.void(done.purchase_id, actor_id, actor_is_owner, now)           # VoidResult
    await sales.issue("100045", "b2b", actor_id, now)                           # IssueResult

Exactly once: `confirm` starts a fresh transaction whose FIRST statement is the conditional
`UPDATE sale_drafts SET status='confirmed' … WHERE status='open' AND expires_at > now`. The
sqlite driver opens the transaction right before that write, so the statement waits for any
other writer (busy_timeout) and then sees the latest state: of any number of concurrent
confirms — same process or another one on the same file — exactly one gets rowcount 1. The
unique `purchases.draft_id` is the last line of defence. A repeated confirm returns the recorded
purchase with `already=True` instead of failing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import (
    Card,
    CardStatus,
    Client,
    DraftStatus,
    Offer,
    Purchase,
    PurchaseSource,
    SaleDraft,
    Segment,
    UTCDateTime,
)
from services import audit, cards, pricing, qr_payload
from services.clock import Clock
from services.errors import CardBlocked, CardNotFound, DomainError

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from bot.config import Settings


# --------------------------------------------------------------------------- errors
class DraftGone(DomainError):
    """The quote cannot be confirmed any more; `reason`: expired | cancelled | confirmed |
    not_found | offer_used."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"sale draft is gone: {reason}")
        self.reason = reason


class NotYourDraft(DomainError):
    """Only the cashier who made a quote (or an owner) may confirm or cancel it."""


class PurchaseNotFound(DomainError):
    def __init__(self, purchase_id: int) -> None:
        super().__init__(f"purchase {purchase_id} not found")
        self.purchase_id = purchase_id


class VoidNotAllowed(DomainError):
    """A cashier may void only their own purchases, within VOID_WINDOW_MIN; `reason`:
    not_yours | window_closed."""

    def __init__(self, reason: str, window_min: int) -> None:
        super().__init__(f"void refused: {reason}")
        self.reason = reason
        self.window_min = window_min


class AlreadyVoided(DomainError):
    def __init__(self, purchase_id: int) -> None:
        super().__init__(f"purchase {purchase_id} is already voided")
        self.purchase_id = purchase_id


class CardAlreadyIssued(DomainError):
    def __init__(self, number: str) -> None:
        super().__init__(f"card {number} is already issued")
        self.number = number


# ------------------------------------------------------------------------ results
@dataclass(frozen=True)
class OfferView:
    id: int
    kind: str
    bonus_pct: int
    valid_until: datetime


@dataclass(frozen=True)
class CardSummary:
    card_id: int
    number: str
    base_pct: int
    tier_pct: int  # max(printed pct, cumulative tier reached)
    segment: str
    kind: str
    status: str
    client_id: int | None
    client_name: str | None
    visits: int
    last_visit: datetime | None
    spend: int  # non-voided gross spend of the client's cards (this card's when unbound)
    offers: tuple[OfferView, ...]


@dataclass(frozen=True)
class DraftView:
    id: str
    card_id: int
    card_number: str
    card_status: str
    amount: int
    base_pct: int
    amount_tier_pct: int
    cumulative_tier_pct: int
    offer_kind: str | None
    offer_pct: int
    discount_pct: int
    discount_amount: int
    paid_amount: int
    capped: bool
    expires_at: datetime
    # A new (in-stock) card and purchase-amount tiers on: the printed tier to hand out.
    hand_out_pct: int | None


@dataclass(frozen=True)
class CustomerRef:
    """Whom to tell about a purchase or a void (bound, reachable, not erased)."""

    client_id: int
    tg_id: int
    language: str


@dataclass(frozen=True)
class Confirmation:
    purchase_id: int
    draft_id: str
    already: bool
    card_number: str
    amount: int
    discount_pct: int
    discount_amount: int
    paid_amount: int
    offer_pct: int
    cashier_id: int | None
    chat_id: int
    created_at: datetime
    card_issued_now: bool
    customer: CustomerRef | None
    tier_pct: int  # the card's tier after this purchase
    next_tier: pricing.NextTier | None


@dataclass(frozen=True)
class VoidResult:
    purchase_id: int
    card_number: str
    amount: int
    discount_amount: int
    paid_amount: int
    created_at: datetime
    offer_returned: bool
    customer: CustomerRef | None
    chat_id: int | None  # where the receipt is, when the purchase came from a quote
    message_id: int | None


@dataclass(frozen=True)
class IssueResult:
    number: str
    base_pct: int
    segment: str


# ------------------------------------------------------------------------ service
class SalesService:
    def __init__(self, session: AsyncSession, settings: Settings, clock: Clock) -> None:
        self.session = session
        self.settings = settings
        self.clock = clock

    # ---------------------------------------------------------------- identify
    async def identify_number(self, text: str) -> CardSummary:
        """A typed number: InvalidCardNumber / CardNotFound / CardBlocked when unusable."""
        number = cards.normalize_number(text)
        # One statement for the card, its holder's name and purchase history (a till is busy).
        row = (await self.session.execute(_identify_statement(), {"p_number": number})).first()
        if row is None:
            raise CardNotFound(number)
        card, client_name, visits, last_visit, spend = row
        if card.status == CardStatus.BLOCKED:
            raise CardBlocked(number)
        return await self.summary(card, client_name, (visits, last_visit, spend))

    async def identify_payload(self, payload: str) -> CardSummary:
        """A scanned QR payload: InvalidPayload when forged or mangled."""
        number = qr_payload.verify(self.settings.secret_key.get_secret_value(), payload)
        return await self.identify_number(number)

    async def summary(
        self,
        card: Card,
        client_name: str | None = None,
        history: tuple[int, datetime | None, int] | None = None,
    ) -> CardSummary:
        now = self.clock()
        visits, last_visit, spend = history or await self._history(card)
        offers: tuple[OfferView, ...] = ()
        if card.client_id is not None:
            rows = await self.session.scalars(
                _offers_statement(), {"p_client": card.client_id, "p_now": now}
            )
            offers = tuple(OfferView(o.id, o.kind, o.bonus_pct, o.valid_until) for o in rows)
        tier = max(card.base_pct, pricing.tier_for(spend, self.settings.cumulative_tiers_minor))
        return CardSummary(
            card_id=card.id,
            number=card.number,
            base_pct=card.base_pct,
            tier_pct=tier,
            segment=card.segment,
            kind=card.kind,
            status=card.status,
            client_id=card.client_id,
            client_name=client_name,
            visits=visits,
            last_visit=last_visit,
            spend=spend,
            offers=offers,
        )

    # ------------------------------------------------------------------- quote
    async def quote(
        self, card_id: int, amount_minor: int, cashier_id: int, chat_id: int, now: datetime
    ) -> DraftView:
        """Price a purchase and store it as an open draft that expires after DRAFT_TTL_MIN."""
        cumulative_tiers = self.settings.cumulative_tiers_minor
        row = (
            await self.session.execute(
                _quote_statement(bool(cumulative_tiers)), {"p_card": card_id, "p_now": now}
            )
        ).first()
        if row is None:
            raise CardNotFound(str(card_id))
        card, offer, spend_before = row
        if card.status == CardStatus.BLOCKED:  # blocked since it was scanned
            raise CardBlocked(card.number)
        amount_tiers = self.settings.amount_tiers_minor
        q = pricing.quote(
            amount=amount_minor,
            base_pct=card.base_pct,
            spend_before=spend_before,
            amount_tiers=amount_tiers,
            cumulative_tiers=cumulative_tiers,
            offer_pct=offer.bonus_pct if offer else 0,
            max_pct=self.settings.discount_max_pct,
        )
        draft = dict(
            id=secrets.token_urlsafe(12),
            card_id=card.id,
            cashier_id=cashier_id,
            chat_id=chat_id,
            amount=q.amount,
            base_pct=q.base_pct,
            amount_tier_pct=q.amount_tier_pct,
            cumulative_tier_pct=q.cumulative_tier_pct,
            offer_id=offer.id if offer else None,
            offer_pct=q.offer_pct,
            discount_pct=q.discount_pct,
            discount_amount=q.discount_amount,
            paid_amount=q.paid_amount,
            status=DraftStatus.OPEN,
            created_at=now,
            expires_at=now + timedelta(minutes=self.settings.draft_ttl_min),
        )
        # A Core insert: the unit of work would cost more CPU than the statement itself.
        await self.session.execute(insert(SaleDraft), [draft])
        await self.session.commit()
        hand_out = None
        if amount_tiers and card.status == CardStatus.IN_STOCK:
            hand_out = max(card.base_pct, q.amount_tier_pct)
        return DraftView(
            id=draft["id"],
            card_id=card.id,
            card_number=card.number,
            card_status=card.status,
            amount=q.amount,
            base_pct=q.base_pct,
            amount_tier_pct=q.amount_tier_pct,
            cumulative_tier_pct=q.cumulative_tier_pct,
            offer_kind=offer.kind if offer else None,
            offer_pct=q.offer_pct,
            discount_pct=q.discount_pct,
            discount_amount=q.discount_amount,
            paid_amount=q.paid_amount,
            capped=q.capped,
            expires_at=draft["expires_at"],
            hand_out_pct=hand_out,
        )

    # ----------------------------------------------------------------- confirm
    async def confirm(
        self,
        draft_id: str,
        actor_id: int,
        actor_is_owner: bool,
        now: datetime,
        *,
        message_id: int | None = None,
    ) -> Confirmation:
        """Turn an open draft into exactly one purchase (see the module docstring).

        `message_id` (optional) remembers the receipt message so that a later /void can edit it.
        """
        for _attempt in range(3):
            result = await self._try_confirm(draft_id, actor_id, actor_is_owner, now, message_id)
            if result is not None:
                return result
        raise DraftGone("not_found")  # pragma: no cover - only after repeated lost races

    async def _try_confirm(
        self,
        draft_id: str,
        actor_id: int,
        actor_is_owner: bool,
        now: datetime,
        message_id: int | None,
    ) -> Confirmation | None:
        session = self.session
        if session.new or session.dirty or session.deleted:
            await session.rollback()  # nothing unrelated may ride along in the sale's commit
        # Earlier reads of this session (the locale lookup) ran outside any SQLite transaction:
        # the driver begins one right before the first write, i.e. this UPDATE.
        params = {"p_id": draft_id, "p_now": now, "p_actor": actor_id, "p_message": message_id}
        row = (
            await session.execute(
                _confirm_statement(actor_is_owner, message_id is not None),
                params,
                execution_options={"synchronize_session": False},
            )
        ).first()
        if row is None:
            await session.rollback()
            return await self._already(draft_id, actor_id, actor_is_owner, now)
        try:
            return await self._record_purchase(draft_id, row, actor_id, now)
        except IntegrityError:
            # Someone recorded this draft although our UPDATE won: the unique draft_id held.
            await session.rollback()
            return await self._already(draft_id, actor_id, actor_is_owner, now)

    async def _record_purchase(
        self, draft_id: str, draft: Any, actor_id: int, now: datetime
    ) -> Confirmation:
        session = self.session
        card, tg_id, language, reachable = (
            await session.execute(
                _card_and_holder_statement(),
                {"p_card": draft.card_id},
                execution_options={"populate_existing": True},
            )
        ).one()
        purchase = Purchase(
            card_id=card.id,
            amount=draft.amount,
            discount_pct=draft.discount_pct,
            discount_amount=draft.discount_amount,
            paid_amount=draft.paid_amount,
            offer_id=draft.offer_id,
            cashier_id=draft.cashier_id,
            draft_id=draft_id,
            source=PurchaseSource.BOT,
            created_at=now,
        )
        # Core statements (the object stays transient, a holder of the values for the result).
        purchase.id = await session.scalar(
            insert(Purchase).values(_purchase_values(purchase)).returning(Purchase.id)
        )
        await session.execute(
            _link_purchase_statement(), {"p_id": draft_id, "p_purchase": purchase.id}
        )
        await cards.refresh_totals(session, card.id)
        if draft.offer_id is not None:
            redeemed = await session.execute(
                update(Offer)
                .where(
                    Offer.id == draft.offer_id,
                    Offer.redeemed_purchase_id.is_(None),
                    Offer.cancelled_at.is_(None),
                )
                .values(redeemed_purchase_id=purchase.id, redeemed_at=now)
                .execution_options(synchronize_session=False)
            )
            if redeemed.rowcount != 1:
                # The offer went to another purchase meanwhile: the quote no longer holds.
                await session.rollback()
                await self._close_draft(draft_id, DraftStatus.CANCELLED, actor_id, now)
                raise DraftGone("offer_used")
        issued_now = cards.mark_issued(session, card, now=now, actor_id=actor_id, how="till")
        audit.record(
            session,
            "sale.confirmed",
            at=now,
            actor_id=actor_id,
            card_id=card.id,
            client_id=card.client_id,
            purchase_id=purchase.id,
            draft_id=draft_id,
            amount=draft.amount,
            discount_pct=draft.discount_pct,
            discount_amount=draft.discount_amount,
            offer_id=draft.offer_id,
        )
        if draft.offer_id is not None:
            audit.record(
                session,
                "offer.redeemed",
                at=now,
                actor_id=actor_id,
                card_id=card.id,
                client_id=card.client_id,
                purchase_id=purchase.id,
                offer_id=draft.offer_id,
            )
        await session.commit()
        customer = None
        if card.client_id is not None and tg_id is not None and reachable:
            customer = CustomerRef(client_id=card.client_id, tg_id=tg_id, language=language)
        return await self._confirmation(
            draft_id, draft, purchase, card, customer, already=False, issued=issued_now
        )

    async def _already(
        self, draft_id: str, actor_id: int, actor_is_owner: bool, now: datetime
    ) -> Confirmation | None:
        """Why the conditional update matched nothing; None when it is worth another try."""
        draft = await self.session.get(SaleDraft, draft_id, populate_existing=True)
        if draft is None:
            raise DraftGone("not_found")
        if not actor_is_owner and draft.cashier_id != actor_id:
            raise NotYourDraft(f"draft {draft_id} belongs to another cashier")
        if draft.status == DraftStatus.CONFIRMED:
            purchase = await self.session.scalar(
                select(Purchase).where(Purchase.draft_id == draft_id)
            )
            if purchase is None:  # pragma: no cover - confirmed drafts always have a purchase
                raise DraftGone("not_found")
            card = await self.session.get(Card, draft.card_id)
            assert card is not None
            customer = await self._customer(card.client_id)
            result = await self._confirmation(
                draft_id, draft, purchase, card, customer, already=True, issued=False
            )
            await self.session.rollback()  # end the read; nothing to write
            return result
        if draft.status == DraftStatus.CANCELLED:
            raise DraftGone("cancelled")
        if draft.expires_at <= now:
            raise DraftGone("expired")
        return None

    async def _confirmation(
        self,
        draft_id: str,
        draft: Any,
        purchase: Purchase,
        card: Card,
        customer: CustomerRef | None,
        *,
        already: bool,
        issued: bool,
    ) -> Confirmation:
        cumulative = self.settings.cumulative_tiers_minor
        tier, next_tier = card.base_pct, None
        if cumulative:  # the tier can only grow with spend when cumulative tiers are on
            spend = (await self._history(card))[2]
            tier = max(card.base_pct, pricing.tier_for(spend, cumulative))
            next_tier = pricing.next_tier(tier, spend, cumulative)
        return Confirmation(
            purchase_id=purchase.id,
            draft_id=draft_id,
            already=already,
            card_number=card.number,
            amount=purchase.amount,
            discount_pct=purchase.discount_pct,
            discount_amount=purchase.discount_amount,
            paid_amount=purchase.paid_amount,
            offer_pct=draft.offer_pct,
            cashier_id=purchase.cashier_id,
            chat_id=draft.chat_id,
            created_at=purchase.created_at,
            card_issued_now=issued,
            customer=customer,
            tier_pct=tier,
            next_tier=next_tier,
        )

    # ------------------------------------------------------------------ cancel
    async def cancel(
        self, draft_id: str, actor_id: int, actor_is_owner: bool, now: datetime
    ) -> str:
        """Drop an open draft; returns the card number. Cancelling twice is harmless."""
        draft = await self.session.get(SaleDraft, draft_id)
        if draft is None:
            raise DraftGone("not_found")
        if not actor_is_owner and draft.cashier_id != actor_id:
            raise NotYourDraft(f"draft {draft_id} belongs to another cashier")
        number = await self.session.scalar(select(Card.number).where(Card.id == draft.card_id))
        if not await self._close_draft(draft_id, DraftStatus.CANCELLED, actor_id, now):
            current = await self.session.scalar(
                select(SaleDraft.status).where(SaleDraft.id == draft_id)
            )
            if current == DraftStatus.CONFIRMED:
                raise DraftGone("confirmed")
        return number or ""

    async def _close_draft(
        self, draft_id: str, status: DraftStatus, actor_id: int, now: datetime
    ) -> bool:
        if self.session.in_transaction():
            await self.session.rollback()
        result = await self.session.execute(
            update(SaleDraft)
            .where(SaleDraft.id == draft_id, SaleDraft.status == DraftStatus.OPEN)
            .values(status=status, decided_at=now, decided_by=actor_id)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            await self.session.rollback()
            return False
        audit.record(self.session, f"sale.{status}", at=now, actor_id=actor_id, draft_id=draft_id)
        await self.session.commit()
        return True

    # -------------------------------------------------------------------- void
    async def void(
        self, purchase_id: int, actor_id: int, actor_is_owner: bool, now: datetime
    ) -> VoidResult:
        """Mark a purchase voided (the row stays, it stops counting) and return its offer."""
        session = self.session
        if session.in_transaction():
            await session.rollback()
        purchase = await session.get(Purchase, purchase_id, populate_existing=True)
        if purchase is None:
            raise PurchaseNotFound(purchase_id)
        if purchase.voided_at is not None:
            raise AlreadyVoided(purchase_id)
        window = self.settings.void_window_min
        if not actor_is_owner:
            if purchase.cashier_id != actor_id:
                raise VoidNotAllowed("not_yours", window)
            if now >= purchase.created_at + timedelta(minutes=window):
                raise VoidNotAllowed("window_closed", window)
        facts = (
            purchase.card_id,
            purchase.amount,
            purchase.discount_amount,
            purchase.paid_amount,
            purchase.created_at,
            purchase.draft_id,
        )
        card_id, amount, discount, paid, created_at, draft_id = facts
        await session.rollback()  # the conditional update below starts the write transaction
        result = await session.execute(
            update(Purchase)
            .where(Purchase.id == purchase_id, Purchase.voided_at.is_(None))
            .values(voided_at=now, voided_by=actor_id)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            await session.rollback()
            raise AlreadyVoided(purchase_id)
        returned = await session.execute(
            update(Offer)
            .where(Offer.redeemed_purchase_id == purchase_id)
            .values(redeemed_purchase_id=None, redeemed_at=None)
            .execution_options(synchronize_session=False)
        )
        offer_returned = returned.rowcount > 0
        await cards.refresh_totals(session, card_id)
        card = await session.get(Card, card_id, populate_existing=True)
        assert card is not None
        number, client_id = card.number, card.client_id
        audit.record(
            session,
            "sale.voided",
            at=now,
            actor_id=actor_id,
            card_id=card_id,
            client_id=client_id,
            purchase_id=purchase_id,
            amount=amount,
            offer_returned=offer_returned,
        )
        where = None
        if draft_id is not None:
            where = (
                await session.execute(
                    select(SaleDraft.chat_id, SaleDraft.message_id).where(SaleDraft.id == draft_id)
                )
            ).first()
        customer = await self._customer(client_id)
        await session.commit()
        return VoidResult(
            purchase_id=purchase_id,
            card_number=number,
            amount=amount,
            discount_amount=discount,
            paid_amount=paid,
            created_at=created_at,
            offer_returned=offer_returned,
            customer=customer,
            chat_id=where[0] if where else None,
            message_id=where[1] if where else None,
        )

    # ------------------------------------------------------------------- issue
    async def issue(
        self, number: str, segment: str | None, actor_id: int, now: datetime
    ) -> IssueResult:
        """Staff hand out a printed card (`/issue 100045 [b2b]`)."""
        card = await cards.get_usable(self.session, number)
        if card.status != CardStatus.IN_STOCK:
            raise CardAlreadyIssued(card.number)
        if segment is not None:
            card.segment = Segment(segment)
        cards.mark_issued(self.session, card, now=now, actor_id=actor_id, how="staff")
        await self.session.commit()
        return IssueResult(number=card.number, base_pct=card.base_pct, segment=card.segment)

    # ------------------------------------------------------------ reachability
    # ----------------------------------------------------------------- helpers
    async def _history(self, card: Card) -> tuple[int, datetime | None, int]:
        """(visits, last visit, gross spend) of the client's cards, or this card if unbound."""
        row = (await self.session.execute(_history_statement(), {"p_card": card.id})).one()
        return int(row[0]), row[1], int(row[2])

    async def _customer(self, client_id: int | None) -> CustomerRef | None:
        if client_id is None:
            return None
        row = (
            await self.session.execute(
                select(Client.tg_id, Client.language, Client.reachable).where(
                    Client.id == client_id
                )
            )
        ).first()
        if row is None or row.tg_id is None or not row.reachable:
            return None
        return CustomerRef(client_id=client_id, tg_id=row.tg_id, language=row.language)


# The till's hot statements are built once: constructing SQLAlchemy statements costs more CPU
# than running these on SQLite. Parameters are named p_* (column names are reserved).
def _p_now() -> Any:
    return bindparam("p_now", type_=UTCDateTime())


@cache
def _identify_statement() -> Select[Any]:
    return (
        select(Card, Client.first_name, *_history_columns())
        .outerjoin(Client, Client.id == Card.client_id)
        .where(Card.number == bindparam("p_number"))
    )


@cache
def _history_statement() -> Select[Any]:
    return select(*_history_columns()).where(Card.id == bindparam("p_card"))


@cache
def _offers_statement() -> Select[tuple[Offer]]:
    return (
        select(Offer)
        .where(Offer.client_id == bindparam("p_client"), *Offer.active_at(_p_now()))
        .order_by(Offer.valid_until)
    )


@cache
def _quote_statement(with_spend: bool) -> Select[Any]:
    """The card, its holder's best active offer and (cumulative tiers) spend so far."""
    best_offer = (
        select(Offer.id)
        .where(Offer.client_id == Card.client_id, *Offer.active_at(_p_now()))
        .order_by(Offer.bonus_pct.desc(), Offer.valid_until)
        .limit(1)
        .correlate(Card)
        .scalar_subquery()
    )
    spend = _history_columns()[2] if with_spend else literal(0)
    return (
        select(Card, Offer, spend)
        .outerjoin(Offer, Offer.id == best_offer)
        .where(Card.id == bindparam("p_card"))
    )


@cache
def _confirm_statement(by_owner: bool, with_message: bool) -> Any:
    """open → confirmed, only while valid and (unless an owner) only by its cashier."""
    won = update(SaleDraft).where(
        SaleDraft.id == bindparam("p_id"),
        SaleDraft.status == DraftStatus.OPEN,
        SaleDraft.expires_at > _p_now(),
    )
    if not by_owner:
        won = won.where(SaleDraft.cashier_id == bindparam("p_actor"))
    values: dict[str, Any] = {
        "status": DraftStatus.CONFIRMED.value,
        "decided_at": _p_now(),
        "decided_by": bindparam("p_actor"),
    }
    if with_message:
        values["message_id"] = bindparam("p_message")
    return won.values(**values).returning(
        SaleDraft.card_id,
        SaleDraft.cashier_id,
        SaleDraft.chat_id,
        SaleDraft.amount,
        SaleDraft.discount_pct,
        SaleDraft.discount_amount,
        SaleDraft.paid_amount,
        SaleDraft.offer_id,
        SaleDraft.offer_pct,
    )


@cache
def _link_purchase_statement() -> Any:
    return (
        update(SaleDraft)
        .where(SaleDraft.id == bindparam("p_id"))
        .values(purchase_id=bindparam("p_purchase"))
    )


def _purchase_values(purchase: Purchase) -> dict[str, Any]:
    names = (
        "card_id",
        "amount",
        "discount_pct",
        "discount_amount",
        "paid_amount",
        "offer_id",
        "cashier_id",
        "draft_id",
        "source",
        "created_at",
    )
    return {name: getattr(purchase, name) for name in names}


@cache
def _card_and_holder_statement() -> Select[Any]:
    return (
        select(Card, Client.tg_id, Client.language, Client.reachable)
        .outerjoin(Client, Client.id == Card.client_id)
        .where(Card.id == bindparam("p_card"))
    )


def _history_columns() -> tuple[Any, Any, Any]:
    """(visits, last visit, gross spend) of the holder's cards — of the card when unbound —
    as scalar subqueries correlated with `Card`, from the cards' lifetime figures (voided
    purchases never count; see `cards.refresh_totals`)."""
    other = aliased(Card)
    same_holder = or_(
        other.id == Card.id,
        and_(Card.client_id.is_not(None), other.client_id == Card.client_id),
    )

    def column(aggregate: Any) -> Any:
        return select(aggregate).where(same_holder).correlate(Card).scalar_subquery()

    return (
        column(func.coalesce(func.sum(other.purchase_count), 0)),
        column(func.max(other.last_purchase_at)),
        column(func.coalesce(func.sum(other.purchase_total), 0)),
    )


__all__ = [
    "AlreadyVoided",
    "CardAlreadyIssued",
    "CardSummary",
    "Confirmation",
    "CustomerRef",
    "DraftGone",
    "DraftView",
    "IssueResult",
    "NotYourDraft",
    "OfferView",
    "PurchaseNotFound",
    "SalesService",
    "VoidNotAllowed",
    "VoidResult",
]
