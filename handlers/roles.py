"""Who is who: owners from OWNER_IDS, branch managers from the branches, cashiers = members of
a branch's staff group (STAFF_CHAT_ID is the first shop's), everyone else a customer.

Staff membership is checked with getChatMember and cached for at most STAFF_CACHE_SEC (≤ 60 s),
so a cashier removed from the staff group loses access within a minute. A cashier must not pay
for that check at the till, though: a scan that first asks Telegram whether its sender works
here answers a round trip later. So while a cashier works (`ACTIVE_SEC` after they last used the
bot), `keep_fresh` asks again a little before their entry runs out, in the background.

In a chain the bot does not ask every group about every user: the first shop's group is asked
(as before there were branches), and another branch's group once the user has written in it
(`StaffSeen` records that; services.branches). A one-shop install asks its one group.

The owner's reports name cashiers instead of showing bare Telegram ids. Employee names are
never stored: they are asked from Telegram when a report needs them and kept in memory for a
few minutes (`NAME_CACHE_SEC`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from enum import IntEnum
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Filter
from aiogram.types import Message, TelegramObject, User

from config import Settings
from services.branches import MAIN_BRANCH_ID, BranchInfo, BranchService

log = logging.getLogger(__name__)

_MEMBER_STATUSES = {"creator", "administrator", "member", "restricted"}
NAME_CACHE_SEC = 300.0
_NAME_CACHE_MAX = 2_000
# Past this many entries a cache drops its expired ones (every customer who writes is checked).
_CACHE_MAX = 20_000
ACTIVE_SEC = 8 * 3600.0  # a shift: staff who used the bot this long ago are kept fresh


class Role(IntEnum):
    CUSTOMER = 0
    CASHIER = 1
    MANAGER = 2  # a branch manager: a cashier who also sees the branch's figures and voids
    OWNER = 3


class StaffDirectory:
    def __init__(
        self,
        settings: Settings,
        ttl: float | None = None,
        branches: BranchService | None = None,
    ) -> None:
        self.settings = settings
        self.ttl = settings.telegram.staff_cache_sec if ttl is None else ttl
        # Set by the dispatcher (bot/app.py); without it the settings' one shop is the chain.
        self.branches = branches
        self._cache: dict[tuple[int, int], tuple[bool, float]] = {}  # (chat, user) → member?
        self._names: dict[int, tuple[str | None, float]] = {}
        self._active: dict[tuple[int, int], float] = {}  # (chat, user) → when they last worked
        self._seen: dict[int, tuple[frozenset[int], float]] = {}  # user → branches seen in
        self._noted: set[tuple[int, int]] = set()  # (user, branch) recorded by this process

    async def _branches(self) -> list[BranchInfo]:
        """The open branches (the settings' one shop without a branch service)."""
        if self.branches is not None:
            return await self.branches.open()
        chat_id = self.settings.telegram.staff_chat_id
        return [BranchInfo(id=MAIN_BRANCH_ID, name=self.settings.store.name, staff_chat_id=chat_id)]

    async def _candidates(self, user_id: int) -> list[BranchInfo]:
        """The open branches whose group may have this user: every one in a chain of one;
        else the first shop's and those they were seen writing in."""
        found = [b for b in await self._branches() if b.staff_chat_id is not None]
        if len(found) <= 1 or self.branches is None:
            return found
        now = time.monotonic()
        cached = self._seen.get(user_id)
        if cached is None or cached[1] <= now:
            seen = frozenset(await self.branches.staff_branches(user_id))
            if len(self._seen) >= _CACHE_MAX:
                self._seen = {k: v for k, v in self._seen.items() if v[1] > now}
            self._seen[user_id] = cached = (seen, now + self.ttl)
        return [b for b in found if b.is_main or b.id in cached[0]]

    async def workplaces(self, bot: Bot, user_id: int) -> list[BranchInfo]:
        """The open branches whose staff group `user_id` is a member of."""
        candidates = await self._candidates(user_id)
        if not candidates:
            return []
        found = await asyncio.gather(
            *(self._member(bot, b.staff_chat_id, user_id) for b in candidates)  # type: ignore[arg-type]
        )
        return [b for b, member in zip(candidates, found, strict=True) if member]

    async def managed(self, user_id: int) -> list[BranchInfo]:
        """The open branches `user_id` manages."""
        if self.branches is None:
            return []
        return await self.branches.managed_by(user_id)

    async def is_member(self, bot: Bot, user_id: int) -> bool:
        """A cashier of some branch."""
        return bool(await self.workplaces(bot, user_id))

    async def in_group(self, bot: Bot, chat_id: int, user_id: int) -> bool:
        """A member of this staff group."""
        return await self._member(bot, chat_id, user_id)

    async def _member(self, bot: Bot, chat_id: int, user_id: int) -> bool:
        key = (chat_id, user_id)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            if cached[0]:
                self._active[key] = now
            return cached[0]
        is_member = await self._ask(bot, chat_id, user_id)
        if is_member:
            self._active[key] = now
        return is_member

    async def keep_fresh(self, bot: Bot) -> None:
        """Ask again for the staff who work now, shortly before their entry runs out, so that
        none of their updates waits for getChatMember (runs until cancelled)."""
        if self.ttl <= 0:
            return
        while True:
            await asyncio.sleep(self.ttl / 3)
            now = time.monotonic()
            for key, seen in list(self._active.items()):
                if seen < now - ACTIVE_SEC:
                    del self._active[key]
                    continue
                cached = self._cache.get(key)
                due = cached is None or cached[1] - now < self.ttl / 2
                if due and not await self._ask(bot, *key):
                    self._active.pop(key, None)  # removed from the group: checked again

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
        if len(self._cache) >= _CACHE_MAX:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
        self._cache[chat_id, user_id] = (is_member, now + self.ttl)
        return is_member

    async def role(self, bot: Bot, user_id: int) -> Role:
        if self.settings.telegram.is_owner(user_id):
            return Role.OWNER
        if await self.managed(user_id):
            return Role.MANAGER
        if await self.is_member(bot, user_id):
            return Role.CASHIER
        return Role.CUSTOMER

    async def note_seen(self, user_id: int, branch: BranchInfo) -> None:
        """`user_id` wrote in `branch`'s group: from now on their private chat asks it too."""
        key = (user_id, branch.id)
        if self.branches is None or key in self._noted or branch.is_main:
            return
        await self.branches.seen(user_id, branch.id)
        self._noted.add(key)
        self._seen.pop(user_id, None)

    def forget(self, user_id: int) -> None:
        for key in [k for k in self._cache if k[1] == user_id]:
            del self._cache[key]
        self._seen.pop(user_id, None)

    async def name(self, bot: Bot, user_id: int) -> str | None:
        """The person's name as Telegram shows it (`Olga Petrova`), or None when Telegram does
        not say: the staff groups' member lists first (a former cashier is still listed as
        "left", with a name), then — for owners, who need not be in a group — their private
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
        for branch in await self._candidates(user_id):
            try:
                member = await bot.get_chat_member(branch.staff_chat_id, user_id)  # type: ignore[arg-type]
                if member.user.full_name.strip():
                    return member.user.full_name.strip()
            except TelegramAPIError as exc:
                log.info(
                    "getChatMember(%s, %s) for a name failed: %s",
                    branch.staff_chat_id,
                    user_id,
                    exc,
                )
        if self.settings.telegram.is_owner(user_id) or await self.managed(user_id):
            try:
                chat = await bot.get_chat(user_id)
                full = " ".join(part for part in (chat.first_name, chat.last_name) if part)
                return full.strip() or None
            except TelegramAPIError as exc:
                log.info("getChat(%s) for a name failed: %s", user_id, exc)
        return None


class StaffSeen(BaseMiddleware):
    """Outer message middleware: a user writing in a branch's staff group is recorded as seen
    there (`StaffDirectory.note_seen`), once per process and user."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        staff: StaffDirectory | None = data.get("staff")
        if (
            isinstance(event, Message)
            and event.chat.type in ("group", "supergroup")
            and event.from_user is not None
            and not event.from_user.is_bot
            and staff is not None
            and staff.branches is not None
        ):
            branch = await staff.branches.by_chat(event.chat.id)
            if branch is not None:
                await staff.note_seen(event.from_user.id, branch)
        return await handler(event, data)


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
