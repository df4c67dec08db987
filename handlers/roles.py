"""Who is who: owners from OWNER_IDS, cashiers = members of STAFF_CHAT_ID, everyone else a customer.

Staff membership is checked with getChatMember and cached for at most STAFF_CACHE_SEC (≤ 60 s),
so a cashier removed from the staff group loses access within a minute. A cashier must not pay
for that check at the till, though: a scan that first asks Telegram whether its sender works
here answers a round trip later. So while a cashier works (`ACTIVE_SEC` after they last used the
bot), `keep_fresh` asks again a little before their entry runs out, in the background.

The owner's reports name cashiers instead of showing bare Telegram ids. Employee names are
never stored: they are asked from Telegram when a report needs them and kept in memory for a
few minutes (`NAME_CACHE_SEC`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Filter
from aiogram.types import TelegramObject, User

from config import Settings

log = logging.getLogger(__name__)

_MEMBER_STATUSES = {"creator", "administrator", "member", "restricted"}
NAME_CACHE_SEC = 300.0
_NAME_CACHE_MAX = 2_000
ACTIVE_SEC = 8 * 3600.0  # a shift: staff who used the bot this long ago are kept fresh


class Role(IntEnum):
    CUSTOMER = 0
    CASHIER = 1
    OWNER = 2


class StaffDirectory:
    def __init__(self, settings: Settings, ttl: float | None = None) -> None:
        self.settings = settings
        self.ttl = settings.telegram.staff_cache_sec if ttl is None else ttl
        self._cache: dict[int, tuple[bool, float]] = {}
        self._names: dict[int, tuple[str | None, float]] = {}
        self._active: dict[int, float] = {}  # staff member → when they last used the bot

    async def is_member(self, bot: Bot, user_id: int) -> bool:
        chat_id = self.settings.telegram.staff_chat_id
        if chat_id is None:
            return False
        cached = self._cache.get(user_id)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            if cached[0]:
                self._active[user_id] = now
            return cached[0]
        is_member = await self._ask(bot, chat_id, user_id)
        if is_member:
            self._active[user_id] = now
        return is_member

    async def keep_fresh(self, bot: Bot) -> None:
        """Ask again for the staff who work now, shortly before their entry runs out, so that
        none of their updates waits for getChatMember (runs until cancelled)."""
        chat_id = self.settings.telegram.staff_chat_id
        if chat_id is None or self.ttl <= 0:
            return
        while True:
            await asyncio.sleep(self.ttl / 3)
            now = time.monotonic()
            for user_id, seen in list(self._active.items()):
                if seen < now - ACTIVE_SEC:
                    del self._active[user_id]
                    continue
                cached = self._cache.get(user_id)
                due = cached is None or cached[1] - now < self.ttl / 2
                if due and not await self._ask(bot, chat_id, user_id):
                    self._active.pop(user_id, None)  # removed from the group: checked again

    async def _ask(self, bot: Bot, chat_id: int, user_id: int) -> bool:
        now = time.monotonic()
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
        if self.settings.telegram.is_owner(user_id):
            return Role.OWNER
        if await self.is_member(bot, user_id):
            return Role.CASHIER
        return Role.CUSTOMER

    def forget(self, user_id: int) -> None:
        self._cache.pop(user_id, None)

    async def name(self, bot: Bot, user_id: int) -> str | None:
        """The person's name as Telegram shows it (`Olga Petrova`), or None when Telegram does
        not say: the staff group's member list first (a former cashier is still listed as
        "left", with a name), then — for owners, who need not be in the group — their private
        chat with the bot."""
        cached = self._names.get(user_id)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        name = await self._ask_name(bot, user_id)
        if len(self._names) >= _NAME_CACHE_MAX:
            self._names = {k: v for k, v in self._names.items() if v[1] > now}
        self._names[user_id] = (name, now + NAME_CACHE_SEC)
        return name

    async def names(self, bot: Bot, user_ids: Iterable[int]) -> dict[int, str]:
        """`name` for several people at once; those Telegram does not name are left out."""
        ids = sorted(set(user_ids))
        found = await asyncio.gather(*(self.name(bot, user_id) for user_id in ids))
        return {user_id: name for user_id, name in zip(ids, found, strict=True) if name}

    async def _ask_name(self, bot: Bot, user_id: int) -> str | None:
        chat_id = self.settings.telegram.staff_chat_id
        if chat_id is not None:
            try:
                member = await bot.get_chat_member(chat_id, user_id)
                if member.user.full_name.strip():
                    return member.user.full_name.strip()
            except TelegramAPIError as exc:
                log.info("getChatMember(%s, %s) for a name failed: %s", chat_id, user_id, exc)
        if self.settings.telegram.is_owner(user_id):
            try:
                chat = await bot.get_chat(user_id)
                full = " ".join(part for part in (chat.first_name, chat.last_name) if part)
                return full.strip() or None
            except TelegramAPIError as exc:
                log.info("getChat(%s) for a name failed: %s", user_id, exc)
        return None


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
