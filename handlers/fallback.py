"""The catch-alls, included last: never leave a person without an answer."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from handlers.filters import Match


async def fallback(message: Message) -> None:
    await message.answer(_("I did not understand that. Send /help to see what I can do."))


async def stale_button(cq: CallbackQuery) -> None:
    """A button no feature takes (an old message, another role's button, forged data): stop
    the spinner and say so; nothing changes."""
    await cq.answer(_("This button is no longer valid."))


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = Router(name=__name__)
    router.message.register(fallback, Match(F.chat.type == "private"))
    router.callback_query.register(stale_button)
    return router
