"""`python -m bot run` — migrate the database, then run the bot (long polling)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from bot.config import Settings, load_settings
from bot.logging_setup import setup_logging
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "run",
        help="migrate the database and run the bot (long polling)",
        description="Migrate the database, then run the bot with long polling until Ctrl+C.",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    settings.require_bot()
    setup_logging(settings.log_level)
    asyncio.run(run_polling(settings))
    return 0


async def run_polling(settings: Settings) -> None:
    # aiogram takes seconds to import: only the commands that run the bot pay for it.
    from bot.app import create_bot, create_dispatcher

    await upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    bot = create_bot(settings)
    dp = create_dispatcher(settings, create_sessionmaker(engine))
    try:
        me = await bot.get_me()
        log.info("starting @%s (id %s)", me.username, me.id)
        await dp.start_polling(bot, allowed_updates=dp.resolve_used_update_types())
    finally:
        await bot.session.close()
        await engine.dispose()
