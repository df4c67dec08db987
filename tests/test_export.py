"""The owner's export read back as Excel would: words in the owner's language, cashiers by
name, typed cells, frozen headers, locale-appropriate CSV, and no formula smuggled in."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date, datetime
from typing import Any

from aiogram.utils.i18n import I18n
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeMessage, FaultResponse
from bot.i18n import create_i18n
from config import Settings
from handlers.owner_reports import STATS_LINES, export_labels
from services import export
from tests.conftest import CASHIER_ID, OWNER_ID, App
from tests.kpi_helpers import Data, msk, report_service
from tests.test_reports import seed

FIRST, LAST = date(2026, 11, 1), date(2026, 11, 16)
FORMULAS = ['=HYPERLINK("http://x","y")', "=1+1", "+1", "-1", "@SUM(A1:A9)", "\tx", "\rx"]


def _rows(sheet: Worksheet) -> list[tuple[Any, ...]]:
    return list(sheet.iter_rows(values_only=True))


def _unknown_cashier(method: str, params: dict[str, Any]) -> FaultResponse | None:
    """Telegram knows nothing about cashier 2002 (their name falls back to the id)."""
    if method == "getChatMember" and str(params.get("user_id")) == "2002":
        return FaultResponse(400, "Bad Request: user not found")
    return None


async def _export(app: App, language: str, args: str = "") -> FakeMessage:
    app.tg.user(CASHIER_ID, "Carl", last_name="Kassir")
    app.tg.set_fault_hook(_unknown_cashier)
    owner = app.tg.user(OWNER_ID, language_code=language)
    await owner.send(f"/export {args}".strip())
    return await owner.wait_message(lambda m: m.document is not None, timeout=10)


async def test_xlsx_speaks_english_names_cashiers_and_types_cells(app: App) -> None:
    await seed(app.sessionmaker)
    message = await _export(app, "en")
    book = load_workbook(io.BytesIO(message.document.data))  # type: ignore[union-attr]
    assert book.sheetnames == ["KPIs", "Purchases", "Cards", "Clients", "Surveys", "Offers"]
    for sheet in book.worksheets:
        assert sheet.freeze_panes == "A2"

    purchases = book["Purchases"]
    header = [cell.value for cell in purchases[1]]
    assert header == [
        "Purchase no.",
        "Card",
        "Date and time",
        "Amount",
        "Discount, %",
        "Discount",
        "Paid",
        "Offer no.",
        "Cashier",
        "Source",
        "Voided at",
    ]
    widths = {h: purchases.column_dimensions[chr(ord("A") + i)].width for i, h in enumerate(header)}
    assert widths["Date and time"] >= 16 and widths["Cashier"] >= 20 and widths["Amount"] >= 12

    first = dict(zip(header, purchases[2], strict=True))  # Nov 3, 12:00 Moscow: 1 500 ₽ at 7 %
    assert first["Amount"].value == 1500 and first["Amount"].number_format == "#,##0.00"
    assert first["Date and time"].is_date
    assert first["Date and time"].value == datetime(2026, 11, 3, 12, 0)  # store time, naive
    assert first["Date and time"].number_format == "yyyy-mm-dd hh:mm"
    assert first["Discount, %"].value == 0.07 and first["Discount, %"].number_format == "0%"
    assert first["Card"].value == "100045" and first["Card"].data_type == "s"
    assert first["Source"].value == "history import"
    cashiers = [row[header.index("Cashier")] for row in _rows(purchases)[1:]]
    assert set(cashiers) == {"Carl Kassir", "2002"}  # unknown to Telegram: the id

    cards = {row[0]: row for row in _rows(book["Cards"])[1:]}
    assert cards["100047"][4] == "in stock" and cards["100047"][2] == "B2B"

    summary = book["KPIs"]
    assert [cell.value for cell in summary[1]] == ["Figure", "Value"]
    by_label = {row[0].value: row[1] for row in summary.iter_rows(min_row=2)}
    assert by_label["Revenue through cards"].value == 5700
    assert by_label["Revenue through cards"].number_format == "#,##0.00"
    assert by_label["Purchases"].value == 6
    assert by_label["Activity rate"].number_format == "0.0%"
    assert 0 <= by_label["Activity rate"].value <= 1
    assert by_label["Period: first day"].is_date
    assert "RFM: at risk" in by_label and "B2B: Active cards" in by_label
    # The growth loops' figures: none in this data, zero or empty rather than missing.
    assert by_label["Referrals: friends joined"].value == 0
    assert by_label["Happy hours: revenue"].number_format == "#,##0.00"
    assert by_label["Birthday gifts: lift, 95 % CI from"].value is None
    assert by_label["Win-back: lift, 95 % CI to"].value is None
    machine_keys = {item.key for item in export.SUMMARY_ROWS}
    assert not machine_keys & set(by_label), "a KPI row is named by its machine key"


async def test_xlsx_and_csv_in_russian(app: App) -> None:
    await seed(app.sessionmaker)
    i18n: I18n = create_i18n("ru")
    with i18n.context(), i18n.use_locale("ru"):
        stats_labels = [str(label) for label, _key, _render in STATS_LINES]
        at_risk = "RFM: " + i18n.gettext("at risk")
    message = await _export(app, "ru")
    book = load_workbook(io.BytesIO(message.document.data))  # type: ignore[union-attr]
    assert book.sheetnames[:2] == ["Показатели", "Покупки"]
    labels = [row[0] for row in _rows(book.worksheets[0])[1:]]
    assert set(stats_labels) <= set(labels) and at_risk in labels
    purchases = book["Покупки"]
    assert purchases["C2"].number_format == "dd.mm.yyyy hh:mm"

    message = await _export(app, "ru", "30d csv")
    archive = zipfile.ZipFile(io.BytesIO(message.document.data))  # type: ignore[union-attr]
    text = archive.read("purchases.csv").decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0][:4] == ["Покупка №", "Карта", "Дата и время", "Сумма"]
    assert rows[1][1:5] == ["100045", "2026-11-03 12:00:00", "1500,00", "7%"]
    summary = dict(
        csv.reader(io.StringIO(archive.read("kpi_summary.csv").decode("utf-8-sig")), delimiter=";")
    )
    assert summary["Выручка по картам"] == "5700,00"


async def test_csv_in_english_keeps_commas_and_points(app: App) -> None:
    await seed(app.sessionmaker)
    message = await _export(app, "en", "30d csv")
    archive = zipfile.ZipFile(io.BytesIO(message.document.data))  # type: ignore[union-attr]
    rows = list(csv.reader(io.StringIO(archive.read("purchases.csv").decode("utf-8-sig"))))
    assert rows[0][:4] == ["Purchase no.", "Card", "Date and time", "Amount"]
    assert rows[1][1:5] == ["100045", "2026-11-03 12:00:00", "1500.00", "7%"]
    assert {row[8] for row in rows[1:]} == {"Carl Kassir", "2002"}


# ---------------------------------------------------------------------- CSV injection


async def _seed_formulas(session: AsyncSession) -> None:
    d = Data(session)
    client = await d.client(username="evil")
    client.first_name = FORMULAS[0]
    client.last_name = "-Smith"
    card = await d.card("100045", issued_at=msk(2026, 11, 1), client=client)
    await d.buy(card, msk(2026, 11, 3), 150_000, cashier=CASHIER_ID)
    for hour, comment in enumerate(FORMULAS, start=8):
        await d.survey(client, msk(2026, 11, 4, hour), 3, comment=comment)
    await d.commit()


async def test_xlsx_cells_from_people_are_never_formulas(
    engine: AsyncEngine, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as s:
        await _seed_formulas(s)
    labels = export.ExportLabels(people={CASHIER_ID: '=cmd|" /C calc"!A0'})
    path = await report_service(engine, settings).export_xlsx(FIRST, LAST, labels)
    try:
        book = load_workbook(path)
        clients = book["clients"]
        assert clients["C2"].value == FORMULAS[0] and clients["C2"].data_type == "s"
        assert clients["D2"].value == "-Smith" and clients["D2"].data_type == "s"
        comments = [row[6] for row in book["surveys"].iter_rows(min_row=2)]
        # XML reads a CR back as LF; either way the cell is text.
        assert [c.value for c in comments] == [f.replace("\r", "\n") for f in FORMULAS]
        assert all(c.data_type == "s" for c in comments)
        purchase = book["purchases"][2]
        assert purchase[8].value == '=cmd|" /C calc"!A0' and purchase[8].data_type == "s"
        assert purchase[3].value == 1500 and purchase[3].data_type == "n"  # numbers stay numbers
        assert purchase[0].data_type == "n"
    finally:
        path.unlink()


async def test_csv_cells_from_people_are_neutralised(
    engine: AsyncEngine, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as s:
        await _seed_formulas(s)
    labels = export.ExportLabels(people={CASHIER_ID: "@evil"})
    path = await report_service(engine, settings).export_csv_zip(FIRST, LAST, labels)
    try:
        archive = zipfile.ZipFile(path)

        def rows(name: str) -> list[list[str]]:
            text = archive.read(name).decode("utf-8-sig")
            return list(csv.reader(io.StringIO(text, newline="")))

        clients = rows("clients.csv")
        assert clients[1][2] == "'" + FORMULAS[0] and clients[1][3] == "'-Smith"
        assert [row[6] for row in rows("surveys.csv")[1:]] == ["'" + f for f in FORMULAS]
        purchase = rows("purchases.csv")[1]
        assert purchase[8] == "'@evil"
        assert purchase[3] == "1500.00" and purchase[0].isdigit()  # numbers stay numbers
        assert not any(cell.startswith("'") for cell in rows("kpi_summary.csv")[1:][0])
    finally:
        path.unlink()


def test_neutralise() -> None:
    for text in FORMULAS:
        assert export.neutralise(text) == "'" + text
    for text in ("Anna", "100045", "", "a=b", " =1"):
        assert export.neutralise(text) == text


def test_every_kpi_row_has_a_label_in_every_language() -> None:
    i18n: I18n = create_i18n("ru")
    for language in ("ru", "en", "et"):
        with i18n.context(), i18n.use_locale(language):
            labels = export_labels(language, {})
        missing = [item.key for item in export.SUMMARY_ROWS if item.key not in labels.kpis]
        assert missing == []
