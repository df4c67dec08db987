"""The customer wallet: consent, binding a printed card (or issuing a digital one), the card view,
history, offers and the optional profile.

Binding is guarded against brute force twice: per Telegram user (at most
BIND_USER_MAX_FAILURES failed attempts in any rolling hour, counted from `bind_attempts` rows so
the limit survives restarts) and per card (BIND_CARD_MAX_FAILURES failures lock binding for that
card until an owner unlocks it). A failed attempt is committed before the refusal is raised.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    BindAttempt,
    Card,
    CardKind,
    CardStatus,
    Client,
    Offer,
    OfferKind,
    Purchase,
    Segment,
)
from services import audit, delivery
from services.cards import (
    HIGHEST_NUMBER_FIRST,
    find_by_number,
    mark_issued,
    normalize_number,
    numbers_between,
)
from services.clock import Clock
from services.errors import CardBlocked, CardNotFound, DomainError
from services.pricing import NextTier, next_tier, tier_for

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

RATE_WINDOW = timedelta(hours=1)
HISTORY_PAGE_SIZE = 5
# A birthday given without a year is stored in this leap year, so that 29.02 is accepted too.
NO_YEAR = 1904


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
class TelegramProfile:
    """What the handler passes in from the Telegram user at consent time."""

    tg_id: int
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None


@dataclass(frozen=True)
class OfferView:
    offer_id: int
    kind: str
    bonus_pct: int
    valid_until: datetime


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
    def __init__(self, session: AsyncSession, settings: Settings, clock: Clock) -> None:
        self.session = session
        self.settings = settings
        self.clock = clock

    # ----------------------------------------------------------------- consent, language

    async def client(self, tg_id: int) -> Client | None:
        return await self.session.scalar(select(Client).where(Client.tg_id == tg_id))

    def has_consent(self, client: Client | None) -> bool:
        return (
            client is not None
            and client.consent_at is not None
            and client.consent_version == self.settings.privacy.policy_version
        )

    async def needs_consent(self, tg_id: int) -> bool:
        return not self.has_consent(await self.client(tg_id))

    async def require_client(self, tg_id: int) -> Client:
        client = await self.client(tg_id)
        if not self.has_consent(client):
            raise ConsentRequired()
        assert client is not None
        return client

    async def give_consent(self, profile: TelegramProfile, language: str) -> Client:
        """Record consent (time + current policy version); the client row is born here."""
        now = self.clock()
        client = await self.client(profile.tg_id)
        if client is None:
            client = Client(tg_id=profile.tg_id, created_at=now)
            self.session.add(client)
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
        await self.session.flush()
        audit.record(
            self.session,
            "client.consent",
            at=now,
            actor_id=profile.tg_id,
            client_id=client.id,
            version=self.settings.privacy.policy_version,
        )
        await self.session.commit()
        return client

    async def set_language(self, tg_id: int, language: str) -> bool:
        """Store the language on the client; False when there is no client (before consent)."""
        if language not in self.settings.store.languages:
            raise ValueError(f"unsupported language {language!r}")
        result = await self.session.execute(
            update(Client).where(Client.tg_id == tg_id).values(language=language)
        )
        await self.session.commit()
        return bool(result.rowcount)

    # ----------------------------------------------------------------- cards

    async def active_card(self, client_id: int) -> Card | None:
        return await self.session.scalar(
            select(Card)
            .where(Card.client_id == client_id, Card.status != CardStatus.BLOCKED)
            .order_by(Card.bound_at.desc(), Card.id.desc())
            .limit(1)
        )

    async def rate_limit_until(self, tg_id: int) -> datetime | None:
        """When the user may try again, or None if they may try now."""
        now = self.clock()
        limit = self.settings.cards.bind_user_max_failures
        window = (BindAttempt.tg_id == tg_id, BindAttempt.success.is_(False))
        since = BindAttempt.at > now - RATE_WINDOW
        failures = await self.session.scalar(select(func.count()).where(*window, since))
        if not failures or failures < limit:
            return None
        # Rolling window: the attempt whose expiry brings the count below the limit.
        oldest = await self.session.scalar(
            select(BindAttempt.at)
            .where(*window, since)
            .order_by(BindAttempt.at)
            .offset(failures - limit)
            .limit(1)
        )
        assert oldest is not None
        return oldest + RATE_WINDOW

    async def _fail(
        self, tg_id: int, number: str | None, card: Card | None, exc: DomainError
    ) -> DomainError:
        """Record a failed attempt (and count it against the card), commit, return the refusal."""
        now = self.clock()
        self.session.add(BindAttempt(tg_id=tg_id, card_number=number, success=False, at=now))
        if card is not None and card.bind_locked_at is None:
            card.bind_failures = (card.bind_failures or 0) + 1
            if card.bind_failures >= self.settings.cards.bind_card_max_failures:
                card.bind_locked_at = now
                audit.record(
                    self.session,
                    "card.bind_locked",
                    at=now,
                    actor_id=tg_id,
                    card_id=card.id,
                    failures=card.bind_failures,
                )
                exc = CardBindLocked(card.number, just_locked=True, failures=card.bind_failures)
                for owner_id in self.settings.telegram.owner_ids:  # in the same unit of work: once
                    await delivery.enqueue(
                        self.session,
                        key=f"bindlock:{card.id}:{now:%Y%m%dT%H%M%S}:{owner_id}",
                        kind=BIND_LOCK_ALERT,
                        chat_id=owner_id,
                        payload={"number": card.number, "failures": card.bind_failures},
                        due_at=now,
                    )
        await self.session.commit()
        return exc

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
        client = await self.require_client(tg_id)
        retry_at = await self.rate_limit_until(tg_id)
        if retry_at is not None:
            raise BindRateLimited(retry_at)
        card = await find_by_number(self.session, number)
        if card is None:
            raise await self._fail(tg_id, number, None, CardNotFound(number))
        if card.client_id == client.id and card.status != CardStatus.BLOCKED:
            return BindResult(card_id=card.id, number=card.number, already_bound=True)
        if card.status == CardStatus.BLOCKED:
            raise await self._fail(tg_id, number, None, CardBlocked(number))
        if card.bind_locked_at is not None:
            raise await self._fail(tg_id, number, None, CardBindLocked(number))
        if card.client_id is not None:
            raise await self._fail(tg_id, number, card, CardBoundElsewhere(number))
        if card.pin:
            if pin is None or not pin.strip():
                raise PinRequired(number)
            if not hmac.compare_digest(pin.strip().encode(), card.pin.encode()):
                raise await self._fail(tg_id, number, card, WrongPin(number))
        current = await self.active_card(client.id)
        if current is not None and not replace:
            raise ReplacementNeedsConfirmation(current.number, number)

        now = self.clock()
        replaced_number = None
        if current is not None:
            # The old card keeps its client_id: its purchases still count for the tier.
            current.status = CardStatus.BLOCKED
            current.blocked_at = now
            current.block_reason = "replaced"
            replaced_number = current.number
            audit.record(
                self.session,
                "card.replaced",
                at=now,
                actor_id=tg_id,
                card_id=current.id,
                client_id=client.id,
                new_card=number,
            )
        # Conditional: of two accounts binding the same card at once, exactly one wins.
        taken = await self.session.execute(
            update(Card)
            .where(Card.id == card.id, Card.client_id.is_(None))
            .values(client_id=client.id, bound_at=now, bind_failures=0)
        )
        if taken.rowcount != 1:
            await self.session.rollback()
            raise CardBoundElsewhere(number)
        mark_issued(self.session, card, now=now, actor_id=tg_id, how="bound")
        self.session.add(BindAttempt(tg_id=tg_id, card_number=number, success=True, at=now))
        audit.record(
            self.session,
            "card.bound",
            at=now,
            actor_id=tg_id,
            card_id=card.id,
            client_id=client.id,
            replaced=replaced_number,
        )
        welcome = await self._welcome(client.id, now)
        await self.session.commit()
        return BindResult(
            card_id=card.id, number=card.number, replaced_number=replaced_number, welcome=welcome
        )

    async def _welcome(self, client_id: int, now: datetime) -> OfferView | None:
        """A new member's welcome offer (WELCOME_BONUS_PCT for WELCOME_VALID_DAYS), in the
        caller's unit of work: once per client, and only for someone new to the store — no
        purchase on any of their cards yet (a printed card used at the till before it was
        linked already had its first purchase)."""
        pct = self.settings.engagement.welcome_bonus_pct
        if pct <= 0:
            return None
        had_one = await self.session.scalar(
            select(Offer.id).where(Offer.client_id == client_id, Offer.kind == OfferKind.WELCOME)
        )
        bought = await self.session.scalar(
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
        self.session.add(offer)
        await self.session.flush()
        audit.record(
            self.session, "offer.welcome", at=now, client_id=client_id, offer_id=offer.id, pct=pct
        )
        return OfferView(offer.id, offer.kind, offer.bonus_pct, offer.valid_until)

    async def issue_digital(self, tg_id: int) -> BindResult:
        """ "I have no card": a digital-only card from the configured range, issued at once."""
        settings = self.settings
        if not settings.cards.digital:
            raise DigitalCardsUnavailable("disabled")
        client = await self.require_client(tg_id)
        current = await self.active_card(client.id)
        if current is not None:
            raise AlreadyHasCard(current.number)
        for _attempt in range(3):  # another instance may take the same number meanwhile
            number = await self._next_digital_number()
            now = self.clock()
            card = Card(
                number=number,
                base_pct=settings.cards.digital_pct,
                segment=Segment.B2C,
                kind=CardKind.DIGITAL,
                status=CardStatus.IN_STOCK,
                created_at=now,
                client_id=client.id,
                bound_at=now,
                bind_failures=0,
            )
            self.session.add(card)
            try:
                await self.session.flush()
            except IntegrityError:
                await self.session.rollback()
                client = await self.require_client(tg_id)
                continue
            mark_issued(self.session, card, now=now, actor_id=tg_id, how="digital")
            audit.record(
                self.session,
                "card.digital_issued",
                at=now,
                actor_id=tg_id,
                card_id=card.id,
                client_id=client.id,
            )
            welcome = await self._welcome(client.id, now)
            await self.session.commit()
            return BindResult(card_id=card.id, number=number, welcome=welcome)
        raise DigitalCardsUnavailable("exhausted")

    async def _next_digital_number(self) -> str:
        low, high = self.settings.cards.digital_from, self.settings.cards.digital_to
        highest = await self.session.scalar(
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

    async def card_view(self, client_or_tg_id: Client | int) -> CardView:
        if isinstance(client_or_tg_id, Client):
            client = client_or_tg_id
        else:
            client = await self.require_client(client_or_tg_id)
        card = await self.active_card(client.id)
        if card is None:
            raise NoActiveCard()
        spend, saved, count = (
            await self.session.execute(
                select(
                    func.coalesce(func.sum(Purchase.amount), 0),
                    func.coalesce(func.sum(Purchase.discount_amount), 0),
                    func.count(Purchase.id),
                )
                .join(Card, Card.id == Purchase.card_id)
                .where(Card.client_id == client.id, Purchase.voided_at.is_(None))
            )
        ).one()
        tiers = self.settings.pricing.cumulative_tiers
        cumulative = tier_for(int(spend), tiers)
        tier_pct = max(card.base_pct, cumulative)
        return CardView(
            card_id=card.id,
            client_id=client.id,
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
            language=client.language,
            image_key=card.image_key,
            image_file_id=card.image_file_id,
        )

    async def remember_image(self, card_id: int, key: str, file_id: str) -> None:
        """Telegram's file_id of the uploaded card image, reused while the key stays the same."""
        await self.session.execute(
            update(Card).where(Card.id == card_id).values(image_key=key, image_file_id=file_id)
        )
        await self.session.commit()

    async def history(self, tg_id: int, page: int = 0) -> HistoryPage:
        client = await self.require_client(tg_id)
        mine = (Card.id == Purchase.card_id, Card.client_id == client.id)
        total = await self.session.scalar(
            select(func.count(Purchase.id)).join(Card, mine[0]).where(mine[1])
        )
        pages = max(1, -(-int(total or 0) // HISTORY_PAGE_SIZE))
        page = min(max(page, 0), pages - 1)
        rows = await self.session.execute(
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
            )
            for p, number in rows
        ]
        return HistoryPage(items=items, page=page, pages=pages, total=int(total or 0))

    async def offers(self, tg_id: int) -> list[OfferView]:
        client = await self.require_client(tg_id)
        now = self.clock()
        rows = await self.session.scalars(
            select(Offer)
            .where(Offer.client_id == client.id, *Offer.active_at(now))
            .order_by(Offer.valid_until)
        )
        return [
            OfferView(offer_id=o.id, kind=o.kind, bonus_pct=o.bonus_pct, valid_until=o.valid_until)
            for o in rows
        ]

    # ----------------------------------------------------------------- optional profile

    async def set_phone(self, tg_id: int, phone: str, *, contact_user_id: int | None) -> str:
        """Only the user's own contact (shared with the request_contact button) is accepted."""
        if contact_user_id != tg_id:
            raise InvalidPhone("not_own")
        value = normalize_phone(phone)
        client = await self.require_client(tg_id)
        client.phone = value
        audit.record(self.session, "client.phone", at=self.clock(), client_id=client.id)
        await self.session.commit()
        return value

    async def set_birthday(self, tg_id: int, text: str) -> date:
        value = parse_birthday(text, self.clock().astimezone(self.settings.store.tz).date())
        client = await self.require_client(tg_id)
        client.birthday = value
        audit.record(self.session, "client.birthday", at=self.clock(), client_id=client.id)
        await self.session.commit()
        return value
