"""Per-update context: one DB session, the time of the update, and the services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services import build_services
from config import Settings
from services.clock import Clock


class DbSessionMiddleware(BaseMiddleware):
    """Opens a session per update and hands handlers `session`, `now` and the services.

    It never commits: services own their units of work. Whatever a failed update left
    uncommitted is rolled back when the session closes.
    """

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, clock: Clock
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.clock = clock

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        session = self.sessionmaker()  # connects on its first statement, if any
        data["session"] = session
        data["now"] = self.clock()
        data.update(build_services(session, self.settings, self.clock))
        try:
            return await handler(event, data)
        finally:
            # Most updates never touch this session (the till works on the blocking lane,
            # the locale is cached): closing a session that holds nothing costs a greenlet
            # round trip per update for nothing.
            if session.in_transaction():
                await session.close()
