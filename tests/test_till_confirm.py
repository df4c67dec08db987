"""Confirm exactly once, cancel, void, /issue, and who may do what (end to end)."""

from __future__ import annotations

from sqlalchemy import select

from db.models import AuditEvent, Card, CardStatus, Client, Offer, SaleDraft
from tests.conftest import CASHIER_ID, CUSTOMER_ID, OWNER_ID, STAFF_CHAT_ID, App
from tests.till_helpers import add_offer, audit_actions, purchases, quote_for, seed_bound, seed_card

OTHER_CASHIER = 2002


async def test_confirm_records_one_purchase_and_tells_everyone(app: App) -> None:
    _card_id, client_id = await seed_bound(app.sessionmaker, "100045", 7)
    offer_id = await add_offer(app.sessionmaker, client_id, app.clock(), pct=3)
    cashier = app.tg.user(CASHIER_ID, "Olga", language_code="en")
    quote = await quote_for(cashier)
    answer = await cashier.press(quote, "✅")
    assert answer.params.get("text") == "Recorded."
    receipt = await cashier.wait_message("recorded")
    assert receipt.message_id == quote.message_id  # the quote turned into the receipt
    assert "₽2,500 − 10 % (₽250) = ₽2,250" in receipt.text
    assert receipt.find_button("↩️")

    rows = await purchases(app.sessionmaker)
    assert [(p.amount, p.discount_pct, p.offer_id, p.cashier_id) for p in rows] == [
        (250000, 10, offer_id, CASHIER_ID)
    ]
    log = await app.tg.group(STAFF_CHAT_ID).wait_message("Olga")
    assert "100 045" in log.text and f"№{rows[0].id}" in log.text  # the store's language
    note = await app.tg.user(CUSTOMER_ID).wait_message()
    assert "säästsid" in note.text  # the customer's language (et), not the cashier's
    async with app.sessionmaker() as session:
        offer = await session.get(Offer, offer_id)
        assert offer is not None and offer.redeemed_purchase_id == rows[0].id

    # A double tap or a retried update: the same purchase, no second row, no second message.
    repeat = await cashier.press_data(quote.message_id, quote.find_button("✅")["callback_data"])
    assert repeat.params.get("text") == "Already confirmed."
    assert len(await purchases(app.sessionmaker)) == 1
    assert len(app.tg.messages_in(CUSTOMER_ID)) == 1
    assert {"sale.confirmed", "offer.redeemed"} <= set(await audit_actions(app.sessionmaker))


async def test_a_staff_group_sale_is_not_logged_twice(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    await group.send(cashier, "100045")
    prompt = await group.wait_message("Enter the purchase amount")
    await group.send(cashier, "1000", reply_to=prompt)
    quote = await group.wait_message("To pay")
    await group.press(cashier, quote, "✅")
    await group.wait_message("recorded")
    await app.tg.wait_for_idle(quiet=0.1)
    assert not any("🧾 №" in (m.text or "") for m in group.messages())


async def test_expired_and_cancelled_quotes_cannot_be_confirmed(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    quote = await quote_for(cashier)
    app.clock.advance(minutes=app.settings.pricing.draft_ttl_min + 1)
    answer = await cashier.press(quote, "✅")
    assert "expired" in answer.params["text"] and answer.params.get("show_alert")
    quote = await quote_for(cashier)
    await cashier.press(quote, "❌")
    assert "Quote cancelled" in (await cashier.wait_message("cancelled")).text
    answer = await cashier.press_data(quote.message_id, quote.buttons[0]["callback_data"])
    assert "cancelled" in answer.params["text"]
    assert await purchases(app.sessionmaker) == []


async def test_only_the_cashier_of_the_quote_or_an_owner_may_confirm(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    app.tg.set_member(STAFF_CHAT_ID, OTHER_CASHIER, "member")
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    await group.send(cashier, "100045")
    prompt = await group.wait_message("Enter the purchase amount")
    await group.send(cashier, "1000", reply_to=prompt)
    quote = await group.wait_message("To pay")
    other = app.tg.user(OTHER_CASHIER, language_code="en")
    answer = await group.press(other, quote, "✅")
    assert "Only the cashier" in answer.params["text"]
    answer = await group.press(other, quote, "❌")
    assert "Only the cashier" in answer.params["text"]
    assert await purchases(app.sessionmaker) == []
    owner = app.tg.user(OWNER_ID, language_code="en")
    answer = await group.press(owner, quote, "✅")
    assert answer.params["text"] == "Recorded."
    assert len(await purchases(app.sessionmaker)) == 1


async def test_void_by_the_cashier_within_the_window_and_by_an_owner_later(app: App) -> None:
    _card_id, client_id = await seed_bound(app.sessionmaker, "100045", 5)
    offer_id = await add_offer(app.sessionmaker, client_id, app.clock(), pct=2)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    customer = app.tg.user(CUSTOMER_ID)
    quote = await quote_for(cashier)
    await cashier.press(quote, "✅")
    receipt = await cashier.wait_message("recorded")
    await customer.wait_message()
    answer = await cashier.press(receipt, "↩️")
    assert answer.params["text"] == "Voided."
    assert "voided" in (await cashier.wait_message("voided")).text
    told = await customer.wait_message()
    assert "tühistas" in told.text
    [voided] = await purchases(app.sessionmaker)
    assert voided.voided_at == app.clock() and voided.voided_by == CASHIER_ID
    async with app.sessionmaker() as session:
        offer = await session.get(Offer, offer_id)
        assert offer is not None and offer.redeemed_purchase_id is None
        assert offer.redeemed_at is None
    answer = await cashier.press_data(receipt.message_id, receipt.buttons[0]["callback_data"])
    assert "already voided" in answer.params["text"]

    # The offer is back: the next sale uses it again; the window then closes for the cashier.
    quote = await quote_for(cashier)
    assert "+2 %" in quote.text
    await cashier.press(quote, "✅")
    receipt = await cashier.wait_message("recorded")
    app.clock.advance(minutes=app.settings.pricing.void_window_min + 1)
    answer = await cashier.press(receipt, "↩️")
    assert "within 30 min" in answer.params["text"]
    second = (await purchases(app.sessionmaker))[1]
    assert second.voided_at is None
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send(f"/void {second.id}")
    assert "voided" in (await owner.wait_message()).text
    edited = await cashier.wait_message(f"Purchase #{second.id} voided")
    assert edited.message_id == receipt.message_id and not edited.buttons
    assert (await purchases(app.sessionmaker))[1].voided_by == OWNER_ID
    assert (await audit_actions(app.sessionmaker)).count("sale.voided") == 2


async def test_a_cashier_cannot_void_anothers_purchase(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    app.tg.set_member(STAFF_CHAT_ID, OTHER_CASHIER, "member")
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    quote = await quote_for(cashier)
    await cashier.press(quote, "✅")
    await cashier.wait_message("recorded")
    [purchase] = await purchases(app.sessionmaker)
    other = app.tg.user(OTHER_CASHIER, language_code="en")
    await other.send(f"/void {purchase.id}")
    assert "only your own" in (await other.wait_message()).text
    await other.send("/void abc")
    assert "Usage" in (await other.wait_message()).text
    assert (await purchases(app.sessionmaker))[0].voided_at is None


async def test_issue_a_card_and_unreachable_customer(app: App) -> None:
    await seed_card(app.sessionmaker, "100050", 7, status=CardStatus.IN_STOCK)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/issue 100050 b2b")
    assert "Card 100 050 (7 %, B2B) is now issued." in (await cashier.wait_message()).text
    await cashier.send("/issue 100050")
    assert "already issued" in (await cashier.wait_message()).text
    await cashier.send("/issue")
    assert "Usage" in (await cashier.wait_message()).text
    async with app.sessionmaker() as session:
        card = await session.scalar(select(Card).where(Card.number == "100050"))
        assert card is not None and card.status == CardStatus.ISSUED and card.segment == "b2b"
        issued = await session.scalar(select(AuditEvent).where(AuditEvent.action == "card.issued"))
        assert issued is not None and issued.actor_id == CASHIER_ID

    # A customer who blocked the bot: the sale is recorded, the client marked unreachable.
    _card_id, client_id = await seed_bound(app.sessionmaker, "100045", 5)
    app.tg.block(CUSTOMER_ID)
    quote = await quote_for(cashier)
    await cashier.press(quote, "✅")
    await cashier.wait_message("recorded")
    await app.tg.wait_for(lambda c: c.method == "sendMessage" and c.chat_id == CUSTOMER_ID)
    await app.tg.wait_for_idle(quiet=0.1)
    async with app.sessionmaker() as session:
        client = await session.get(Client, client_id)
        assert client is not None and client.reachable is False
        draft = await session.scalar(select(SaleDraft))
        assert draft is not None and draft.status == "confirmed"
    assert len(await purchases(app.sessionmaker)) == 1
