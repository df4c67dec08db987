"""Amount entry and the priced quote (end to end)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from db.models import CardStatus, SaleDraft
from tests.conftest import CASHIER_ID, STAFF_CHAT_ID, App, FrozenClock, make_settings, running_app
from tests.till_helpers import add_offer, seed_bound, seed_card


async def last_draft(sessionmaker: async_sessionmaker[AsyncSession]) -> SaleDraft | None:
    async with sessionmaker() as session:
        return await session.scalar(
            select(SaleDraft).order_by(SaleDraft.created_at.desc(), SaleDraft.amount.desc())
        )


async def test_amount_formats_are_accepted(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    expected = {
        "2500": 250000,
        "2 500": 250000,
        "2500.50": 250050,
        "2500,50": 250050,
        "2,500.50": 250050,
    }
    for text, minor in expected.items():
        await cashier.send("/sale 100045")
        await cashier.wait_message("Enter the purchase amount")
        await cashier.send(text)
        quote = await cashier.wait_message("To pay")
        assert quote.find_button("✅") and quote.find_button("❌")
        async with app.sessionmaker() as session:
            amounts = (await session.scalars(select(SaleDraft.amount))).all()
        assert minor in amounts, text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0", "greater than zero"),
        ("-100", "greater than zero"),
        ("two thousand", "not an amount"),
        ("1000000.01", "maximum purchase"),
        ("2500.505", "decimal places"),
    ],
)
async def test_bad_amounts_are_refused_with_a_new_prompt(app: App, text: str, reason: str) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/sale 100045")
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send(text)
    refusal = await cashier.wait_message(reason)
    assert "Enter the purchase amount" in refusal.text
    assert refusal.reply_markup and refusal.reply_markup.get("force_reply") is True
    assert await last_draft(app.sessionmaker) is None
    await cashier.send("100")  # still waiting for the amount
    assert "₽95" in (await cashier.wait_message("To pay")).text


async def test_bad_amount_in_the_group_re_prompts_as_a_reply(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    await group.send(cashier, "/sale 100045")
    prompt = await group.wait_message("Enter the purchase amount")
    await group.send(cashier, "abc", reply_to=prompt)
    again = await group.wait_message("not an amount")
    await group.send(cashier, "200", reply_to=again)
    assert "₽190" in (await group.wait_message("To pay")).text


@pytest.fixture
async def tiered_app(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[App]:
    settings = make_settings(
        db_url,
        amount_tiers="5000:7,10000:10",
        cumulative_tiers_enabled=True,
        cumulative_tiers="3000:7,20000:10",
        discount_max_pct=14,
    )
    async with running_app(tg, settings, sessionmaker, clock) as application:
        yield application


async def test_the_quote_shows_the_whole_breakdown(tiered_app: App) -> None:
    app = tiered_app
    _card_id, client_id = await seed_bound(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")

    await cashier.send("/sale 100045")
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send("6000")  # amount tier 7 %, no cumulative spend yet
    quote = await cashier.wait_message("To pay")
    assert "Printed card: 5 %" in quote.text
    assert "Tier by purchase amount: 7 %" in quote.text
    assert "Tier by total spend: —" in quote.text
    assert "Discount: 7 % = ₽420" in quote.text
    assert "To pay: ₽5,580" in quote.text
    await cashier.press(quote, "✅")
    await cashier.wait_message("recorded")

    await add_offer(app.sessionmaker, client_id, app.clock(), pct=5)
    await cashier.send("/sale 100045")
    card = await cashier.wait_message("Enter the purchase amount")
    assert "Offer: +5 %" in card.text
    assert "Tier by total spend: 7 %" in card.text
    await cashier.send("12000")  # amount tier 10 % + offer 5 % → capped at 14 %
    quote = await cashier.wait_message("To pay")
    assert "Tier by purchase amount: 10 %" in quote.text
    assert "Tier by total spend: 7 %" in quote.text
    assert "Personal offer (we miss you): +5 %" in quote.text
    assert "Capped at the maximum of 14 %" in quote.text
    assert "Discount: 14 % = ₽1,680" in quote.text


async def test_a_new_card_gets_the_printed_tier_to_hand_out(tiered_app: App) -> None:
    app = tiered_app
    await seed_card(app.sessionmaker, "100099", 5, status=CardStatus.IN_STOCK)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/sale 100099")
    assert "not issued yet" in (await cashier.wait_message("100 099")).text
    await cashier.send("11000")
    quote = await cashier.wait_message("To pay")
    assert "hand out a printed 10 % card" in quote.text
    await cashier.press(quote, "✅")
    assert "The card is now issued." in (await cashier.wait_message("recorded")).text
