"""The Bot API HTTP session: JSON request bodies, aiogram's response models kept alive, and
replies that survive Telegram's flood limit.

Request bodies. aiogram sends every call as a form; without files that is
`application/x-www-form-urlencoded`, and aiohttp percent-escapes each byte of each value in
Python (`urllib.parse.quote`). For a Russian or Estonian text that escaping was the single most
expensive step of sending a message (about 6 % of a till sale's CPU, README, the till's
benchmark). The Bot API takes the same parameters as a JSON body, which the C JSON encoder
writes in a fraction of that; calls that upload files keep aiogram's multipart form.

Response models. aiogram parses every answer with `Response[method.__returning__]`. pydantic
keeps parametrised generic models only in a weak cache, and these classes sit in reference
cycles, so each pass of the cyclic garbage collector throws them away and the next API call
builds the model again — about 25 ms of schema building on a small machine, several times a
minute under load. Holding one strong reference per return type (a few dozen at most) makes that
a one-time cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from aiogram import BaseMiddleware
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods.base import Response, TelegramType
from aiogram.types import TelegramObject
from aiohttp import FormData
from aiohttp.payload import JsonPayload

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import TelegramMethod
    from aiogram.types import InputFile

log = logging.getLogger(__name__)


class BotSession(AiohttpSession):
    _response_models: ClassVar[dict[Any, Any]] = {}

    def build_form_data(self, bot: Bot, method: TelegramMethod[Any]) -> FormData:
        """The call's parameters as a JSON object (nested objects as JSON, not as JSON
        strings); aiogram's form when the call uploads a file."""
        files: dict[str, InputFile] = {}
        body: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared is None or prepared == "":  # what aiogram's form leaves out
                continue
            body[key] = prepared
        if files:
            return super().build_form_data(bot, method)
        # aiohttp takes any payload where aiogram passes its form.
        return JsonPayload(body, dumps=self.json_dumps)  # type: ignore[return-value]

    def check_response(
        self, bot: Bot, method: TelegramMethod[Any], status_code: int, content: str
    ) -> Response[Any]:
        returning = method.__returning__
        if returning not in self._response_models:
            self._response_models[returning] = Response[returning]  # type: ignore[valid-type]
        return super().check_response(bot, method, status_code, content)


# ------------------------------------------------------------- the bot's own replies
# While the dispatcher handles an update, the calls it makes answer a person who is waiting (a
# cashier at the till); this holds who counts the messages they send to a chat (the delivery
# sender's rate limiter, `Outbox.note_sent`). The delivery worker's own task never has it set:
# the sender paces itself and handles its own 429s.
ANSWERING: ContextVar[Callable[[int], None] | None] = ContextVar("answering", default=None)

# How long a reply may wait, in all, for Telegram's flood limit before it is given up on: a
# group over its cap is asked to wait up to ~40 s, and during a rush a reply may be refused
# again after its wait when other messages took the freed slots first.
REPLY_WAIT_MAX = 60.0


class AnsweringUpdates(BaseMiddleware):
    """Outer update middleware: marks the calls made while handling the update (`ANSWERING`)
    and says who counts the messages they send (`note_sent(chat_id)`)."""

    def __init__(self, note_sent: Callable[[int], None]) -> None:
        self.note_sent = note_sent

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        token = ANSWERING.set(self.note_sent)
        try:
            return await handler(event, data)
        finally:
            ANSWERING.reset(token)


class Replies(BaseRequestMiddleware):
    """The bot's replies and a group's 20 messages a minute (the staff group at a busy till):

    * a reply Telegram refuses with 429 is sent again after `retry_after` instead of being
      lost — the cashier gets the answer late rather than never (after a minute of waiting in
      all it is given up on);
    * a message a reply puts into a group is reported to the delivery sender (`ANSWERING`),
      whose bucket for that group is charged, so the staff log leaves the group's budget to
      the till's own replies (and combines its lines while it waits)."""

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        note_sent = ANSWERING.get()
        waited = 0.0
        while True:
            try:
                response = await make_request(bot, method)
                break
            except TelegramRetryAfter as exc:
                waited += exc.retry_after
                if note_sent is None or waited > REPLY_WAIT_MAX:
                    raise
                log.info(
                    "%s hit Telegram's flood limit; sending again in %s s",
                    type(method).__name__,
                    exc.retry_after,
                )
                await asyncio.sleep(exc.retry_after)
        chat_id = getattr(method, "chat_id", None)
        if note_sent is not None and isinstance(chat_id, int) and chat_id < 0 and _sends(method):
            note_sent(chat_id)
        return response


def _sends(method: TelegramMethod[Any]) -> bool:
    """A call that puts a new message into a chat (what a group's per-minute cap counts)."""
    name = type(method).__name__
    return name.startswith("Send") or name in ("CopyMessage", "ForwardMessage")
