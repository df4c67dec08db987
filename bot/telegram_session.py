"""The Bot API HTTP session: JSON request bodies, and aiogram's response models kept alive.

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

from typing import TYPE_CHECKING, Any, ClassVar

from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods.base import Response
from aiohttp import FormData
from aiohttp.payload import JsonPayload

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import TelegramMethod
    from aiogram.types import InputFile


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
