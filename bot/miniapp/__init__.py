"""The Telegram Mini App, served by the bot itself (see `bot.miniapp.app` for its API).

`MINIAPP_URL` (its public HTTPS address) switches it on. In webhook mode it is served under
`/app/` by the webhook's own server; with long polling, by a small server on
`WEB_HOST:WEB_PORT` (`serve_miniapp`). Private chats then get a menu button that opens it
(`set_menu_button`, at start-up), and the card message a button for the live card.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from bot.i18n import create_i18n
from bot.miniapp.app import MiniApp
from config import Settings
from db.database import Database

if TYPE_CHECKING:
    from aiogram import Bot, Dispatcher

log = logging.getLogger(__name__)

__all__ = ["MiniApp", "mini_app", "serve_miniapp", "set_menu_button"]


def mini_app(bot: Bot, dp: Dispatcher, settings: Settings) -> MiniApp:
    """The Mini App over the dispatcher's own database, staff directory, outbox and clock."""
    return MiniApp(
        bot,
        Database.of(dp["sessionmaker"].kw["bind"]),
        settings,
        create_i18n(settings.store.default_language),
        dp["staff"],
        dp["outbox"],
        dp["clock"],
    )


@contextlib.asynccontextmanager
async def serve_miniapp(bot: Bot, dp: Dispatcher, settings: Settings) -> AsyncIterator[None]:
    """Long polling: serve the Mini App on WEB_HOST:WEB_PORT while the bot runs (nothing
    without MINIAPP_URL)."""
    if settings.miniapp.url is None:
        yield
        return
    app = web.Application(client_max_size=64 * 1024)
    mini_app(bot, dp, settings).install(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.miniapp.host, settings.miniapp.port)
    await site.start()
    log.info(
        "Mini App served on http://%s:%s/app/ for %s",
        settings.miniapp.host,
        settings.miniapp.port,
        settings.miniapp.url,
    )
    try:
        yield
    finally:
        await runner.cleanup()


async def set_menu_button(bot: Bot, settings: Settings) -> None:
    """Private chats' menu button: the Mini App when MINIAPP_URL is set, else the command list
    (so removing MINIAPP_URL takes the button away again)."""
    from aiogram.exceptions import TelegramAPIError
    from aiogram.types import MenuButtonDefault, MenuButtonWebApp, WebAppInfo
    from aiogram.utils.i18n import gettext as _

    i18n = create_i18n(settings.store.default_language)
    with i18n.context(), i18n.use_locale(settings.store.default_language):
        button = (
            MenuButtonDefault()
            if settings.miniapp.url is None
            else MenuButtonWebApp(text=_("My card"), web_app=WebAppInfo(url=settings.miniapp.url))
        )
    try:
        await bot.set_chat_menu_button(menu_button=button)
    except TelegramAPIError as exc:  # start-up must not die on a menu button
        log.warning("setChatMenuButton failed: %s", exc)
