"""Abuse limit: a user sending more than FLOOD_LIMIT messages/button presses in 10 s is ignored
for a while (30 s), and told so once.

Where it sits: an *update-level* outer middleware, registered before the database middleware.
aiogram runs `dp.update` outer middlewares before any `dp.message` / `dp.callback_query` one,
so a message-level throttle would run after the locale had been looked up in the database; at
the update level a flood is dropped before it touches the database at all. Only messages,
edited messages and callback queries count: `my_chat_member` (someone blocked the bot) and the
like always pass, the bot must record them.

The warning is sent in the user's Telegram language (their stored choice would cost a query).
The count lives in memory (`FloodGuard`) for one process — a restart forgives everyone — or,
when several workers share the updates (`REDIS_URL`), in Redis (`RedisFloodGuard`): an update
lands on any worker, and the limit is the bot's, not each worker's.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, Message, TelegramObject, Update, User
from aiogram.utils.i18n import I18n, ngettext

from bot.i18n import language_from_telegram

log = logging.getLogger(__name__)

WINDOW_SEC = 10.0
PENALTY_SEC = 30.0
_PRUNE_EVERY = 1000


class FloodGuard:
    """Sliding-window counter per user; pure bookkeeping, no I/O (unit-testable)."""

    def __init__(
        self,
        limit: int,
        window: float = WINDOW_SEC,
        penalty: float = PENALTY_SEC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.penalty = penalty
        self.clock = clock
        self._hits: dict[int, deque[float]] = {}
        self._banned_until: dict[int, float] = {}
        self._seen = 0

    def check(self, user_id: int) -> str:
        """`"ok"` to process, `"warn"` for the update that crossed the limit, `"drop"` after."""
        now = self.clock()
        self._seen += 1
        if self._seen % _PRUNE_EVERY == 0:
            self._prune(now)
        until = self._banned_until.get(user_id)
        if until is not None:
            if now < until:
                return "drop"
            del self._banned_until[user_id]
            self._hits.pop(user_id, None)
        hits = self._hits.setdefault(user_id, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        hits.append(now)
        if len(hits) > self.limit:
            self._banned_until[user_id] = now + self.penalty
            hits.clear()
            return "warn"
        return "ok"

    def _prune(self, now: float) -> None:
        for user_id in [
            u for u, hits in self._hits.items() if not hits or hits[-1] <= now - self.window
        ]:
            del self._hits[user_id]
        for user_id in [u for u, until in self._banned_until.items() if until <= now]:
            del self._banned_until[user_id]

    def __len__(self) -> int:
        return len(self._hits) + len(self._banned_until)

    async def verdict(self, user_id: int) -> str:
        return self.check(user_id)


class RedisFloodGuard:
    """`FloodGuard`'s rule for several workers: the window and the penalty in Redis, shared by
    every process of the bot (a sorted set of hit times per user, a key that expires with the
    penalty)."""

    def __init__(
        self,
        redis: Any,
        limit: int,
        window: float = WINDOW_SEC,
        penalty: float = PENALTY_SEC,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.limit = limit
        self.window = window
        self.penalty = penalty
        self.clock = clock

    async def verdict(self, user_id: int) -> str:
        """`"ok"`, `"warn"` (this update crossed the limit) or `"drop"` (penalty running)."""
        banned, hits = f"flood:ban:{user_id}", f"flood:hits:{user_id}"
        if await self.redis.exists(banned):
            return "drop"
        now = self.clock()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(hits, 0, now - self.window)
            pipe.zadd(hits, {f"{now}:{secrets.token_hex(4)}": now})
            pipe.zcard(hits)
            pipe.expire(hits, int(self.window) + 1)
            _removed, _added, count, _ttl = await pipe.execute()
        if count <= self.limit:
            return "ok"
        await self.redis.delete(hits)
        # Of several workers seeing the crossing update at once, one warns.
        first = await self.redis.set(banned, "1", ex=int(self.penalty), nx=True)
        return "warn" if first else "drop"


class ThrottlingMiddleware(BaseMiddleware):
    def __init__(
        self,
        limit: int,
        i18n: I18n,
        default_language: str = "ru",
        *,
        exempt: frozenset[int] = frozenset(),
        guard: FloodGuard | RedisFloodGuard | None = None,
    ) -> None:
        self.guard = guard or FloodGuard(limit)
        self.i18n = i18n
        self.default_language = default_language
        self.exempt = exempt  # owners: never locked out of their own bot

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Update):
            return await handler(event, data)
        inner = event.message or event.edited_message or event.callback_query
        user: User | None = data.get("event_from_user")
        if inner is None or user is None or user.id in self.exempt:
            return await handler(event, data)
        verdict = await self.guard.verdict(user.id)
        if verdict == "ok":
            return await handler(event, data)
        if verdict == "warn":
            log.warning("user %s is flooding: ignored for %.0f s", user.id, self.guard.penalty)
            await self._warn(inner, user)
        return None  # dropped: no handler, no database

    async def _warn(self, inner: Message | CallbackQuery, user: User) -> None:
        language = language_from_telegram(user.language_code, self.default_language)
        # Outside the locale middleware (it runs later): set up the gettext context here.
        with self.i18n.context(), self.i18n.use_locale(language):
            seconds = int(self.guard.penalty)
            text = ngettext(
                "Too many messages. Please wait {seconds} second.",
                "Too many messages. Please wait {seconds} seconds.",
                seconds,
            ).format(seconds=seconds)
        try:
            if isinstance(inner, CallbackQuery):
                await inner.answer(text, show_alert=True)
            else:
                await inner.answer(text)
        except TelegramAPIError as exc:
            log.info("could not tell user %s to slow down: %s", user.id, exc)
