"""Who is who: owners from OWNER_IDS, cashiers = members of STAFF_CHAT_ID, everyone else a customer.

Staff membership is checked with getChatMember and cached for at most STAFF_CACHE_SEC (≤ 60 s),
so a cashier removed from the staff group loses access within a minute.
"""

from __future__ import annotations

import logging
import time
from enum import IntEnum
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Filter
from aiogram.types import TelegramObject, User

from bot.config import Settings

log = logging.getLogger(__name__)

_MEMBER_STATUSES = {"creator", "administrator", "member", "restricted"}


class Role(IntEnum):
    CUSTOMER = 0
    CASHIER = 1
    OWNER = 2


class StaffDirectory:
    def __init__(self, settings: Settings, ttl: float | None = None) -> None:
        self.settings = settings
        self.ttl = settings.staff_cache_sec if ttl is None else ttl
        self._cache: dict[int, tuple[bool, float]] = {}

    async def is_member(self, bot: Bot, user_id: int) -> bool:
        chat_id = self.settings.staff_chat_id
        if chat_id is None:
            return False
        cached = self._cache.get(user_id)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            member = await bot.get_chat_member(chat_id, user_id)
            status = member.status.value if hasattr(member.status, "value") else str(member.status)
            is_member = (
                status in _MEMBER_STATUSES and getattr(member, "is_member", True) is not False
            )
        except TelegramAPIError as exc:
            # Fail closed: without an answer from Telegram nobody gets staff rights.
            log.warning("getChatMember(%s, %s) failed: %s", chat_id, user_id, exc)
            return False
        self._cache[user_id] = (is_member, now + self.ttl)
        return is_member

    async def role(self, bot: Bot, user_id: int) -> Role:
        if self.settings.is_owner(user_id):
            return Role.OWNER
        if await self.is_member(bot, user_id):
            return Role.CASHIER
        return Role.CUSTOMER

    def forget(self, user_id: int) -> None:
        self._cache.pop(user_id, None)


class HasRole(Filter):
    """Router-level filter: `router.message.filter(HasRole(Role.CASHIER))`."""

    def __init__(self, minimum: Role) -> None:
        self.minimum = minimum

    async def __call__(self, event: TelegramObject, **data: Any) -> bool | dict[str, Any]:
        user: User | None = data.get("event_from_user")
        staff: StaffDirectory | None = data.get("staff")
        bot: Bot | None = data.get("bot")
        if user is None or staff is None or bot is None:
            return False
        role = await staff.role(bot, user.id)
        return {"role": role} if role >= self.minimum else False


def IsStaff() -> HasRole:
    return HasRole(Role.CASHIER)


def IsOwner() -> HasRole:
    return HasRole(Role.OWNER)
