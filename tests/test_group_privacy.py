"""Customer buttons belong to the customer's private chat: pressed (or forged) in a group —
privacy, wallet, survey and opt-out buttons — they change nothing and post nothing there. And
anyone writing in a group as the group itself (an anonymous admin) gets an answer, not an error."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from db.models import Survey
from tests.conftest import STAFF_CHAT_ID, App
from tests.test_privacy import TG_ID, seed_member
from tests.test_security_e2e import dump

OTHER_GROUP = -1004242


@pytest.fixture
async def app(app_with: Any) -> AsyncIterator[App]:
    async with app_with(flood_limit=100_000) as application:  # many presses in a row
        yield application


@pytest.mark.parametrize("group_id", [STAFF_CHAT_ID, OTHER_GROUP])
async def test_customer_buttons_pressed_in_a_group_change_nothing_and_post_nothing(
    app: App, group_id: int
) -> None:
    await seed_member(app.sessionmaker)
    async with app.sessionmaker() as session:
        survey_id = await session.scalar(select(Survey.id))
    before = await dump(app)
    member = app.tg.user(TG_ID, language_code="en")
    group = app.tg.group(group_id)
    await group.send(member, "hello")  # a message of theirs the buttons can hang on
    await app.tg.wait_for_idle(quiet=0.2)
    calls_before = len(app.tg.calls)
    data = [
        "pv:erase",
        "pv:keep",
        "pv:off",
        "pv:on",
        "w:agree::0",
        "w:digital::0",
        "w:lang:en:0",
        "w:hist::1",
        "w:other::0",
        "w:join::0",
        f"nps:s:{survey_id}:9",
        f"nps:k:{survey_id}:0",
        "mkt:out",
        "mkt:in",
    ]
    for item in data:
        answer = await group.press_data(member, 1, item)
        assert answer.params.get("text", "") in ("", "This button is no longer valid.")
    await app.tg.wait_for_idle(quiet=0.2)
    later = [c for c in app.tg.calls[calls_before:] if c.method != "getUpdates"]
    assert {c.method for c in later} == {"answerCallbackQuery"}, app.tg.dump()
    assert await dump(app) == before


async def test_an_anonymous_admins_help_is_answered(app: App) -> None:
    group = app.tg.group(STAFF_CHAT_ID)
    app.tg.push_update(
        "message",
        {
            "message_id": 77,
            "date": int(time.time()),
            "chat": group.as_chat(),
            "from": {
                "id": 1087968824,
                "is_bot": True,
                "first_name": "Group",
                "username": "GroupAnonymousBot",
            },
            "sender_chat": group.as_chat(),
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    )
    # The group's "user" has no language: the store's (ru) answers.
    reply = await group.wait_message("анонимно")
    assert "/help" in reply.text
