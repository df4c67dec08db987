"""The optional profile after binding: phone and birthday."""

from __future__ import annotations

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    Message,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers import formatting
from handlers.wallet.keyboards import _phone_keyboard, _skip_keyboard, _skip_labels
from handlers.wallet.views import _ask_profile, _finish_profile
from services.wallet import (
    NO_YEAR,
    WalletService,
)


async def got_phone(message: Message, state: FSMContext, wallet: WalletService, bot: Bot) -> None:
    assert message.contact is not None and message.from_user is not None
    await wallet.set_phone(
        message.from_user.id,
        message.contact.phone_number,
        contact_user_id=message.contact.user_id,
    )
    await message.answer(_("Thank you, your phone number is saved."))
    client = await wallet.require_client(message.from_user.id)
    if client.birthday is None:
        await _ask_profile(bot, message.chat.id, state, phone=False)
    else:
        await _finish_profile(message, state)


async def phone_other(message: Message, state: FSMContext, bot: Bot, i18n: I18n) -> None:
    if (message.text or "").strip().casefold() in _skip_labels(i18n):
        await _ask_profile(bot, message.chat.id, state, phone=False)
        return
    await message.answer(
        _("Tap “📞 Share my phone number” below, or “Skip”."), reply_markup=_phone_keyboard()
    )


async def got_birthday(
    message: Message, state: FSMContext, wallet: WalletService, settings: Settings, i18n: I18n
) -> None:
    assert message.from_user is not None
    if (message.text or "").strip().casefold() in _skip_labels(i18n):
        await _finish_profile(message, state)
        return
    birthday = await wallet.set_birthday(message.from_user.id, message.text or "")
    await message.answer(
        _("Thank you! Birthday saved: {date}.").format(
            date=formatting.day(birthday, settings)
            if birthday.year != NO_YEAR
            else f"{birthday:%d.%m}"
        )
    )
    await _finish_profile(message, state)


async def birthday_hint(message: Message) -> None:
    await message.answer(
        _("Please send your birthday as DD.MM.YYYY or DD.MM, or tap “Skip”."),
        reply_markup=_skip_keyboard(),
    )
