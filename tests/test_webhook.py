"""Webhook mode: the secret header is required (403 otherwise), a retried update runs once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import create_bot, create_dispatcher
from bot.cli import main
from bot.config import Settings, SettingsError
from bot.webhook import (
    ProcessedUpdates,
    build_webhook_app,
    require_webhook,
    set_webhook,
    webhook_url,
)
from db.models import ProcessedUpdate
from tests.conftest import FrozenClock, make_settings
from tests.fakeapi import FakeTelegram

SECRET = "s3cret-Token_value"
PATH = "/telegram/webhook"
USER_ID = 3601


def update(update_id: int, text: str = "/help") -> dict[str, Any]:
    user = {"id": USER_ID, "is_bot": False, "first_name": "Web", "language_code": "en"}
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": 1_763_000_000,
        "chat": {"id": USER_ID, "type": "private", "first_name": "Web"},
        "from": user,
        "text": text,
    }
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text)}]
    return {"update_id": update_id, "message": message}


@dataclass
class Hook:
    client: TestClient
    tg: FakeTelegram
    sessionmaker: async_sessionmaker[AsyncSession]

    def replies(self) -> list[str]:
        return [m.text or "" for m in self.tg.messages_in(USER_ID)]

    async def processed(self) -> int:
        async with self.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(ProcessedUpdate)))


@pytest.fixture
async def hook(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[Hook]:
    settings = make_settings(
        db_url,
        telegram_api_url=tg.base_url,
        webhook_url="https://bot.example.test",
        webhook_secret=SECRET,
    )
    bot = create_bot(settings)
    dp = create_dispatcher(
        settings, sessionmaker, clock=clock, update_guards=[ProcessedUpdates(sessionmaker, clock)]
    )
    app = build_webhook_app(dp, bot, settings)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    await set_webhook(bot, dp, settings)  # what serve_webhook does once it listens
    try:
        yield Hook(client, tg, sessionmaker)
    finally:
        await client.close()
        await bot.session.close()


async def test_startup_sets_the_webhook_with_the_secret(hook: Hook) -> None:
    call = await hook.tg.wait_for(lambda c: c.method == "setWebhook")
    assert call.params["url"] == "https://bot.example.test/telegram/webhook"
    assert call.params["secret_token"] == SECRET
    assert "message" in call.params["allowed_updates"]
    assert "callback_query" in call.params["allowed_updates"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
        {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"},
        {"X-Telegram-Bot-Api-Secret-Token": SECRET.lower()},
        {"X-Telegram-Bot-Api-Secret-Token": ""},
    ],
)
async def test_requests_without_the_right_secret_are_refused(
    hook: Hook, headers: dict[str, str]
) -> None:
    response = await hook.client.post(PATH, json=update(1), headers=headers)
    assert response.status == 403
    assert await hook.processed() == 0
    await hook.tg.wait_for_idle(quiet=0.1)
    assert hook.replies() == []


async def test_a_non_ascii_secret_header_is_refused_not_crashed(hook: Hook) -> None:
    raw = "s3cret-Tökén".encode()
    response = await hook.client.post(
        PATH, data=b"{}", headers={"X-Telegram-Bot-Api-Secret-Token": raw.decode("latin-1")}
    )
    assert response.status == 403


async def test_the_right_secret_is_processed_and_a_retry_only_once(hook: Hook) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    response = await hook.client.post(PATH, json=update(42), headers=headers)
    assert response.status == 200
    assert any("what this bot can do" in text for text in hook.replies())
    assert await hook.processed() == 1

    # Telegram retries the same update (e.g. our 200 was lost): answered 200, not re-run.
    response = await hook.client.post(PATH, json=update(42), headers=headers)
    assert response.status == 200
    await hook.tg.wait_for_idle(quiet=0.1)
    assert sum("what this bot can do" in text for text in hook.replies()) == 1
    assert await hook.processed() == 1

    response = await hook.client.post(PATH, json=update(43), headers=headers)
    assert response.status == 200
    assert sum("what this bot can do" in text for text in hook.replies()) == 2


async def test_malformed_json_with_the_secret_is_a_bad_request(hook: Hook) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    response = await hook.client.post(PATH, data=b"{not json", headers=headers)
    assert response.status == 400


async def test_only_post_on_the_path(hook: Hook) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    assert (await hook.client.get(PATH, headers=headers)).status == 405
    assert (await hook.client.post("/other", json=update(7), headers=headers)).status == 404


async def test_old_processed_updates_are_pruned(
    sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    guard = ProcessedUpdates(sessionmaker, clock)
    assert await guard.claim(1)
    assert not await guard.claim(1)
    clock.advance(days=2)
    assert await guard.claim(2)  # an hour has passed since the last prune: prunes now
    async with sessionmaker() as session:
        ids = (await session.scalars(select(ProcessedUpdate.update_id))).all()
    assert ids == [2]


# ------------------------------------------------------------------------------- settings


def _settings(**overrides: Any) -> Settings:
    return make_settings("sqlite+aiosqlite:///:memory:", **overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"webhook_secret": SECRET}, "WEBHOOK_URL is empty"),
        ({"webhook_url": "http://x.test", "webhook_secret": SECRET}, "https://"),
        ({"webhook_url": "https://x.test"}, "WEBHOOK_SECRET"),
        ({"webhook_url": "https://x.test", "webhook_secret": "has space"}, "WEBHOOK_SECRET"),
    ],
)
def test_webhook_mode_refuses_incomplete_settings(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        require_webhook(_settings(**overrides))


def test_webhook_url_appends_the_path_once() -> None:
    assert webhook_url(_settings(webhook_url="https://a.test/")) == "https://a.test" + PATH
    assert webhook_url(_settings(webhook_url="https://a.test" + PATH)) == "https://a.test" + PATH


def test_cli_run_webhook_without_settings_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("BOT_TOKEN", "123456:TEST")
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-0123456789abcdef")
    monkeypatch.delenv("WEBHOOK_URL", raising=False)
    assert main(["run", "--webhook"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "WEBHOOK_URL" in err
