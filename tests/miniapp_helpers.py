"""Shared steps of the Mini App tests: serve it next to the running bot, sign initData."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web

from bot.miniapp import mini_app
from bot.miniapp.auth import sign_init_data
from tests.conftest import App
from tests.servers import free_port

MINIAPP_URL = "https://shop.example/app/"


@contextlib.asynccontextmanager
async def miniapp_server(app: App) -> AsyncIterator[str]:
    """The Mini App of the running bot on 127.0.0.1 (a free port): its /app/ base URL."""
    web_app = web.Application()
    mini_app(app.bot, app.dp, app.settings).install(web_app)
    runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/app/"
    finally:
        await runner.cleanup()


def init_data(
    app: App, user_id: int, name: str = "Anna", language: str = "en", at: datetime | None = None
) -> str:
    """initData Telegram would hand the Mini App of `user_id`, signed with the bot's token."""
    user = {"id": user_id, "first_name": name, "language_code": language}
    token = app.settings.telegram.bot_token.get_secret_value()
    return sign_init_data(token, user, at or app.clock())


class Client:
    """The Mini App's API as the page calls it, for one user."""

    def __init__(self, http: aiohttp.ClientSession, base: str, data: str | None) -> None:
        self.http = http
        self.base = base
        self.headers = {} if data is None else {"Authorization": f"tma {data}"}

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.base + "api/" + path, headers=self.headers) as response:
            return response.status, await _body(response)

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.http.post(
            self.base + "api/" + path, json=body, headers=self.headers
        ) as response:
            return response.status, await _body(response)


async def _body(response: aiohttp.ClientResponse) -> Any:
    if response.content_type == "application/json":
        return await response.json()
    return await response.read()
