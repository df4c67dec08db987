"""Sales at the till: identify a card, quote, confirm exactly once, cancel, void, issue.

Usage (every method is one unit of work, `db.database`, that commits its work; `now` is an
aware UTC datetime)::

    sales = SalesService(Database.of(engine), settings, clock)
    card = await sales.identify_number("100 045")        # TillCard
    card = await sales.identify_payload("c100045_…")     # signed QR payload → TillCard
    card = await sales.identify_payload("l100045_…")     # live QR (Mini App): fresh only
    draft = await sales.quote(card.card_id, 250000, cashier_id, chat_id, now, branch_id=2)
    done = await sales.confirm(draft.id, actor_id, oversight, now)              # Confirmation
    done = await sales.confirm(..., log_chat_id=staff_chat, cashier_name="Olga")  # + staff line
    done = await sales.confirm(..., log_chats={1: -100111, 2: -100222})         # its branch's
    done.already            # True when the draft had been confirmed before (same purchase)
    await sales.cancel(draft.id, actor_id, oversight, now)
    await sales.void(done.purchase_id, actor_id, oversight, now)                # VoidResult
    await sales.issue("100045", "b2b", actor_id, now)                           # IssueResult

Exactly once: `confirm` starts a fresh transaction whose FIRST statement is the conditional
`UPDATE sale_drafts SET status='confirmed' … WHERE status='open' AND expires_at > now`. The
sqlite driver opens the transaction right before that write, so the statement waits for any
other writer (busy_timeout) and then sees the latest state: of any number of concurrent
confirms — same process or another one on the same file — exactly one gets rowcount 1. The
unique `purchases.draft_id` is the last line of defence. A repeated confirm returns the recorded
purchase with `already=True` instead of failing.

The messages a sale (or a void) sends are queued in its own transaction, recorded with it or
not at all (`services.delivery`): the customer's receipt (`RECEIPT_KIND`, when the card is
bound to someone the bot can reach) and, when the caller names a chat to log to (a sale made
outside the staff chat), its line there (`STAFF_LOG_KIND`). They are facts — the purchase's
id and numbers, the tier reached, the card number, the cashier's name — rendered when they
are sent (`handlers/outbox.py`): nothing is translated or formatted inside the transaction.

Branches: a quote is made for a branch (`branch_id`, the first shop's by default) and the
purchase belongs to it; a card works at its tier in every branch and cumulative tiers count the
holder's spend in all of them. `log_chats` (branch id → staff group) sends a sale's line to its
branch's group and a void's to the purchase's, except to `here_chat_id`, the chat the till works
in (a receipt there is the log). Who may confirm, cancel or void someone else's sale is
`oversight` (an `Oversight`): True for an owner (every branch), the branch ids a manager
manages, False for a cashier (their own quotes; their own purchases within VOID_WINDOW_MIN).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
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
from sqlalchemy.orm import Session

from db.database import Database, unsynced
from db.models import (
    MAIN_BRANCH_ID,
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
from db.prepared import Prepared
from services import audit, cards, pricing, promotions, qr_payload, referrals
from services.clock import Clock
from services.delivery import OutboxMessage, queue_messages
from services.errors import CardBlocked, CardNotFound, DomainError
from services.offers import OfferView, active_offers

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings


# --------------------------------------------------------------------------- errors
class DraftGone(DomainError):
    """The quote cannot be confirmed any more; `reason`: expired | cancelled | replaced (the
    cashier quoted the same card again) | confirmed | not_found | offer_used."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"sale draft is gone: {reason}")
        self.reason = reason


class NotYourDraft(DomainError):
    """Only the cashier who made a quote (or an owner, or a manager of its branch) may confirm
    or cancel it."""


class PurchaseNotFound(DomainError):
    def __init__(self, purchase_id: int) -> None:
        super().__init__(f"purchase {purchase_id} not found")
        self.purchase_id = purchase_id


class VoidNotAllowed(DomainError):
    """A cashier (and a manager, outside their branches) may void only their own purchases,
    within VOID_WINDOW_MIN; `reason`: not_yours | window_closed."""

    def __init__(self, reason: str, window_min: int) -> None:
        super().__init__(f"void refused: {reason}")
        self.reason = reason
        self.window_min = window_min


class AlreadyVoided(DomainError):
    def __init__(self, purchase_id: int) -> None:
        super().__init__(f"purchase {purchase_id} is already voided")
        self.purchase_id = purchase_id


class CardBlockedAtTill(CardBlocked):
    """The till refuses a blocked card; `reason` is why it was blocked (lost | replaced |
    erased | …, None when unknown) — the cashier must not give its discount."""

    def __init__(self, number: str, reason: str | None) -> None:
        super().__init__(number)
        self.reason = reason


class LiveCardRequired(DomainError):
    """STATIC_QR=false: a card bound to a customer is accepted only by its live QR (the Mini
    App's), not by its static QR or its typed number; paper-only cards still are."""

    def __init__(self, number: str) -> None:
        super().__init__(f"card {number} needs its live QR")
        self.number = number


class CardAlreadyIssued(DomainError):
    def __init__(self, number: str) -> None:
        super().__init__(f"card {number} is already issued")
        self.number = number


# ------------------------------------------------------------------------ oversight
Oversight = bool | Set[int]
"""Whose quotes and purchases an actor may confirm, cancel and void besides their own: True
every branch's (an owner), a set of branch ids those branches' (a manager), False none."""


# (log_chat_id, log_chats, here_chat_id, cashier_name) as confirm and void take them
_Log = tuple[int | None, Mapping[int, int | None] | None, int | None, str | None]


def oversees(oversight: Oversight, branch_id: int) -> bool:
    if isinstance(oversight, bool):
        return oversight
    return branch_id in oversight


def _log_chat(
    log_chat_id: int | None,
    log_chats: Mapping[int, int | None] | None,
    here_chat_id: int | None,
    branch_id: int,
) -> int | None:
    """Where a sale's or a void's staff-log line goes (see the module docstring)."""
    chat = log_chat_id if log_chats is None else log_chats.get(branch_id)
    return None if chat is None or chat == here_chat_id else chat


# ------------------------------------------------------------------------ results
@dataclass(frozen=True)
class TillCard:
    """A scanned card as the cashier sees it: the discount it gets now and why (the owner's
    view of a card, with its history, is `services.reports.CardSummary`)."""

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
    promo_name: str | None = None  # the happy hour whose bonus the quote includes
    promo_pct: int = 0
    branch_id: int = MAIN_BRANCH_ID


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
    voided: bool = False  # a repeated confirm of a purchase voided since (`already` is True)
    branch_id: int = MAIN_BRANCH_ID


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
    branch_id: int = MAIN_BRANCH_ID


@dataclass(frozen=True)
class IssueResult:
    number: str
    base_pct: int
    segment: str


# ------------------------------------------------------------------------ messages
# The kinds of message a sale queues; `event` in their payload says a sale or a void.
RECEIPT_KIND = "receipt"  # to the customer
STAFF_LOG_KIND = "staff_log"  # a line in the staff chat


def _sale_messages(
    done: Confirmation, log_chat_id: int | None, cashier_name: str | None, tiers: bool
) -> list[OutboxMessage]:
    """What a confirmed sale tells outside the till's chat, as facts. `tiers`: cumulative
    tiers are on, so the customer also reads where their card stands."""
    messages = []
    if log_chat_id is not None:
        line = {
            "event": "sale",
            "purchase_id": done.purchase_id,
            "number": done.card_number,
            "amount": done.amount,
            "discount_pct": done.discount_pct,
            "discount_amount": done.discount_amount,
            "paid_amount": done.paid_amount,
            "cashier": cashier_name,
        }
        messages.append(
            OutboxMessage(f"stafflog:{done.purchase_id}", STAFF_LOG_KIND, log_chat_id, line)
        )
    if done.customer is not None:
        receipt: dict[str, Any] = {
            "event": "sale",
            "purchase_id": done.purchase_id,
            "amount": done.amount,
            "discount_pct": done.discount_pct,
            "discount_amount": done.discount_amount,
        }
        if tiers:
            receipt["tier_pct"] = done.tier_pct
            if done.next_tier is not None:
                receipt["next_tier_pct"] = done.next_tier.pct
                receipt["next_tier_remaining"] = done.next_tier.remaining
        messages.append(
            OutboxMessage(
                f"receipt:{done.purchase_id}",
                RECEIPT_KIND,
                done.customer.tg_id,
                receipt,
                done.customer.client_id,
            )
        )
    return messages


def _void_messages(
    voided: VoidResult, log_chat_id: int | None, cashier_name: str | None
) -> list[OutboxMessage]:
    """What a void tells outside the till's chat, as facts."""
    messages = []
    if log_chat_id is not None:
        line = {
            "event": "void",
            "purchase_id": voided.purchase_id,
            "number": voided.card_number,
            "amount": voided.amount,
            "cashier": cashier_name,
        }
        messages.append(
            OutboxMessage(f"voidlog:{voided.purchase_id}", STAFF_LOG_KIND, log_chat_id, line)
        )
    if voided.customer is not None:
        note = {
            "event": "void",
            "purchase_id": voided.purchase_id,
            "amount": voided.amount,
            "created_at": voided.created_at.isoformat(),
        }
        messages.append(
            OutboxMessage(
                f"void:{voided.purchase_id}",
                RECEIPT_KIND,
                voided.customer.tg_id,
                note,
                voided.customer.client_id,
            )
        )
    return messages


# ------------------------------------------------------------------------ service


class SalesService:
    """The till's units of work: each public method runs one (`db.database`)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    # ---------------------------------------------------------------- identify
    async def identify_number(self, text: str) -> TillCard:
        """A typed number: InvalidCardNumber / CardNotFound / CardBlocked when unusable,
        LiveCardRequired for a bound card when STATIC_QR is off."""
        number = cards.lookup_number(text)
        return await self.db.read(self._identify, number, False, self.clock())

    async def identify_payload(self, payload: str) -> TillCard:
        """A scanned QR payload, static or live: InvalidPayload when forged or mangled,
        ExpiredPayload for a live one of an older (or a future) step, LiveCardRequired for a
        bound card's static one when STATIC_QR is off."""
        now = self.clock()
        scanned = qr_payload.read(
            self.settings.telegram.secret_key.get_secret_value(),
            payload,
            now,
            self.settings.miniapp.qr_rotate_sec,
        )
        return await self.db.read(self._identify, scanned.number, scanned.live, now)

    async def identify_again(self, number: str) -> TillCard:
        """A card identified a moment ago (its QR or number checked then: the till asked the
        cashier something in between), read again."""
        return await self.db.read(self._identify, number, True, self.clock())

    def _identify(self, session: Session, number: str, live: bool, now: datetime) -> TillCard:
        # One statement for the card, its holder's name and purchase history (a till is busy).
        card = _identify_statement().execute(session, {"p_number": number}).first()
        if card is None:
            raise CardNotFound(number)
        if card.status == CardStatus.BLOCKED:
            raise CardBlockedAtTill(number, card.block_reason)
        if not live and card.client_id is not None and not self.settings.miniapp.static_qr:
            raise LiveCardRequired(number)
        offers: tuple[OfferView, ...] = ()
        if card.client_id is not None:
            offers = tuple(active_offers(session, card.client_id, now))
        spend = int(card.spend)
        tier = max(card.base_pct, pricing.tier_for(spend, self.settings.pricing.cumulative_tiers))
        return TillCard(
            card_id=card.id,
            number=card.number,
            base_pct=card.base_pct,
            tier_pct=tier,
            segment=card.segment,
            kind=card.kind,
            status=card.status,
            client_id=card.client_id,
            client_name=card.first_name,
            visits=int(card.visits),
            last_visit=card.last_visit,
            spend=spend,
            offers=offers,
        )

    # ------------------------------------------------------------------- quote
    async def quote(
        self,
        card_id: int,
        amount_minor: int,
        cashier_id: int,
        chat_id: int,
        now: datetime,
        *,
        branch_id: int = MAIN_BRANCH_ID,
    ) -> DraftView:
        """Price a purchase made in `branch_id` and store it as an open draft that expires after
        DRAFT_TTL_MIN (the card's tier is the chain's: spend in every branch counts).

        The cashier's earlier open quotes for the same card are replaced: only the newest one can
        be confirmed, so an old ✅ pressed after a new quote was confirmed records nothing."""
        return await self.db.write(
            self._quote, card_id, amount_minor, cashier_id, chat_id, now, branch_id
        )

    @unsynced  # a quote lost in a power cut is scanned again; the sale itself is synced
    def _quote(
        self,
        session: Session,
        card_id: int,
        amount_minor: int,
        cashier_id: int,
        chat_id: int,
        now: datetime,
        branch_id: int,
    ) -> DraftView:
        cumulative_tiers = self.settings.pricing.cumulative_tiers
        card = (
            _quote_statement(bool(cumulative_tiers))
            .execute(session, {"p_card": card_id, "p_now": now})
            .first()
        )
        if card is None:
            raise CardNotFound(str(card_id))
        if card.status == CardStatus.BLOCKED:  # blocked since it was scanned
            raise CardBlockedAtTill(card.number, card.block_reason)
        amount_tiers = self.settings.pricing.amount_tiers
        promo = promotions.active(session, now, self.settings.store.tz, branch_id)
        q = pricing.quote(
            amount=amount_minor,
            base_pct=card.base_pct,
            spend_before=int(card.spend),
            amount_tiers=amount_tiers,
            cumulative_tiers=cumulative_tiers,
            offer_pct=card.offer_pct or 0,
            promo_pct=0 if promo is None else promo.bonus_pct,
            max_pct=self.settings.pricing.discount_max_pct,
        )
        draft = dict(
            id=secrets.token_urlsafe(12),
            card_id=card.id,
            cashier_id=cashier_id,
            chat_id=chat_id,
            branch_id=branch_id,
            amount=q.amount,
            base_pct=q.base_pct,
            amount_tier_pct=q.amount_tier_pct,
            cumulative_tier_pct=q.cumulative_tier_pct,
            offer_id=card.offer_id,
            offer_pct=q.offer_pct,
            promo_id=None if promo is None else promo.id,
            promo_pct=q.promo_pct,
            discount_pct=q.discount_pct,
            discount_amount=q.discount_amount,
            paid_amount=q.paid_amount,
            status=DraftStatus.OPEN,
            created_at=now,
            expires_at=now + timedelta(minutes=self.settings.pricing.draft_ttl_min),
        )
        replaced = _replace_drafts_statement().execute(
            session, {"p_card": card.id, "p_cashier": cashier_id, "p_now": now}
        )
        events = [
            audit.values("sale.replaced", at=now, actor_id=cashier_id, draft_id=old, by=draft["id"])
            for (old,) in replaced.all()
        ]
        if events:
            audit.insert_many(session, events)
        _insert_draft_statement().execute(session, draft)
        session.commit()
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
            offer_kind=card.offer_kind,
            offer_pct=q.offer_pct,
            discount_pct=q.discount_pct,
            discount_amount=q.discount_amount,
            paid_amount=q.paid_amount,
            capped=q.capped,
            expires_at=draft["expires_at"],
            hand_out_pct=hand_out,
            promo_name=None if promo is None else promo.name,
            promo_pct=q.promo_pct,
            branch_id=branch_id,
        )

    # ----------------------------------------------------------------- confirm
    async def confirm(
        self,
        draft_id: str,
        actor_id: int,
        oversight: Oversight,
        now: datetime,
        *,
        message_id: int | None = None,
        log_chat_id: int | None = None,
        log_chats: Mapping[int, int | None] | None = None,
        here_chat_id: int | None = None,
        cashier_name: str | None = None,
    ) -> Confirmation:
        """Turn an open draft into exactly one purchase of the draft's branch (see the module
        docstring). `oversight`: whose quotes besides their own the actor may confirm.

        `message_id` (optional) remembers the receipt message so that a later /void can edit it.
        The customer's receipt is queued in the purchase's own transaction, and so is a line
        naming `cashier_name` for `log_chat_id` (the staff chat, for a sale made elsewhere) —
        or, given `log_chats`, for the staff group of the sale's branch unless that is
        `here_chat_id`: a sale and its messages are recorded together or not at all. A repeated
        confirm queues nothing.
        """
        log = (log_chat_id, log_chats, here_chat_id, cashier_name)
        return await self.db.write(
            self._confirm, draft_id, actor_id, oversight, now, message_id, log
        )

    def _confirm(
        self,
        session: Session,
        draft_id: str,
        actor_id: int,
        oversight: Oversight,
        now: datetime,
        message_id: int | None,
        log: _Log,
    ) -> Confirmation:
        params = {"p_id": draft_id, "p_now": now, "p_actor": actor_id, "p_message": message_id}
        with_message = message_id is not None
        if isinstance(oversight, bool) or not oversight:
            statement: Any = _confirm_statement(bool(oversight), with_message)
        else:  # a manager: rare, so a statement built for their branches
            statement = _ConfirmInBranches(oversight, with_message)
        for _attempt in range(3):
            # The sqlite3 driver begins the transaction right before this first write.
            row = statement.execute(session, params).first()
            if row is not None:
                try:
                    return self._record_purchase(session, draft_id, row, actor_id, now, log)
                except IntegrityError:
                    # Recorded by someone else although our UPDATE won: the unique draft_id held.
                    session.rollback()
            else:
                session.rollback()
            result = self._already(session, draft_id, actor_id, oversight, now)
            if result is not None:
                return result
        raise DraftGone("not_found")  # pragma: no cover - only after repeated lost races

    def _record_purchase(
        self,
        session: Session,
        draft_id: str,
        draft: Any,
        actor_id: int,
        now: datetime,
        log: _Log,
    ) -> Confirmation:
        # The card's row first: two sales on one card (two tills, two workers) take turns
        # from here, so each recount of its lifetime figures sees the other's purchase.
        _lock_card_statement().execute(session, {"p_card": draft.card_id})
        card = _card_and_holder_statement().execute(session, {"p_card": draft.card_id}).one()
        values = {
            "card_id": card.id,
            "amount": draft.amount,
            "discount_pct": draft.discount_pct,
            "discount_amount": draft.discount_amount,
            "paid_amount": draft.paid_amount,
            "offer_id": draft.offer_id,
            "promo_id": draft.promo_id,
            "promo_pct": draft.promo_pct,
            "cashier_id": draft.cashier_id,
            "draft_id": draft_id,
            "branch_id": draft.branch_id,
            "source": PurchaseSource.BOT,
            "created_at": now,
        }
        purchase_id = _insert_purchase_statement().execute(session, values).scalar_one()
        _link_purchase_statement().execute(session, {"p_id": draft_id, "p_purchase": purchase_id})
        cards.refresh_card_totals(session, card.id, now)
        if draft.offer_id is not None:
            redeemed = _redeem_offer_statement().execute(
                session, {"p_offer": draft.offer_id, "p_purchase": purchase_id, "p_now": now}
            )
            if redeemed.rowcount != 1:
                # The offer went to another purchase meanwhile: the quote no longer holds.
                session.rollback()
                self._close_draft(session, draft_id, DraftStatus.CANCELLED, actor_id, now)
                raise DraftGone("offer_used")
        issued_now = card.status == CardStatus.IN_STOCK
        if issued_now:  # a card first used at the till is issued then
            cards.issue_at_till(session, card.id, now)
        events = [
            audit.values(
                "sale.confirmed",
                at=now,
                actor_id=actor_id,
                card_id=card.id,
                client_id=card.client_id,
                purchase_id=purchase_id,
                draft_id=draft_id,
                amount=draft.amount,
                discount_pct=draft.discount_pct,
                discount_amount=draft.discount_amount,
                offer_id=draft.offer_id,
            )
        ]
        if issued_now:
            events.append(
                audit.values("card.issued", at=now, actor_id=actor_id, card_id=card.id, how="till")
            )
        if draft.offer_id is not None:
            events.append(
                audit.values(
                    "offer.redeemed",
                    at=now,
                    actor_id=actor_id,
                    card_id=card.id,
                    client_id=card.client_id,
                    purchase_id=purchase_id,
                    offer_id=draft.offer_id,
                )
            )
        audit.insert_many(session, events)
        customer = None
        if card.client_id is not None and card.tg_id is not None and card.reachable:
            customer = CustomerRef(card.client_id, card.tg_id, card.language)
        # The holder's spend read before this purchase; the write lock is ours since the
        # first UPDATE, so nothing else changed it.
        spend = int(card.spend) + draft.amount
        done = self._confirmation(
            session,
            draft_id,
            draft,
            purchase_id,
            values,
            card,
            customer,
            issued=issued_now,
            spend=spend,
        )
        tiers = bool(self.settings.pricing.cumulative_tiers)
        log_chat_id, log_chats, here_chat_id, cashier_name = log
        chat = _log_chat(log_chat_id, log_chats, here_chat_id, draft.branch_id)
        queue_messages(session, _sale_messages(done, chat, cashier_name, tiers), now)
        if card.client_id is not None:  # a referred friend's first purchase rewards both
            referrals.reward_first_purchase(
                session, self.settings, card.client_id, purchase_id, now
            )
        session.commit()
        return done

    def _already(
        self, session: Session, draft_id: str, actor_id: int, oversight: Oversight, now: datetime
    ) -> Confirmation | None:
        """Why the conditional update matched nothing; None when it is worth another try."""
        draft = session.get(SaleDraft, draft_id, populate_existing=True)
        if draft is None:
            raise DraftGone("not_found")
        if draft.cashier_id != actor_id and not oversees(oversight, draft.branch_id):
            raise NotYourDraft(f"draft {draft_id} belongs to another cashier")
        if draft.status == DraftStatus.CONFIRMED:
            purchase = session.execute(
                select(Purchase.__table__).where(Purchase.draft_id == draft_id)
            ).first()
            if purchase is None:  # pragma: no cover - confirmed drafts always have a purchase
                raise DraftGone("not_found")
            card = session.get(Card, draft.card_id, populate_existing=True)
            assert card is not None
            customer = _customer(session, card.client_id)
            result = self._confirmation(
                session,
                draft_id,
                draft,
                purchase.id,
                purchase._asdict(),
                card,
                customer,
                issued=False,
                already=True,
            )
            session.rollback()  # end the read; nothing to write
            return result
        if draft.status == DraftStatus.CANCELLED:
            raise DraftGone("cancelled")
        if draft.status == DraftStatus.REPLACED:
            raise DraftGone("replaced")
        if draft.expires_at <= now:
            raise DraftGone("expired")
        return None

    def _confirmation(
        self,
        session: Session,
        draft_id: str,
        draft: Any,
        purchase_id: int,
        purchase: dict[str, Any],
        card: Any,
        customer: CustomerRef | None,
        *,
        issued: bool,
        already: bool = False,
        spend: int | None = None,
    ) -> Confirmation:
        """`spend`: the holder's gross spend including this purchase (read when None)."""
        cumulative = self.settings.pricing.cumulative_tiers
        tier, next_tier = card.base_pct, None
        if cumulative:  # the tier can only grow with spend when cumulative tiers are on
            if spend is None:
                spend = int(_history_statement().execute(session, {"p_card": card.id}).one()[2])
            tier = max(card.base_pct, pricing.tier_for(spend, cumulative))
            next_tier = pricing.next_tier(tier, spend, cumulative)
        return Confirmation(
            purchase_id=purchase_id,
            draft_id=draft_id,
            already=already,
            card_number=card.number,
            amount=purchase["amount"],
            discount_pct=purchase["discount_pct"],
            discount_amount=purchase["discount_amount"],
            paid_amount=purchase["paid_amount"],
            offer_pct=draft.offer_pct,
            cashier_id=purchase["cashier_id"],
            chat_id=draft.chat_id,
            created_at=purchase["created_at"],
            card_issued_now=issued,
            customer=customer,
            tier_pct=tier,
            next_tier=next_tier,
            voided=purchase.get("voided_at") is not None,
            branch_id=purchase.get("branch_id", draft.branch_id),
        )

    # ------------------------------------------------------------------ cancel
    async def cancel(
        self, draft_id: str, actor_id: int, oversight: Oversight, now: datetime
    ) -> str:
        """Drop an open draft (the actor's own, or one `oversight` covers); returns the card
        number. Cancelling twice is harmless."""
        return await self.db.write(self._cancel, draft_id, actor_id, oversight, now)

    def _cancel(
        self, session: Session, draft_id: str, actor_id: int, oversight: Oversight, now: datetime
    ) -> str:
        draft = session.get(SaleDraft, draft_id)
        if draft is None:
            raise DraftGone("not_found")
        if draft.cashier_id != actor_id and not oversees(oversight, draft.branch_id):
            raise NotYourDraft(f"draft {draft_id} belongs to another cashier")
        number = session.scalar(select(Card.number).where(Card.id == draft.card_id))
        if not self._close_draft(session, draft_id, DraftStatus.CANCELLED, actor_id, now):
            current = session.scalar(select(SaleDraft.status).where(SaleDraft.id == draft_id))
            if current == DraftStatus.CONFIRMED:
                raise DraftGone("confirmed")
        return number or ""

    def _close_draft(
        self, session: Session, draft_id: str, status: DraftStatus, actor_id: int, now: datetime
    ) -> bool:
        session.rollback()  # the conditional update below starts the write transaction
        result = session.execute(
            update(SaleDraft)
            .where(SaleDraft.id == draft_id, SaleDraft.status == DraftStatus.OPEN)
            .values(status=status, decided_at=now, decided_by=actor_id)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return False
        audit.insert_many(
            session, [audit.values(f"sale.{status}", at=now, actor_id=actor_id, draft_id=draft_id)]
        )
        session.commit()
        return True

    # -------------------------------------------------------------------- void
    async def void(
        self,
        purchase_id: int,
        actor_id: int,
        oversight: Oversight,
        now: datetime,
        *,
        log_chat_id: int | None = None,
        log_chats: Mapping[int, int | None] | None = None,
        here_chat_id: int | None = None,
        cashier_name: str | None = None,
    ) -> VoidResult:
        """Mark a purchase voided (the row stays, it stops counting) and return its offer.
        Anyone may void their own purchase within VOID_WINDOW_MIN; an owner any purchase, a
        manager any of their branches' (`oversight`). The customer is told, and `log_chat_id`
        — or, given `log_chats`, the purchase's branch's group unless it is `here_chat_id` —
        gets a line naming `cashier_name`: queued in the void's own transaction."""
        log = (log_chat_id, log_chats, here_chat_id, cashier_name)
        return await self.db.write(self._void, purchase_id, actor_id, oversight, now, log)

    def _void(
        self,
        session: Session,
        purchase_id: int,
        actor_id: int,
        oversight: Oversight,
        now: datetime,
        log: _Log,
    ) -> VoidResult:
        purchase = session.get(Purchase, purchase_id, populate_existing=True)
        if purchase is None:
            raise PurchaseNotFound(purchase_id)
        if purchase.voided_at is not None:
            raise AlreadyVoided(purchase_id)
        window = self.settings.pricing.void_window_min
        if not oversees(oversight, purchase.branch_id):
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
            purchase.branch_id,
        )
        card_id, amount, discount, paid, created_at, draft_id, branch_id = facts
        session.rollback()  # the conditional update below starts the write transaction
        _lock_card_statement().execute(session, {"p_card": card_id})  # as a sale does
        result = session.execute(
            update(Purchase)
            .where(Purchase.id == purchase_id, Purchase.voided_at.is_(None))
            .values(voided_at=now, voided_by=actor_id)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            raise AlreadyVoided(purchase_id)
        returned = session.execute(
            update(Offer)
            .where(Offer.redeemed_purchase_id == purchase_id)
            .values(redeemed_purchase_id=None, redeemed_at=None)
            .execution_options(synchronize_session=False)
        )
        offer_returned = returned.rowcount > 0  # type: ignore[attr-defined]
        cards.refresh_card_totals(session, card_id, created_at)
        number, client_id = session.execute(
            select(Card.number, Card.client_id).where(Card.id == card_id)
        ).one()
        event = audit.values(
            "sale.voided",
            at=now,
            actor_id=actor_id,
            card_id=card_id,
            client_id=client_id,
            purchase_id=purchase_id,
            amount=amount,
            offer_returned=offer_returned,
        )
        audit.insert_many(session, [event])
        # A referred friend's first purchase: the rewards not used yet go with it.
        referrals.revoke_first_purchase(session, client_id, purchase_id, now)
        where = None
        if draft_id is not None:
            where = session.execute(
                select(SaleDraft.chat_id, SaleDraft.message_id).where(SaleDraft.id == draft_id)
            ).first()
        voided = VoidResult(
            purchase_id=purchase_id,
            card_number=number,
            amount=amount,
            discount_amount=discount,
            paid_amount=paid,
            created_at=created_at,
            offer_returned=offer_returned,
            customer=_customer(session, client_id),
            chat_id=where[0] if where else None,
            message_id=where[1] if where else None,
            branch_id=branch_id,
        )
        log_chat_id, log_chats, here_chat_id, cashier_name = log
        chat = _log_chat(log_chat_id, log_chats, here_chat_id, branch_id)
        queue_messages(session, _void_messages(voided, chat, cashier_name), now)
        session.commit()
        return voided

    # ------------------------------------------------------------------- issue
    async def issue(
        self, number: str, segment: str | None, actor_id: int, now: datetime
    ) -> IssueResult:
        """Staff hand out a printed card (`/issue 100045 [b2b]`)."""
        return await self.db.write(self._issue, cards.lookup_number(number), segment, actor_id, now)

    def _issue(
        self, session: Session, number: str, segment: str | None, actor_id: int, now: datetime
    ) -> IssueResult:
        card = session.scalar(cards.by_number(number))
        if card is None:
            raise CardNotFound(number)
        if card.status == CardStatus.BLOCKED:
            raise CardBlockedAtTill(card.number, card.block_reason)
        if card.status != CardStatus.IN_STOCK:
            raise CardAlreadyIssued(card.number)
        if segment is not None:
            card.segment = Segment(segment)
        cards.mark_issued(session, card, now=now, actor_id=actor_id, how="staff")
        session.commit()
        return IssueResult(number=card.number, base_pct=card.base_pct, segment=card.segment)


def _customer(session: Session, client_id: int | None) -> CustomerRef | None:
    """Whom to tell (bound, reachable, not erased), or None."""
    if client_id is None:
        return None
    row = session.execute(
        select(Client.tg_id, Client.language, Client.reachable).where(Client.id == client_id)
    ).first()
    if row is None or row.tg_id is None or not row.reachable:
        return None
    return CustomerRef(client_id=client_id, tg_id=row.tg_id, language=row.language)


# The till's hot statements are built once: constructing SQLAlchemy statements costs more CPU
# than running these on SQLite. Parameters are named p_* (column names are reserved).
def _p_now() -> Any:
    return bindparam("p_now", type_=UTCDateTime())


# Plain Core over the tables (no ORM entities): rows come back as named tuples.
_cards = Card.__table__.c
_offers = Offer.__table__.c
_CARD_COLUMNS = (
    _cards.id,
    _cards.number,
    _cards.base_pct,
    _cards.segment,
    _cards.kind,
    _cards.status,
    _cards.client_id,
    _cards.block_reason,
)


@cache
def _identify_statement() -> Prepared:
    visits, last_visit, spend = _history_columns()
    return Prepared(
        select(
            *_CARD_COLUMNS,
            Client.__table__.c.first_name,
            visits.label("visits"),
            last_visit.label("last_visit"),
            spend.label("spend"),
        )
        .select_from(Card.__table__)
        .outerjoin(Client.__table__, Client.__table__.c.id == _cards.client_id)
        .where(_cards.number == bindparam("p_number"))
    )


@cache
def _history_statement() -> Prepared:
    return Prepared(select(*_history_columns()).where(_cards.id == bindparam("p_card")))


@cache
def _quote_statement(with_spend: bool) -> Prepared:
    """The card, its holder's best active offer and (cumulative tiers) spend so far."""
    best_offer = (
        select(_offers.id)
        .where(_offers.client_id == _cards.client_id, *Offer.active_at(_p_now(), _offers))
        .order_by(_offers.bonus_pct.desc(), _offers.valid_until)
        .limit(1)
        .correlate(Card.__table__)
        .scalar_subquery()
    )
    spend = _history_columns()[2] if with_spend else literal(0)
    return Prepared(
        select(
            *_CARD_COLUMNS,
            _offers.id.label("offer_id"),
            _offers.kind.label("offer_kind"),
            _offers.bonus_pct.label("offer_pct"),
            spend.label("spend"),
        )
        .select_from(Card.__table__)
        .outerjoin(Offer.__table__, _offers.id == best_offer)
        .where(_cards.id == bindparam("p_card"))
    )


@cache
def _insert_draft_statement() -> Prepared:
    return Prepared(insert(SaleDraft.__table__))


@cache
def _replace_drafts_statement() -> Prepared:
    """The cashier's open quotes for this card → replaced (by the one being inserted)."""
    drafts = SaleDraft.__table__.c
    return Prepared(
        update(SaleDraft.__table__)
        .where(
            drafts.card_id == bindparam("p_card"),
            drafts.cashier_id == bindparam("p_cashier"),
            drafts.status == DraftStatus.OPEN.value,
        )
        .values(
            status=DraftStatus.REPLACED.value,
            decided_at=_p_now(),
            decided_by=bindparam("p_cashier"),
        )
        .returning(drafts.id)
    )


@cache
def _confirm_statement(by_owner: bool, with_message: bool) -> Prepared:
    """open → confirmed, only while valid and (unless an owner) only by its cashier."""
    drafts = SaleDraft.__table__.c
    won = update(SaleDraft.__table__).where(
        drafts.id == bindparam("p_id"),
        drafts.status == DraftStatus.OPEN.value,
        drafts.expires_at > _p_now(),
    )
    if not by_owner:
        won = won.where(drafts.cashier_id == bindparam("p_actor"))
    values: dict[str, Any] = {
        "status": DraftStatus.CONFIRMED.value,
        "decided_at": _p_now(),
        "decided_by": bindparam("p_actor"),
    }
    if with_message:
        values["message_id"] = bindparam("p_message")
    return Prepared(
        won.values(**values).returning(
            drafts.card_id,
            drafts.cashier_id,
            drafts.chat_id,
            drafts.amount,
            drafts.discount_pct,
            drafts.discount_amount,
            drafts.paid_amount,
            drafts.offer_id,
            drafts.offer_pct,
            drafts.promo_id,
            drafts.promo_pct,
            drafts.branch_id,
        )
    )


class _ConfirmInBranches:
    """`_confirm_statement` for a manager: their own quotes or any of their branches' (an
    expanding IN, so a plain statement through the session; managers confirm rarely)."""

    def __init__(self, branch_ids: Set[int], with_message: bool) -> None:
        prepared = _confirm_statement(True, with_message).statement
        drafts = SaleDraft.__table__.c
        mine = drafts.cashier_id == bindparam("p_actor")
        self.statement = prepared.where(or_(mine, drafts.branch_id.in_(sorted(branch_ids))))

    def execute(self, session: Session, params: dict[str, Any]) -> Any:
        return session.execute(self.statement, params)


@cache
def _insert_purchase_statement() -> Prepared:
    return Prepared(insert(Purchase.__table__).returning(Purchase.__table__.c.id))


@cache
def _link_purchase_statement() -> Prepared:
    drafts = SaleDraft.__table__
    return Prepared(
        update(drafts)
        .where(drafts.c.id == bindparam("p_id"))
        .values(purchase_id=bindparam("p_purchase"))
    )


@cache
def _redeem_offer_statement() -> Prepared:
    offers = Offer.__table__.c
    return Prepared(
        update(Offer.__table__)
        .where(
            offers.id == bindparam("p_offer"),
            offers.redeemed_purchase_id.is_(None),
            offers.cancelled_at.is_(None),
        )
        .values(redeemed_purchase_id=bindparam("p_purchase"), redeemed_at=_p_now())
    )


@cache
def _lock_card_statement() -> Prepared:
    """Lock the card's row until the transaction ends (`FOR NO KEY UPDATE` on PostgreSQL, which
    a history import's uncommitted purchases of the card do not block; SQLite has one writer,
    and the statement is a plain read there)."""
    return Prepared(
        select(_cards.id).where(_cards.id == bindparam("p_card")).with_for_update(key_share=True)
    )


@cache
def _card_and_holder_statement() -> Prepared:
    clients = Client.__table__.c
    spend = _history_columns()[2].label("spend")
    return Prepared(
        select(*_CARD_COLUMNS, clients.tg_id, clients.language, clients.reachable, spend)
        .select_from(Card.__table__)
        .outerjoin(Client.__table__, clients.id == _cards.client_id)
        .where(_cards.id == bindparam("p_card"))
    )


def _history_columns() -> tuple[Any, Any, Any]:
    """(visits, last visit, gross spend) of the holder's cards — of the card when unbound —
    as scalar subqueries correlated with the cards table, from the cards' lifetime figures
    (voided purchases never count; see `cards.refresh_totals`)."""
    other = Card.__table__.alias("other")
    same_holder = or_(
        other.c.id == _cards.id,
        and_(_cards.client_id.is_not(None), other.c.client_id == _cards.client_id),
    )

    def column(aggregate: Any) -> Any:
        return select(aggregate).where(same_holder).correlate(Card.__table__).scalar_subquery()

    return (
        column(func.coalesce(func.sum(other.c.purchase_count), 0)),
        column(func.max(other.c.last_purchase_at)),
        column(func.coalesce(func.sum(other.c.purchase_total), 0)),
    )


__all__ = [
    "RECEIPT_KIND",
    "STAFF_LOG_KIND",
    "AlreadyVoided",
    "CardAlreadyIssued",
    "CardBlockedAtTill",
    "Confirmation",
    "CustomerRef",
    "DraftGone",
    "DraftView",
    "IssueResult",
    "NotYourDraft",
    "OfferView",
    "Oversight",
    "PurchaseNotFound",
    "SalesService",
    "TillCard",
    "VoidNotAllowed",
    "VoidResult",
    "oversees",
]
