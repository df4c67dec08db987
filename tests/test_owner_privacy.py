"""Owner data never goes to a group: every owner command and button used in the staff group
answers in the owner's private chat; the group gets one short note at most."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from bot.demo.emulator import Call, FaultResponse
from db.models import AuditEvent, Card, CardStatus
from tests.conftest import OWNER_ID, STAFF_CHAT_ID, App
from tests.test_reports import seed

SENT_PRIVATELY = "📬 Sent to you in a private chat with me."
OPEN_PRIVATE_CHAT = "I cannot write to you privately yet"


def _text(expected: str) -> Callable[[Call], bool]:
    return lambda call: expected in (call.text or "")


def _document(call: Call) -> bool:
    return call.method == "sendDocument"


def _photo(call: Call) -> bool:
    return call.method == "sendPhoto"


# Every owner command, and what the owner must receive privately for it.
GROUP_COMMANDS: list[tuple[str, list[Callable[[Call], bool]]]] = [
    ("/stats", [_text("Program KPIs")]),
    ("/stats 30d", [_text("Revenue through cards")]),
    ("/stats yesterday", [_text("/stats 30d")]),
    ("/digest", [_text("Weekly digest"), _photo]),
    ("/export", [_document]),
    ("/export 30d csv", [_document]),
    ("/export foo", [_text("/export 30d")]),
    ("/card 100045", [_text("Bound to @anna")]),
    ("/card 999999", [_text("999999 is not registered")]),
    ("/cards", [_text("Card inventory")]),
    ("/staff", [_text("Owners")]),
    ("/audit", [_text("Latest audit events")]),
    ("/audit 100045", [_text("Audit events of card 100 045")]),
    ("/block 100045", [_text("Block card 100 045?")]),
    ("/unblock 100045", [_text("Card 100 045 is not blocked.")]),
    ("/unbind 100046", [_text("not linked to anyone")]),
]


async def _private_answers(app: App, since: float, checks: list[Callable[[Call], bool]]) -> None:
    for check in checks:
        await app.tg.wait_for(
            lambda c, check=check: (
                c.ok and c.at >= since and c.chat_id == OWNER_ID and check(c)  # type: ignore[misc]
            ),
            timeout=10,
        )


def _group_output(app: App) -> list[Call]:
    return app.tg.sent(STAFF_CHAT_ID)


async def test_every_owner_command_in_the_staff_group_answers_privately(app: App) -> None:
    await seed(app.sessionmaker)
    owner = app.tg.user(OWNER_ID, "Olga", language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    for command, checks in GROUP_COMMANDS:
        since = time.monotonic()
        await group.send(owner, command)
        note = await group.wait_message(timeout=10)
        assert note.text == SENT_PRIVATELY, (command, note.text)
        await _private_answers(app, since, checks)
    await app.tg.wait_for_idle()

    # The group saw the notes and nothing else: no figures, no file, no chart, no edits.
    output = _group_output(app)
    assert [c.method for c in output] == ["sendMessage"] * len(GROUP_COMMANDS)
    assert {c.text for c in output} == {SENT_PRIVATELY}
    private = app.tg.sent(OWNER_ID)
    assert sum(c.method == "sendDocument" for c in private) == 2
    async with app.sessionmaker() as session:  # /block only asked: nothing changed yet
        card = await session.scalar(select(Card).where(Card.number == "100045"))
        assert card is not None and card.status == CardStatus.ISSUED


async def test_the_note_is_in_the_owners_language(app: App) -> None:
    owner = app.tg.user(OWNER_ID, "Olga", language_code="ru")
    group = app.tg.group(STAFF_CHAT_ID)
    await group.send(owner, "/cards")
    note = await group.wait_message()
    assert "личный чат" in note.text


async def test_buttons_pressed_in_a_group_never_edit_the_group_message(app: App) -> None:
    await seed(app.sessionmaker)
    owner = app.tg.user(OWNER_ID, "Olga", language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    await group.send(owner, "/cards")
    note = await group.wait_message()

    since = time.monotonic()
    call = await group.press_data(owner, note.message_id, "st:30d")
    assert call.params.get("text") == SENT_PRIVATELY
    await _private_answers(app, since, [_text("Program KPIs")])

    # A (forged) block confirmation on a group message: the card is blocked, the answer is
    # private, the group message stays as it was.
    asked = int(app.clock().timestamp())
    since = time.monotonic()
    call = await group.press_data(owner, note.message_id, f"blk:yes:100045:{asked}")
    await _private_answers(app, since, [_text("Card 100 045 is blocked")])
    await app.tg.wait_for_idle()

    assert [c.method for c in _group_output(app)] == ["sendMessage"]  # only the first note
    assert group.messages()[-1].text == SENT_PRIVATELY


async def test_an_owner_the_bot_cannot_write_to_is_sent_to_the_private_chat(app: App) -> None:
    """403 (the owner never pressed Start): the group is told to open a private chat with the
    bot first — nothing else — and the command changes nothing."""
    await seed(app.sessionmaker)
    owner = app.tg.user(OWNER_ID, "Olga", language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)

    def never_started(method: str, params: dict[str, Any]) -> FaultResponse | None:
        if method.startswith("send") and str(params.get("chat_id")) == str(OWNER_ID):
            return FaultResponse(403, "Forbidden: bot can't initiate conversation with a user")
        return None

    app.tg.set_fault_hook(never_started)
    async with app.sessionmaker() as session:
        events_before = await session.scalar(select(func.count()).select_from(AuditEvent))
    for command in ("/export", "/stats", "/digest", "/card 100045", "/staff", "/unbind 100045"):
        await group.send(owner, command)
        note = await group.wait_message()
        assert OPEN_PRIVATE_CHAT in note.text and "t.me/loyalty_test_bot" in note.text
    call = await group.press_data(owner, 1, "st:7d")
    assert OPEN_PRIVATE_CHAT in (call.params.get("text") or "")
    assert call.params.get("show_alert") is True
    await app.tg.wait_for_idle()

    output = _group_output(app)
    assert [c.method for c in output] == ["sendMessage"] * 6
    assert all(OPEN_PRIVATE_CHAT in (c.text or "") for c in output)
    assert not [c for c in app.tg.calls if c.ok and c.chat_id == OWNER_ID]
    async with app.sessionmaker() as session:
        card = await session.scalar(select(Card).where(Card.number == "100045"))
        assert card is not None and card.client_id is not None  # /unbind did not run
        events = await session.scalar(select(func.count()).select_from(AuditEvent))
        assert events == events_before


async def test_private_chat_answers_are_unchanged(app: App) -> None:
    """In the owner's own chat there is no note, and a button edits its own message."""
    owner = app.tg.user(OWNER_ID, "Olga", language_code="en")
    await owner.send("/stats")
    reply = await owner.wait_message("Program KPIs")
    call = await owner.press(reply, "30 days")
    assert call.params.get("text") is None
    edited = await owner.wait_message("Program KPIs")
    assert edited.message_id == reply.message_id
    await app.tg.wait_for_idle()
    assert SENT_PRIVATELY not in [m.text for m in owner.messages()]
