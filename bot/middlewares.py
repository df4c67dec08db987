"""Per-update context: the database, the time of the update, and the services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services import build_services
from config import Settings
from db.database import Database
from services.clock import Clock


class DatabaseMiddleware(BaseMiddleware):
    """Hands handlers `db` (the process's `Database`), `now` and the services.

    Nothing is opened per update: services run their own units of work on `db`.
    """

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, clock: Clock
    ) -> None:
        self.db = Database.of(sessionmaker.kw["bind"])
        self.settings = settings
        self.clock = clock

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        data["db"] = self.db
        data["now"] = self.clock()
        data.update(build_services(self.db, self.settings, self.clock))
        return await handler(event, data)
