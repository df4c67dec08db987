"""Webhook mode (`python -m bot run --webhook`): an aiohttp server Telegram POSTs updates to.

* Same Dispatcher, same handlers as polling (`create_dispatcher`).
* Every request must carry `X-Telegram-Bot-Api-Secret-Token: WEBHOOK_SECRET` (Telegram sends the
  secret we gave `setWebhook`); anything else gets 403 and is never parsed or processed.
* Telegram retries an update it did not get a 2xx for. `ProcessedUpdates` records each update id
  in `processed_updates` *before* handling it (INSERT; a primary-key clash means "seen": skip),
  so a retry is processed once. This is at-most-once per update id: a crash in the middle of a
  handler loses that one update rather than doing it twice — the right side for a till (and
  the sale button itself is idempotent by draft anyway). Rows older than a day are pruned.
  Polling does not need it (getUpdates never hands out a confirmed update again), so the guard
  is installed in webhook mode only and polling pays no write per update.
* Requests are handled to completion before answering (handle_in_background=False), so a 200
  means "done" and Telegram's retry semantics stay meaningful.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.types import TelegramObject, Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings, SettingsError
from db.models import ProcessedUpdate
from services.clock import Clock, utc_now

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
KEEP_PROCESSED = timedelta(days=1)
PRUNE_EVERY = timedelta(hours=1)
_SECRET_FORM = re.compile(r"[A-Za-z0-9_-]{1,256}")


def webhook_secret(settings: Settings) -> str:
    return settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""


def webhook_url(settings: Settings) -> str:
    """WEBHOOK_URL is the public base (https://bot.example.com); the path is appended."""
    base = (settings.webhook_url or "").rstrip("/")
    path = "/" + settings.webhook_path.lstrip("/")
    return base if base.endswith(path) else base + path


def require_webhook(settings: Settings) -> None:
    """Refuse to start webhook mode without what it needs (one line for the operator)."""
    if not settings.webhook_url:
        raise SettingsError(
            "WEBHOOK_URL is empty: set it to the public https address Telegram should call "
            "(e.g. https://bot.example.com), or run without --webhook"
        )
    if not settings.webhook_url.startswith("https://"):
        raise SettingsError("WEBHOOK_URL must start with https:// (Telegram calls HTTPS only)")
    if not _SECRET_FORM.fullmatch(webhook_secret(settings)):
        raise SettingsError(
            "WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -; generate one "
            'with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )


class ProcessedUpdates(BaseMiddleware):
    """Outer update middleware: each update id is processed once (see the module docstring)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock = utc_now,
        keep: timedelta = KEEP_PROCESSED,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.keep = keep
        self._pruned_at: datetime | None = None

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Update):
            return await handler(event, data)
        if not await self.claim(event.update_id):
            log.info("update %s was already processed: skipped", event.update_id)
            return None
        return await handler(event, data)

    async def claim(self, update_id: int) -> bool:
        now = self.clock()
        async with self.sessionmaker() as session:
            session.add(ProcessedUpdate(update_id=update_id, at=now))
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                return False
            if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
                await session.execute(
                    delete(ProcessedUpdate).where(ProcessedUpdate.at < now - self.keep)
                )
                await session.commit()
                self._pruned_at = now
        return True


class SecretRequestHandler(SimpleRequestHandler):
    """aiogram's handler, but a wrong or missing secret is 403 (aiogram says 401) and the
    comparison is over bytes (a non-ASCII header must not crash `compare_digest`)."""

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:
        if not self.secret_token:
            return False  # webhook mode never runs without a secret
        return hmac.compare_digest(
            telegram_secret_token.encode("utf-8", "surrogateescape"),
            self.secret_token.encode("utf-8"),
        )

    async def handle(self, request: web.Request) -> web.Response:
        if not self.verify_secret(request.headers.get(SECRET_HEADER, ""), self.bot):
            return web.Response(status=403, text="Forbidden")
        try:
            await request.json(loads=self.bot.session.json_loads)
        except ValueError:
            return web.Response(status=400, text="Bad Request")
        return await super().handle(request)


def build_webhook_app(dp: Dispatcher, bot: Bot, settings: Settings) -> web.Application:
    """The aiohttp application: POST WEBHOOK_PATH → the dispatcher (startup/shutdown hooks of
    the dispatcher run with the application's)."""
    app = web.Application(client_max_size=1024**2)
    handler = SecretRequestHandler(
        dispatcher=dp, bot=bot, secret_token=webhook_secret(settings), handle_in_background=False
    )
    handler.register(app, path="/" + settings.webhook_path.lstrip("/"))
    setup_application(app, dp, bot=bot)
    return app


async def set_webhook(bot: Bot, dp: Dispatcher, settings: Settings) -> None:
    """Tell Telegram where to POST, with the secret it must send back; call once listening."""
    await bot.set_webhook(
        url=webhook_url(settings),
        secret_token=webhook_secret(settings),
        allowed_updates=dp.resolve_used_update_types(),
    )
    log.info("webhook set to %s", webhook_url(settings))


async def serve_webhook(bot: Bot, dp: Dispatcher, settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT (systemd stop, Ctrl+C). The webhook stays set on exit, so
    Telegram keeps the updates that arrive during a restart."""
    app = build_webhook_app(dp, bot, settings)
    # A short graceful shutdown: an in-flight update finishes, systemd is not kept waiting.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.webhook_host, settings.webhook_port)
    await site.start()
    await set_webhook(bot, dp, settings)  # only now: Telegram may call right away
    log.info(
        "listening on http://%s:%s%s",
        settings.webhook_host,
        settings.webhook_port,
        settings.webhook_path,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
