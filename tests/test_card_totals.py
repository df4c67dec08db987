"""The cards' lifetime and monthly purchase figures stay equal to the ledger after every kind
of write."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from db.database import Database
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.models import Card, CardMonth, Purchase
from services.sales import SalesService
from tests.conftest import FrozenClock
from tests.import_helpers import run_import
from tests.till_helpers import seed_bound

CASHIER_ID = 2001


async def totals(session: AsyncSession) -> dict[str, tuple[int, int, datetime | None]]:
    """number → (purchase_count, purchase_total, last_purchase_at) as stored on the card."""
    rows = await session.execute(
        select(Card.number, Card.purchase_count, Card.purchase_total, Card.last_purchase_at)
    )
    return {number: (n, total, last) for number, n, total, last in rows.all()}


async def ledger(session: AsyncSession) -> dict[str, tuple[int, int, datetime | None]]:
    """The same figures counted from the purchases (voided ones never count)."""
    counted = (
        select(
            Purchase.card_id,
            func.count().label("n"),
            func.sum(Purchase.amount).label("total"),
            func.max(Purchase.created_at).label("last"),
        )
        .where(Purchase.voided_at.is_(None))
        .group_by(Purchase.card_id)
        .subquery()
    )
    rows = await session.execute(
        select(Card.number, counted.c.n, counted.c.total, counted.c.last).outerjoin(
            counted, counted.c.card_id == Card.id
        )
    )
    return {number: (n or 0, total or 0, last) for number, n, total, last in rows.all()}


Months = dict[tuple[str, int], tuple[int, int, int]]


async def months(session: AsyncSession) -> Months:
    """(number, YYYYMM) → (purchases, revenue, discount) as stored in `card_months`."""
    rows = await session.execute(
        select(
            Card.number, CardMonth.month, CardMonth.purchases, CardMonth.revenue, CardMonth.discount
        ).join(Card, Card.id == CardMonth.card_id)
    )
    return {(number, month): (n, rev, disc) for number, month, n, rev, disc in rows.all()}


async def ledger_months(session: AsyncSession) -> Months:
    """The same counted here from every non-voided purchase, by its calendar month in UTC."""
    rows = await session.execute(
        select(Card.number, Purchase.created_at, Purchase.amount, Purchase.discount_amount)
        .join(Card, Card.id == Purchase.card_id)
        .where(Purchase.voided_at.is_(None))
    )
    counted: Months = {}
    for number, at, amount, discount in rows.all():
        key = (number, at.year * 100 + at.month)
        n, rev, disc = counted.get(key, (0, 0, 0))
        counted[key] = (n + 1, rev + amount, disc + discount)
    return counted


async def assert_exact(session: AsyncSession) -> None:
    assert await totals(session) == await ledger(session)
    assert await months(session) == await ledger_months(session)


async def test_till_void_and_history_import_keep_the_figures_exact(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    card_id, _client = await seed_bound(sessionmaker)
    history = tmp_path / "history.csv"
    history.write_text(
        "card_number,date,amount\n"
        "100045,2026-01-10,1500\n"
        "100045,2026-02-11 18:30,250.50\n"
        "777001,2026-03-01,99\n",  # an unknown card: created at its first purchase
        encoding="utf-8",
    )
    async with sessionmaker() as session:
        await asyncio.to_thread(run_import, settings.database.url, history, now=clock())
        after_import = await totals(session)
        await assert_exact(session)
        assert after_import["100045"][:2] == (2, 175050)
        assert after_import["777001"][:2] == (1, 9900)
        by_month = await months(session)
        assert sorted((m, f[:2]) for (n, m), f in by_month.items() if n == "100045") == [
            (202601, (1, 150000)),
            (202602, (1, 25050)),
        ]

        sales = SalesService(Database.of(session.bind), settings, clock)
        draft = await sales.quote(card_id, 250000, CASHIER_ID, CASHIER_ID, clock())
        sale = await sales.confirm(draft.id, CASHIER_ID, False, clock())
        after_sale = await totals(session)
        await assert_exact(session)
        assert after_sale["100045"] == (3, 425050, clock())
        # The card summary at the till reads the same figures.
        summary = await sales.identify_number("100045")
        assert (summary.visits, summary.spend, summary.last_visit) == (3, 425050, clock())

        await sales.void(sale.purchase_id, CASHIER_ID, False, clock())
        after_void = await totals(session)
        await assert_exact(session)
        assert after_void["100045"] == after_import["100045"]
        assert await months(session) == by_month  # the sale's month has no row left

        # A second file: one month the card has already, and a new one.
        more = tmp_path / "more.csv"
        more.write_text(
            "card_number,date,amount\n100045,2026-01-20,100\n100045,2026-04-02,200\n",
            encoding="utf-8",
        )
        await asyncio.to_thread(run_import, settings.database.url, more, now=clock())
        await assert_exact(session)
        figures = {m: f[:2] for (n, m), f in (await months(session)).items() if n == "100045"}
        assert figures == {202601: (2, 160000), 202602: (1, 25050), 202604: (1, 20000)}


async def test_the_migration_counts_an_existing_ledger(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await upgrade(url, "0002")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for sql in (
                "INSERT INTO cards (id, number, base_pct, segment, kind, status, created_at, "
                "bind_failures) VALUES (1, '100001', 5, 'b2c', 'printed', 'issued', "
                "'2026-01-01 00:00:00.000000', 0), (2, '100002', 5, 'b2c', 'printed', "
                "'in_stock', '2026-01-01 00:00:00.000000', 0)",
                "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, "
                "paid_amount, source, created_at, voided_at) VALUES "
                "(1, 1000, 5, 50, 950, 'import', '2026-03-01 10:00:00.000000', NULL), "
                "(1, 3000, 5, 150, 2850, 'import', '2026-04-01 10:00:00.000000', NULL), "
                "(1, 9000, 5, 450, 8550, 'bot', '2026-05-01 10:00:00.000000', "
                "'2026-05-01 10:05:00.000000')",
            ):
                await conn.execute(text(sql))
        await upgrade(url)
        async with create_sessionmaker(engine)() as session:
            figures = await totals(session)
            await assert_exact(session)
            by_month = await months(session)
    finally:
        await engine.dispose()
    assert figures == {
        "100001": (2, 4000, datetime(2026, 4, 1, 10, tzinfo=UTC)),
        "100002": (0, 0, None),
    }
    assert by_month == {  # the voided May purchase counts nowhere
        ("100001", 202603): (1, 1000, 50),
        ("100001", 202604): (1, 3000, 150),
    }


async def test_sales_and_voids_at_the_same_time_on_one_card_lose_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, clock: FrozenClock
) -> None:
    """Several tills (or workers) confirming and voiding sales of one card at the same moment:
    on PostgreSQL these are truly concurrent transactions (READ COMMITTED), and the card's
    lifetime figures must still equal its ledger."""
    card_id, _client_id = await seed_bound(sessionmaker)
    async with sessionmaker() as session:
        sales = SalesService(Database.of(session.bind), settings, clock)
        cashiers = [2001 + i for i in range(6)]
        drafts = [
            await sales.quote(card_id, 10000 * (i + 1), cashier, cashier, clock())
            for i, cashier in enumerate(cashiers)
        ]
        done = await asyncio.gather(
            *(sales.confirm(d.id, c, False, clock()) for d, c in zip(drafts, cashiers, strict=True))
        )
        await assert_exact(session)
        assert (await totals(session))["100045"][:2] == (6, 210000)
        await asyncio.gather(
            *(
                sales.void(d.purchase_id, c, False, clock())
                for d, c in zip(done[:3], cashiers[:3], strict=True)
            )
        )
        await assert_exact(session)
        assert (await totals(session))["100045"][:2] == (3, 150000)
