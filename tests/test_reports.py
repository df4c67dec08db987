"""Owner reports end to end: /stats, /digest, /export, /card N, /cards through the real bot."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime

import pytest
from aiogram.utils.i18n import I18n
from openpyxl import load_workbook
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from bot.i18n import create_i18n
from config import Settings
from handlers.owner_reports import digest_message
from services import export, kpi, reports
from services.reports import ReportService
from tests.conftest import CUSTOMER_ID, OWNER_ID, App, on_postgres
from tests.kpi_helpers import Data, msk, report_service

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def service(engine: AsyncEngine, settings: Settings) -> ReportService:
    return report_service(engine, settings)


async def seed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """The clock is Mon 2026-11-16 09:00 UTC: the digest week is Nov 9–15."""
    async with sessionmaker() as session:
        d = Data(session)
        anna = await d.client(username="anna", phone="+79001234567")
        card = await d.card("100045", issued_at=msk(2026, 9, 1), client=anna, pct=7)
        paper = await d.card("100046", issued_at=msk(2026, 9, 1))
        await d.card("100047", segment="b2b")  # in stock
        await d.buy(card, msk(2026, 11, 3), 150_000, cashier=2001)  # previous week
        for hour in (10, 11, 12, 13):  # four uses in one day: an anomaly (limit 3)
            await d.buy(card, msk(2026, 11, 10, hour), 100_000, cashier=2001)
        await d.buy(card, msk(2026, 11, 11), 55_500, voided=True, cashier=2001)
        await d.buy(paper, msk(2026, 11, 12), 20_000, cashier=2002)
        await d.survey(anna, msk(2026, 11, 12), 3, comment="Queue <too> long & slow")
        await d.survey(anna, msk(2026, 11, 13), 10)
        await d.commit()


async def test_stats_for_an_owner_with_changes_and_period_buttons(app: App) -> None:
    await seed(app.sessionmaker)
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/stats")
    reply = await owner.wait_message("Program KPIs")
    assert "Changes against" in reply.text
    # Nov 10–16 vs Nov 3–9: 5 purchases (4 × 1000 + 200) against 1 (1500).
    assert "Purchases: 5  ▲ 400 %" in reply.text
    assert "Revenue through cards: ₽4,200" in reply.text
    assert "NPS: 0" in reply.text
    assert [b["text"] for b in reply.buttons] == ["7 days", "30 days", "90 days", "Month"]
    await owner.press(reply, "30 days")
    edited = await owner.wait_message("Program KPIs")
    assert edited.message_id == reply.message_id
    assert "Oct 18, 2026 – Nov 16, 2026" in edited.text
    assert "Purchases: 6" in edited.text
    again = await owner.press(edited, "30 days")  # the same figures: "not modified" is fine
    assert again.params.get("text") is None  # no error alert


async def test_stats_arguments_and_bad_input(app: App) -> None:
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/stats 2026-10-01 2026-10-31")
    assert "Oct 1, 2026 – Oct 31, 2026" in (await owner.wait_message()).text
    await owner.send("/stats month")
    assert "Nov 1, 2026 – Nov 16, 2026" in (await owner.wait_message()).text
    await owner.send("/stats yesterday")
    text = (await owner.wait_message()).text
    assert "I did not understand the period" in text and "/stats 30d" in text
    assert "/stats 01.10.2026 31.10.2026" in text
    await owner.send("/stats 2026-10-31 2026-10-01")
    assert "must not be after" in (await owner.wait_message()).text
    sent = await owner.send("/stats")
    reply = await owner.wait_message("Program KPIs")
    assert sent
    call = await owner.press_data(reply.message_id, "st:999d")
    alert = call.params.get("text") or ""
    assert "did not understand the period" in alert and "/stats" not in alert  # no command


async def test_export_explains_a_bad_period_with_export_examples(app: App) -> None:
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/export foo")
    text = (await owner.wait_message()).text
    assert "I did not understand the period" in text
    assert "/export 30d, /export month, /export 01.10.2026 31.10.2026" in text
    assert "/stats" not in text
    await owner.send("/export 2026-10-31 2026-10-01 csv")
    assert "must not be after" in (await owner.wait_message()).text
    await app.tg.wait_for_idle()
    assert not app.tg.sent(OWNER_ID, "sendDocument")


async def test_stats_in_russian(app: App) -> None:
    owner = app.tg.user(OWNER_ID, language_code="ru")
    await owner.send("/stats")
    reply = await owner.wait_message("Показатели программы")
    assert "Выручка по картам" in reply.text


async def test_customers_get_the_fallback_and_see_nothing(app: App) -> None:
    await seed(app.sessionmaker)
    customer = app.tg.user(CUSTOMER_ID, language_code="en")
    for command in ("/stats", "/digest", "/export", "/cards"):
        await customer.send(command)
        reply = await customer.wait_message()
        assert "KPI" not in reply.text and "digest" not in reply.text.lower()
        assert reply.document is None and reply.photo is None
    await app.tg.wait_for_idle()
    assert not any(m.document or m.photo for m in customer.messages())


async def test_digest_sends_text_and_a_png_chart(app: App) -> None:
    await seed(app.sessionmaker)
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/digest")
    text = await owner.wait_message("Weekly digest")
    assert "Nov 9, 2026 – Nov 15, 2026" in text.text
    assert "Revenue through cards: ₽4,200" in text.text
    assert "Queue <too> long & slow" in text.text  # escaped in HTML, shown as written
    assert "card 100 045: 4 uses on Nov 10, 2026" in text.text
    photo = await owner.wait_message(lambda m: m.photo is not None)
    assert photo.photo.data.startswith(PNG)  # type: ignore[union-attr]


async def test_export_xlsx_has_the_sheets_and_no_phones(app: App) -> None:
    await seed(app.sessionmaker)
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/export")
    message = await owner.wait_message(lambda m: m.document is not None)
    assert message.document.filename.endswith(".xlsx")  # type: ignore[union-attr]
    book = load_workbook(io.BytesIO(message.document.data), read_only=True)  # type: ignore[union-attr]
    assert len(book.sheetnames) == len(export.SHEETS)
    clients = list(book["Clients"].iter_rows(values_only=True))
    assert "Phone" not in clients[0] and "+79001234567" not in str(clients)
    purchases = list(book["Purchases"].iter_rows(values_only=True))
    assert len(purchases) == 1 + 7  # header + every purchase since the first one
    summary = {
        row[0]: row[1] if len(row) > 1 else None
        for row in book["KPIs"].iter_rows(min_row=2, values_only=True)
    }
    assert summary["Purchases"] == 6 and summary["Revenue through cards"] == 5700.0


async def test_export_csv_zip(app: App) -> None:
    await seed(app.sessionmaker)
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/export 30d csv")
    message = await owner.wait_message(lambda m: m.document is not None)
    archive = zipfile.ZipFile(io.BytesIO(message.document.data))  # type: ignore[union-attr]
    assert sorted(archive.namelist()) == sorted(f"{s}.csv" for s in export.SHEETS)
    rows = list(csv.reader(io.StringIO(archive.read("purchases.csv").decode("utf-8-sig"))))
    assert rows[0][:4] == ["Purchase no.", "Card", "Date and time", "Amount"]
    assert rows[2][1:4] == ["100045", "2026-11-10 10:00:00", "1000.00"]


async def test_export_with_contacts_enabled(
    engine: AsyncEngine, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await seed(sessionmaker)
    with_contacts = report_service(engine, settings.with_changes(export_include_contacts=True))
    path = await with_contacts.export_xlsx(
        datetime(2026, 11, 1).date(), datetime(2026, 11, 16).date()
    )
    try:
        book = load_workbook(path, read_only=True)
        clients = list(book["clients"].iter_rows(values_only=True))  # no labels: machine keys
        assert "phone" in clients[0] and "+79001234567" in clients[1]
        book.close()
    finally:
        path.unlink()


async def test_card_summary_and_inventory_for_owners(app: App) -> None:
    await seed(app.sessionmaker)
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/card 100045")
    reply = await owner.wait_message("Card 100 045")
    assert "7 %" in reply.text and "Bound to @anna" in reply.text
    assert "Purchases: 5, total ₽5,500" in reply.text
    assert "voided" in reply.text
    await owner.send("/card 999999")
    assert "999999 is not registered" in (await owner.wait_message()).text
    await owner.send("/cards")
    inventory = await owner.wait_message("Card inventory")
    assert "total: 3" in inventory.text and "in stock" in inventory.text


async def test_digest_message_for_the_scheduler(
    service: ReportService, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await seed(sessionmaker)
    i18n: I18n = create_i18n("ru")
    with i18n.context(), i18n.use_locale("et"):
        text, png = await digest_message(service, datetime(2026, 11, 16, 9, tzinfo=UTC))
    assert "Nädala kokkuvõte" in text
    assert png.startswith(PNG)


async def test_anomalous_cashier_is_flagged(
    session: AsyncSession, settings: Settings, service: ReportService
) -> None:
    d = Data(session)
    card = await d.card("100050", issued_at=msk(2026, 10, 1), pct=5)
    for cashier, discount in ((2001, 500), (2002, 500), (2003, 600), (2004, 2_000)):
        for day in (10, 11, 12):
            await d.buy(
                card,
                msk(2026, 11, day, 10 + cashier % 10),
                10_000,
                discount=discount,
                cashier=cashier,
            )
    await d.commit()
    found = await service.db.report(
        kpi.anomalies, settings, datetime(2026, 11, 9).date(), datetime(2026, 11, 15).date()
    )
    assert [c.cashier_id for c in found.cashiers] == [2004]
    assert found.cashiers[0].share_pct == 20.0
    # The shared card was used four times a day (limit 3): flagged on each of the three days.
    assert [(c.number, c.day.day, c.uses) for c in found.cards] == [
        ("100050", 10, 4),
        ("100050", 11, 4),
        ("100050", 12, 4),
    ]
    series = await service.db.report(kpi.weekly_series, settings, datetime(2026, 11, 15).date())
    assert len(series) == 12 and series[-1].revenue == 120_000 and series[-1].active_cards == 1
    png = reports.render_chart(series, reports.ChartLabels("t", "r", "a", "n", "none"), 2)
    assert png.startswith(PNG)


async def test_a_busy_week_still_fits_one_message(
    session: AsyncSession, service: ReportService
) -> None:
    import html
    import re

    d = Data(session)
    client = await d.client()
    for i in range(10):
        card = await d.card(f"5000{i:02d}", issued_at=msk(2026, 9, 1))
        for hour in range(10, 15):
            await d.buy(card, msk(2026, 11, 10, hour), 10_000)
    for i in range(40):  # forty long comments: the newest ten are shown, shortened
        await d.survey(client, msk(2026, 11, 11, 8, i), 2, comment="Too slow & rude " * 30)
    await d.commit()
    i18n: I18n = create_i18n("ru")
    with i18n.context(), i18n.use_locale("ru"):
        text, _png = await digest_message(service, datetime(2026, 11, 16, 9, tzinfo=UTC))
    visible = html.unescape(re.sub(r"<[^>]+>", "", text))
    assert len(visible) <= 4096
    assert "Что написали недовольные" in visible and "Стоит проверить" in visible
    assert "500 000: 5 покупок 10 нояб. 2026" in visible
    assert visible.count("«Too slow") == 10 and visible.count("…»") == 10


async def test_digest_of_an_empty_program(service: ReportService) -> None:
    i18n: I18n = create_i18n("ru")
    with i18n.context(), i18n.use_locale("en"):
        text, png = await digest_message(service, datetime(2026, 11, 16, 9, tzinfo=UTC))
    assert "Revenue through cards: <b>₽0</b>" in text
    assert "Nothing unusual this week." in text
    assert png.startswith(PNG)


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL's settings of a report transaction")
async def test_a_report_runs_without_jit_and_with_room_to_sort(service: ReportService) -> None:
    """PostgreSQL compiled the KPI plans with JIT (seconds over 10M purchases, for nothing) and
    spilled their sorts to disk: a report's transaction turns JIT off and raises work_mem, and
    nothing else sees it."""

    def settings(session: Session) -> tuple[str, str]:
        return session.scalar(text("SHOW jit")), session.scalar(text("SHOW work_mem"))

    server = await service.db.read(settings)
    assert server != ("off", "64MB")  # the test server's defaults
    assert await service.db.report(settings) == ("off", "64MB")
    assert await service.db.read(settings) == server
