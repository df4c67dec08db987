"""Seeding clients, cards and purchases for the engagement tests (surveys, offers, delivery)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

from aiogram import Bot
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from bot.app import create_bot
from bot.scheduler import create_sender
from config import Settings
from db.database import Database
from db.models import Card, CardStatus, Client, Delivery, Purchase
from services.cards import refresh_totals
from services.delivery import DeliverySender, Outbox, OutboxMessage, RateLimiter, queue_messages

_numbers = itertools.count(500001)
CONSENT_AT = datetime(2025, 1, 1, tzinfo=UTC)


async def make_client(
    session: AsyncSession,
    tg_id: int,
    *,
    consent: bool = True,
    reachable: bool = True,
    opt_out: bool = False,
    language: str = "en",
    birthday: date | None = None,
    first_name: str = "Ann",
    erased: bool = False,
) -> Client:
    client = Client(
        tg_id=None if erased else tg_id,
        first_name=first_name,
        language=language,
        consent_at=CONSENT_AT if consent else None,
        consent_version="1" if consent else None,
        reachable=reachable,
        marketing_opt_out=opt_out,
        birthday=birthday,
        erased_at=CONSENT_AT if erased else None,
    )
    session.add(client)
    await session.flush()
    card = Card(
        number=str(next(_numbers)),
        base_pct=5,
        status=CardStatus.ISSUED,
        client_id=client.id,
        issued_at=CONSENT_AT,
        bound_at=CONSENT_AT,
    )
    session.add(card)
    await session.commit()
    return client


async def card_of(session: AsyncSession, client: Client) -> Card:
    card = await session.scalar(select(Card).where(Card.client_id == client.id))
    assert card is not None
    return card


async def buy(
    session: AsyncSession,
    client: Client,
    at: datetime,
    *,
    amount: int = 100_000,
    source: str = "bot",
    voided: bool = False,
) -> Purchase:
    card = await card_of(session, client)
    purchase = Purchase(
        card_id=card.id,
        amount=amount,
        discount_pct=5,
        discount_amount=amount // 20,
        paid_amount=amount - amount // 20,
        source=source,
        created_at=at,
        voided_at=at if voided else None,
    )
    session.add(purchase)
    await session.flush()
    await session.run_sync(refresh_totals, card.id)
    await session.commit()
    return purchase


async def bulk_clients(
    session: AsyncSession, first_tg_id: int, count: int, last_purchase: datetime
) -> list[int]:
    """`count` consenting clients with one card and one purchase each (fast, core inserts)."""
    rows: list[dict[str, Any]] = [
        {
            "tg_id": first_tg_id + i,
            "first_name": f"C{i}",
            "language": "en",
            "consent_at": CONSENT_AT,
            "consent_version": "1",
            "reachable": True,
            "marketing_opt_out": False,
            "created_at": CONSENT_AT,
        }
        for i in range(count)
    ]
    await session.execute(insert(Client), rows)
    ids = (
        await session.scalars(
            select(Client.id)
            .where(Client.tg_id.between(first_tg_id, first_tg_id + count - 1))
            .order_by(Client.id)
        )
    ).all()
    await session.execute(
        insert(Card),
        [
            {
                "number": str(700000000 + client_id),
                "base_pct": 5,
                "status": CardStatus.ISSUED,
                "client_id": client_id,
                "kind": "printed",
                "segment": "b2c",
                "created_at": CONSENT_AT,
            }
            for client_id in ids
        ],
    )
    cards = (
        await session.scalars(select(Card.id).where(Card.client_id.in_(ids)).order_by(Card.id))
    ).all()
    await session.execute(
        insert(Purchase),
        [
            {
                "card_id": card_id,
                "amount": 100_000,
                "discount_pct": 5,
                "discount_amount": 5_000,
                "paid_amount": 95_000,
                "source": "bot",
                "created_at": last_purchase,
            }
            for card_id in cards
        ],
    )
    await session.run_sync(refresh_totals, select(Card.id).where(Card.client_id.in_(ids)))
    await session.commit()
    return list(ids)


def bot_for(tg: Any, settings: Settings) -> Bot:
    return create_bot(settings.with_changes(telegram_api_url=tg.base_url))


def sender_for(
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Any,
    **options: Any,
) -> DeliverySender:
    sender = create_sender(bot, sessionmaker, settings, clock=clock)
    for key, value in options.items():
        setattr(sender, key, value)
    return sender


async def queue(db: Database, *messages: OutboxMessage, due: datetime) -> None:
    """Queue messages as the services do (`queue_messages` in a unit of work)."""

    def unit(session: Session) -> None:
        queue_messages(session, messages, due)
        session.commit()

    await db.write(unit)


def outbox_for(sessionmaker: async_sessionmaker[AsyncSession], clock: Any) -> Outbox:
    """An `Outbox` on the test's database (no worker until `start`)."""
    return Outbox(Database.of(sessionmaker.kw["bind"]), clock=clock)


def fast_limiter() -> RateLimiter:
    return RateLimiter(10_000, 10_000, 60_000)


async def deliveries(session: AsyncSession, **where: Any) -> list[Delivery]:
    query = select(Delivery).order_by(Delivery.id).execution_options(populate_existing=True)
    for key, value in where.items():
        query = query.where(getattr(Delivery, key) == value)
    return list((await session.scalars(query)).all())
