"""The wallet's keyboards: consent, languages, the number prompt, the profile's reply keyboards."""

from __future__ import annotations

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from config import LANGUAGES, Settings
from handlers.wallet.base import LANGUAGE_NAMES, WalletCb


def _languages_row() -> list[InlineKeyboardButton]:
    return [
        InlineKeyboardButton(text=name, callback_data=WalletCb(action="lang", value=code).pack())
        for code, name in LANGUAGE_NAMES.items()
    ]


def _consent_keyboard() -> InlineKeyboardMarkup:
    agree = InlineKeyboardButton(
        text=_("✅ I agree"), callback_data=WalletCb(action="agree").pack()
    )
    return InlineKeyboardMarkup(inline_keyboard=[[agree], _languages_row()])


def _number_keyboard(settings: Settings) -> InlineKeyboardMarkup | None:
    if not settings.cards.digital:
        return None
    button = InlineKeyboardButton(
        text=_("📱 I have no card"), callback_data=WalletCb(action="digital").pack()
    )
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def _skip_labels(i18n: I18n) -> set[str]:
    return {i18n.gettext("Skip", locale=code).casefold() for code in LANGUAGES} | {"/skip"}


def _phone_keyboard() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=_("📞 Share my phone number"), request_contact=True)],
            [KeyboardButton(text=_("Skip"))],
        ],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def _skip_keyboard() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=_("Skip"))]], resize_keyboard=True, one_time_keyboard=True
    )
