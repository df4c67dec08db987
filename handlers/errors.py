"""The one error handler: domain refusals become translated replies; bugs are logged with
context and answered politely. No update ever crashes the bot.

Feature modules register how their exceptions read with `@renders(ExcType)`.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable

from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent
from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers import formatting
from services.errors import CardBlocked, CardNotFound, DomainError, InvalidAmount, InvalidCardNumber

log = logging.getLogger(__name__)

Renderer = Callable[[Exception, Settings], str]
_RENDERERS: dict[type[Exception], Renderer] = {}


def renders(*types: type[Exception]) -> Callable[[Renderer], Renderer]:
    def register(func: Renderer) -> Renderer:
        for exc_type in types:
            _RENDERERS[exc_type] = func
        return func

    return register


def render_error(exc: Exception, settings: Settings) -> str | None:
    for klass in type(exc).__mro__:
        if klass in _RENDERERS:
            return _RENDERERS[klass](exc, settings)
    return None


@renders(InvalidAmount)
def _amount(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, InvalidAmount)
    if exc.reason == "ambiguous":
        units, group = exc.digits
        amount = html.escape(exc.text.strip())
        if not settings.store.currency_exponent:
            return _("{amount} is ambiguous: write {whole}.").format(
                amount=amount, whole=units + group
            )
        # The translation picks its language's decimal mark (both are accepted).
        return _("{amount} is ambiguous: write {whole} or {units}.{cents}").format(
            amount=amount, whole=units + group, units=units, cents=group[:2]
        )
    texts = {
        "empty": _("Please send the amount as a number, e.g. 2500 or 2500.50."),
        "format": _("That is not an amount. Send a number, e.g. 2500 or 2500.50."),
        "zero": _("The amount must be greater than zero."),
        "negative": _("The amount must be greater than zero."),
        "precision": _("Too many decimal places: at most two, e.g. 2500.50."),
        "too_large": _("That is more than the maximum purchase of {limit}.").format(
            limit=formatting.money(settings.pricing.max_purchase, settings)
        ),
    }
    return texts.get(exc.reason, texts["format"])


@renders(InvalidCardNumber)
def _card_number(exc: Exception, settings: Settings) -> str:
    return _("A card number is digits only, like 100 045. Please check and send it again.")


@renders(CardNotFound)
def _card_not_found(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, CardNotFound)
    return _("Card {number} is not registered in our program.").format(number=exc.number)


@renders(CardBlocked)
def _card_blocked(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, CardBlocked)
    return _("Card {number} is blocked. Please contact the store.").format(number=exc.number)


async def on_error(event: ErrorEvent, settings: Settings) -> bool:
    exc = event.exception
    update = event.update
    text = render_error(exc, settings) if isinstance(exc, DomainError) else None
    if text is None:
        user = update.event.from_user if hasattr(update.event, "from_user") else None
        log.exception(
            "update %s (%s) from user %s failed",
            update.update_id,
            update.event_type,
            getattr(user, "id", None),
            exc_info=exc,
        )
        text = _("Sorry, something went wrong on our side. Please try again in a minute.")
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(text, show_alert=True)
        elif update.message is not None:
            await update.message.answer(text)
    except TelegramAPIError as reply_error:  # blocked user, deleted chat: nothing to tell
        log.info(
            "could not deliver the error reply for update %s: %s", update.update_id, reply_error
        )
    return True


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = Router(name=__name__)
    router.errors.register(on_error)
    return router
