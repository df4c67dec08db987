"""Translations: gettext catalogs ru (default), en, et through `aiogram.utils.i18n`."""

from __future__ import annotations

from typing import Any

from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import LANGUAGES, PROJECT_ROOT
from db.models import Client

LOCALES_DIR = PROJECT_ROOT / "locales"
DOMAIN = "messages"

# Telegram's language_code → our catalog. Languages whose speakers in the store's region
# usually read Russian fall back to ru; anything else gets the configured default.
_LANGUAGE_ALIASES = {"ru": "ru", "uk": "ru", "be": "ru", "kk": "ru", "en": "en", "et": "et"}


def create_i18n(default_locale: str = "ru") -> I18n:
    return I18n(path=LOCALES_DIR, default_locale=default_locale, domain=DOMAIN)


def language_from_telegram(code: str | None, default: str) -> str:
    if not code:
        return default
    return _LANGUAGE_ALIASES.get(code.split("-")[0].lower(), default)


async def stored_language(session: AsyncSession, tg_id: int) -> str | None:
    language = await session.scalar(select(Client.language).where(Client.tg_id == tg_id))
    return language if language in LANGUAGES else None


class LocaleMiddleware(I18nMiddleware):
    """The client's stored language, else their Telegram language, else the store default."""

    def __init__(self, i18n: I18n, default: str) -> None:
        super().__init__(i18n)
        self.default = default

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None:
            return self.default
        session: AsyncSession | None = data.get("session")
        if session is not None:
            language = await stored_language(session, user.id)
            if language:
                return language
        return language_from_telegram(user.language_code, self.default)
