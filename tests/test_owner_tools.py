"""Owner tools end to end: /block (with a confirmation), /unblock, /unbind, /staff, /audit."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from bot.demo.emulator import Call, FakeMessage, FakeUser
from db.models import AuditEvent, Card, CardStatus, Client
from services import card_admin
from tests.conftest import CASHIER_ID, CUSTOMER_ID, OWNER_ID, STAFF_CHAT_ID, App
from tests.test_privacy import TG_ID, seed_member


async def _card(app: App, number: str = "100045") -> Card:
    async with app.sessionmaker() as session:
        card = await session.scalar(select(Card).where(Card.number == number))
        assert card is not None
        return card


async def _audit_count(app: App, action: str) -> int:
    async with app.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        )
        return int(count or 0)


async def _ask_block(owner: FakeUser, number: str = "100045") -> FakeMessage:
    await owner.send(f"/block {number}")
    question = await owner.wait_message("Block card")
    assert [b["text"] for b in question.buttons] == ["✅ Block", "❌ Keep"]
    return question


async def test_block_asks_first_then_blocks_and_tells_the_holder(app: App) -> None:
    client_id = await seed_member(app.sessionmaker, language="et")
    holder = app.tg.user(TG_ID, language_code="et")
    owner = app.tg.user(OWNER_ID, language_code="en")
    question = await _ask_block(owner, "100 045")
    assert (
        "Block card 100 045?" in question.text and "It is linked to @zeph_quill_77" in question.text
    )
    assert (await _card(app)).status == CardStatus.ISSUED  # asking changes nothing

    await owner.press(question, "✅ Block")
    reply = await owner.wait_message("Card 100 045 is blocked")
    assert reply.message_id == question.message_id and reply.buttons == []
    assert "Its holder will be told." in reply.text and "/unblock 100045" in reply.text
    told = await holder.wait_message("100 045")
    assert "blokeeris" in told.text  # in the holder's language, not the owner's

    card = await _card(app)
    assert card.status == CardStatus.BLOCKED and card.block_reason == "lost"
    assert card.client_id == client_id
    async with app.sessionmaker() as session:
        event = await session.scalar(select(AuditEvent).where(AuditEvent.action == "card.blocked"))
        assert event.actor_id == OWNER_ID and event.card_id == card.id

    # A second tap on the same (replayed) button changes nothing and tells nobody again.
    data = question.find_button("✅ Block")["callback_data"]
    call = await owner.press_data(question.message_id, data)
    assert "already blocked" in (call.params.get("text") or "")
    await app.tg.wait_for_idle()
    assert await _audit_count(app, "card.blocked") == 1
    assert len([m for m in holder.messages() if "100 045" in m.text]) == 1

    await owner.send("/block 100045")
    assert "already blocked" in (await owner.wait_message()).text


async def test_keep_and_stale_buttons_change_nothing(app: App) -> None:
    await seed_member(app.sessionmaker, language="en")
    owner = app.tg.user(OWNER_ID, language_code="en")
    question = await _ask_block(owner)
    await owner.press(question, "❌ Keep")
    assert "stays active" in (await owner.wait_message()).text

    question = await _ask_block(owner)
    app.clock.advance(minutes=11)  # the owner comes back to an old question
    call = await owner.press(question, "✅ Block")
    assert "expired" in (call.params.get("text") or "")
    assert "Send /block 100045 again" in (await owner.wait_message()).text
    await app.tg.wait_for_idle()
    assert (await _card(app)).status == CardStatus.ISSUED
    assert await _audit_count(app, "card.blocked") == 0


async def test_unblock_a_found_card_tells_the_holder(app: App) -> None:
    await seed_member(app.sessionmaker, language="et")
    holder = app.tg.user(TG_ID, language_code="et")
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.press(await _ask_block(owner), "✅ Block")
    await owner.wait_message("is blocked")
    await holder.wait_message("blokeeris")

    await owner.send("/unblock 100 045")
    reply = await owner.wait_message("unblocked")
    assert "Card 100 045 is unblocked" in reply.text and "Its holder will be told." in reply.text
    told = await holder.wait_message("100 045")
    assert "jälle" in told.text  # Estonian, informal
    card = await _card(app)
    assert card.status == CardStatus.ISSUED and card.blocked_at is None
    assert card.block_reason is None and card.client_id is not None
    async with app.sessionmaker() as session:
        event = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == "card.unblocked")
        )
        assert event.actor_id == OWNER_ID and event.details["previous_reason"] == "lost"

    await owner.send("/unblock 100045")
    assert "is not blocked" in (await owner.wait_message()).text
    assert await _audit_count(app, "card.unblocked") == 1


async def test_unblock_a_card_never_handed_out_puts_it_back_in_stock(app: App) -> None:
    async with app.sessionmaker() as session:
        session.add(Card(number="100099", base_pct=5, status=CardStatus.IN_STOCK))
        await session.commit()
    owner = app.tg.user(OWNER_ID, language_code="en")
    question = await _ask_block(owner, "100099")
    assert "linked to" not in question.text
    await owner.press(question, "✅ Block")
    await owner.wait_message("is blocked")
    await owner.send("/unblock 100099")
    reply = await owner.wait_message("unblocked")
    assert "holder" not in reply.text
    assert (await _card(app, "100099")).status == CardStatus.IN_STOCK


async def _block_as(app: App, reason: str, number: str = "100045") -> None:
    async with app.sessionmaker() as session:
        card = await session.scalar(select(Card).where(Card.number == number))
        assert card is not None
        card.status, card.block_reason, card.blocked_at = CardStatus.BLOCKED, reason, app.clock()
        await session.commit()


async def test_unblock_refuses_erased_and_replaced_cards(app: App) -> None:
    await seed_member(app.sessionmaker, language="en")
    owner = app.tg.user(OWNER_ID, language_code="en")
    await _block_as(app, "erased")
    await owner.send("/unblock 100045")
    assert "erased their data" in (await owner.wait_message()).text
    await _block_as(app, "replaced")
    await owner.send("/unblock 100045")
    assert "replaced it with another card" in (await owner.wait_message()).text

    # Blocked as lost, then the holder linked another card: one account, one active card.
    await _block_as(app, "lost")
    async with app.sessionmaker() as session:
        holder_id = await session.scalar(select(Client.id).where(Client.tg_id == TG_ID))
        session.add(
            Card(number="100098", base_pct=5, status=CardStatus.ISSUED, client_id=holder_id)
        )
        await session.commit()
    await owner.send("/unblock 100045")
    text = (await owner.wait_message()).text
    assert "has linked card 100 098" in text and "/unbind 100045" in text
    # ... and a lost card whose holder erased their data later stays blocked too.
    async with app.sessionmaker() as session:
        holder = await session.get(Client, holder_id)
        assert holder is not None
        holder.erased_at, holder.tg_id = app.clock() - timedelta(days=1), None
        await session.commit()
    await owner.send("/unblock 100045")
    assert "erased their data" in (await owner.wait_message()).text

    await app.tg.wait_for_idle()
    card = await _card(app)
    assert card.status == CardStatus.BLOCKED and card.block_reason == "lost"
    assert await _audit_count(app, "card.unblocked") == 0


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

    app.tg.user(CASHIER_ID, "Carl", last_name="Kassir")
    # The fake Bot API has no getChatAdministrators; teach it this one answer.
    app.tg._handlers["getchatadministrators"] = ("getChatAdministrators", administrators)
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/staff")
    text = (await owner.wait_message("Owners")).text
    assert str(OWNER_ID) in text
    assert "Olga (@olga)" in text and "Bot —" not in text
    assert f"Carl Kassir — {CASHIER_ID}: 2 sales" in text  # named through Telegram
    assert "card linked" in text and "card 100 045" in text
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
        for command in ("/block 100045", "/unblock 100045", "/unbind 100045", "/staff", "/audit"):
            await user.send(command)
            reply = await user.wait_message()
            assert "Owners" not in reply.text and "blocked" not in reply.text
    card = await _card(app)
    assert card.status == CardStatus.ISSUED and card.client_id is not None


async def test_audit_view_for_everything_and_for_one_card(app: App) -> None:
    await seed_member(app.sessionmaker)
    async with app.sessionmaker() as session:
        session.add(Card(number="100099", base_pct=5, status=CardStatus.IN_STOCK))
        await session.commit()
    owner = app.tg.user(OWNER_ID, "Olga", language_code="en")
    await owner.press(await _ask_block(owner, "100099"), "✅ Block")
    await owner.wait_message("is blocked")

    await owner.send("/audit")
    text = (await owner.wait_message("Latest audit events")).text
    assert text.index("card blocked") < text.index("card linked")  # newest first
    assert f"by Olga — {OWNER_ID}" in text  # the owner, named through Telegram

    await owner.send("/audit 100 045")
    text = (await owner.wait_message("Audit events of card 100 045")).text
    assert "card linked" in text and "card blocked" not in text
    await owner.send("/audit 999999")
    assert "not registered" in (await owner.wait_message()).text


async def test_help_lists_unblock_and_audit_for_owners_only(app: App) -> None:
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/help")
    text = (await owner.wait_message("/block")).text
    assert "/unblock — unblock a card that was found" in text and "/audit" in text
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/help")
    text = (await cashier.wait_message("/sale")).text
    assert "/unblock" not in text and "/audit" not in text


async def test_forged_block_buttons_change_nothing(app: App) -> None:
    await seed_member(app.sessionmaker)
    owner = app.tg.user(OWNER_ID, language_code="en")
    question = await _ask_block(owner)
    for data in ("blk:yes:100045:99999999999999999999", "blk:yes:100045:-5", "blk:no:<b>:0"):
        call = await owner.press_data(question.message_id, data)
        assert "something went wrong" not in (call.params.get("text") or "")
    await app.tg.wait_for_idle()
    assert (await _card(app)).status == CardStatus.ISSUED


async def test_two_blocks_of_one_card_at_once_block_it_once(app: App) -> None:
    """Two owners (or a double tap) block the same card at the same moment: one change, one
    audit event, one note to the holder (on PostgreSQL two transactions at once)."""
    await seed_member(app.sessionmaker)
    changes = await asyncio.gather(
        *(
            card_admin.block_card(app.db, "100045", actor_id=OWNER_ID, now=app.clock())
            for _ in range(2)
        )
    )
    assert sorted(change.changed for change in changes) == [False, True]
    assert await _audit_count(app, "card.blocked") == 1
    assert (await _card(app)).status == CardStatus.BLOCKED
