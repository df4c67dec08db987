"""Webhook mode: the secret header is required (403 otherwise), a retried update runs once,
a body that is not an update is a 4xx with one log line, slow clients are cut off."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import webhook
from bot.app import create_bot, create_dispatcher
from bot.cli import main
from bot.demo.emulator import FakeTelegram
from bot.webhook import (
    ProcessedUpdates,
    WebhookServer,
    build_webhook_app,
    require_webhook,
    set_webhook,
    webhook_url,
)
from config import Settings, SettingsError
from db.database import Database
from db.models import ProcessedUpdate
from tests.conftest import FrozenClock, make_settings

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


HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
TIMEOUT = 1.0  # WEBHOOK_REQUEST_TIMEOUT in these tests
CAP = 4  # WEBHOOK_MAX_CONNECTIONS in these tests


@dataclass
class Hook:
    server: WebhookServer
    http: aiohttp.ClientSession
    tg: FakeTelegram
    sessionmaker: async_sessionmaker[AsyncSession]

    async def post(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        async with self.http.post(f"http://127.0.0.1:{self.server.port}{path}", **kwargs) as r:
            await r.read()
            return r

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        async with self.http.get(f"http://127.0.0.1:{self.server.port}{path}", **kwargs) as r:
            await r.read()
            return r

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.server.port)

    def replies(self) -> list[str]:
        return [m.text or "" for m in self.tg.messages_in(USER_ID)]

    async def processed(self) -> int:
        async with self.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(ProcessedUpdate)))


@contextlib.asynccontextmanager
async def running_hook(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    **overrides: Any,
) -> AsyncIterator[Hook]:
    """What serve_webhook does, on a free port: listen, then set the webhook."""
    port = overrides.pop("webhook_port", 0)  # 0: any free port
    values: dict[str, Any] = {
        "telegram_api_url": tg.base_url,
        "webhook_url": "https://bot.example.test",
        "webhook_secret": SECRET,
        "webhook_request_timeout": TIMEOUT,
        "webhook_max_connections": CAP,
        **overrides,
    }
    settings = make_settings(db_url, **values)
    # Port 0 (any free port) is for tests only: the environment refuses it, so set it here.
    settings = dataclasses.replace(
        settings, webhook=dataclasses.replace(settings.webhook, port=port)
    )
    bot = create_bot(settings)
    dp = create_dispatcher(
        settings,
        sessionmaker,
        clock=clock,
        update_guards=[ProcessedUpdates(Database.of(sessionmaker.kw["bind"]), clock)],
    )
    server = WebhookServer(build_webhook_app(dp, bot, settings), settings)
    await server.start()
    await set_webhook(bot, dp, settings)
    try:
        async with aiohttp.ClientSession() as http:
            yield Hook(server, http, tg, sessionmaker)
    finally:
        await server.stop()
        await bot.session.close()


@pytest.fixture
async def hook(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[Hook]:
    async with running_hook(tg, db_url, sessionmaker, clock) as running:
        yield running


async def test_startup_sets_the_webhook_with_the_secret(hook: Hook) -> None:
    call = await hook.tg.wait_for(lambda c: c.method == "setWebhook")
    assert call.params["url"] == "https://bot.example.test/telegram/webhook"
    assert call.params["secret_token"] == SECRET
    assert "message" in call.params["allowed_updates"]
    assert "callback_query" in call.params["allowed_updates"]
    assert call.params["max_connections"] == CAP  # Telegram's connections fit under our cap


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
    response = await hook.post(PATH, json=update(1), headers=headers)
    assert response.status == 403
    assert await hook.processed() == 0
    await hook.tg.wait_for_idle(quiet=0.1)
    assert hook.replies() == []


async def test_a_non_ascii_secret_header_is_refused_not_crashed(hook: Hook) -> None:
    raw = "s3cret-Tökén".encode()
    response = await hook.post(
        PATH, data=b"{}", headers={"X-Telegram-Bot-Api-Secret-Token": raw.decode("latin-1")}
    )
    assert response.status == 403


async def test_the_right_secret_is_processed_and_a_retry_only_once(hook: Hook) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    response = await hook.post(PATH, json=update(42), headers=headers)
    assert response.status == 200
    assert any("what this bot can do" in text for text in hook.replies())
    assert await hook.processed() == 1

    # Telegram retries the same update (e.g. our 200 was lost): answered 200, not re-run.
    response = await hook.post(PATH, json=update(42), headers=headers)
    assert response.status == 200
    await hook.tg.wait_for_idle(quiet=0.1)
    assert sum("what this bot can do" in text for text in hook.replies()) == 1
    assert await hook.processed() == 1

    response = await hook.post(PATH, json=update(43), headers=headers)
    assert response.status == 200
    assert sum("what this bot can do" in text for text in hook.replies()) == 2


async def test_malformed_json_with_the_secret_is_a_bad_request(hook: Hook) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    response = await hook.post(PATH, data=b"{not json", headers=headers)
    assert response.status == 400


async def test_only_post_on_the_path(hook: Hook) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    assert (await hook.get(PATH, headers=headers)).status == 405
    assert (await hook.post("/other", json=update(7), headers=headers)).status == 404


# ----------------------------------------------------------------------- malformed bodies


def webhook_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("bot.webhook") and r.levelno >= logging.WARNING
    ]


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert [
        r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR
    ] == []


async def huge_chunks() -> AsyncIterator[bytes]:
    for _ in range(40):  # 2.5 MiB with no Content-Length (chunked)
        yield b'{"update_id": 1, "x": "' + b"x" * 65_536


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"[]", 400, id="list"),
        pytest.param(b"{}", 400, id="empty-object"),
        pytest.param(b'"update"', 400, id="string"),
        pytest.param(b'{"update_id": "abc"}', 400, id="id-string"),
        pytest.param(b'{"update_id": "12"}', 400, id="id-numeric-string"),
        pytest.param(b'{"update_id": true}', 400, id="id-true"),
        pytest.param(b'{"update_id": 1.5}', 400, id="id-float"),
        pytest.param(b'{"update_id": 9223372036854775808}', 400, id="id-2^63"),
        pytest.param(b'{"update_id": 123456789012345678901234567890}', 400, id="id-huge"),
        pytest.param(b'{"update_id": -1}', 400, id="id-negative"),
        pytest.param(b'{"update_id": 5, "message": "hello"}', 400, id="not-an-update"),
        pytest.param(b"{not json", 400, id="not-json"),
        pytest.param(b"\xff\xfe\x00{", 400, id="not-utf8"),
        pytest.param(b"[" * 200_000 + b"]" * 200_000, 400, id="deeply-nested"),
        pytest.param(b'{"update_id": 1, "x": "' + b"x" * 2 * 1024**2 + b'"}', 413, id="2MiB"),
        pytest.param(huge_chunks, 413, id="2MiB-chunked"),
    ],
)
async def test_a_body_that_is_not_an_update_is_refused_with_one_line(
    hook: Hook, caplog: pytest.LogCaptureFixture, body: Any, status: int
) -> None:
    data = body() if callable(body) else body
    response = await hook.post(PATH, data=data, headers=HEADERS)
    assert response.status == status
    assert len(webhook_warnings(caplog)) == 1, webhook_warnings(caplog)
    assert f"answered {status}" in webhook_warnings(caplog)[0]
    assert_no_traceback(caplog)
    assert await hook.processed() == 0  # nothing written
    await hook.tg.wait_for_idle(quiet=0.1)
    assert hook.replies() == []

    response = await hook.post(PATH, json=update(77), headers=HEADERS)
    assert response.status == 200
    assert any("what this bot can do" in text for text in hook.replies())
    assert await hook.processed() == 1


async def test_an_unknown_charset_is_a_bad_request(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {**HEADERS, "Content-Type": "application/json; charset=no-such-charset"}
    response = await hook.post(PATH, data=b'{"update_id": 1}', headers=headers)
    assert response.status == 400
    assert len(webhook_warnings(caplog)) == 1
    assert_no_traceback(caplog)
    assert await hook.processed() == 0


async def test_the_largest_update_id_fits(hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    response = await hook.post(PATH, json=update(2**63 - 1), headers=HEADERS)
    assert response.status == 200
    assert await hook.processed() == 1
    assert_no_traceback(caplog)


# -------------------------------------------------------------------------- slow clients
# The waits below are generous guards, not timings: without the timeouts or the cap these
# connections would stay open for an hour (aiohttp's keep-alive default) and the test fails.


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection (a reset counts as closed)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout=15)
    except ConnectionResetError:
        return b""


async def test_slow_headers_are_cut_off(hook: Hook) -> None:
    reader, writer = await hook.connect()
    writer.write(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: bot\r\n")

    async def trickle() -> None:  # slowloris: one more header now and then, never the end
        with contextlib.suppress(ConnectionError):
            for n in range(200):
                await asyncio.sleep(TIMEOUT / 5)
                writer.write(b"X-Slow-%d: 1\r\n" % n)
                await writer.drain()

    dripping = asyncio.create_task(trickle())
    try:
        assert await read_to_eof(reader) == b""  # closed without an answer
    finally:
        dripping.cancel()
        writer.close()
    assert await hook.processed() == 0


async def test_a_slow_body_is_answered_408_and_closed(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await hook.connect()
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
        f"X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\nContent-Length: 1000\r\n\r\n"
    )
    writer.write(head.encode() + b'{"update_id": 1')  # ...and the rest never comes
    answer = await read_to_eof(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert len(webhook_warnings(caplog)) == 1 and "answered 408" in webhook_warnings(caplog)[0]
    assert_no_traceback(caplog)
    assert await hook.processed() == 0


@pytest.mark.parametrize(
    ("framing", "part"),
    [
        ("Content-Length: 1000", b'{"update_id": 1'),
        ("Transfer-Encoding: chunked", b'9\r\n{"update'),
    ],
)
async def test_a_body_cut_short_is_one_line_without_traceback(
    hook: Hook, caplog: pytest.LogCaptureFixture, framing: str, part: bytes
) -> None:
    _, writer = await hook.connect()
    head = f"POST {PATH} HTTP/1.1\r\nHost: bot\r\nX-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n"
    writer.write(f"{head}{framing}\r\n\r\n".encode() + part)
    await writer.drain()
    writer.close()  # gone mid-body
    for _ in range(100):  # until the server has noticed
        if webhook_warnings(caplog):
            break
        await asyncio.sleep(0.02)
    assert len(webhook_warnings(caplog)) == 1
    assert "before the whole body" in webhook_warnings(caplog)[0]
    assert_no_traceback(caplog)
    assert await hook.processed() == 0


async def test_an_idle_keep_alive_connection_is_closed(hook: Hook) -> None:
    reader, writer = await hook.connect()
    writer.write(f"GET {PATH} HTTP/1.1\r\nHost: bot\r\n\r\n".encode())  # keep-alive by default
    answer = await read_to_eof(reader)  # the answer, then the close once idle
    writer.close()
    assert answer.startswith(b"HTTP/1.1 405 ")


async def test_connections_over_the_cap_are_closed_at_once(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A long request timeout: whatever is closed below is closed by the cap, not the timeout.
    async with running_hook(tg, db_url, sessionmaker, clock, webhook_request_timeout=120) as hook:
        held = [await hook.connect() for _ in range(CAP)]
        for _, writer in held:
            writer.write(b"POST " + PATH.encode() + b" HTTP/1.1\r\n")  # slow, never finished
        for _ in range(10):
            reader, writer = await hook.connect()
            assert await read_to_eof(reader) == b""  # closed before a byte was sent
            writer.close()
        assert not any(reader.at_eof() for reader, _ in held)  # the first CAP stay open
        refused = webhook_warnings(caplog)
        assert len(refused) == 1 and "connection refused" in refused[0]  # one line for ten

        for _, writer in held:
            writer.close()
        for _ in range(100):  # the server notices the closes on its next loop turns
            if hook.server.cap is not None and hook.server.cap.open == 0:
                break
            await asyncio.sleep(0.05)
        response = await hook.post(PATH, json=update(9), headers=HEADERS)
        assert response.status == 200
        assert any("what this bot can do" in text for text in hook.replies())
    assert_no_traceback(caplog)
    assert "9 more" in webhook_warnings(caplog)[-1]  # the suppressed count is reported


async def test_unreadable_http_is_one_throttled_line_without_traceback(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    for request in [b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"] * 5 + [
        b"POST / HTTP/1.1\r\n" + b"X-a: b\r\n" * 200 + b"\r\n"
    ] * 5:
        reader, writer = await hook.connect()
        writer.write(request)
        assert (await read_to_eof(reader)).startswith(b"HTTP/1.0 400 ")
        writer.close()
    assert_no_traceback(caplog)
    lines = webhook_warnings(caplog)
    assert len(lines) == 1 and "unreadable HTTP request" in lines[0]


async def test_failed_accepts_are_one_throttled_line(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What asyncio reports when accept() finds no file descriptor left: it did so ~1,600
    times a second, each with a traceback."""
    loop = asyncio.get_running_loop()
    async with running_hook(tg, db_url, sessionmaker, clock):
        for _ in range(500):
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files"),
                }
            )
        assert len(webhook_warnings(caplog)) == 1
        assert "Too many open files" in webhook_warnings(caplog)[0]
    assert_no_traceback(caplog)
    assert len(webhook_warnings(caplog)) == 2
    assert "499 more" in webhook_warnings(caplog)[1]  # counted, reported at the stop


async def test_a_taken_port_is_a_one_line_error(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    hook: Hook,
) -> None:
    with pytest.raises(SettingsError, match=f"WEBHOOK_PORT={hook.server.port}: .*in use"):
        async with running_hook(tg, db_url, sessionmaker, clock, webhook_port=hook.server.port):
            pass


def test_the_open_file_limit_is_raised_for_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(webhook.resource, "getrlimit", lambda _: (256, 4096))
    monkeypatch.setattr(webhook.resource, "setrlimit", lambda _, limits: calls.append(limits))
    webhook.ensure_fd_room(100)
    assert calls == [(100 + webhook.FD_RESERVE, 4096)]


def test_a_cap_over_the_hard_open_file_limit_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhook.resource, "getrlimit", lambda _: (256, 1024))
    with pytest.raises(SettingsError, match="WEBHOOK_MAX_CONNECTIONS=1000 needs"):
        webhook.ensure_fd_room(1000)


async def test_old_processed_updates_are_pruned(
    sessionmaker: async_sessionmaker[AsyncSession], db: Database, clock: FrozenClock
) -> None:
    guard = ProcessedUpdates(db, clock)
    assert await guard.claim(1)
    assert not await guard.claim(1)
    clock.advance(days=2)
    assert await guard.claim(2)  # an hour has passed since the last prune: prunes now
    async with sessionmaker() as session:
        ids = (await session.scalars(select(ProcessedUpdate.update_id))).all()
    assert ids == [2]


async def test_two_workers_handed_the_same_update_process_it_once(
    db: Database, clock: FrozenClock
) -> None:
    """Telegram retries an update while the first delivery is still being handled, and the
    retry reaches another worker: the two claims run at once, exactly one wins."""
    workers = [ProcessedUpdates(db, clock), ProcessedUpdates(db, clock)]
    for update_id in range(10, 20):
        claims = await asyncio.gather(*(worker.claim(update_id) for worker in workers))
        assert sorted(claims) == [False, True]


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
