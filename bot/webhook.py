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
* A body that is not a Telegram update (not JSON, not an object, `update_id` not an integer in
  0..2^63-1, fields aiogram cannot read) is answered 400 with one log line and never reaches
  the dispatcher; a body over 1 MiB is 413 (read no further). Telegram never sends such a body,
  so the sender is something else holding the secret; a 4xx (unlike a 200) shows the problem
  in the proxy log and in getWebhookInfo instead of dropping it silently.
* Slow or idle clients cannot pin the process (`WebhookServer`): WEBHOOK_REQUEST_TIMEOUT bounds
  the wait for headers, for a body and on an idle keep-alive connection; past
  WEBHOOK_MAX_CONNECTIONS open connections a new one is closed on arrival, and the open-file
  limit is raised (or the start refused) so that the cap always binds first. Without this,
  1,100 half-sent requests used up the descriptors; every accept() then failed and asyncio
  logged each failure with a traceback, a backlog's worth per wake-up, each failure scheduling
  its own retry: about a thousand tracebacks a second (bench/webhook_flood.py). Lines a client
  can cause in bulk are throttled (`Throttle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import resource
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.types import TelegramObject, Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from aiohttp.http import HttpProcessingError
from pydantic import ValidationError
from sqlalchemy import delete
from sqlalchemy.orm import Session

from config import Settings, SettingsError
from db.database import Database
from db.models import ProcessedUpdate
from db.sql import insert_ignoring
from services.clock import Clock, utc_now

if TYPE_CHECKING:
    from bot.leader import Leadership

log = logging.getLogger(__name__)
_http_log = logging.getLogger(__name__ + ".http")  # aiohttp's server log, see _BrokenHttp

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
KEEP_PROCESSED = timedelta(days=1)
PRUNE_EVERY = timedelta(hours=1)
_SECRET_FORM = re.compile(r"[A-Za-z0-9_-]{1,256}")
MAX_BODY = 1024**2  # Telegram's updates are a few KiB; nginx's snippet says the same (1m)
MAX_UPDATE_ID = 2**63 - 1  # processed_updates.update_id is a signed 64-bit integer
TELEGRAM_MAX_CONNECTIONS = 40  # Telegram's own default for setWebhook(max_connections)
# The listen backlog, which is also how many connections asyncio accepts per loop turn. Telegram
# opens at most 40 at once; a smaller batch keeps few refused connections in flight.
BACKLOG = 64
# Open files the process needs besides WEBHOOK_MAX_CONNECTIONS: the Bot API client's pool
# (aiohttp's default 100), the database, stdio and the loop (~30), and the connections refused
# over the cap that are still being closed: one accept() batch per loop turn, each closed three
# turns later (measured: at most ~3 batches in flight during a flood).
FD_RESERVE = 4 * BACKLOG + 128
# After an early answer (403, 413, 408) aiohttp reads and drops the rest of the body this long
# so the client sees the answer rather than a reset; a slow client must not stretch it.
LINGER = 1.0
THROTTLE_EVERY = 10.0
_ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message (selector loop)


def webhook_secret(settings: Settings) -> str:
    return settings.webhook.secret.get_secret_value() if settings.webhook.secret else ""


def webhook_url(settings: Settings) -> str:
    """WEBHOOK_URL is the public base (https://bot.example.com); the path is appended."""
    base = (settings.webhook.url or "").rstrip("/")
    path = "/" + settings.webhook.path.lstrip("/")
    return base if base.endswith(path) else base + path


def require_webhook(settings: Settings) -> None:
    """Refuse to start webhook mode without what it needs (one line for the operator)."""
    if not settings.webhook.url:
        raise SettingsError(
            "WEBHOOK_URL is empty: set it to the public https address Telegram should call "
            "(e.g. https://bot.example.com), or run without --webhook"
        )
    if not settings.webhook.url.startswith("https://"):
        raise SettingsError("WEBHOOK_URL must start with https:// (Telegram calls HTTPS only)")
    if not _SECRET_FORM.fullmatch(webhook_secret(settings)):
        raise SettingsError(
            "WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -; generate one "
            'with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )


class ProcessedUpdates(BaseMiddleware):
    """Outer update middleware: each update id is processed once (see the module docstring)."""

    def __init__(
        self, db: Database, clock: Clock = utc_now, keep: timedelta = KEEP_PROCESSED
    ) -> None:
        self.db = db
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
        prune = self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY
        claimed = await self.db.write(self._claim, update_id, now, prune)
        if claimed and prune:
            self._pruned_at = now
        return claimed

    def _claim(self, session: Session, update_id: int, now: datetime, prune: bool) -> bool:
        """Record the update id unless it is there already (two workers handed the same retry:
        one of them inserts it); prune the old ids now and then."""
        dialect = session.get_bind().dialect.name
        inserted = session.execute(
            insert_ignoring(ProcessedUpdate.__table__, "update_id", dialect=dialect).values(
                update_id=update_id, at=now
            )
        )
        session.commit()
        if not inserted.rowcount:  # type: ignore[attr-defined]
            return False
        if prune:
            session.execute(delete(ProcessedUpdate).where(ProcessedUpdate.at < now - self.keep))
            session.commit()
        return True


class Throttle:
    """One log line per `every` seconds for an event a client can cause thousands of times a
    second: the first occurrence is logged at once, the rest of the window is counted and
    reported in one line when the window ends (a steady flood: one line per window)."""

    def __init__(self, logger: logging.Logger, what: str, every: float = THROTTLE_EVERY) -> None:
        self.logger = logger
        self.what = what
        self.every = every
        self.held = 0
        self._last = ""
        self._since = 0.0
        self._window: asyncio.TimerHandle | None = None

    def __call__(self, detail: str) -> None:
        detail = " ".join(detail.split())[:300]  # one line, whatever a client put in it
        if self._window is None:
            self.logger.warning("%s: %s", self.what, detail)
            self._open_window()
        else:
            self.held += 1
            self._last = detail

    def _open_window(self) -> None:
        loop = asyncio.get_running_loop()
        self._since = loop.time()
        self._window = loop.call_later(self.every, self._close_window)

    def _close_window(self) -> None:
        self._window = None
        if self.held:
            self._report()
            # Keep counting: a flood that goes on is one line per window, not one per event.
            self._open_window()

    def _report(self) -> None:
        self.logger.warning(
            "%s: %d more in the last %.0f s (the last: %s)",
            self.what,
            self.held,
            asyncio.get_running_loop().time() - self._since,
            self._last,
        )
        self.held = 0

    def close(self) -> None:
        if self._window is not None:
            self._window.cancel()
            self._window = None
        if self.held:
            self._report()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, passed through unchanged; `ConnectionCap` counts
    it out when the connection is lost (only the protocol hears of that)."""

    def __init__(self, inner: asyncio.Protocol, on_lost: Callable[[], None]) -> None:
        self.inner = inner
        self.on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            self.on_lost()


class _Refused(asyncio.Protocol):
    """A connection over the cap: closed as soon as it exists, nothing read, nothing parsed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()


class ConnectionCap:
    """Protocol factory for `loop.create_server`: aiohttp's own protocol for up to `limit` open
    connections; past that a new connection is closed on arrival.

    Why a wrapper around the factory: neither aiohttp nor asyncio has a connection limit, and
    the factory is the only place that sees a connection before anything is read from it (and
    before aiohttp starts a task for it). Counting a connection out needs `connection_lost`,
    which only the protocol receives, hence `_Counted`; it forwards asyncio's public protocol
    methods and touches nothing inside aiohttp."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        limit: int,
        refused: Callable[[str], None],
    ) -> None:
        self.factory = factory
        self.limit = limit
        self.refused = refused
        self.open = 0

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.limit:
            self.refused(f"{self.open} are open (WEBHOOK_MAX_CONNECTIONS={self.limit})")
            return _Refused()
        self.open += 1
        return _Counted(self.factory(), self._lost)

    def _lost(self) -> None:
        self.open -= 1


def ensure_fd_room(max_connections: int) -> None:
    """The connection cap must bind before the open-file limit does (at the limit accept()
    fails in a loop, see the module docstring). Raise the soft limit as far as needed (any
    process may, up to the hard limit), or refuse to start with one line for the operator."""
    need = max_connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise SettingsError(
            f"WEBHOOK_MAX_CONNECTIONS={max_connections} needs {need} open files but the "
            f"limit is {hard}: lower WEBHOOK_MAX_CONNECTIONS or raise the limit "
            "(systemd: LimitNOFILE=)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    log.info("open-file limit raised from %s to %s for the webhook", soft, need)


class _BrokenHttp(logging.Filter):
    """aiohttp logs a request it cannot parse (a header line over 8 KiB, over 128 headers) at
    ERROR with a full traceback: anyone can cause that once per connection. Those records
    become one throttled line; everything else (a 500 from our own code) keeps its traceback."""

    def __init__(self, throttle: Throttle) -> None:
        super().__init__()
        self.throttle = throttle

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        if record.levelno >= logging.WARNING:
            self.throttle(f"{record.getMessage()}: {type(exc).__name__}: {exc.message}")
        return False


class SecretRequestHandler(SimpleRequestHandler):
    """aiogram's handler, but a wrong or missing secret is 403 (aiogram says 401) and the
    comparison is over bytes (a non-ASCII header must not crash `compare_digest`); the body
    must arrive within `read_timeout` and be a Telegram update (see the module docstring)."""

    def __init__(self, dispatcher: Dispatcher, bot: Bot, secret_token: str, read_timeout: float):
        super().__init__(
            dispatcher=dispatcher, bot=bot, secret_token=secret_token, handle_in_background=False
        )
        self.read_timeout = read_timeout

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
        refusal = await self.refusal(request)
        if refusal is None:
            return await super().handle(request)  # reads the body aiohttp has kept
        status, reason = refusal
        log.warning("answered %d to %s: %s", status, request.remote, reason)
        response = web.Response(status=status, text=HTTPStatus(status).phrase)
        if status != HTTPStatus.BAD_REQUEST:
            response.force_close()  # the body was not read to its end
        return response

    async def refusal(self, request: web.Request) -> tuple[int, str] | None:
        """Why this request's body is not a Telegram update (status, one-line reason), or
        None when it is one."""
        length = request.content_length
        if length is not None and length > MAX_BODY:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a body of {length} bytes"
        try:
            async with asyncio.timeout(self.read_timeout):
                await request.read()
        except TimeoutError:
            return HTTPStatus.REQUEST_TIMEOUT, f"no whole body within {self.read_timeout:g} s"
        except web.HTTPRequestEntityTooLarge:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a body over {MAX_BODY} bytes"
        except ConnectionError:  # nobody is left to answer; aiohttp drops the answer quietly
            return HTTPStatus.BAD_REQUEST, "the connection closed before the whole body"
        try:
            data = await request.json(loads=self.bot.session.json_loads)
        except (ValueError, LookupError, RecursionError) as exc:  # bad JSON, charset, nesting
            return HTTPStatus.BAD_REQUEST, f"the body is not JSON ({type(exc).__name__})"
        if not isinstance(data, dict):
            return HTTPStatus.BAD_REQUEST, f"the body is a JSON {type(data).__name__}"
        update_id = data.get("update_id")
        # `type(...) is int`: JSON true is not an update id (pydantic would read it as 1).
        if type(update_id) is not int or not 0 <= update_id <= MAX_UPDATE_ID:
            return HTTPStatus.BAD_REQUEST, "update_id is missing or not an integer in 0..2^63-1"
        try:
            Update.model_validate(data, context={"bot": self.bot})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return HTTPStatus.BAD_REQUEST, f"not a Telegram update ({where}: {first['msg']})"
        return None


def build_webhook_app(dp: Dispatcher, bot: Bot, settings: Settings) -> web.Application:
    """The aiohttp application: POST WEBHOOK_PATH → the dispatcher (startup/shutdown hooks of
    the dispatcher run with the application's)."""
    app = web.Application(client_max_size=MAX_BODY)
    handler = SecretRequestHandler(
        dp, bot, webhook_secret(settings), read_timeout=settings.webhook.request_timeout
    )
    handler.register(app, path="/" + settings.webhook.path.lstrip("/"))
    if settings.miniapp.url is not None:  # the Mini App on the same server, under /app/
        from bot.miniapp import mini_app

        mini_app(bot, dp, settings).install(app)
    setup_application(app, dp, bot=bot)
    return app


async def set_webhook(bot: Bot, dp: Dispatcher, settings: Settings) -> None:
    """Tell Telegram where to POST, with the secret it must send back; call once listening."""
    await bot.set_webhook(
        url=webhook_url(settings),
        secret_token=webhook_secret(settings),
        allowed_updates=dp.resolve_used_update_types(),
        # Telegram's own connections must fit under our cap, or it would be refused itself.
        max_connections=min(settings.webhook.max_connections, TELEGRAM_MAX_CONNECTIONS),
    )
    log.info("webhook set to %s", webhook_url(settings))


class WebhookServer:
    """The listening side of webhook mode: aiohttp's server for `app`, behind `ConnectionCap`,
    with WEBHOOK_REQUEST_TIMEOUT on headers, bodies and idle keep-alive connections."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        self.host = settings.webhook.host
        self.wanted_port = settings.webhook.port
        self.max_connections = settings.webhook.max_connections
        self.refused = Throttle(log, "connection refused")
        self.accept_failed = Throttle(log, "accept() failed")
        self.broken_http = _BrokenHttp(Throttle(log, "unreadable HTTP request"))
        self.runner = web.AppRunner(
            app,
            access_log=None,
            # A short graceful shutdown: an in-flight update finishes, systemd is not kept waiting.
            shutdown_timeout=10.0,
            # aiohttp's keep-alive timer runs from the moment a connection opens and again after
            # each answer, and closes the connection if no whole request head has arrived by
            # then: the timeout for slow headers and for idle keep-alive connections alike (the
            # body has its own, in SecretRequestHandler).
            keepalive_timeout=settings.webhook.request_timeout,
            lingering_time=LINGER,
            logger=_http_log,
        )
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_handler: Any = None
        self.cap: ConnectionCap | None = None

    @property
    def port(self) -> int:
        """The port listened on (WEBHOOK_PORT, or the one picked for port 0)."""
        sockets = self._server.sockets if self._server is not None else ()
        return int(sockets[0].getsockname()[1]) if sockets else self.wanted_port

    async def start(self) -> None:
        ensure_fd_room(self.max_connections)
        await self.runner.setup()
        server = self.runner.server
        assert server is not None  # set by setup()
        self._loop = asyncio.get_running_loop()
        self._previous_handler = self._loop.get_exception_handler()
        self._loop.set_exception_handler(self._loop_error)
        _http_log.addFilter(self.broken_http)
        self.cap = ConnectionCap(server, self.max_connections, self.refused)
        try:
            self._server = await self._loop.create_server(
                self.cap, self.host, self.wanted_port, backlog=BACKLOG
            )
        except OSError as exc:  # the port is taken, the address is not ours
            await self.stop()
            raise SettingsError(
                f"cannot listen on WEBHOOK_HOST={self.host} WEBHOOK_PORT={self.wanted_port}: "
                f"{exc.strerror or exc}"
            ) from exc

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()  # stop listening; aiohttp winds down the open connections
        await self.runner.cleanup()
        if self._server is not None:
            await self._server.wait_closed()
        for throttle in (self.refused, self.accept_failed, self.broken_http.throttle):
            throttle.close()
        _http_log.removeFilter(self.broken_http)
        if self._loop is not None:
            self._loop.set_exception_handler(self._previous_handler)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # asyncio reports a failed accept() (out of file descriptors) with a traceback, once per
        # attempt: a throttled line instead. Anything else goes where it went before.
        if context.get("message") == _ACCEPT_FAILED:
            self.accept_failed(str(context.get("exception")))
        elif self._previous_handler is not None:
            self._previous_handler(loop, context)
        else:
            loop.default_exception_handler(context)


async def serve_webhook(
    bot: Bot, dp: Dispatcher, settings: Settings, *, leadership: Leadership | None = None
) -> None:
    """Serve until SIGTERM/SIGINT (systemd stop, Ctrl+C). The webhook stays set on exit, so
    Telegram keeps the updates that arrive during a restart.

    With `leadership` (several workers behind a reverse proxy), this worker stands for leader
    once it listens and only the leader registers the webhook; without, it registers it."""
    server = WebhookServer(build_webhook_app(dp, bot, settings), settings)
    await server.start()
    try:
        # Only now: Telegram may call right away.
        if leadership is None:
            await set_webhook(bot, dp, settings)
        else:
            leadership.start()
        log.info(
            "listening on http://%s:%s%s (at most %s connections)",
            settings.webhook.host,
            server.port,
            settings.webhook.path,
            settings.webhook.max_connections,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        try:
            await server.stop()  # the updates in flight finish first (the dispatcher's shutdown)
        finally:
            if leadership is not None:  # after them: what they queued is sent before we go
                await leadership.stop()
