"""How the wallet's domain refusals read to the customer (registered with the one error handler)."""

from __future__ import annotations

import html

from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers import formatting
from handlers.errors import renders
from services.cards import group_number
from services.wallet import (
    AlreadyHasCard,
    BindRateLimited,
    CardBindLocked,
    CardBoundElsewhere,
    ConsentRequired,
    DigitalCardsUnavailable,
    InvalidBirthday,
    InvalidPhone,
    NoActiveCard,
    PinRequired,
    ReplacementNeedsConfirmation,
    WrongPin,
)


@renders(ConsentRequired)
def _consent_required(exc: Exception, settings: Settings) -> str:
    return _("First send /start to join the loyalty program of {store}.").format(
        store=html.escape(settings.store.name)
    )


@renders(NoActiveCard)
def _no_card(exc: Exception, settings: Settings) -> str:
    return _("You have no card yet. Send /start to add your card or get a digital one.")


@renders(CardBoundElsewhere)
def _bound_elsewhere(exc: Exception, settings: Settings) -> str:
    return _(
        "This card is already linked to another Telegram account. "
        "If it is your card, please contact the store."
    )


@renders(PinRequired)
def _pin_required(exc: Exception, settings: Settings) -> str:
    return _("This card is protected by a PIN. Send the card number again, then its PIN.")


@renders(WrongPin)
def _wrong_pin(exc: Exception, settings: Settings) -> str:
    return _("The PIN does not match. Check the back of the card and send the PIN again.")


@renders(CardBindLocked)
def _bind_locked(exc: Exception, settings: Settings) -> str:
    return _(
        "This card cannot be linked right now because of too many failed attempts. "
        "Please contact the store."
    )


@renders(BindRateLimited)
def _rate_limited(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, BindRateLimited)
    return _("Too many unsuccessful attempts. Please try again after {time}.").format(
        time=formatting.when(exc.retry_at, settings)
    )


@renders(AlreadyHasCard)
def _already_has_card(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, AlreadyHasCard)
    return _("You already have card {number}. Send /card to see it.").format(
        number=group_number(exc.number)
    )


@renders(DigitalCardsUnavailable)
def _no_digital(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, DigitalCardsUnavailable)
    if exc.reason == "exhausted":
        return _("No digital cards are left right now. Please ask for a printed card in the store.")
    return _("Digital cards are not available. Please get a printed card in the store.")


@renders(InvalidBirthday)
def _bad_birthday(exc: Exception, settings: Settings) -> str:
    return _("Please send the date as DD.MM.YYYY (for example 31.12.1990) or just DD.MM.")


@renders(InvalidPhone)
def _bad_phone(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, InvalidPhone)
    if exc.reason == "not_own":
        return _("Please share your own number with the button below.")
    return _("That does not look like a phone number.")


@renders(ReplacementNeedsConfirmation)
def _needs_confirmation(exc: Exception, settings: Settings) -> str:
    return _("You already have a card. Send /start to link another one.")
