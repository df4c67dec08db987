"""The demo's first-start seed (`bot.demo.seed`): what the owner sees right after it — the KPI
set, `/stats`, `/digest`, `/export`, a card's view — agrees with the rows it wrote; the bot's
own sweeps at its start find none of the seeded customers; a second call writes nothing; the
same seed gives the same year."""

from __future__ import annotations

import asyncio
import csv
import io
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from bot.demo.seed import CLIENTS, DemoSeed, seed_demo
from config import Settings
from db.database import Database
from db.engine import create_engine
from db.models import (
    Base,
    Card,
    CardStatus,
    Client,
    Offer,
    OfferKind,
    Purchase,
    Survey,
    WinbackAssignment,
)
from services import jobs, kpi
from services.reports import ReportService
from tests.conftest import make_settings
from tests.import_helpers import copy_of_template

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


def demo_like(db_url: str) -> Settings:
    """The settings that matter to the seed as the demo sets them."""
    return make_settings(db_url, welcome_bonus_pct=5, survey_delay_min=1)


def year(settings: Settings) -> tuple[date, date]:
    today = NOW.astimezone(settings.store.tz).date()
    return today - timedelta(days=366), today


def row_counts(session: Session) -> dict[str, int]:
    """Rows of every table."""
    return {
        table.name: session.scalar(select(func.count()).select_from(table)) or 0
        for table in Base.metadata.sorted_tables
    }


def ledger(session: Session) -> dict[str, Any]:
    """The owner's figures counted straight from the rows."""
    live = Purchase.voided_at.is_(None)
    count, voided, revenue, discounts = session.execute(
        select(
            func.count(),
            func.sum(case((live, 0), else_=1)),
            func.sum(case((live, Purchase.amount), else_=0)),
            func.sum(case((live, Purchase.discount_amount), else_=0)),
        )
    ).one()
    answered = Survey.score.is_not(None)
    scores = session.execute(
        select(
            func.count(),
            func.sum(case((Survey.score >= 9, 1), else_=0)),
            func.sum(case((Survey.score <= 6, 1), else_=0)),
        ).where(answered)
    ).one()
    card_totals = session.execute(
        select(Purchase.card_id, func.count(), func.sum(Purchase.amount))
        .where(live)
        .group_by(Purchase.card_id)
    ).all()
    stored = session.execute(
        select(Card.id, Card.purchase_count, Card.purchase_total).where(Card.purchase_count > 0)
    ).all()
    return {
        "purchases": count,
        "voided": int(voided),
        "revenue": int(revenue),
        "discounts": int(discounts),
        "answers": scores[0],
        "promoters": int(scores[1]),
        "detractors": int(scores[2]),
        "issued": session.scalar(
            select(func.count()).where(Card.status == CardStatus.ISSUED, Card.issued_at < NOW)
        ),
        "bound": session.scalar(select(func.count()).where(Card.client_id.is_not(None))),
        "winback_offers": session.scalar(
            select(func.count()).where(Offer.kind == OfferKind.WINBACK)
        ),
        "assignments": session.scalar(select(func.count()).select_from(WinbackAssignment)),
        "lowest_tg_id": session.scalar(select(func.min(Client.tg_id))),
        "comments": session.scalar(select(func.count()).where(Survey.comment.is_not(None))),
        "ledger_totals": {card: (n, int(total)) for card, n, total in card_totals},
        "card_totals": {card: (n, int(total)) for card, n, total in stored},
        "busiest": session.scalar(
            select(Card.number).order_by(Card.purchase_count.desc(), Card.number).limit(1)
        ),
        "in_stock_5": session.scalar(
            select(func.max(Card.number)).where(
                Card.status == CardStatus.IN_STOCK, Card.base_pct == 5
            )
        ),
    }


async def test_the_owner_sees_the_seeded_year(db_url: str, db: Database) -> None:
    settings = demo_like(db_url)
    seeded = await seed_demo(db, settings, now=NOW)
    assert seeded is not None
    rows = await db.read(ledger)
    assert seeded.cards == 10_000 and seeded.clients == CLIENTS
    assert seeded.purchases == rows["purchases"]
    assert 4_000 <= seeded.purchases <= 6_500 and 0 < rows["voided"] < 100
    assert 0.15 < seeded.surveys / seeded.purchases < 0.35
    assert rows["lowest_tg_id"] >= 10_000_000  # lower ids are the demo's live users
    assert rows["bound"] == CLIENTS and rows["comments"] > 0
    assert rows["in_stock_5"] == "104999"  # cards are handed out from the start of a range
    assert rows["card_totals"] == rows["ledger_totals"]  # lifetime figures = the ledger

    reports = ReportService(db, settings)
    whole = await reports.kpis(*year(settings))
    assert whole.cards_issued == rows["issued"] and whole.cards_bound == CLIENTS
    assert CLIENTS < whole.cards_issued < CLIENTS + 30  # plus a few never linked
    assert whole.purchases == seeded.purchases - rows["voided"]
    assert (whole.revenue, whole.discount_total) == (rows["revenue"], rows["discounts"])
    assert 5 < (whole.average_discount_pct or 0) < 10
    assert whole.nps.answers == seeded.surveys == rows["answers"]
    expected_nps = (rows["promoters"] - rows["detractors"]) / rows["answers"] * 100
    assert whole.nps.score is not None and 0 < whole.nps.score < 100
    assert abs(whole.nps.score - expected_nps) < 1e-9
    assert whole.winback.offered == seeded.winback_offers == rows["winback_offers"]
    assert whole.winback.offered + whole.winback.control == rows["assignments"]
    assert 0 < (whole.winback.redeemed or 0) < whole.winback.offered
    assert sum(whole.rfm.values()) > CLIENTS // 2 and whole.rfm["at_risk"] > 0

    # The round eight weeks ago, as /stats 90d shows it, and the last week (/stats).
    today = whole.last
    quarter = await reports.kpis(today - timedelta(days=89), today)
    assert quarter.winback.offered > 0 and quarter.winback.redeemed > 0
    week, before = await reports.compared(today - timedelta(days=6), today)
    assert week.active_cards > 0 and before.active_cards > 0 and week.purchases > 0
    assert week.retention_rate is not None

    digest = await reports.digest(NOW)
    assert digest.current.active_cards > 0 and digest.current.nps.answers > 0
    assert sum(point.revenue for point in digest.series) > 0

    card = await reports.card(rows["busiest"])
    number = rows["busiest"]
    card_id = await db.read(lambda s: s.scalar(select(Card.id).where(Card.number == number)))
    assert (card.purchases, card.total) == rows["ledger_totals"][card_id]
    assert card.holder is not None and len(card.recent) == 10

    path = await reports.export_csv_zip(*year(settings))
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read("purchases.csv").decode("utf-8-sig")
        exported = list(csv.reader(io.StringIO(text)))
        assert len(exported) - 1 == seeded.purchases  # voided ones included
    finally:
        path.unlink()

    # The bot's sweeps at its start find nobody to write to, and nothing waits in the outbox.
    before_sweeps = await db.read(row_counts)
    assert before_sweeps["deliveries"] == 0
    for name in ("surveys", "winback", "birthdays"):
        result = await jobs.run_pass(name, db, settings, NOW + timedelta(minutes=1))
        assert result.enqueued == 0, name
    assert await db.read(row_counts) == before_sweeps

    # A second start: nothing written.
    assert await seed_demo(db, settings, now=NOW + timedelta(days=1)) is None
    assert await db.read(row_counts) == before_sweeps


def test_the_same_seed_gives_the_same_year(migrated_template: Path | str, tmp_path: Path) -> None:
    async def seeded(url: str) -> tuple[DemoSeed | None, dict[str, Any], list[Any]]:
        engine = create_engine(url)
        try:
            db, settings = Database.of(engine), demo_like(url)
            result = await seed_demo(db, settings, now=NOW, seed=7)
            figures = kpi.to_json(await ReportService(db, settings).kpis(*year(settings)), 2)

            def purchases(session: Session) -> list[Any]:
                return [
                    tuple(row)
                    for row in session.execute(
                        select(
                            Card.number,
                            Purchase.created_at,
                            Purchase.amount,
                            Purchase.discount_amount,
                            Purchase.voided_at,
                        )
                        .join(Card, Card.id == Purchase.card_id)
                        .order_by(Purchase.id)
                    )
                ]

            return result, figures, await db.read(purchases)
        finally:
            await engine.dispose()

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        copy_of_template(migrated_template, tmp_path / "a") as first,
        copy_of_template(migrated_template, tmp_path / "b") as second,
    ):
        one, two = asyncio.run(seeded(first)), asyncio.run(seeded(second))
    assert one[0] is not None and one == two
