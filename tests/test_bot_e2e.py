"""The real bot, through the real polling loop, against the fake Bot API server."""

from __future__ import annotations

import pytest

from tests.conftest import CASHIER_ID, OWNER_ID, STAFF_CHAT_ID, App


@pytest.mark.parametrize(
    ("language_code", "expected"),
    [
        ("ru", "что умеет этот бот"),
        ("en", "what this bot can do"),
        ("et", "mida see bot oskab"),
        ("de", "что умеет этот бот"),  # unknown language → the store default (ru)
        (None, "что умеет этот бот"),
    ],
)
async def test_help_answers_in_the_users_language(
    app: App, language_code: str | None, expected: str
) -> None:
    user = app.tg.user(3100, language_code=language_code)
    await user.send("/help")
    message = await user.wait_message("/help")
    assert expected in message.text
    assert "Test Store" in message.text


async def test_staff_see_that_they_are_staff(app: App) -> None:
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/help")
    assert "You are signed in as staff of Test Store" in (await cashier.wait_message()).text
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/help")
    assert "staff" in (await owner.wait_message()).text
    customer = app.tg.user(3200, language_code="en")
    await customer.send("/help")
    assert "staff" not in (await customer.wait_message()).text


async def test_anything_unexpected_gets_a_hint_and_cancel_always_works(app: App) -> None:
    user = app.tg.user(3300, language_code="en")
    await user.send("x" * 5000)
    assert "Send /help" in (await user.wait_message()).text
    await user.send_sticker()
    assert "Send /help" in (await user.wait_message()).text
    await user.send("/cancel")
    assert (await user.wait_message()).text == "Nothing to cancel."


async def test_a_crashing_handler_gets_a_polite_reply_and_the_bot_goes_on(app: App) -> None:
    from aiogram import Router
    from aiogram.filters import Command

    router = Router(name="boom")

    @router.message(Command("boom"))
    async def boom() -> None:
        raise RuntimeError("kaboom")

    app.dp.include_router(router)  # after the features: reached from the staff group only
    user = app.tg.user(3400, language_code="et")
    group = app.tg.group(STAFF_CHAT_ID)
    await group.send(user, "/boom")
    assert "midagi valesti" in (await group.wait_message()).text
    await user.send("/help")
    assert "mida see bot oskab" in (await user.wait_message()).text


async def test_a_button_nobody_takes_gets_an_answer(app: App) -> None:
    user = app.tg.user(3500, language_code="en")
    await user.send("/help")
    message = await user.wait_message()
    call = await user.press_data(message.message_id, "st:30d")  # an owner's button, forged
    assert call.params.get("text") == "This button is no longer valid."
