"""The Bot API HTTP session, with aiogram's response models kept alive.

aiogram parses every answer with `Response[method.__returning__]`. pydantic keeps parametrised
generic models only in a weak cache, and these classes sit in reference cycles, so each pass of
the cyclic garbage collector throws them away and the next API call builds the model again —
about 25 ms of schema building on a small machine, several times a minute under load. Holding
one strong reference per return type (a few dozen at most) makes that a one-time cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods.base import Response

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import TelegramMethod


class BotSession(AiohttpSession):
    _response_models: ClassVar[dict[Any, Any]] = {}

    def check_response(
        self, bot: Bot, method: TelegramMethod[Any], status_code: int, content: str
    ) -> Response[Any]:
        returning = method.__returning__
        if returning not in self._response_models:
            self._response_models[returning] = Response[returning]  # type: ignore[valid-type]
        return super().check_response(bot, method, status_code, content)
