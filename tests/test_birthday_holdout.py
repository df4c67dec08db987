"""Birthday offers keep a random hold-out (BIRTHDAY_HOLDOUT_PCT), recorded once per birthday,
and report like win-back: offered vs control return rates and the lift with its 95 % CI (KPI
JSON and /stats); win-back's own figures and cooldown ignore birthday assignments."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import create_i18n
from db.database import Database
from db.models import Client, Offer, WinbackAssignment
from handlers import experiments
from handlers.owner_reports import render_stats
from services import kpi, offers
from services.experiments import lift_ci
from services.reports import ReportService
from tests.conftest import make_settings
from tests.engagement_helpers import bulk_clients, buy, deliveries, make_client

pytestmark = pytest.mark.manual_delivery
I18N = create_i18n()


async def _assignments(session: AsyncSession, kind: str) -> list[WinbackAssignment]:
    query = select(WinbackAssignment).where(WinbackAssignment.kind == kind)
    return list((await session.scalars(query.order_by(WinbackAssignment.id))).all())


async def test_the_birthday_hold_out_is_drawn_once_per_birthday(
    db: Database, session: AsyncSession, db_url: str
) -> None:
    settings = make_settings(db_url, birthday_days_before=2, birthday_holdout_pct=30)
    day = datetime(2026, 11, 18, 9, 0, tzinfo=settings.store.tz)  # two days before
    ids = await bulk_clients(session, 70_000, 100, day - timedelta(days=30))
    await session.execute(update(Client).values(birthday=date(1990, 11, 20)))
    await session.commit()

    offered = await offers.birthday_sweep(db, settings, day, random.Random(7))
    rng = random.Random(7)
    expected_control = sum(rng.random() * 100 < 30 for _ in ids)
    assert offered == len(ids) - expected_control
    assigned = await _assignments(session, "birthday")
    assert len(assigned) == 100
    control = [a for a in assigned if a.control]
    assert len(control) == expected_control and all(a.offer_id is None for a in control)
    assert all(a.offer_id is not None for a in assigned if not a.control)
    assert await session.scalar(select(func.count()).select_from(Offer)) == offered
    sent_to = {row.client_id for row in await deliveries(session)}
    assert sent_to == {a.client_id for a in assigned if not a.control}

    # The following days of the same birthday: the control group is not drawn again.
    for later in (1, 2):
        assert await offers.birthday_sweep(db, settings, day + timedelta(days=later)) == 0
    assert len(await _assignments(session, "birthday")) == 100
    # Next year everyone is drawn anew.
    next_year = datetime(2027, 11, 20, 9, 0, tzinfo=settings.store.tz)
    await offers.birthday_sweep(db, settings, next_year, random.Random(8))
    assert len(await _assignments(session, "birthday")) == 200


async def test_birthday_and_winback_figures_with_their_intervals(
    db: Database, session: AsyncSession, db_url: str
) -> None:
    settings = make_settings(
        db_url, birthday_days_before=0, birthday_holdout_pct=50, winback_holdout_pct=50
    )
    day = datetime(2026, 11, 20, 9, 0, tzinfo=settings.store.tz)
    clients = [
        await make_client(session, 71_000 + i, birthday=date(1990, 11, 20)) for i in range(8)
    ]
    for client in clients:  # away long enough for win-back too
        await buy(session, client, day - timedelta(days=120))
    await offers.birthday_sweep(db, settings, day, random.Random(3))
    # A birthday assignment does not start win-back's cooldown: they are still eligible.
    win = await offers.winback_sweep(db, settings, day + timedelta(hours=1), random.Random(4))
    assert win.eligible == 8

    birthday = await _assignments(session, "birthday")
    winback = await _assignments(session, "winback")
    by_id = {c.id: c for c in clients}
    bd_offered = [a.client_id for a in birthday if not a.control]
    bd_control = [a.client_id for a in birthday if a.control]
    assert bd_offered and bd_control
    # One offered member comes back (and redeems their gift), one of the control too.
    await buy(session, by_id[bd_offered[0]], day + timedelta(days=2))
    await buy(session, by_id[bd_control[0]], day + timedelta(days=3))
    gift = await session.scalar(
        select(Offer).where(Offer.client_id == bd_offered[0], Offer.kind == "birthday")
    )
    assert gift is not None
    gift.redeemed_at = day + timedelta(days=2)
    await session.commit()

    local = day.astimezone(settings.store.tz).date()
    figures = await ReportService(db, settings).kpis(local, local + timedelta(days=6))
    bd = figures.birthday
    assert (bd.offered, bd.control) == (len(bd_offered), len(bd_control))
    assert (bd.returned_offered, bd.returned_control, bd.redeemed) == (1, 1, 1)
    expected = lift_ci(1, len(bd_offered), 1, len(bd_control))
    assert (bd.lift, bd.lift_low, bd.lift_high) == (expected.lift, expected.low, expected.high)
    # Win-back counts its own assignments only, with its interval.
    wb = figures.winback
    assert wb.offered + wb.control == len(winback) == 8
    wb_expected = lift_ci(wb.returned_offered, wb.offered, wb.returned_control, wb.control)
    assert (wb.lift_low, wb.lift_high) == (wb_expected.low, wb_expected.high)
    data = kpi.to_json(figures, 2)
    assert data["birthday"]["offered"] == len(bd_offered)
    assert data["birthday"]["lift_low"] == pytest.approx(expected.low, abs=1e-4)  # rounded
    assert data["winback"]["lift_high"] == pytest.approx(wb_expected.high, abs=1e-4)

    with I18N.context(), I18N.use_locale("en"):
        text = render_stats(figures, figures, settings)
        bd_lift = experiments.lift_text(expected.lift, expected.low, expected.high)
        wb_interval = experiments.interval(wb_expected.low, wb_expected.high)
    assert f"(lift {bd_lift})" in text and "Birthday gifts: " in text
    assert wb_interval in text and "95 % CI" in wb_interval
