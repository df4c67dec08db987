"""The catch-all, included last: never leave a person in a private chat without an answer."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

router = Router(name=__name__)


@router.message(F.chat.type == "private")
async def fallback(message: Message) -> None:
    await message.answer(_("I did not understand that. Send /help to see what I can do."))
