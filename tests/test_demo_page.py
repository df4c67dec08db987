"""The demo page's API over the emulator: what a person does on the page reaches the bot as
Telegram would send it, what the bot sends is drawn as a client draws it, and bad input is
refused with nothing sent to the bot."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web

from bot.demo import page as demo_page
from bot.demo.emulator import FakeTelegram
from bot.demo.page import CASHIER_ID, CUSTOMER_ID, OWNER_ID, STAFF_CHAT_ID, DemoPage, cast
from bot.i18n import create_i18n
from bot.miniapp.auth import authenticate
from config import PROJECT_ROOT
from tests.servers import free_port


class Demo:
    def __init__(self, tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
        self.tg = tg
        self.http = http

    @property
    def url(self) -> str:
        return self.tg.base_url

    async def bot(
        self, method: str, files: dict[str, tuple[bytes, str]] | None = None, **params: Any
    ) -> dict[str, Any]:
        """A Bot API call as the bot makes it (files as multipart uploads)."""
        form = aiohttp.FormData(quote_fields=False)  # as aiogram builds it
        for key, value in params.items():
            form.add_field(key, value if isinstance(value, str) else json.dumps(value))
        for key, (data, name) in (files or {}).items():
            form.add_field(key, data, filename=name)
        async with self.http.post(f"{self.url}/bot{self.tg.token}/{method}", data=form) as r:
            answer = await r.json()
        assert answer["ok"], answer
        return answer["result"]

    async def act(self, role: str, action: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        url = f"{self.url}/api/chats/{role}/{action}"
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, aiohttp.FormData) else {}
        if isinstance(body, str | bytes):
            kwargs = {"data": body, "headers": {"Content-Type": "application/json"}}
        elif not kwargs:
            kwargs = {"json": body if body is not None else {}}
        async with self.http.post(url, **kwargs) as response:
            return response.status, await response.json(content_type=None)

    async def chats(self, since: int = -1) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/api/chats", params={"since": since}) as response:
            assert response.status == 200
            return await response.json()

    async def chat(self, role: str) -> dict[str, Any]:
        return next(c for c in (await self.chats())["chats"] if c["role"] == role)


@pytest.fixture
async def demo() -> AsyncIterator[Demo]:
    tg = FakeTelegram("100200300:DEMO")
    page = DemoPage(tg, cast(tg, language="ru", staff_title="Staff"), create_i18n(), hint_card="1")
    await tg.start(routes=page.install)
    try:
        async with aiohttp.ClientSession() as http:
            yield Demo(tg, http)
    finally:
        await tg.stop()


async def test_what_is_typed_on_the_page_reaches_the_bot_as_telegram_sends_it(demo: Demo) -> None:
    assert await demo.act("customer", "send", {"text": "/start"}) == (200, {"ok": True})
    update = demo.tg.updates[-1]["message"]
    assert update["from"]["id"] == CUSTOMER_ID
    assert update["chat"] == {"id": CUSTOMER_ID, "type": "private", "first_name": "Anna"}
    assert update["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]

    # The cashier types in the staff group, answering the bot's ForceReply prompt.
    prompt = await demo.bot(
        "sendMessage",
        chat_id=STAFF_CHAT_ID,
        text="Amount?",
        reply_markup={"force_reply": True, "input_field_placeholder": "2500"},
    )
    staff = await demo.chat("staff")
    assert staff["force_reply"] == {
        "id": prompt["message_id"],
        "text": "Amount?",
        "placeholder": "2500",
    }
    await demo.act("staff", "send", {"text": "2500", "reply_to": prompt["message_id"]})
    update = demo.tg.updates[-1]["message"]
    assert (update["chat"]["id"], update["from"]["id"]) == (STAFF_CHAT_ID, CASHIER_ID)
    assert update["reply_to_message"]["message_id"] == prompt["message_id"]
    assert (await demo.chat("staff"))["force_reply"] is None  # answered

    await demo.act("owner", "contact")
    assert demo.tg.updates[-1]["message"]["contact"]["user_id"] == OWNER_ID
    await demo.act("owner", "location", {"latitude": 59.43, "longitude": 24.75})
    assert demo.tg.updates[-1]["message"]["location"] == {"latitude": 59.43, "longitude": 24.75}

    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    form = aiohttp.FormData()
    form.add_field("photo", png, filename="card.png", content_type="image/png")
    assert (await demo.act("staff", "photo", form))[0] == 200
    photo = demo.tg.updates[-1]["message"]["photo"][-1]
    async with demo.http.get(f"{demo.url}/api/files/{photo['file_id']}") as response:
        assert await response.read() == png


async def test_the_page_draws_what_the_bot_sent(demo: Demo) -> None:
    await demo.bot(
        "sendMessage",
        chat_id=CUSTOMER_ID,
        text="<b>Hi</b> Аня 👋 <a href='https://t.me/loyalty_test_bot?start=x'>link</a>",
        parse_mode="HTML",
        reply_markup={"inline_keyboard": [[{"text": "✅ I agree", "callback_data": "consent"}]]},
    )
    await demo.bot(
        "sendMessage",
        chat_id=CUSTOMER_ID,
        text="Share your phone?",
        reply_markup={
            "keyboard": [[{"text": "📞 Share", "request_contact": True}], [{"text": "Skip"}]],
            "one_time_keyboard": True,
        },
    )
    await demo.bot(
        "sendDocument",
        chat_id=OWNER_ID,
        caption="Export",
        files={"document": (b"PK\x03\x04xlsx", "export 2026.xlsx")},
    )
    customer = await demo.chat("customer")
    first, second = customer["messages"]
    assert first["from_bot"] and first["text"] == "Hi Аня 👋 link"
    # Offsets in UTF-16 code units, as the page's JavaScript counts them: 👋 is two.
    assert first["entities"] == [
        {"type": "bold", "offset": 0, "length": 2},
        {
            "type": "text_link",
            "offset": 10,
            "length": 4,
            "url": "https://t.me/loyalty_test_bot?start=x",
        },
    ]
    assert first["buttons"] == [[{"text": "✅ I agree", "callback_data": "consent"}]]
    assert customer["keyboard"] == {
        "rows": [
            [{"text": "📞 Share", "contact": True, "location": False}],
            [{"text": "Skip", "contact": False, "location": False}],
        ],
        "one_time": True,
        "placeholder": "",
    }
    assert customer["commands"] == []
    await demo.act("customer", "send", {"text": "Skip"})
    assert (await demo.chat("customer"))["keyboard"] is None  # a one-time keyboard hides

    (export,) = (await demo.chat("owner"))["messages"]
    assert export["text"] == "Export"
    assert export["document"]["name"] == "export 2026.xlsx"
    async with demo.http.get(demo.url + export["document"]["url"]) as response:
        assert await response.read() == b"PK\x03\x04xlsx"
        assert "attachment" in response.headers["Content-Disposition"]

    await demo.bot("deleteMessage", chat_id=CUSTOMER_ID, message_id=first["id"])
    assert [m["id"] for m in (await demo.chat("customer"))["messages"]] == [
        second["id"],
        second["id"] + 1,  # the customer's "Skip"
    ]


async def test_a_press_gets_the_bots_answer_and_a_forged_one_nothing(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_page, "PRESS_SECONDS", 2.0)
    sent = await demo.bot(
        "sendMessage",
        chat_id=CUSTOMER_ID,
        text="Agree?",
        reply_markup={"inline_keyboard": [[{"text": "Yes", "callback_data": "consent"}]]},
    )

    async def bot_answers() -> None:
        update = await wait_for_update(demo.tg, "callback_query")
        await demo.bot(
            "answerCallbackQuery", callback_query_id=update["id"], text="Done", show_alert=True
        )

    answering = asyncio.create_task(bot_answers())
    status, answer = await demo.act(
        "customer", "press", {"message_id": sent["message_id"], "data": "consent"}
    )
    await answering
    assert (status, answer) == (200, {"ok": True, "text": "Done", "alert": True})
    press = demo.tg.updates[-1]["callback_query"]
    assert (press["from"]["id"], press["data"]) == (CUSTOMER_ID, "consent")

    before = len(demo.tg.updates)
    for body in ({"message_id": "1", "data": "x"}, {"message_id": 1}, {"data": "x"}, [1]):
        status, answer = await demo.act("customer", "press", body)
        assert status == 400 and answer["ok"] is False
    assert len(demo.tg.updates) == before


async def wait_for_update(tg: FakeTelegram, kind: str) -> dict[str, Any]:
    for _ in range(200):
        found = [u[kind] for u in tg.updates if kind in u]
        if found:
            return found[-1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {kind} update")


@pytest.mark.parametrize(
    ("role", "action", "body", "status"),
    [
        ("customer", "send", b"{not json", 400),
        ("customer", "send", {"text": "   "}, 400),
        ("customer", "send", {"text": "x" * 4097}, 400),
        ("customer", "send", {"text": 5}, 400),
        ("cashier", "send", {"text": "hi"}, 404),
        ("customer", "shout", {"text": "hi"}, 404),
        ("staff", "contact", {}, 404),
        ("customer", "location", {"latitude": "north", "longitude": 1}, 400),
        ("customer", "location", {"latitude": 91, "longitude": 1}, 400),
        ("customer", "language", {"language": "de"}, 400),
        ("customer", "photo", b"", 400),
    ],
)
async def test_bad_input_is_refused_and_the_bot_gets_nothing(
    demo: Demo, role: str, action: str, body: Any, status: int
) -> None:
    got, answer = await demo.act(role, action, body)
    assert got == status
    if status == 400:
        assert answer["ok"] is False and answer["error"]
    assert demo.tg.updates == []
    assert demo.tg.user(CUSTOMER_ID).language_code == "ru"


async def test_a_photo_over_telegrams_limit_is_refused(demo: Demo) -> None:
    form = aiohttp.FormData()
    form.add_field("photo", b"\xff" * (demo_page.PHOTO_LIMIT + 1), filename="big.jpg")
    status, answer = await demo.act("customer", "photo", form)
    assert (status, answer) == (413, {"ok": False, "error": "too_large"})
    assert demo.tg.updates == []


async def test_the_page_and_its_files_serve_nothing_else(demo: Demo) -> None:
    async with demo.http.get(demo.url + "/") as response:
        assert response.status == 200 and '<main id="panes"' in await response.text()
    for path in (
        "/static/demo.js",
        "/static/demo.css",
    ):
        async with demo.http.get(demo.url + path) as response:
            assert response.status == 200
    for path in (
        "/static/..%2f..%2fpage.py",
        "/static/%2e%2e/page.py",
        "/static/page.py",
        "/api/files/nope",
        "/api/chats?since=soon",
    ):
        async with demo.http.get(demo.url + path) as response:
            assert response.status in (400, 404), path


async def test_the_page_hears_of_a_change_at_once(demo: Demo) -> None:
    version = (await demo.chats())["version"]
    waiting = asyncio.create_task(demo.chats(since=version))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # nothing new: the poll waits
    await demo.bot("sendMessage", chat_id=OWNER_ID, text="Weekly digest")
    state = await asyncio.wait_for(waiting, 2)
    assert state["version"] > version
    owner = next(c for c in state["chats"] if c["role"] == "owner")
    assert [m["text"] for m in owner["messages"]] == ["Weekly digest"]


async def test_each_person_has_their_telegram_language_and_the_page_its_own(demo: Demo) -> None:
    assert await demo.act("owner", "language", {"language": "et"}) == (200, {"ok": True})
    await demo.act("owner", "send", {"text": "/stats"})
    assert demo.tg.updates[-1]["message"]["from"]["language_code"] == "et"
    assert (await demo.chat("owner"))["language"] == "et"
    assert (await demo.chat("customer"))["language"] == "ru"

    texts = {}
    for language in ("ru", "en", "et", "de"):
        async with demo.http.get(f"{demo.url}/api/texts", params={"lang": language}) as r:
            texts[language] = await r.json()
    assert texts["de"] == texts["ru"]  # not a language of ours: the default
    assert texts["en"]["roles"]["staff"] == "Staff group"
    assert len({texts[lang]["roles"]["staff"] for lang in ("ru", "en", "et")}) == 3
    assert len({texts[lang]["intro"] for lang in ("ru", "en", "et")}) == 3


def test_the_demo_on_a_port_in_use_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bot", "demo", "--port", str(port), "--data", str(tmp_path)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: port {port} is in use; stop what uses it or pick another one with --port "
        "(make demo PORT=8081)"
    ]
    assert not (tmp_path / "demo.db").exists()


async def test_a_mini_app_opens_on_the_pages_address_signed_for_its_person() -> None:
    """The bot's Mini App server behind the page's /app/ (as nginx passes it through in
    production), and the launch parameters a Telegram client would add."""
    seen: list[dict[str, str]] = []

    async def upstream_me(request: web.Request) -> web.Response:
        seen.append({"path": request.path_qs, "auth": request.headers.get("Authorization", "")})
        return web.json_response({"role": "customer"})

    upstream = web.Application()
    upstream.router.add_get("/app/api/me", upstream_me)
    runner = web.AppRunner(upstream)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    tg = FakeTelegram("100200300:DEMO")
    panes = cast(tg, language="en", staff_title="Staff")
    page = DemoPage(tg, panes, create_i18n(), token=tg.token, miniapp=f"http://127.0.0.1:{port}")
    await tg.start(routes=page.install)
    try:
        async with aiohttp.ClientSession() as http:
            demo = Demo(tg, http)
            status, opened = await demo.act(
                "customer", "webapp", {"url": "http://127.0.0.1:1/app/?view=card"}
            )
            assert status == 200 and opened["src"].startswith("/app/?view=card#tgWebAppData=")
            launch = dict(parse_qsl(opened["src"].split("#", 1)[1]))
            caller = authenticate(f"tma {launch['tgWebAppData']}", tg.token, datetime.now(UTC), 60)
            assert (caller.user_id, caller.language_code) == (CUSTOMER_ID, "en")
            auth = {"Authorization": f"tma {launch['tgWebAppData']}"}
            async with http.get(f"{demo.url}/app/api/me?x=1", headers=auth) as response:
                assert await response.json() == {"role": "customer"}
            assert seen == [{"path": "/app/api/me?x=1", "auth": auth["Authorization"]}]
            # Telegram opens Mini Apps from private chats only, and only this bot's.
            assert (await demo.act("staff", "webapp", {"url": "http://x/app/"}))[0] == 404
            assert (await demo.act("owner", "webapp", {"url": "https://evil.example/"}))[0] == 400
    finally:
        await tg.stop()
        await runner.cleanup()
