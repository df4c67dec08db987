"""Owner tools end to end: /block, /unbind, /staff."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from db.models import AuditEvent, Card, CardStatus
from tests.conftest import CASHIER_ID, CUSTOMER_ID, OWNER_ID, STAFF_CHAT_ID, App
from tests.fakeapi import Call
from tests.test_privacy import TG_ID, seed_member


async def _card(app: App, number: str = "100045") -> Card:
    async with app.sessionmaker() as session:
        card = await session.scalar(select(Card).where(Card.number == number))
        assert card is not None
        return card


async def test_block_a_lost_card_tells_the_holder(app: App) -> None:
    client_id = await seed_member(app.sessionmaker, language="et")
    holder = app.tg.user(TG_ID, language_code="et")
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/block 100 045")
    reply = await owner.wait_message("Card 100 045 is blocked")
    assert "Its holder will be told." in reply.text
    told = await holder.wait_message("100 045")
    assert "blokeeris" in told.text  # in the holder's language, not the owner's

    card = await _card(app)
    assert card.status == CardStatus.BLOCKED and card.block_reason == "lost"
    assert card.client_id == client_id
    async with app.sessionmaker() as session:
        event = await session.scalar(select(AuditEvent).where(AuditEvent.action == "card.blocked"))
        assert event.actor_id == OWNER_ID and event.card_id == card.id

    await owner.send("/block 100045")
    assert "already blocked" in (await owner.wait_message()).text


async def test_bad_numbers_get_translated_messages(app: App) -> None:
    owner = app.tg.user(OWNER_ID, language_code="ru")
    await owner.send("/block")
    assert "номер карты" in (await owner.wait_message()).text.lower()
    await owner.send("/block abc")
    assert "только из цифр" in (await owner.wait_message()).text
    await owner.send("/unbind 999999")
    assert "не зарегистрирована" in (await owner.wait_message()).text
    owner_en = app.tg.user(OWNER_ID, language_code="en")
    await owner_en.send("/unbind 12")
    assert "digits only" in (await owner_en.wait_message()).text


async def test_unbind_keeps_the_card_issued(app: App) -> None:
    await seed_member(app.sessionmaker, language="en")
    holder = app.tg.user(TG_ID, language_code="en")
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/unbind 100045")
    reply = await owner.wait_message("unlinked")
    assert "Its holder will be told." in reply.text
    assert "unlinked from your Telegram account" in (await holder.wait_message()).text
    card = await _card(app)
    assert card.client_id is None and card.bound_at is None
    assert card.status == CardStatus.ISSUED
    await owner.send("/unbind 100045")
    assert "not linked to anyone" in (await owner.wait_message()).text
    async with app.sessionmaker() as session:
        actions = (await session.scalars(select(AuditEvent.action))).all()
        assert actions.count("card.unbound") == 1


async def test_staff_lists_owners_admins_cashiers_and_audit(app: App) -> None:
    await seed_member(app.sessionmaker)

    async def administrators(call: Call) -> list[dict[str, Any]]:
        assert call.params["chat_id"] == STAFF_CHAT_ID
        return [
            {
                "status": "creator",
                "is_anonymous": False,
                "user": {"id": OWNER_ID, "is_bot": False, "first_name": "Olga", "username": "olga"},
            },
            {
                "status": "administrator",
                "user": {"id": 5, "is_bot": True, "first_name": "Bot"},
                "can_be_edited": False,
                "is_anonymous": False,
                "can_manage_chat": True,
                "can_delete_messages": True,
                "can_manage_video_chats": True,
                "can_restrict_members": True,
                "can_promote_members": False,
                "can_change_info": True,
                "can_invite_users": True,
                "can_post_stories": False,
                "can_edit_stories": False,
                "can_delete_stories": False,
                "can_send_welcome_messages": False,
            },
        ]

    # The fake Bot API has no getChatAdministrators; teach it this one answer.
    app.tg._handlers["getchatadministrators"] = ("getChatAdministrators", administrators)
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/staff")
    text = (await owner.wait_message("Owners")).text
    assert str(OWNER_ID) in text
    assert "Olga (@olga)" in text and "Bot —" not in text
    assert f"{CASHIER_ID}: 2 sales" in text
    assert "card.bound" in text and "card 100 045" in text
    # Audit times are shown in store time (Europe/Moscow = UTC+3): 10:00 UTC → 13:00.
    assert "Nov 2, 2026, 13:00" in text


async def test_staff_without_the_admin_list_still_answers(app: App) -> None:
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/staff")
    text = (await owner.wait_message("Owners")).text
    assert "Could not read the staff group" in text


async def test_cashiers_and_customers_cannot_use_owner_tools(app: App) -> None:
    await seed_member(app.sessionmaker)
    for user_id in (CASHIER_ID, CUSTOMER_ID):
        user = app.tg.user(user_id, language_code="en")
        for command in ("/block 100045", "/unbind 100045", "/staff"):
            await user.send(command)
            reply = await user.wait_message()
            assert "Owners" not in reply.text and "blocked" not in reply.text
    card = await _card(app)
    assert card.status == CardStatus.ISSUED and card.client_id is not None
