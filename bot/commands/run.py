"""`python -m bot run` — migrate the database, then run the bot (long polling)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from bot.config import Settings, load_settings
from bot.logging_setup import setup_logging
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from services.history_import import recover_interrupted_imports

log = logging.getLogger(__name__)


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
    settings = load_settings()
    settings.require_bot()
    webhook = bool(getattr(args, "webhook", False))
    if webhook:
        from bot.webhook import require_webhook

        require_webhook(settings)
    setup_logging(settings.log_level)
    asyncio.run(run_polling(settings, webhook=webhook))
    return 0


async def run_polling(settings: Settings, *, webhook: bool = False) -> None:
    # aiogram takes seconds to import: only the commands that run the bot pay for it.
    from bot.app import create_bot, create_dispatcher

    await upgrade(settings.database_url)
    recover_interrupted_imports(settings.database_url)
    engine = create_engine(settings.database_url)
    bot = create_bot(settings)
    sessionmaker = create_sessionmaker(engine)
    guards = []
    if webhook:  # Telegram retries webhook updates: process each update id once
        from bot.webhook import ProcessedUpdates

        guards.append(ProcessedUpdates(sessionmaker))
    dp = create_dispatcher(settings, sessionmaker, update_guards=guards)
    if settings.scheduler_enabled:  # SCHEDULER_ENABLED=false: a second instance without jobs
        from bot.scheduler import Engagement

        engagement = Engagement(bot, sessionmaker, settings, outbox=dp["outbox"])
        dp.startup.register(engagement.start)
        dp.shutdown.register(engagement.stop)
    try:
        me = await bot.get_me()
        log.info("starting @%s (id %s)", me.username, me.id)
        if webhook:
            from bot.webhook import serve_webhook

            await serve_webhook(bot, dp, settings)
        else:
            # getUpdates is refused while a webhook is set (after a switch back from webhook
            # mode); pending updates are kept.
            await bot.delete_webhook(drop_pending_updates=False)
            await dp.start_polling(bot, allowed_updates=dp.resolve_used_update_types())
    finally:
        await bot.session.close()
        await engine.dispose()
