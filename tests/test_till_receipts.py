"""What the cashier sees around a sale when things go sideways: stale quotes, Telegram failing
after the sale is recorded, late taps on a voided sale, a busy staff group, blocked cards,
numbers typed the way people type them."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from config import Settings
from db.models import Client, DeliveryStatus, DraftStatus, SaleDraft
from tests.conftest import (
    CASHIER_ID,
    CUSTOMER_ID,
    STAFF_CHAT_ID,
    App,
    FrozenClock,
    make_settings,
    running_app,
)
from tests.engagement_helpers import deliveries, fast_limiter, sender_for
from tests.till_helpers import (
    amount_prompts,
    purchases,
    quote_for,
    seed_bound,
    seed_card,
    staff_log_lines,
)

# ------------------------------------------------------------------------- stale quotes


async def test_a_newer_quote_replaces_the_older_one(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    older = await quote_for(cashier, "1000")
    newer = await quote_for(cashier, "2000")
    assert (await cashier.press(newer, "✅")).params["text"] == "Recorded."
    answer = await cashier.press(older, "✅")
    assert "replaced by a newer one" in answer.params["text"]
    assert [p.amount for p in await purchases(app.sessionmaker)] == [200000]
    async with app.sessionmaker() as session:
        statuses = (
            await session.scalars(select(SaleDraft.status).order_by(SaleDraft.amount))
        ).all()
    assert statuses == [DraftStatus.REPLACED, DraftStatus.CONFIRMED]


async def test_another_cashiers_quote_for_the_same_card_stays_open(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    app.tg.set_member(STAFF_CHAT_ID, 2002, "member")
    first = app.tg.user(CASHIER_ID, language_code="en")
    second = app.tg.user(2002, language_code="en")
    mine = await quote_for(first, "1000")
    await quote_for(second, "2000")
    assert (await first.press(mine, "✅")).params["text"] == "Recorded."


# --------------------------------------------------- Telegram failing after the commit


async def test_a_sale_recorded_while_telegram_fails_is_reported_as_recorded(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    quote = await quote_for(cashier)
    # The answer to ✅ is lost once, the receipt edit fails three times (5xx, reset, a proxy's
    # HTML page): the sale stands, the cashier gets the receipt anew, and never "Sorry".
    app.tg.fail_next("answerCallbackQuery", 502)
    app.tg.fail_next("editMessageText", 500)
    app.tg.fail_next("editMessageText", 0, reset=True)
    app.tg.fail_next("editMessageText", 502, raw_body="<html><h1>502 Bad Gateway</h1></html>")
    await cashier.press(quote, "✅")
    receipt = await cashier.wait_message("recorded")
    assert receipt.message_id != quote.message_id  # sent anew after the edits kept failing
    assert receipt.find_button("↩️")
    await app.tg.wait_for_idle(quiet=0.3)
    assert not [m for m in app.tg.messages_in(CASHIER_ID) if "went wrong" in (m.text or "")]
    answers = [c for c in app.tg.calls if c.method == "answerCallbackQuery" and c.ok]
    assert [c.params.get("text") for c in answers] == ["Recorded."]  # the retry went through
    assert len(await purchases(app.sessionmaker)) == 1
    # A cashier who still taps ✅ again records nothing more.
    again = await cashier.press(quote, "✅")
    assert again.params["text"] == "Already confirmed."
    assert len(await purchases(app.sessionmaker)) == 1


async def test_a_transient_edit_failure_is_retried_in_place(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    quote = await quote_for(cashier)
    app.tg.fail_next("editMessageText", 503)
    await cashier.press(quote, "✅")
    receipt = await cashier.wait_message("recorded")
    assert receipt.message_id == quote.message_id


# ------------------------------------------------------------- a voided sale stays voided


async def test_a_late_confirm_tap_shows_the_purchase_as_voided(app: App) -> None:
    await seed_bound(app.sessionmaker)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    quote = await quote_for(cashier)
    await cashier.press(quote, "✅")
    receipt = await cashier.wait_message("recorded")
    await cashier.press(receipt, "↩️")
    await cashier.wait_message("voided")
    late = await cashier.press_data(quote.message_id, quote.find_button("✅")["callback_data"])
    assert late.params["text"] == "This purchase was voided."
    await app.tg.wait_for_idle(quiet=0.2)
    [shown] = [m for m in app.tg.messages_in(CASHIER_ID) if m.message_id == quote.message_id]
    assert "voided" in shown.text and "recorded" not in shown.text
    assert not shown.buttons  # no ↩️ Void on a voided purchase


async def test_racing_a_late_confirm_against_the_void_never_shows_a_voided_sale_as_recorded(
    app_with: Any,
) -> None:
    async with app_with(flood_limit=1000) as app:  # a cashier tapping fast
        await _race(app)


async def _race(app: App) -> None:
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    for i in range(8):
        number = f"10004{i}"
        await seed_card(app.sessionmaker, number, 5)
        quote = await quote_for(cashier, "1000", number)
        ok = quote.find_button("✅")["callback_data"]
        await cashier.press(quote, "✅")
        receipt = await cashier.wait_message("recorded")
        await asyncio.gather(cashier.press(receipt, "↩️"), cashier.press_data(quote.message_id, ok))
        await app.tg.wait_for_idle(quiet=0.2)
        [shown] = [m for m in app.tg.messages_in(CASHIER_ID) if m.message_id == quote.message_id]
        assert "voided" in shown.text, (i, shown.text)
    assert all(p.voided_at is not None for p in await purchases(app.sessionmaker))


# ------------------------------------------------------------------ the busy staff group


async def test_a_reply_refused_by_the_groups_flood_limit_is_sent_after_the_wait(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    app.tg.fail_next("sendMessage", 429, retry_after=1, chat_id=STAFF_CHAT_ID)
    await group.send(cashier, "100045")
    prompt = await group.wait_message("Enter the purchase amount", timeout=5)
    assert prompt.text
    refused = [c for c in app.tg.calls if c.method == "sendMessage" and c.status == 429]
    assert len(refused) == 1  # refused once, then sent: the cashier got the prompt


async def test_an_amount_typed_under_the_prompt_without_replying_is_taken(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    await group.send(cashier, "100045")
    await group.wait_message("Enter the purchase amount")
    await group.send(cashier, "1500")  # not a reply: desktop clients do not force one
    quote = await group.wait_message("To pay")
    assert "1,500" in quote.text


async def test_a_bare_number_before_any_scan_explains_how_a_sale_goes(app: App) -> None:
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    await group.send(cashier, "1500")
    reply = await group.wait_message("No card 1 500")
    assert "first scan the card" in reply.text


# ------------------------------------------------------------------ cards the till refuses


async def test_a_blocked_card_tells_the_cashier_not_to_give_the_discount(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5, status="blocked")
    async with app.sessionmaker() as session:
        from db.models import Card

        card = await session.scalar(select(Card).where(Card.number == "100045"))
        assert card is not None
        card.block_reason = "lost"
        await session.commit()
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/sale 100045")
    reply = await cashier.wait_message("blocked")
    assert "do not give its discount" in reply.text and "lost or stolen" in reply.text
    assert "contact the store" not in reply.text


async def test_issue_of_a_short_number_says_it_is_not_registered(app: App) -> None:
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/issue 999")
    assert "Card 999 is not registered" in (await cashier.wait_message()).text
    await cashier.send("/sale 12")
    assert "Card 12 is not registered" in (await cashier.wait_message()).text


async def test_russian_amounts_with_a_currency_are_taken(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    for typed in ("2500р", "2 500 ₽", "2500 руб."):
        quote = await quote_for(cashier, typed)
        assert "Amount: ₽2,500" in quote.text, typed


# -------------------------------------------------------------- what the customer reads


async def test_the_customer_reads_the_discount_this_purchase_got(
    app_with: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A 5 % card, a 7 % tier by this purchase's amount: the customer is told 7 %, not "your
    tier: 5 %" (there are no cumulative tiers to speak of)."""
    await seed_card(sessionmaker, "100045", 5, client_tg_id=CUSTOMER_ID, language="en")
    async with app_with(amount_tiers=[(Decimal(2000), 7)]) as app:
        cashier = app.tg.user(CASHIER_ID, language_code="en")
        quote = await quote_for(cashier, "2500")
        await cashier.press(quote, "✅")
        note = await app.tg.user(CUSTOMER_ID).wait_message()
    assert "discount 7 %" in note.text and "5 %" not in note.text


async def test_the_tills_replies_in_the_staff_group_are_charged_to_the_staff_logs_budget(
    app: App,
) -> None:
    """What the till sends into the staff group counts against the group's 20 messages a
    minute in the delivery sender too: the staff log waits (and combines its lines) instead of
    taking the slots the cashiers' answers need."""
    await seed_card(app.sessionmaker, "100045", 5)
    outbox = app.dp["outbox"]
    assert outbox.worker is not None
    limiter = outbox.worker.sender.limiter
    assert limiter.chat_delay(STAFF_CHAT_ID) == 0
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    await group.send(cashier, "100045")
    await group.wait_message("Enter the purchase amount")
    # One reply: the next staff-log line waits a full slot (60 s / 20 messages).
    assert limiter.chat_delay(STAFF_CHAT_ID) > 2.0
    # Replies in a private chat are not the group's business.
    before = limiter.chat_delay(CASHIER_ID)
    await cashier.send("/sale 100045")
    await cashier.wait_message("Enter the purchase amount")
    assert limiter.chat_delay(CASHIER_ID) == before == 0


async def test_a_rush_answers_every_scan_in_the_group_and_logs_every_sale_once(
    app_with: Any, tg: FakeTelegram, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Five cashiers at once against a group capped like Telegram's (time runs ten times
    faster here: 20 messages per 6 s), with more scans in the group than the cap: every scan
    gets its prompt and every sale made in a private chat reaches the staff log exactly once,
    in fewer messages than sales."""
    tg.set_group_rate_limit(20, window=6.0)
    for i in range(42):
        await seed_card(sessionmaker, f"1001{i:02d}", 5)
    group_cashiers = [2101, 2102]
    private_cashiers = [2103, 2104, 2105]
    async with app_with(flood_limit=1000, delivery_rate_group_per_min=200):
        for cashier_id in group_cashiers + private_cashiers:
            tg.set_member(STAFF_CHAT_ID, cashier_id, "member")
        group = tg.group(STAFF_CHAT_ID)

        async def sell_in_private(cashier_id: int, numbers: list[str]) -> None:
            cashier = tg.user(cashier_id, language_code="en")
            for number in numbers:
                quote = await quote_for(cashier, "1000", number)
                await cashier.press(quote, "✅")
                await cashier.wait_message("recorded")

        async def scan_in_group(cashier_id: int, numbers: list[str]) -> None:
            cashier = tg.user(cashier_id, language_code="en")
            for number in numbers:
                await group.send(cashier, number)

        numbers = [f"1001{i:02d}" for i in range(42)]
        sold, scanned = numbers[:18], numbers[18:]  # 18 sales in private, 24 scans in the group
        await asyncio.gather(
            *(sell_in_private(c, sold[k::3]) for k, c in enumerate(private_cashiers)),
            *(scan_in_group(c, scanned[k::2]) for k, c in enumerate(group_cashiers)),
        )

        for _ in range(400):
            if amount_prompts(group) == 24 and len(staff_log_lines(group)) == 18:
                break
            await asyncio.sleep(0.1)
        # More than the group's cap, and no scan left without an answer.
        assert amount_prompts(group) == 24
        lines = staff_log_lines(group)
        assert len(lines) == len(set(lines)) == 18  # every sale exactly once
        log_messages = [m for m in group.messages() if (m.text or "").startswith("🧾")]
        assert len(log_messages) < 18  # combined while the group was busy


# ------------------------------------------------------ facts queued, text when it is sent


async def test_a_sale_queues_facts_and_they_read_in_the_language_of_the_moment_they_go_out(
    tg: FakeTelegram,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> None:
    """The receipt and the staff-log line are queued as facts (no text is made inside the
    sale's transaction) and rendered by the delivery sender: in the customer's language as it
    is when the message goes out, the staff line in the store's language (Russian), naming
    the cashier (escaped)."""
    await seed_bound(sessionmaker, "100045", 5)  # the customer reads Estonian
    async with running_app(tg, settings, sessionmaker, clock, delivery_worker=False) as app:
        cashier = tg.user(CASHIER_ID, "Olga <Till 1>", language_code="en")
        quote = await quote_for(cashier)
        await cashier.press(quote, "✅")
        receipt = await cashier.wait_message("recorded")
        [purchase] = await purchases(sessionmaker)
        async with sessionmaker() as session:
            rows = {row.kind: row.payload for row in await deliveries(session)}
            assert rows == {
                "staff_log": {
                    "event": "sale",
                    "purchase_id": purchase.id,
                    "number": "100045",
                    "amount": 250000,
                    "discount_pct": 5,
                    "discount_amount": 12500,
                    "paid_amount": 237500,
                    "cashier": "Olga <Till 1>",
                },
                "receipt": {
                    "event": "sale",
                    "purchase_id": purchase.id,
                    "amount": 250000,
                    "discount_pct": 5,
                    "discount_amount": 12500,
                },
            }
            # The customer switches to English before the receipt goes out.
            await session.execute(
                update(Client).where(Client.tg_id == CUSTOMER_ID).values(language="en")
            )
            await session.commit()
        sender = sender_for(app.bot, sessionmaker, app.settings, clock, limiter=fast_limiter())
        assert (await sender.deliver_due()).sent == 2
        [note] = tg.sent(chat_id=CUSTOMER_ID)
        assert note.text == "Purchase ₽2,500: discount 5 %, you saved ₽125."
        [line] = tg.sent(chat_id=STAFF_CHAT_ID)
        assert line.text == (
            f"🧾 №{purchase.id} · Карта 100 045 · 2\xa0500\xa0₽ − 5 % (125\xa0₽) = 2\xa0375\xa0₽ · "
            "Olga &lt;Till 1&gt;"
        )

        # The void: facts again, the customer told in their language, the staff chat in Russian.
        await cashier.press(receipt, "↩️")
        await cashier.wait_message("voided")
        async with sessionmaker() as session:
            voids = {
                row.kind: row.payload
                for row in await deliveries(session, status=DeliveryStatus.PENDING)
            }
        assert voids == {
            "staff_log": {
                "event": "void",
                "purchase_id": purchase.id,
                "number": "100045",
                "amount": 250000,
                "cashier": "Olga <Till 1>",
            },
            "receipt": {
                "event": "void",
                "purchase_id": purchase.id,
                "amount": 250000,
                "created_at": clock().isoformat(),
            },
        }
        assert (await sender.deliver_due()).sent == 2
        told = tg.sent(chat_id=CUSTOMER_ID)[-1]
        assert told.text == (
            "Your purchase of ₽2,500 on Nov 16, 2026, 12:00 was cancelled by the store."
        )
        assert tg.sent(chat_id=STAFF_CHAT_ID)[-1].text == (
            f"↩️ №{purchase.id} отменена · Карта 100 045 · 2\xa0500\xa0₽ · Olga &lt;Till 1&gt;"
        )


async def test_with_cumulative_tiers_the_receipt_says_where_the_card_stands(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> None:
    """The tier reached and what is left to the next one are facts of the sale."""
    await seed_card(sessionmaker, "100045", 5, client_tg_id=CUSTOMER_ID, language="en")
    settings = make_settings(
        db_url,
        cumulative_tiers_enabled=True,
        cumulative_tiers=[(Decimal(2000), 7), (Decimal(10000), 10)],
    )
    async with running_app(tg, settings, sessionmaker, clock, delivery_worker=False) as app:
        cashier = tg.user(CASHIER_ID, language_code="en")
        quote = await quote_for(cashier, "2500")
        await cashier.press(quote, "✅")
        await cashier.wait_message("recorded")
        async with sessionmaker() as session:
            [receipt] = await deliveries(session, kind="receipt")
        assert receipt.payload["tier_pct"] == 7
        assert receipt.payload["next_tier_pct"] == 10
        assert receipt.payload["next_tier_remaining"] == 750000
        sender = sender_for(app.bot, sessionmaker, app.settings, clock, limiter=fast_limiter())
        await sender.deliver_due()
    [note] = tg.sent(chat_id=CUSTOMER_ID)
    assert note.text == (
        "Purchase ₽2,500: discount 5 %, you saved ₽125. Your card's level: 7 %. "
        "₽7,500 more to 10 %."
    )
