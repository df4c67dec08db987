"""`python -m bot run` — migrate the database, then run the bot (long polling).

What an operator gets wrong on the first start is answered in one line, not a traceback: bad or
missing settings (all of them at once, exit 2), a token Telegram refuses (exit 2), no route to
the Bot API (exit 1). Settings the bot runs without but that switch features off (no owners, no
staff group) are logged as warnings once it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.logging_setup import setup_logging
from config import Settings, SettingsError, load_settings
from db.database import Database
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from services.history_import import recover_interrupted_imports

if TYPE_CHECKING:
    from aiogram import Bot, Dispatcher
    from aiogram.types import User
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from bot.leader import Leadership

log = logging.getLogger(__name__)

TELEGRAM_API_DEFAULT = "https://api.telegram.org"


class BotApiUnreachable(Exception):
    """The Bot API could not be asked who the bot is: one line for the operator, exit code 1."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "run",
        help="migrate the database and run the bot (long polling)",
        description="Migrate the database, then run the bot with long polling until Ctrl+C.",
    )
    parser.add_argument(
        "--webhook",
        action="store_true",
        help="serve Telegram webhooks on WEBHOOK_HOST:WEBHOOK_PORT instead of long polling "
        "(needs WEBHOOK_URL and WEBHOOK_SECRET)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(require_bot=True)
    webhook = bool(getattr(args, "webhook", False))
    if webhook:
        from bot.webhook import require_webhook

        require_webhook(settings)
    setup_logging(settings.log_level)
    try:
        asyncio.run(run_polling(settings, webhook=webhook))
    except BotApiUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def warn_about_missing_roles(settings: Settings, staff_groups: Sequence[int] = ()) -> None:
    """The bot runs without owners or a staff group, but whole features are then off: say so.
    `staff_groups`: the staff groups of the chain's other open branches, if any."""
    if not settings.telegram.owner_ids:
        log.warning(
            "OWNER_IDS is empty: nobody is an owner, so nobody gets the owner commands (/stats, "
            "/digest, /export, /block …), the weekly digest or the owner alerts; set OWNER_IDS "
            "to your Telegram id"
        )
    if settings.telegram.staff_chat_id is None and not staff_groups:
        log.warning(
            "STAFF_CHAT_ID is empty: there are no cashiers (only owners can record sales) and "
            "sales are not logged to a staff group; set STAFF_CHAT_ID to the staff group's id"
        )
    elif settings.telegram.staff_chat_id is None:
        log.warning(
            "STAFF_CHAT_ID is empty: the first shop (%s) has no staff group, so nobody but the "
            "owners and its managers sells for it; set STAFF_CHAT_ID to its staff group's id",
            settings.store.name,
        )


async def who_am_i(bot: Bot, settings: Settings) -> User:
    """getMe, the first call to Telegram: a refused token or an unreachable server is one line."""
    from aiogram.exceptions import (
        ClientDecodeError,
        TelegramAPIError,
        TelegramNetworkError,
        TelegramUnauthorizedError,
    )

    url = settings.telegram.api_url or TELEGRAM_API_DEFAULT
    token = settings.telegram.bot_token.get_secret_value()

    def reason(exc: TelegramAPIError) -> str:
        # aiohttp may quote the request URL, which holds the token: never print it.
        return exc.message.replace(token, "<BOT_TOKEN>")

    try:
        return await bot.get_me()
    except TelegramUnauthorizedError as exc:
        # Telegram's description is "Unauthorized": the token is wrong or was revoked.
        raise SettingsError(
            f"Telegram refused BOT_TOKEN (401 {reason(exc)}): the token is wrong or was revoked; "
            "copy the current one from @BotFather (/mybots → your bot → API Token)"
        ) from None
    except TelegramNetworkError as exc:
        raise BotApiUnreachable(
            f"cannot reach the Telegram Bot API at {url}: {reason(exc)}; check the network"
            + (" and TELEGRAM_API_URL" if settings.telegram.api_url else "")
        ) from None
    except TelegramAPIError as exc:
        raise BotApiUnreachable(
            f"the Telegram Bot API at {url} refused getMe: {reason(exc)}"
        ) from None
    except ClientDecodeError:
        raise BotApiUnreachable(
            f"{url} did not answer like a Telegram Bot API server; check TELEGRAM_API_URL"
        ) from None


def freeze_startup_heap() -> None:
    """Leave what the process built at start-up out of the garbage collector's full passes.

    Once aiogram, pydantic's models, SQLAlchemy's mappers and the catalogs are loaded, the
    process holds some 350,000 objects that live as long as it does; every full collection
    walked all of them again, a 300 ms stop of every conversation (bench.till_latency saw it
    as one step in eighty taking four round trips). Collected once and frozen, they are
    skipped (`gc.freeze`); what is created afterwards is collected as before."""
    gc.collect()
    gc.freeze()


def leader_of(
    bot: Bot,
    dp: Dispatcher,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    webhook: bool,
) -> Leadership:
    """This process's candidacy: once elected it sends the queued messages, runs the jobs
    (unless SCHEDULER_ENABLED=false) and, in webhook mode, registers the webhook."""
    from bot.leader import Leadership, lock_for
    from bot.scheduler import Engagement

    engagement = Engagement(
        bot,
        sessionmaker,
        settings,
        outbox=dp["outbox"],
        jobs=settings.engagement.scheduler_enabled,
    )

    async def elected() -> None:
        await engagement.start()
        if webhook:
            from bot.webhook import set_webhook

            await set_webhook(bot, dp, settings)

    return Leadership(lock_for(settings.database.url), elected, engagement.stop)


def warn_about_shared_state(settings: Settings) -> None:
    """Several webhook workers on one PostgreSQL database share conversations and the flood
    limit through Redis; without it each worker keeps its own."""
    if settings.database.url.startswith("postgresql") and not settings.database.redis_url:
        log.warning(
            "REDIS_URL is empty: if several workers serve this bot, a conversation started on "
            "one (a cashier's scan) is not seen by another (the amount), and each keeps its own "
            "flood limit; set REDIS_URL for more than one worker"
        )


async def run_polling(settings: Settings, *, webhook: bool = False) -> None:
    # aiogram takes seconds to import: only the commands that run the bot pay for it.
    from bot.app import create_bot, create_dispatcher

    bot = create_bot(settings)
    try:
        # First, so that a token Telegram refuses changes nothing (no database is created).
        me = await who_am_i(bot, settings)
        await upgrade(settings.database.url)
        await asyncio.to_thread(recover_interrupted_imports, settings.database.url)
        engine = create_engine(settings.database.url)
        try:
            sessionmaker = create_sessionmaker(engine)
            guards = []
            if webhook:  # Telegram retries webhook updates: process each update id once
                from bot.webhook import ProcessedUpdates

                guards.append(ProcessedUpdates(Database.of(engine)))
            # The delivery worker and the jobs run in the leader only (bot/leader.py): one
            # process among however many serve this bot keeps Telegram's limits and runs each
            # job once.
            dp = create_dispatcher(
                settings, sessionmaker, update_guards=guards, delivery_worker=False
            )
            leadership = leader_of(bot, dp, settings, sessionmaker, webhook=webhook)
            freeze_startup_heap()
            log.info("starting @%s (id %s)", me.username, me.id)
            others = [b.staff_chat_id for b in await dp["branches"].open() if not b.is_main]
            warn_about_missing_roles(settings, [c for c in others if c is not None])
            if webhook:
                from bot.webhook import serve_webhook

                warn_about_shared_state(settings)
                await serve_webhook(bot, dp, settings, leadership=leadership)
            else:

                async def stand() -> None:  # aiogram runs a plain function in a thread
                    leadership.start()

                dp.startup.register(stand)
                dp.shutdown.register(leadership.stop)
                # getUpdates is refused while a webhook is set (after a switch back from
                # webhook mode); pending updates are kept.
                await bot.delete_webhook(drop_pending_updates=False)
                from bot.miniapp import serve_miniapp

                async with serve_miniapp(bot, dp, settings):  # WEB_HOST:WEB_PORT, if MINIAPP_URL
                    await dp.start_polling(bot, allowed_updates=dp.resolve_used_update_types())
        finally:
            await engine.dispose()
    finally:
        await bot.session.close()
