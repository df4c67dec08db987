"""A restart in the middle of a conversation loses nothing: the step a person was at, and what
the bot had noted for it, are kept in the database (or Redis) and the conversation goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from bot import fsm_storage
from db.models import MAIN_BRANCH_ID, ConversationState, Purchase
from tests.conftest import CASHIER_ID, REDIS_URL, STAFF_CHAT_ID
from tests.till_helpers import seed_card
from tests.wallet_helpers import card, eventually, join, seed_cards


async def test_a_customer_asked_for_the_pin_answers_after_a_restart(app_with: Any) -> None:
    async with app_with() as app:
        await seed_cards(app.sessionmaker, 200001, 200002, 10, app.clock(), pin="4321")
        user = app.tg.user(3201, language_code="en")
        await join(user)
        await user.send("200001")
        await user.wait_message("PIN")
    # The bot restarts (a deploy, a crash): a new process, a new dispatcher, the same database.
    async with app_with() as app:
        user = app.tg.user(3201, language_code="en")
        await user.send("4321")
        await user.wait_message(lambda m: m.method == "sendPhoto")
        assert (await card(app.sessionmaker, "200001")).client_id is not None


async def test_a_cashier_at_the_amount_prompt_goes_on_after_a_restart(app_with: Any) -> None:
    async with app_with() as app:
        await seed_card(app.sessionmaker, "100045", 5)
        cashier = app.tg.user(CASHIER_ID, language_code="en")
        group = app.tg.group(STAFF_CHAT_ID)
        await group.send(cashier, "100045")
        prompt = await group.wait_message("Enter the purchase amount")
    async with app_with() as app:
        cashier = app.tg.user(CASHIER_ID, language_code="en")
        group = app.tg.group(STAFF_CHAT_ID)
        await group.send(cashier, "1500", reply_to=prompt)
        quote = await group.wait_message("To pay")
        await group.press(cashier, quote, "✅")
        await group.wait_message("recorded")
        async with app.sessionmaker() as session:
            assert [p.amount for p in (await session.scalars(select(Purchase))).all()] == [150000]


@pytest.mark.skipif(bool(REDIS_URL), reason="the database keeps conversations without Redis")
async def test_a_sale_keeps_its_conversation_in_two_writes(
    app_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan writes the amount step with its card at once, and the quote ends the
    conversation with one delete: not the two writes each that aiogram's `set_data()` then
    `set_state()` (and `clear()`) make, the largest share of the database's work on the till."""
    writes: list[tuple[str | None, dict[str, Any]]] = []
    write = fsm_storage._write

    def counted(session: Any, name: str, state: str | None, data: dict[str, Any], now: Any) -> None:
        writes.append((state, data))
        write(session, name, state, data, now)

    monkeypatch.setattr(fsm_storage, "_write", counted)
    async with app_with() as app:

        async def conversations() -> list[tuple[str | None, Any]]:
            async with app.sessionmaker() as session:
                found = await session.execute(
                    select(ConversationState.state, ConversationState.data)
                )
                return [tuple(row) for row in found]

        async def kept() -> bool:
            return bool(await conversations())

        async def gone() -> bool:
            return not await conversations()

        card_id, _client = await seed_card(app.sessionmaker, "100045", 5)
        cashier = app.tg.user(CASHIER_ID, language_code="en")
        group = app.tg.group(STAFF_CHAT_ID)
        await group.send(cashier, "100045")
        prompt = await group.wait_message("Enter the purchase amount")
        await eventually(kept)  # written while the prompt travels: maybe a moment after it
        step = {"card_id": card_id, "number": "100045", "branch_id": MAIN_BRANCH_ID}
        assert await conversations() == [("TillStates:amount", step)]
        await group.send(cashier, "1500", reply_to=prompt)
        await group.wait_message("To pay")
        await eventually(gone)
    assert writes == [("TillStates:amount", step), (None, {})]


async def test_a_stop_lets_the_updates_in_flight_finish(app_with: Any) -> None:
    """A deploy stops the bot while it is answering: the answer still goes out (the session
    closes only after the updates being handled finished)."""
    async with app_with() as app:
        app.tg.set_latency(1.0)  # Telegram is slow to take the reply
        user = app.tg.user(3204, language_code="en")
        await user.send("/help")
        async with asyncio.timeout(10):
            while True:  # until the reply is on its way: stop then
                if app.tg.in_flight:
                    break
                await asyncio.sleep(0.01)
    assert any("what this bot can do" in (m.text or "") for m in app.tg.messages_in(3204))


async def test_a_finished_conversation_leaves_no_row(app_with: Any) -> None:
    async with app_with() as app:
        await seed_cards(app.sessionmaker, 200001, 200002, 10, app.clock())
        user = app.tg.user(3202, language_code="en")
        await join(user)
        await user.send("/cancel")
        await user.wait_message("Cancelled")
        async with app.sessionmaker() as session:
            states = (await session.scalars(select(ConversationState))).all()
        assert states == []


@pytest.mark.skipif(not REDIS_URL, reason="without Redis it is kept by the one process")
async def test_a_language_picked_before_consent_is_seen_by_every_worker(app_with: Any) -> None:
    async with app_with() as app:
        user = app.tg.user(3203, language_code="ru")
        await user.send("/language")
        choose = await user.wait_message("Выберите язык")
        await user.press(choose, "🇪🇪 Eesti")
        await user.wait_message("Keel: 🇪🇪 Eesti")
    # Another worker (or this one after a restart) greets them in the language they picked.
    async with app_with() as app:
        user = app.tg.user(3203, language_code="ru")
        await user.send("/start")
        consent = await user.wait_message("/privacy")
        assert consent.find_button("✅ Nõustun")
