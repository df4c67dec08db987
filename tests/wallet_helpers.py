"""Shared steps of the wallet tests: seed cards and purchases, walk a user through consent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeMessage, FakeUser
from db.database import Database
from db.models import Card, Client, Purchase
from services.cards import refresh_totals
from services.inventory import add_range


def plain(text: str | None) -> str:
    """Babel puts no-break spaces into money and numbers; tests compare with plain spaces."""
    return (text or "").replace("\xa0", " ").replace("\u202f", " ")


AGREE = {"ru": "✅ Я согласен", "en": "✅ I agree", "et": "✅ Nõustun"}


async def seed_cards(
    sessionmaker: async_sessionmaker[AsyncSession],
    start: int,
    end: int,
    pct: int,
    now: datetime,
    *,
    segment: str = "b2c",
    pin: str | None = None,
) -> None:
    await add_range(Database.of(sessionmaker.kw["bind"]), start, end, pct, segment=segment, now=now)
    async with sessionmaker() as session:
        if pin is not None:
            await session.execute(
                update(Card)
                .where(Card.number.in_([str(n) for n in range(start, end + 1)]))
                .values(pin=pin)
            )
            await session.commit()


async def add_purchase(
    sessionmaker: async_sessionmaker[AsyncSession],
    number: str,
    amount: int,
    pct: int,
    at: datetime,
    *,
    voided: bool = False,
) -> None:
    async with sessionmaker() as session:
        card = await session.scalar(select(Card).where(Card.number == number))
        assert card is not None
        discount = (amount * pct + 50) // 100
        session.add(
            Purchase(
                card_id=card.id,
                amount=amount,
                discount_pct=pct,
                discount_amount=discount,
                paid_amount=amount - discount,
                created_at=at,
                voided_at=at if voided else None,
            )
        )
        await session.flush()
        await session.run_sync(refresh_totals, card.id)
        await session.commit()


async def card(sessionmaker: async_sessionmaker[AsyncSession], number: str) -> Card:
    async with sessionmaker() as session:
        found = await session.scalar(select(Card).where(Card.number == number))
        assert found is not None
        return found


async def client(sessionmaker: async_sessionmaker[AsyncSession], tg_id: int) -> Client | None:
    async with sessionmaker() as session:
        return await session.scalar(select(Client).where(Client.tg_id == tg_id))


async def join(user: FakeUser, language: str = "en") -> FakeMessage:
    """/start → consent → the prompt for the card number (returned)."""
    await user.send("/start")
    consent = await user.wait_message(lambda m: bool(m.buttons))
    await user.press(consent, AGREE[language])
    return await user.wait_message("100 045")


async def bind(user: FakeUser, number: str, language: str = "en") -> FakeMessage:
    """Join and bind `number`; returns the card photo message."""
    await join(user, language)
    await user.send(number)
    return await user.wait_message(lambda m: m.method == "sendPhoto")


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until the bot's write is visible (it commits right after its last API call)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)
