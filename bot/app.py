"""Wiring: the one factory that builds the Bot and the Dispatcher (tests reuse it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage
from aiogram.types import TelegramObject
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.fsm_storage import close_after_updates, create_storage, renewed_lock, shared_redis
from bot.i18n import LocaleMiddleware, create_i18n
from bot.menus import MenuKeeper
from bot.middlewares import DatabaseMiddleware
from bot.miniapp import set_menu_button
from bot.scheduler import create_sender
from bot.telegram_session import AnsweringUpdates, BotSession, Replies
from bot.throttling import RedisFloodGuard, ThrottlingMiddleware
from config import Settings
from db.database import Database
from handlers import feature_routers
from handlers.roles import StaffDirectory, StaffSeen
from handlers.till import ReceiptLocks
from services.branches import BranchService
from services.clock import Clock, utc_now
from services.delivery import Outbox
from services.qr_decode import QrReader


def create_bot(settings: Settings) -> Bot:
    session = BotSession()  # api.telegram.org
    if settings.telegram.api_url:
        # A self-hosted Bot API server, or the tests' fake one.
        session = BotSession(api=TelegramAPIServer.from_base(settings.telegram.api_url))
    session.middleware(Replies())  # 429s on replies, replies counted against a group's cap
    return Bot(
        token=settings.telegram.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


DRAIN_SECONDS = 10.0


class UpdatesInFlight(BaseMiddleware):
    """The updates being handled, so that shutdown can let them finish (a sale's receipt being
    edited, a reply in flight, the conversation's lock being released) before the storage and
    the HTTP session close, in polling and webhook mode alike. It keeps each update's task,
    not a count: aiogram's own outer middlewares (the conversation lock) run around this one,
    and their last steps belong to the update too."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        task = asyncio.current_task()
        if task is not None and task not in self.tasks:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return await handler(event, data)

    async def drain(self, timeout: float = DRAIN_SECONDS) -> None:  # noqa: ASYNC109
        """Wait until the updates being handled finished, at most `timeout` seconds."""
        tasks = self.tasks - {asyncio.current_task()}
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def create_dispatcher(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    clock: Clock = utc_now,
    storage: BaseStorage | None = None,
    staff: StaffDirectory | None = None,
    update_guards: Sequence[BaseMiddleware] = (),
    delivery_worker: bool = True,
    **extra: Any,
) -> Dispatcher:
    """App-wide objects go into the workflow data; handlers ask for them by name.

    `delivery_worker=False` leaves proactive messages queued for someone else to send (tests
    that drive delivery passes by hand).
    """
    database = Database.of(sessionmaker.kw["bind"])
    outbox = Outbox(database, clock=clock)
    # The chain's branches, read by every till update (which branch is this group?): cached.
    branches = BranchService(database, settings, clock)
    staff = staff or StaffDirectory(settings)
    if staff.branches is None:
        staff.branches = branches
    branches = staff.branches
    qr_reader = QrReader()  # photos are decoded one at a time (services/qr_decode.py)
    # Several workers share what must be the bot's, not a process's, through Redis.
    redis = shared_redis(settings.database.redis_url)
    # Conversations survive restarts: in the database, or in Redis for several workers.
    default_storage, isolation = create_storage(database, redis)
    if storage is None:
        storage = default_storage
    dp = Dispatcher(
        storage=storage,
        events_isolation=isolation,
        settings=settings,
        sessionmaker=sessionmaker,
        clock=clock,
        staff=staff,
        branches=branches,
        outbox=outbox,
        qr_reader=qr_reader,
        # A receipt's ✅ and ↩️ edit it in order (handlers/till/receipts.py), across workers.
        receipt_locks=ReceiptLocks(None if redis is None else partial(renewed_lock, redis)),
        **extra,
    )
    i18n = create_i18n(settings.store.default_language)
    in_flight = UpdatesInFlight()
    dp.update.outer_middleware(in_flight)  # outermost: shutdown waits for what it counts
    dp.update.outer_middleware(AnsweringUpdates(outbox.note_sent))  # replies, counted
    # Cheap guards run first (bot/throttling.py explains why at the update level): a flood, or
    # a webhook retry of an update already handled, is dropped before any handler runs.
    dp.update.outer_middleware(
        ThrottlingMiddleware(
            settings.telegram.flood_limit,
            i18n,
            settings.store.default_language,
            exempt=frozenset(settings.telegram.owner_ids),
            guard=None if redis is None else RedisFloodGuard(redis, settings.telegram.flood_limit),
        )
    )
    for guard in update_guards:
        dp.update.outer_middleware(guard)
    db_middleware = DatabaseMiddleware(sessionmaker, settings, clock)
    dp.update.outer_middleware(db_middleware)
    # Error events propagate outside the update middlewares: give them the database too, before
    # the locale middleware (which reads the client's language through it).
    dp.errors.outer_middleware(db_middleware)
    LocaleMiddleware(i18n, settings.store.default_language, redis=redis).setup(dp)
    dp.message.outer_middleware(StaffSeen())  # which branch groups a cashier writes in
    dp.include_routers(*feature_routers())
    # Command menus per language and scope, set again when the chain changes (bot/menus.py).
    menus = MenuKeeper(settings, branches)
    dp["menus"] = menus
    dp.startup.register(menus.register)
    dp.startup.register(set_menu_button)  # the Mini App's button in private chats

    async def finish_updates() -> None:  # first on shutdown: before the outbox worker stops
        await in_flight.drain()
        await outbox.relayed()
        await close_after_updates(dp.storage)
        if redis is not None:
            await redis.aclose()

    dp.shutdown.register(finish_updates)

    async def stop_reader() -> None:
        qr_reader.close()

    dp.shutdown.register(stop_reader)
    # Cashiers at work never wait for a staff check (handlers/roles.py, `keep_fresh`).
    refresher: list[asyncio.Task[None]] = []

    async def start_staff_refresh(bot: Bot) -> None:
        refresher.append(asyncio.create_task(staff.keep_fresh(bot), name="staff-refresh"))
        refresher.append(asyncio.create_task(menus.run(bot), name="menu-refresh"))

    async def stop_staff_refresh() -> None:
        for task in refresher:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        refresher.clear()

    dp.startup.register(start_staff_refresh)
    dp.shutdown.register(stop_staff_refresh)
    if delivery_worker:

        async def start_outbox(bot: Bot) -> None:
            outbox.start(create_sender(bot, sessionmaker, settings, clock=clock, i18n=i18n))

        dp.startup.register(start_outbox)
        dp.shutdown.register(outbox.stop)
    return dp
