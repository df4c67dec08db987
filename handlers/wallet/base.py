"""The wallet's callback data, conversation steps and shared constants."""

from __future__ import annotations

import logging

from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import State, StatesGroup

log = logging.getLogger(__name__)

LANGUAGE_NAMES = {"ru": "🇷🇺 Русский", "en": "🇬🇧 English", "et": "🇪🇪 Eesti"}


class WalletCb(CallbackData, prefix="w"):
    action: str  # agree | digital | other | replace | keep | hist | lang
    value: str = ""
    page: int = 0


class Wallet(StatesGroup):
    number = State()
    pin = State()
    confirm_replace = State()
    phone = State()
    birthday = State()
