"""Translations: gettext catalogs ru (default), en, et through `aiogram.utils.i18n`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware
from sqlalchemy import select
from sqlalchemy.orm import Session

from config import LANGUAGES, PROJECT_ROOT
from db.database import Database
from db.models import Client

if TYPE_CHECKING:
    from redis.asyncio import Redis

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


def stored_language(session: Session, tg_id: int) -> str | None:
    """The language on the client's row (a unit of work), if it is one we speak."""
    language = session.scalar(select(Client.language).where(Client.tg_id == tg_id))
    return language if language in LANGUAGES else None


class ExpiringMap:
    """A small per-process map whose entries expire: user id → language.

    Two uses: the language someone picked with /language before agreeing to the privacy
    policy, on one process (`PendingLanguages`; apart from FSM data, which `state.clear()`
    wipes at every /start); and a short cache of the language stored on the client row.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[int, tuple[str, float]] = {}

    def remember(self, user_id: int, language: str) -> None:
        now = time.monotonic()
        if len(self._entries) >= self.MAX_ENTRIES:  # stay small: drop what has expired
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
        self._entries[user_id] = (language, now + self.ttl)

    def get(self, user_id: int) -> str | None:
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            self._entries.pop(user_id, None)
            return None
        return entry[0]

    def forget(self, user_id: int) -> None:
        self._entries.pop(user_id, None)


PENDING_TTL = 24 * 3600  # seconds a language picked before consent is remembered


class PendingLanguages:
    """The language someone picked with /language before agreeing to the privacy policy.

    Nothing personal may be stored before consent, so it is not in the database: it lives for a
    day in this process, or in Redis when several workers share one (the /language press may
    land on one worker and the next message on another)."""

    def __init__(self, redis: Redis | None = None) -> None:
        self.redis = redis
        self.local = ExpiringMap(ttl=float(PENDING_TTL))

    @staticmethod
    def _key(user_id: int) -> str:
        return f"language:pending:{user_id}"

    async def remember(self, user_id: int, language: str) -> None:
        if self.redis is None:
            self.local.remember(user_id, language)
        else:
            await self.redis.set(self._key(user_id), language, ex=PENDING_TTL)

    async def get(self, user_id: int) -> str | None:
        if self.redis is None:
            return self.local.get(user_id)
        value = await self.redis.get(self._key(user_id))
        return value.decode() if isinstance(value, bytes) else value

    async def forget(self, user_id: int) -> None:
        if self.redis is None:
            self.local.forget(user_id)
        else:
            await self.redis.delete(self._key(user_id))


class LocaleMiddleware(I18nMiddleware):
    """The client's stored language, else one picked before consent, else their Telegram
    language, else the store default."""

    def __init__(self, i18n: I18n, default: str, *, redis: Redis | None = None) -> None:
        super().__init__(i18n)
        self.default = default
        self.pending = PendingLanguages(redis)
        # Every update needs the locale; a DB round trip for it on each one was the largest
        # fixed cost of an update. Another process's /language shows here within 30 s.
        self.stored = ExpiringMap(ttl=30.0)

    def forget(self, user_id: int) -> None:
        """The client's language changed (or the client appeared): read it again."""
        self.stored.forget(user_id)

    async def _stored_language(self, db: Database, user_id: int) -> str | None:
        cached = self.stored.get(user_id)
        if cached is not None:
            return cached or None  # "" caches "no client row"
        language = await db.read(stored_language, user_id)
        self.stored.remember(user_id, language or "")
        return language

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None:
            return self.default
        db: Database | None = data.get("db")
        if db is not None:
            language = await self._stored_language(db, user.id)
            if language:
                return language
        pending = await self.pending.get(user.id)
        if pending in LANGUAGES:
            return pending
        return language_from_telegram(user.language_code, self.default)
