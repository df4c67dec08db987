"""Shared seeding for the till tests: cards, a bound client, offers, and a signed payload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeGroup, FakeMessage, FakeUser
from config import Settings
from db.models import AuditEvent, Card, CardStatus, Client, Offer, Purchase
from services import qr_payload
from tests.conftest import CUSTOMER_ID


async def seed_card(
    sessionmaker: async_sessionmaker[AsyncSession],
    number: str = "100045",
    pct: int = 5,
    *,
    status: str = CardStatus.ISSUED,
    client_tg_id: int | None = None,
    language: str = "en",
    first_name: str = "Anna",
    now: datetime | None = None,
) -> tuple[int, int | None]:
    """A card (and a consenting client bound to it when `client_tg_id`); returns their ids."""
    now = now or datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    async with sessionmaker() as session:
        client_id = None
        if client_tg_id is not None:
            client = Client(
                tg_id=client_tg_id,
                first_name=first_name,
                language=language,
                consent_at=now,
                consent_version="1",
            )
            session.add(client)
            await session.flush()
            client_id = client.id
        card = Card(number=number, base_pct=pct, status=status, client_id=client_id)
        if client_id is not None:
            card.bound_at = now
        if status != CardStatus.IN_STOCK:
            card.issued_at = now
        session.add(card)
        await session.commit()
        return card.id, client_id


async def seed_bound(
    sessionmaker: async_sessionmaker[AsyncSession], number: str = "100045", pct: int = 5
) -> tuple[int, int]:
    card_id, client_id = await seed_card(
        sessionmaker, number, pct, client_tg_id=CUSTOMER_ID, language="et"
    )
    assert client_id is not None
    return card_id, client_id


async def add_offer(
    sessionmaker: async_sessionmaker[AsyncSession],
    client_id: int,
    now: datetime,
    pct: int = 5,
    kind: str = "winback",
) -> int:
    async with sessionmaker() as session:
        offer = Offer(
            client_id=client_id,
            kind=kind,
            bonus_pct=pct,
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=7),
        )
        session.add(offer)
        await session.commit()
        return offer.id


def payload(settings: Settings, number: str = "100045") -> str:
    return qr_payload.sign(settings.telegram.secret_key.get_secret_value(), number)


async def purchases(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Purchase]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(Purchase).order_by(Purchase.id))).all())


async def audit_actions(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as session:
        return list(
            (await session.scalars(select(AuditEvent.action).order_by(AuditEvent.id))).all()
        )


async def count(sessionmaker: async_sessionmaker[AsyncSession], model: type) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def quote_for(cashier: FakeUser, amount: str = "2500", number: str = "100045") -> FakeMessage:
    """A cashier's quote for `number` at `amount`, in their private chat (the quote message)."""
    await cashier.send(f"/sale {number}")
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send(amount)
    return await cashier.wait_message("To pay")


def amount_prompts(group: FakeGroup) -> int:
    """How many amount prompts the till has posted in the (English) staff group."""
    return sum("Enter the purchase amount" in (m.text or "") for m in group.messages())


def staff_log_lines(group: FakeGroup) -> list[str]:
    """The sale lines of the staff log in the group, however they were combined."""
    return [
        line
        for m in group.messages()
        for line in (m.text or "").splitlines()
        if line.startswith("🧾")
    ]
