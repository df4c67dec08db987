"""Self-test of the fake Telegram Bot API: a real aiogram Bot + Dispatcher against it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router, html
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.filters import Command
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BufferedInputFile,
    CallbackQuery,
    ChatMemberAdministrator,
    ChatMemberBanned,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberRestricted,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
)
from PIL import Image

from bot.demo.emulator import FakeTelegram, FaultResponse, UploadedFile

USER_ID = 5001
GROUP_ID = -1005001


def _png(width: int = 20, height: int = 10) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, "PNG")
    return buffer.getvalue()


def _echo_router(callbacks: list[str]) -> Router:
    """A tiny bot: echoes text, offers an inline menu, reports photo sizes."""
    router = Router()

    @router.message(Command("menu"))
    async def menu(message: Message) -> None:
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(text="Yes, please", callback_data="menu:yes"),
                    InlineKeyboardButton(text="No", callback_data="menu:no"),
                ]
            ]
        )
        await message.answer("<b>Pick</b> one", reply_markup=keyboard)

    @router.message(F.photo)
    async def photo(message: Message, bot: Bot) -> None:
        assert message.photo is not None
        data = await bot.download(message.photo[-1].file_id)
        assert data is not None
        await message.answer(f"photo {len(data.getvalue())} bytes")

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {html.quote(message.text or '')}")

    @router.callback_query()
    async def on_callback(callback: CallbackQuery) -> None:
        callbacks.append(callback.data or "")
        await callback.answer(f"got {callback.data}")
        if callback.data == "menu:yes" and isinstance(callback.message, Message):
            await callback.message.edit_text("Chosen: yes")

    return router


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))
    bot = Bot(token=fake.token, session=session, default=DefaultBotProperties(parse_mode="HTML"))
    yield bot
    await bot.session.close()


@pytest.fixture
async def callbacks(fake: FakeTelegram, bot: Bot) -> AsyncIterator[list[str]]:
    """Runs the echo bot with real long polling; yields the callback data it received."""
    seen: list[str] = []
    dp = Dispatcher()
    dp.include_router(_echo_router(seen))
    task = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, polling_timeout=1, close_bot_session=False)
    )
    await fake.wait_for(lambda call: call.method == "getUpdates")
    yield seen
    await dp.stop_polling()
    await task


async def test_text_is_echoed_with_html_rendered(fake: FakeTelegram, callbacks: list[str]) -> None:
    alice = fake.user(USER_ID, "Alice")
    update = await alice.send("/start abc")
    assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert (await alice.wait_message()).text == "echo: /start abc"

    await alice.send("a < b")
    reply = await alice.wait_message("echo:")
    assert reply.text == "echo: a < b"  # what the user sees
    assert reply.html == "echo: a &lt; b"  # what the bot sent
    assert reply.method == "sendMessage"
    assert reply.payload["chat"] == {"id": USER_ID, "type": "private", "first_name": "Alice"}
    assert fake.sent(USER_ID, "sendMessage")[-1].message == reply


async def test_photo_upload_is_recorded_and_file_id_reuse_is_not_an_upload(
    fake: FakeTelegram, bot: Bot
) -> None:
    alice = fake.user(USER_ID)
    png = _png(20, 10)
    sent = await bot.send_photo(USER_ID, BufferedInputFile(png, "card.png"), caption="<i>Card</i>")
    assert sent.photo is not None
    assert (sent.photo[-1].width, sent.photo[-1].height) == (20, 10)
    assert sent.caption == "Card"

    upload = fake.sent(USER_ID, "sendPhoto")[-1]
    assert upload.files["photo"].data == png
    assert upload.files["photo"].filename == "card.png"
    first = alice.last_message()
    assert isinstance(first.photo, UploadedFile)
    assert first.photo.data == png
    assert first.file_id == sent.photo[-1].file_id
    assert not first.reused

    resent = await bot.send_photo(USER_ID, sent.photo[-1].file_id)
    assert resent.photo is not None
    assert resent.photo[-1].file_id == sent.photo[-1].file_id
    reuse = fake.sent(USER_ID, "sendPhoto")[-1]
    assert reuse.files == {}
    second = alice.last_message()
    assert second.reused
    assert second.photo == sent.photo[-1].file_id
    assert second.message_id == first.message_id + 1

    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(USER_ID, "AgACnot-a-real-id")


async def test_button_press_reaches_callback_handler_and_edit_drops_keyboard(
    fake: FakeTelegram, callbacks: list[str]
) -> None:
    alice = fake.user(USER_ID)
    await alice.send("/menu")
    menu = await alice.wait_message("Pick one")
    assert menu.html == "<b>Pick</b> one"
    assert menu.payload["entities"] == [{"type": "bold", "offset": 0, "length": 4}]
    assert [b["text"] for b in menu.buttons] == ["Yes, please", "No"]

    answer = await alice.press(menu, "Yes")  # text prefix
    assert answer.ok
    assert answer.params["text"] == "got menu:yes"
    assert callbacks == ["menu:yes"]

    edited = await alice.wait_message("Chosen")
    assert edited.edited
    assert edited.message_id == menu.message_id
    assert edited.reply_markup is None  # editing without reply_markup removes the keyboard
    assert fake.messages_in(USER_ID) == [edited]


async def test_forged_callback_data_reaches_handler(
    fake: FakeTelegram, callbacks: list[str]
) -> None:
    alice = fake.user(USER_ID)
    await alice.send("/menu")
    menu = await alice.wait_message("Pick")
    answer = await alice.press_data(menu.message_id, "menu:forged'; DROP TABLE cards")
    assert answer.params["text"] == "got menu:forged'; DROP TABLE cards"
    assert callbacks == ["menu:forged'; DROP TABLE cards"]


async def test_get_chat_member_reflects_set_member(fake: FakeTelegram, bot: Bot) -> None:
    fake.user(USER_ID, "Alice")
    fake.group(GROUP_ID)
    assert isinstance(await bot.get_chat_member(GROUP_ID, USER_ID), ChatMemberLeft)
    expected = {
        "administrator": ChatMemberAdministrator,
        "member": ChatMemberMember,
        "restricted": ChatMemberRestricted,
        "kicked": ChatMemberBanned,
    }
    for status, model in expected.items():
        fake.set_member(GROUP_ID, USER_ID, status)
        member = await bot.get_chat_member(GROUP_ID, USER_ID)
        assert isinstance(member, model)
        assert member.user.first_name == "Alice"


async def test_fail_next_429_raises_retry_after_once(fake: FakeTelegram, bot: Bot) -> None:
    fake.user(USER_ID)
    fake.fail_next("sendMessage", 429, retry_after=1)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(USER_ID, "hello")
    assert caught.value.retry_after == 1
    failed = fake.calls[-1]
    assert (failed.method, failed.status, failed.ok) == ("sendMessage", 429, False)
    await bot.send_message(USER_ID, "hello")  # only the next call failed
    assert len(fake.sent(USER_ID)) == 1


async def test_fault_hook_and_chat_scoped_failures(fake: FakeTelegram, bot: Bot) -> None:
    fake.user(USER_ID)
    fake.user(USER_ID + 1)
    fake.fail_next("sendMessage", 400, "Bad Request: custom", chat_id=USER_ID + 1)
    await bot.send_message(USER_ID, "unaffected chat")
    with pytest.raises(TelegramBadRequest, match="custom"):
        await bot.send_message(USER_ID + 1, "x")

    fake.set_fault_hook(
        lambda method, params: FaultResponse(502) if params.get("text") == "boom" else None
    )
    with pytest.raises(Exception, match="Bad Gateway"):
        await bot.send_message(USER_ID, "boom")
    fake.set_fault_hook(None)
    await bot.send_message(USER_ID, "boom")


async def test_blocked_user_raises_forbidden(fake: FakeTelegram, bot: Bot) -> None:
    alice = fake.user(USER_ID)
    await alice.block()
    assert fake.updates[-1]["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(USER_ID, "promo")
    await alice.unblock()
    await bot.send_message(USER_ID, "promo")
    assert [call.text for call in fake.sent(USER_ID)] == ["promo"]


async def test_user_photo_can_be_downloaded(
    fake: FakeTelegram, bot: Bot, callbacks: list[str]
) -> None:
    alice = fake.user(USER_ID)
    png = _png(30, 40)
    update = await alice.send_photo(png, caption="receipt")
    size = update["message"]["photo"][-1]
    assert (size["width"], size["height"]) == (30, 40)
    # The handler itself downloads the photo through getFile + /file/ and reports the size.
    assert (await alice.wait_message()).text == f"photo {len(png)} bytes"
    downloaded = await bot.download(size["file_id"])
    assert downloaded is not None
    assert downloaded.getvalue() == png


async def test_group_messages_and_replies(fake: FakeTelegram, callbacks: list[str]) -> None:
    alice = fake.user(USER_ID)
    staff = fake.group(GROUP_ID, "Staff")
    await staff.send(alice, "hi team")
    reply = await staff.wait_message("echo: hi team")
    assert reply.payload["chat"] == {"id": GROUP_ID, "type": "supergroup", "title": "Staff"}
    update = await staff.send(alice, "thanks", reply_to=reply)
    assert update["message"]["reply_to_message"]["message_id"] == reply.message_id
    await staff.wait_message("echo: thanks")
    await fake.wait_for_idle()
    assert fake.messages_in(USER_ID) == []


async def test_edit_errors_are_realistic(fake: FakeTelegram, bot: Bot) -> None:
    fake.user(USER_ID)
    message = await bot.send_message(USER_ID, "same")
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(text="same", chat_id=USER_ID, message_id=message.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(text="new", chat_id=USER_ID, message_id=999)
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(USER_ID, "line<br>break")
    assert await bot.delete_message(USER_ID, message.message_id)
    assert fake.messages_in(USER_ID) == []


async def test_rate_limit_answers_429_over_the_cap(fake: FakeTelegram, bot: Bot) -> None:
    fake.user(USER_ID)
    fake.set_rate_limit(5)
    results = await asyncio.gather(
        *(bot.send_message(USER_ID, f"n{i}") for i in range(12)), return_exceptions=True
    )
    limited = [r for r in results if isinstance(r, TelegramRetryAfter)]
    assert 1 <= len(limited) <= 7
    assert all(r.retry_after == 1 for r in limited)
    assert len(fake.sent(USER_ID)) == 12 - len(limited)


async def test_get_updates_offset_limit_and_long_poll(fake: FakeTelegram, bot: Bot) -> None:
    alice = fake.user(USER_ID)
    for text in ("one", "two", "three"):
        await alice.send(text)
    first = await bot.get_updates(limit=2)
    assert [u.message.text for u in first if u.message] == ["one", "two"]
    rest = await bot.get_updates(offset=first[-1].update_id + 1)
    assert [u.message.text for u in rest if u.message] == ["three"]

    # A long poll returns as soon as an update arrives, not after the timeout.
    poll = asyncio.create_task(bot.get_updates(offset=rest[-1].update_id + 1, timeout=5))
    await asyncio.sleep(0.05)
    await alice.send("four")
    updates = await asyncio.wait_for(poll, 2)
    assert [u.message.text for u in updates if u.message] == ["four"]


async def test_unknown_method_and_timeouts_are_reported(fake: FakeTelegram) -> None:
    url = f"{fake.base_url}/bot{fake.token}/fooBar"
    async with aiohttp.ClientSession() as client, client.post(url, data={"x": "1"}) as response:
        assert response.status == 404
        body = await response.json()
    assert body == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
    assert fake.calls[-1].method == "fooBar"
    assert fake.calls[-1].params == {"x": 1}

    with pytest.raises(AssertionError, match=r"timed out .* waiting for a bot message"):
        await fake.user(USER_ID).wait_message(timeout=0.1)


async def test_other_results_parse_in_aiogram(fake: FakeTelegram, bot: Bot) -> None:
    alice = fake.user(USER_ID)
    doc = await bot.send_document(USER_ID, BufferedInputFile(b"a;b\n1;2\n", "report.csv"))
    assert doc.document is not None
    assert (doc.document.file_name, doc.document.mime_type) == ("report.csv", "text/csv")
    assert (await bot.download(doc.document.file_id) or io.BytesIO()).getvalue() == b"a;b\n1;2\n"

    venue = await bot.send_venue(USER_ID, 55.75, 37.61, "Test Store", "1 Main St")
    assert venue.venue is not None
    assert venue.venue.title == "Test Store"
    assert alice.last_message().venue == venue.venue.model_dump(exclude_none=True)
    assert (await bot.send_location(USER_ID, 1.5, 2.5)).location is not None
    assert await bot.send_chat_action(USER_ID, "typing")

    album = await bot.send_media_group(
        USER_ID,
        [
            InputMediaPhoto(media=BufferedInputFile(_png(), "a.png"), caption="first"),
            InputMediaPhoto(media=BufferedInputFile(_png(), "b.png")),
        ],
    )
    assert len({m.media_group_id for m in album}) == 1
    assert sorted(fake.sent(USER_ID, "sendMediaGroup")[-1].files) == [
        "media[0].media",
        "media[1].media",
    ]

    chat = await bot.get_chat(USER_ID)
    assert (chat.type, chat.first_name) == ("private", "Test")
    commands = [BotCommand(command="start", description="Start")]
    assert await bot.set_my_commands(commands, scope=BotCommandScopeAllPrivateChats())
    stored = await bot.get_my_commands(scope=BotCommandScopeAllPrivateChats())
    assert [(c.command, c.description) for c in stored] == [("start", "Start")]
    assert await bot.get_my_commands() == []
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert (await bot.get_webhook_info()).url == ""
    assert (await bot.get_me()).username == "loyalty_test_bot"


async def test_user_updates_parse_in_aiogram(fake: FakeTelegram, bot: Bot) -> None:
    alice = fake.user(USER_ID, "Alice", username="alice")
    await alice.send_contact("+79000000000")
    await alice.send_sticker()
    await alice.send_document(b"%PDF-1.4", "scan.pdf", "application/pdf")
    await alice.block()
    updates = await bot.get_updates(allowed_updates=["message", "my_chat_member"])
    messages = [u.message for u in updates if u.message]
    assert messages[0].contact is not None
    assert messages[0].contact.user_id == USER_ID
    assert messages[1].sticker is not None
    assert messages[2].document is not None
    assert messages[2].document.file_name == "scan.pdf"
    member_updates = [u.my_chat_member for u in updates if u.my_chat_member]
    assert member_updates[0].new_chat_member.status == "kicked"
