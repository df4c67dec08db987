"""Amounts at the till as Russian cashiers type them, and the ones that cannot be read safely."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import SaleDraft
from tests.conftest import CASHIER_ID, App
from tests.till_helpers import seed_card


@pytest.mark.parametrize(
    ("text", "minor"),
    [("2500р", 250000), ("2 500 ₽", 250000), ("2500 руб.", 250000), ("€25", 2500)],
)
async def test_a_currency_word_or_sign_is_accepted(app: App, text: str, minor: int) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/sale 100045")
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send(text)
    await cashier.wait_message("To pay")
    async with app.sessionmaker() as session:
        assert (await session.scalars(select(SaleDraft.amount))).all() == [minor]


@pytest.mark.parametrize(
    ("language", "text", "answer"),
    [
        ("en", "99,999", "99,999 is ambiguous: write 99999 or 99.99"),
        ("ru", "2,500", "Сумму 2,500 можно понять двояко: напишите 2500 или 2,50"),
        ("et", "1.500 €", "Summat 1.500 € saab mõista kahti moodi: kirjuta 1500 või 1,50"),
    ],
)
async def test_an_ambiguous_amount_is_refused_with_both_readings(
    app: App, language: str, text: str, answer: str
) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code=language)
    await cashier.send("/sale 100045")
    await cashier.wait_message()
    await cashier.send(text)
    refusal = await cashier.wait_message(answer)
    assert refusal.reply_markup and refusal.reply_markup.get("force_reply") is True
    async with app.sessionmaker() as session:
        assert (await session.scalars(select(SaleDraft))).all() == []
    await cashier.send("2500")  # still waiting for the amount
    await cashier.wait_message()
    async with app.sessionmaker() as session:
        assert (await session.scalars(select(SaleDraft.amount))).all() == [250000]
