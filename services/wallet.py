"""The customer wallet: consent, binding a printed card (or issuing a digital one), the card view,
history, offers and the optional profile.

Every public method is one unit of work (`db.database`): `WalletService(db, settings, clock)`
is built per update, and what it returns is plain data (`Member`, `CardView`, …).

Binding is guarded against brute force twice: per Telegram user (at most
BIND_USER_MAX_FAILURES failed attempts in any rolling hour, counted from `bind_attempts` rows so
the limit survives restarts) and per card (BIND_CARD_MAX_FAILURES failures lock binding for that
card until an owner unlocks it). A failed attempt is committed before the refusal is raised.

Concurrency (several workers on PostgreSQL, READ COMMITTED): one person's binding attempts take
turns on their client row, so the hourly limit counts every attempt; the card's failure
counter goes up in one atomic `UPDATE … SET bind_failures = bind_failures + 1 … RETURNING`
that also locks the card when it reaches the cap, so concurrent wrong PINs lose no count and
exactly one of them locks the card and alerts the owners. A digital card's number is taken
with `INSERT … ON CONFLICT DO NOTHING`: two new members at once get two numbers.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, literal, select, update
from sqlalchemy.orm import Session

from db.database import Database
from db.models import (
    MAIN_BRANCH_ID,
    BindAttempt,
    Card,
    CardKind,
    CardStatus,
    Client,
    Offer,
    OfferKind,
    Purchase,
    Segment,
    UTCDateTime,
)
from db.sql import insert_ignoring
from services import audit
from services.cards import (
    HIGHEST_NUMBER_FIRST,
    find_by_number,
    mark_issued,
    normalize_number,
    numbers_between,
)
from services.clock import Clock
from services.delivery import OutboxMessage, queue_messages
from services.errors import CardBlocked, CardNotFound, DomainError
from services.offers import OfferView, active_offers, usual_branch
from services.pricing import NextTier, next_tier, tier_for

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

RATE_WINDOW = timedelta(hours=1)
HISTORY_PAGE_SIZE = 5
# A birthday given without a year is stored in this leap year, so that 29.02 is accepted too.
NO_YEAR = 1904
# Numbers tried for one digital card before giving up: each one lost was taken by another
# member at that very moment, so this many in a row means something else is wrong.
DIGITAL_NUMBER_TRIES = 100


# --------------------------------------------------------------------------- refusals


class ConsentRequired(DomainError):
    """The user has not agreed to the (current) privacy policy yet: nothing can be shown."""


class NoActiveCard(DomainError):
    """The client agreed but holds no card yet."""


class CardBoundElsewhere(DomainError):
    """The card belongs to another account (deliberately without saying whose)."""

    def __init__(self, number: str) -> None:
        super().__init__(f"card {number} is bound to another account")
        self.number = number


class PinRequired(DomainError):
    """The card's print run has PINs: ask for it, then bind again with the PIN."""

    def __init__(self, number: str) -> None:
        super().__init__(f"card {number} needs its PIN")
        self.number = number


class WrongPin(DomainError):
    def __init__(self, number: str) -> None:
        super().__init__(f"wrong PIN for card {number}")
        self.number = number


BIND_LOCK_ALERT = "bind_lock_alert"  # the delivery kind that tells the owners


class CardBindLocked(DomainError):
    """Too many failed attempts against this card; `just_locked` when this attempt locked it."""

    def __init__(self, number: str, *, just_locked: bool = False, failures: int = 0) -> None:
        super().__init__(f"binding of card {number} is locked")
        self.number = number
        self.just_locked = just_locked
        self.failures = failures


class BindRateLimited(DomainError):
    def __init__(self, retry_at: datetime) -> None:
        super().__init__(f"too many failed attempts; try again at {retry_at.isoformat()}")
        self.retry_at = retry_at


class ReplacementNeedsConfirmation(DomainError):
    """The client already holds an active card: binding another one replaces it when confirmed."""

    def __init__(self, old_number: str, new_number: str) -> None:
        super().__init__(f"card {old_number} would be replaced by {new_number}")
        self.old_number = old_number
        self.new_number = new_number


class AlreadyHasCard(DomainError):
    def __init__(self, number: str) -> None:
        super().__init__(f"the client already holds card {number}")
        self.number = number


class DigitalCardsUnavailable(DomainError):
    """Digital cards are switched off, or their number range is used up."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"no digital card: {reason}")
        self.reason = reason  # disabled | exhausted


class InvalidBirthday(DomainError):
    def __init__(self, text: str) -> None:
        super().__init__(f"not a birthday: {text[:40]!r}")
        self.text = text


class InvalidPhone(DomainError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"phone refused: {reason}")
        self.reason = reason  # not_own | format


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Member:
    """A client as the handlers see them: plain values read in a unit of work."""

    id: int
    tg_id: int | None
    language: str
    consent_at: datetime | None
    consent_version: str | None
    phone: str | None
    birthday: date | None
    marketing_opt_out: bool

    @classmethod
    def of(cls, client: Client) -> Member:
        return cls(
            id=client.id,
            tg_id=client.tg_id,
            language=client.language,
            consent_at=client.consent_at,
            consent_version=client.consent_version,
            phone=client.phone,
            birthday=client.birthday,
            marketing_opt_out=client.marketing_opt_out,
        )


@dataclass(frozen=True)
class TelegramProfile:
    """What the handler passes in from the Telegram user at consent time."""

    tg_id: int
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None


@dataclass(frozen=True)
class BindResult:
    card_id: int
    number: str
    replaced_number: str | None = None
    already_bound: bool = False
    welcome: OfferView | None = None  # the welcome offer a new member got just now


@dataclass(frozen=True)
class CardView:
    card_id: int
    client_id: int
    number: str
    kind: str
    segment: str
    base_pct: int
    cumulative_pct: int
    tier_pct: int  # max(base pct, cumulative tier)
    total_spend: int  # minor units, every card of the client, voided purchases excluded
    total_saved: int
    purchases: int
    next_tier: NextTier | None
    cumulative_tiers_on: bool
    language: str
    image_key: str | None
    image_file_id: str | None


@dataclass(frozen=True)
class HistoryItem:
    purchase_id: int
    at: datetime
    card_number: str
    amount: int
    discount_pct: int
    discount_amount: int
    paid_amount: int
    voided: bool
    branch_id: int = MAIN_BRANCH_ID  # where it was sold (a chain's history names the branch)


@dataclass(frozen=True)
class HistoryPage:
    items: list[HistoryItem]
    page: int  # 0-based, clamped into range
    pages: int
    total: int


# --------------------------------------------------------------------------- parsers


_PHONE_JUNK = re.compile(r"[\s()\-.]")
_BIRTHDAY_FORMATS = (
    (re.compile(r"(\d{1,2})[./](\d{1,2})[./](\d{4})"), ("d", "m", "y")),
    (re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})"), ("y", "m", "d")),
    (re.compile(r"(\d{1,2})[./](\d{1,2})"), ("d", "m")),
)


def parse_birthday(text: str, today: date) -> date:
    """`31.12.1990`, `1990-12-31` or `31.12` (no year) → a date; not in the future, not before
    1900. Without a year the date is stored in the leap year NO_YEAR."""
    if not isinstance(text, str) or len(text) > 32:
        raise InvalidBirthday(str(text)[:32])
    for pattern, order in _BIRTHDAY_FORMATS:
        match = pattern.fullmatch(text.strip())
        if match is None:
            continue
        parts = dict(zip(order, (int(g) for g in match.groups()), strict=True))
        year = parts.get("y", NO_YEAR)
        try:
            value = date(year, parts["m"], parts["d"])
        except ValueError as exc:
            raise InvalidBirthday(text) from exc
        if "y" in parts and not (year >= 1900 and value <= today):
            raise InvalidBirthday(text)
        return value
    raise InvalidBirthday(text)


def normalize_phone(text: str) -> str:
    """A phone number as shared by Telegram: digits with an optional leading +."""
    if not isinstance(text, str):
        raise InvalidPhone("format")
    value = _PHONE_JUNK.sub("", text.strip())
    digits = value.removeprefix("+")
    if not digits.isascii() or not digits.isdigit() or not 5 <= len(digits) <= 15:
        raise InvalidPhone("format")
    return "+" + digits


# --------------------------------------------------------------------------- the service


class WalletService:
    """The customer's units of work: each public method runs one (`db.database`)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    # ----------------------------------------------------------------- consent, language

    async def client(self, tg_id: int) -> Member | None:
        return await self.db.read(self._member, tg_id)

    def _member(self, session: Session, tg_id: int) -> Member | None:
        client = _client(session, tg_id)
        return None if client is None else Member.of(client)

    def has_consent(self, client: Member | Client | None) -> bool:
        return (
            client is not None
            and client.consent_at is not None
            and client.consent_version == self.settings.privacy.policy_version
        )

    async def require_client(self, tg_id: int) -> Member:
        return await self.db.read(self._require_member, tg_id)

    def _require_member(self, session: Session, tg_id: int) -> Member:
        return Member.of(self._require_client(session, tg_id))

    def _require_client(self, session: Session, tg_id: int, *, lock: bool = False) -> Client:
        """The consenting client; `lock` holds their row until the unit ends, so that one
        person's attempts take turns (PostgreSQL; SQLite has one writer anyway)."""
        client = _client(session, tg_id, lock=lock)
        if not self.has_consent(client):
            raise ConsentRequired()
        assert client is not None
        return client

    async def give_consent(self, profile: TelegramProfile, language: str) -> Member:
        """Record consent (time + current policy version); the client row is born here."""
        return await self.db.write(self._give_consent, profile, language)

    def _give_consent(self, session: Session, profile: TelegramProfile, language: str) -> Member:
        now = self.clock()
        # Two taps on "I agree" at once must not both try to create the row.
        dialect = session.get_bind().dialect.name
        session.execute(
            insert_ignoring(Client.__table__, "tg_id", dialect=dialect).values(
                tg_id=profile.tg_id, created_at=now
            )
        )
        client = _client(session, profile.tg_id, lock=True)
        assert client is not None
        client.first_name = (profile.first_name or "")[:128] or None
        client.last_name = (profile.last_name or "")[:128] or None
        client.username = (profile.username or "")[:64] or None
        client.language = (
            language
            if language in self.settings.store.languages
            else self.settings.store.default_language
        )
        client.consent_at = now
        client.consent_version = self.settings.privacy.policy_version
        client.last_seen_at = now
        audit.record(
            session,
            "client.consent",
            at=now,
            actor_id=profile.tg_id,
            client_id=client.id,
            version=self.settings.privacy.policy_version,
        )
        session.commit()
        return Member.of(client)

    async def set_language(self, tg_id: int, language: str) -> bool:
        """Store the language on the client; False when there is no client (before consent)."""
        if language not in self.settings.store.languages:
            raise ValueError(f"unsupported language {language!r}")
        return await self.db.write(self._set_language, tg_id, language)

    @staticmethod
    def _set_language(session: Session, tg_id: int, language: str) -> bool:
        result = session.execute(
            update(Client).where(Client.tg_id == tg_id).values(language=language)
        )
        session.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def set_reachable(self, tg_id: int, reachable: bool) -> bool:
        """The user blocked (False) or unblocked (True) the bot; False for an unknown user."""
        return await self.db.write(_set_reachable, tg_id, reachable)

    # ----------------------------------------------------------------- binding

    async def rate_limit_until(self, tg_id: int) -> datetime | None:
        """When the user may try again, or None if they may try now."""
        return await self.db.read(self._rate_limit_until, tg_id)

    def _rate_limit_until(self, session: Session, tg_id: int) -> datetime | None:
        now = self.clock()
        limit = self.settings.cards.bind_user_max_failures
        window = (BindAttempt.tg_id == tg_id, BindAttempt.success.is_(False))
        since = BindAttempt.at > now - RATE_WINDOW
        failures = session.scalar(select(func.count()).where(*window, since))
        if not failures or failures < limit:
            return None
        # Rolling window: the attempt whose expiry brings the count below the limit.
        oldest = session.scalar(
            select(BindAttempt.at)
            .where(*window, since)
            .order_by(BindAttempt.at)
            .offset(failures - limit)
            .limit(1)
        )
        assert oldest is not None
        return oldest + RATE_WINDOW

    def _fail(
        self, session: Session, tg_id: int, number: str | None, card: Card | None, exc: DomainError
    ) -> DomainError:
        """Record a failed attempt (and count it against the card), commit, return the refusal."""
        now = self.clock()
        session.add(BindAttempt(tg_id=tg_id, card_number=number, success=False, at=now))
        if card is not None:
            counted = self._count_failure(session, card.id, now)
            if counted is None:  # another attempt locked the card meanwhile
                exc = CardBindLocked(card.number)
            elif counted.bind_locked_at is not None:  # this attempt reached the cap
                failures = counted.bind_failures
                audit.record(
                    session,
                    "card.bind_locked",
                    at=now,
                    actor_id=tg_id,
                    card_id=card.id,
                    failures=failures,
                )
                exc = CardBindLocked(card.number, just_locked=True, failures=failures)
                alerts = [
                    OutboxMessage(
                        key=f"bindlock:{card.id}:{now:%Y%m%dT%H%M%S}:{owner_id}",
                        kind=BIND_LOCK_ALERT,
                        chat_id=owner_id,
                        payload={"number": card.number, "failures": failures},
                    )
                    for owner_id in self.settings.telegram.owner_ids
                ]
                queue_messages(session, alerts, now)  # in this unit: once, with the lock
        session.commit()
        return exc

    def _count_failure(self, session: Session, card_id: int, now: datetime) -> Any:
        """One more failure against the card, and the lock when it reaches the cap, in one
        statement: concurrent attempts take turns on the row and each sees the others' counts.
        None when the card is locked already (then nothing is counted)."""
        failures = func.coalesce(Card.bind_failures, 0) + 1
        cap = self.settings.cards.bind_card_max_failures
        return session.execute(
            update(Card)
            .where(Card.id == card_id, Card.bind_locked_at.is_(None))
            .values(
                bind_failures=failures,
                bind_locked_at=case((failures >= cap, literal(now, UTCDateTime())), else_=None),
            )
            .returning(Card.bind_failures, Card.bind_locked_at)
            .execution_options(synchronize_session=False)
        ).first()

    async def bind(
        self, tg_id: int, text: str, *, pin: str | None = None, replace: bool = False
    ) -> BindResult:
        """Bind the printed card `text` to the user's account.

        Raises InvalidCardNumber (not counted as an attempt), BindRateLimited, CardNotFound,
        CardBlocked, CardBoundElsewhere, CardBindLocked, PinRequired, WrongPin, or
        ReplacementNeedsConfirmation when the client already holds another card and
        `replace` is False.
        """
        number = normalize_number(text)
        return await self.db.write(self._bind, tg_id, number, pin, replace)

    def _bind(
        self, session: Session, tg_id: int, number: str, pin: str | None, replace: bool
    ) -> BindResult:
        client = self._require_client(session, tg_id, lock=True)
        retry_at = self._rate_limit_until(session, tg_id)
        if retry_at is not None:
            raise BindRateLimited(retry_at)
        card = find_by_number(session, number)
        if card is None:
            raise self._fail(session, tg_id, number, None, CardNotFound(number))
        if card.client_id == client.id and card.status != CardStatus.BLOCKED:
            return BindResult(card_id=card.id, number=card.number, already_bound=True)
        if card.status == CardStatus.BLOCKED:
            raise self._fail(session, tg_id, number, None, CardBlocked(number))
        if card.bind_locked_at is not None:
            raise self._fail(session, tg_id, number, None, CardBindLocked(number))
        if card.client_id is not None:
            raise self._fail(session, tg_id, number, card, CardBoundElsewhere(number))
        if card.pin:
            if pin is None or not pin.strip():
                raise PinRequired(number)
            if not hmac.compare_digest(pin.strip().encode(), card.pin.encode()):
                raise self._fail(session, tg_id, number, card, WrongPin(number))
        current = _active_card(session, client.id)
        if current is not None and not replace:
            raise ReplacementNeedsConfirmation(current.number, number)

        now = self.clock()
        # Conditional: of two accounts binding the same card at once exactly one wins, and a
        # card blocked or locked meanwhile is not bound.
        taken = session.execute(
            update(Card)
            .where(
                Card.id == card.id,
                Card.client_id.is_(None),
                Card.status != CardStatus.BLOCKED,
                Card.bind_locked_at.is_(None),
            )
            .values(client_id=client.id, bound_at=now, bind_failures=0)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            raise CardBoundElsewhere(number)
        replaced_number = None
        if current is not None:
            # The old card keeps its client_id: its purchases still count for the tier.
            current.status = CardStatus.BLOCKED
            current.blocked_at = now
            current.block_reason = "replaced"
            replaced_number = current.number
            audit.record(
                session,
                "card.replaced",
                at=now,
                actor_id=tg_id,
                card_id=current.id,
                client_id=client.id,
                new_card=number,
            )
        mark_issued(session, card, now=now, actor_id=tg_id, how="bound")
        session.add(BindAttempt(tg_id=tg_id, card_number=number, success=True, at=now))
        audit.record(
            session,
            "card.bound",
            at=now,
            actor_id=tg_id,
            card_id=card.id,
            client_id=client.id,
            replaced=replaced_number,
        )
        welcome = self._welcome(session, client.id, now)
        session.commit()
        return BindResult(
            card_id=card.id, number=card.number, replaced_number=replaced_number, welcome=welcome
        )

    def _welcome(self, session: Session, client_id: int, now: datetime) -> OfferView | None:
        """A new member's welcome offer (WELCOME_BONUS_PCT for WELCOME_VALID_DAYS), in the
        caller's unit of work (which holds the client's row): once per client, and only for
        someone new to the store — no purchase on any of their cards yet (a printed card used
        at the till before it was linked already had its first purchase)."""
        pct = self.settings.engagement.welcome_bonus_pct
        if pct <= 0:
            return None
        had_one = session.scalar(
            select(Offer.id).where(Offer.client_id == client_id, Offer.kind == OfferKind.WELCOME)
        )
        bought = session.scalar(
            select(Card.id).where(Card.client_id == client_id, Card.purchase_count > 0).limit(1)
        )
        if had_one is not None or bought is not None:
            return None
        offer = Offer(
            client_id=client_id,
            kind=OfferKind.WELCOME,
            bonus_pct=pct,
            valid_from=now,
            valid_until=now + timedelta(days=self.settings.engagement.welcome_valid_days),
            created_at=now,
        )
        session.add(offer)
        session.flush()
        audit.record(
            session, "offer.welcome", at=now, client_id=client_id, offer_id=offer.id, pct=pct
        )
        return OfferView(offer.id, offer.kind, offer.bonus_pct, offer.valid_until)

    async def issue_digital(self, tg_id: int) -> BindResult:
        """ "I have no card": a digital-only card from the configured range, issued at once."""
        if not self.settings.cards.digital:
            raise DigitalCardsUnavailable("disabled")
        return await self.db.write(self._issue_digital, tg_id)

    def _issue_digital(self, session: Session, tg_id: int) -> BindResult:
        cards = self.settings.cards
        client = self._require_client(session, tg_id, lock=True)
        current = _active_card(session, client.id)
        if current is not None:
            raise AlreadyHasCard(current.number)
        now = self.clock()
        insert = insert_ignoring(Card.__table__, "number", dialect=session.get_bind().dialect.name)
        for _try in range(DIGITAL_NUMBER_TRIES):
            number = self._next_digital_number(session)
            # A number another member took at this very moment is skipped (no error, no
            # aborted transaction); the next statement sees it and moves past it.
            card_id = session.scalar(
                insert.values(
                    number=number,
                    base_pct=cards.digital_pct,
                    segment=Segment.B2C.value,
                    kind=CardKind.DIGITAL.value,
                    status=CardStatus.ISSUED.value,
                    created_at=now,
                    issued_at=now,
                    client_id=client.id,
                    bound_at=now,
                    bind_failures=0,
                ).returning(Card.__table__.c.id)
            )
            if card_id is not None:
                break
        else:
            raise DigitalCardsUnavailable("exhausted")
        audit.record(session, "card.issued", at=now, actor_id=tg_id, card_id=card_id, how="digital")
        audit.record(
            session,
            "card.digital_issued",
            at=now,
            actor_id=tg_id,
            card_id=card_id,
            client_id=client.id,
        )
        welcome = self._welcome(session, client.id, now)
        session.commit()
        return BindResult(card_id=card_id, number=number, welcome=welcome)

    def _next_digital_number(self, session: Session) -> str:
        low, high = self.settings.cards.digital_from, self.settings.cards.digital_to
        highest = session.scalar(
            select(Card.number)
            .where(numbers_between(low, high))
            .order_by(*HIGHEST_NUMBER_FIRST)
            .limit(1)
        )
        candidate = low if highest is None else int(highest) + 1
        if candidate > high:
            raise DigitalCardsUnavailable("exhausted")
        return str(candidate)

    # ----------------------------------------------------------------- what the client sees

    async def card_view(self, client_or_tg_id: Member | int) -> CardView:
        return await self.db.read(self._card_view, client_or_tg_id)

    def _card_view(self, session: Session, client_or_tg_id: Member | int) -> CardView:
        if isinstance(client_or_tg_id, Member):
            client_id, language = client_or_tg_id.id, client_or_tg_id.language
        else:
            client = self._require_client(session, client_or_tg_id)
            client_id, language = client.id, client.language
        card = _active_card(session, client_id)
        if card is None:
            raise NoActiveCard()
        spend, saved, count = session.execute(
            select(
                func.coalesce(func.sum(Purchase.amount), 0),
                func.coalesce(func.sum(Purchase.discount_amount), 0),
                func.count(Purchase.id),
            )
            .join(Card, Card.id == Purchase.card_id)
            .where(Card.client_id == client_id, Purchase.voided_at.is_(None))
        ).one()
        tiers = self.settings.pricing.cumulative_tiers
        cumulative = tier_for(int(spend), tiers)
        tier_pct = max(card.base_pct, cumulative)
        return CardView(
            card_id=card.id,
            client_id=client_id,
            number=card.number,
            kind=card.kind,
            segment=card.segment,
            base_pct=card.base_pct,
            cumulative_pct=cumulative,
            tier_pct=tier_pct,
            total_spend=int(spend),
            total_saved=int(saved),
            purchases=int(count),
            next_tier=next_tier(tier_pct, int(spend), tiers),
            cumulative_tiers_on=bool(tiers),
            language=language,
            image_key=card.image_key,
            image_file_id=card.image_file_id,
        )

    async def remember_image(self, card_id: int, key: str, file_id: str) -> None:
        """Telegram's file_id of the uploaded card image, reused while the key stays the same."""
        await self.db.write(_remember_image, card_id, key, file_id)

    async def history(self, tg_id: int, page: int = 0) -> HistoryPage:
        return await self.db.read(self._history, tg_id, page)

    def _history(self, session: Session, tg_id: int, page: int) -> HistoryPage:
        client = self._require_client(session, tg_id)
        mine = (Card.id == Purchase.card_id, Card.client_id == client.id)
        total = int(
            session.scalar(select(func.count(Purchase.id)).join(Card, mine[0]).where(mine[1])) or 0
        )
        pages = max(1, -(-total // HISTORY_PAGE_SIZE))
        page = min(max(page, 0), pages - 1)
        rows = session.execute(
            select(Purchase, Card.number)
            .join(Card, mine[0])
            .where(mine[1])
            .order_by(Purchase.created_at.desc(), Purchase.id.desc())
            .offset(page * HISTORY_PAGE_SIZE)
            .limit(HISTORY_PAGE_SIZE)
        )
        items = [
            HistoryItem(
                purchase_id=p.id,
                at=p.created_at,
                card_number=number,
                amount=p.amount,
                discount_pct=p.discount_pct,
                discount_amount=p.discount_amount,
                paid_amount=p.paid_amount,
                voided=p.voided_at is not None,
                branch_id=p.branch_id,
            )
            for p, number in rows
        ]
        return HistoryPage(items=items, page=page, pages=pages, total=total)

    async def offers(self, tg_id: int) -> list[OfferView]:
        return await self.db.read(self._offers, tg_id)

    def _offers(self, session: Session, tg_id: int) -> list[OfferView]:
        client = self._require_client(session, tg_id)
        return active_offers(session, client.id, self.clock())

    async def usual_branch(self, tg_id: int) -> str | None:
        """The name of the branch where the client buys most (None outside a chain)."""
        return await self.db.read(self._usual_branch, tg_id)

    def _usual_branch(self, session: Session, tg_id: int) -> str | None:
        client = _client(session, tg_id)
        if client is None:
            return None
        return usual_branch(session, self.settings, client.id)

    # ----------------------------------------------------------------- optional profile

    async def set_phone(self, tg_id: int, phone: str, *, contact_user_id: int | None) -> str:
        """Only the user's own contact (shared with the request_contact button) is accepted."""
        if contact_user_id != tg_id:
            raise InvalidPhone("not_own")
        value = normalize_phone(phone)
        await self.db.write(self._set_profile, tg_id, "phone", value)
        return value

    async def set_birthday(self, tg_id: int, text: str) -> date:
        value = parse_birthday(text, self.clock().astimezone(self.settings.store.tz).date())
        await self.db.write(self._set_profile, tg_id, "birthday", value)
        return value

    def _set_profile(self, session: Session, tg_id: int, field: str, value: object) -> None:
        client = self._require_client(session, tg_id)
        setattr(client, field, value)
        audit.record(session, f"client.{field}", at=self.clock(), client_id=client.id)
        session.commit()


def _client(session: Session, tg_id: int, *, lock: bool = False) -> Client | None:
    statement = select(Client).where(Client.tg_id == tg_id)
    if lock:
        statement = statement.with_for_update()
    return session.scalar(statement)


def _active_card(session: Session, client_id: int) -> Card | None:
    return session.scalar(
        select(Card)
        .where(Card.client_id == client_id, Card.status != CardStatus.BLOCKED)
        .order_by(Card.bound_at.desc(), Card.id.desc())
        .limit(1)
    )


def _set_reachable(session: Session, tg_id: int, reachable: bool) -> bool:
    result = session.execute(
        update(Client).where(Client.tg_id == tg_id).values(reachable=reachable)
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _remember_image(session: Session, card_id: int, key: str, file_id: str) -> None:
    session.execute(
        update(Card).where(Card.id == card_id).values(image_key=key, image_file_id=file_id)
    )
    session.commit()
