"""How the till's refusals read to the cashier (registered with the one error handler)."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers.errors import renders
from services.cards import group_number
from services.qr_decode import ImageRejected
from services.qr_payload import ExpiredPayload, InvalidPayload
from services.sales import (
    AlreadyVoided,
    CardAlreadyIssued,
    CardBlockedAtTill,
    DraftGone,
    LiveCardRequired,
    NotYourDraft,
    PurchaseNotFound,
    VoidNotAllowed,
)


@renders(InvalidPayload)
def _invalid_payload(exc: Exception, settings: Settings) -> str:
    return _("This QR code is not a valid card of our store.")


@renders(ExpiredPayload)
def _expired_payload(exc: Exception, settings: Settings) -> str:
    return _(
        "⌛ This QR code has expired: ask the customer to open the live card again and scan "
        "the new code."
    )


@renders(LiveCardRequired)
def _live_card_required(exc: Exception, settings: Settings) -> str:
    return _(
        "This card is accepted only with its live QR code: ask the customer to open the live "
        "card (/card or the menu button in their chat with the bot) and scan the code there."
    )


@renders(ImageRejected)
def _image_rejected(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, ImageRejected)
    if exc.reason == "too_big":
        return _("The photo is too large. Send a smaller photo of the QR code.")
    return _("I cannot read this picture. Send a photo of the QR code.")


@renders(DraftGone)
def _draft_gone(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, DraftGone)
    texts = {
        "expired": _("This quote has expired. Scan the card again."),
        "cancelled": _("This quote was cancelled."),
        "replaced": _("This quote was replaced by a newer one for the same card."),
        "confirmed": _("This purchase is already recorded; use ↩️ Void to undo it."),
        "offer_used": _("The personal offer was used meanwhile. Scan the card again."),
    }
    return texts.get(exc.reason, _("This quote no longer exists. Scan the card again."))


@renders(CardBlockedAtTill)
def _blocked_at_till(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, CardBlockedAtTill)
    reasons = {
        "lost": _("reported lost or stolen"),
        "replaced": _("replaced by the holder's new card"),
        "erased": _("its holder left the program"),
    }
    reason = reasons.get(exc.reason or "")
    number = group_number(exc.number)
    if reason is None:
        return _("⛔ Card {number} is blocked: do not give its discount.").format(number=number)
    return _("⛔ Card {number} is blocked ({reason}): do not give its discount.").format(
        number=number, reason=reason
    )


@renders(NotYourDraft)
def _not_your_draft(exc: Exception, settings: Settings) -> str:
    return _("Only the cashier who made this quote, a manager of its shop or an owner can do that.")


@renders(PurchaseNotFound)
def _purchase_not_found(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, PurchaseNotFound)
    return _("Purchase #{id} not found.").format(id=exc.purchase_id)


@renders(AlreadyVoided)
def _already_voided(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, AlreadyVoided)
    return _("Purchase #{id} is already voided.").format(id=exc.purchase_id)


@renders(VoidNotAllowed)
def _void_not_allowed(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, VoidNotAllowed)
    if exc.reason == "not_yours":
        return _("You can void only your own purchases. Ask an owner.")
    return _("A cashier can void a purchase within {minutes} min. Ask an owner.").format(
        minutes=exc.window_min
    )


@renders(CardAlreadyIssued)
def _card_already_issued(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, CardAlreadyIssued)
    return _("Card {number} is already issued.").format(number=group_number(exc.number))
