"""Data export for the owner: one XLSX (openpyxl write-only) or a zip of CSVs.

Both stream: rows come from the database in batches (`yield_per`: a server-side cursor on
PostgreSQL) and go straight to a temporary file, so a million purchases never sit in memory.
`export_xlsx` and `export_csv_zip` are units of work (`db.database`) that
`services.reports.ReportService` runs as long reads (`db.report`; on SQLite the whole export,
file writing included, runs on the report lane's thread). The caller sends the file and deletes
it. Phone numbers and birthdays are exported only with EXPORT_INCLUDE_CONTACTS=true.

The file is for people who open it in Excel, not for machines:

* every word in it — sheet names, column headers, KPI names, values such as a card's status,
  cashiers' names — comes from `ExportLabels`, filled in by the handler in the owner's
  language (without a label the stable machine key is used);
* cells are typed: money in major units with grouping and two decimals, times as real Excel
  date-times in store time, percentages as percentages; the header row is frozen;
* a CSV for ru/et uses `;` and a decimal comma, which is what Excel in those locales opens
  directly (`ExportLabels.csv_delimiter`, `decimal_mark`);
* text that people typed (names, survey comments, Telegram names of cashiers) can never turn
  into a formula (CSV injection): in the XLSX it is a string cell whatever it starts with, in
  a CSV a value starting with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`.

A chain of more than one branch (`services.branches.load`) also gets the branch of each
purchase (a `branch` column, the branch's name) and a per-branch summary (`BRANCHES`: one row
per branch, `kpi.by_branch` for the export's period, right after the KPI summary); a one-shop
install's file is exactly what it was before there were branches.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.utils import get_column_letter
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from db.models import Card, Client, Offer, Purchase, Survey
from services import kpi
from services.branches import load
from services.clock import store_day_bounds

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

SUMMARY = "kpi_summary"
SHEETS = (SUMMARY, "purchases", "cards", "clients", "surveys", "offers")
BRANCHES = "branches"  # the per-branch summary: only in a chain
CHAIN_SHEETS = (SUMMARY, BRANCHES, *SHEETS[1:])
_BATCH = 2_000


class Kind(StrEnum):
    """How a value is written (and formatted) in the file."""

    TEXT = "text"
    NUMBER = "number"  # an id or a score: a plain integer
    COUNT = "count"  # a count: grouped (1,234)
    MONEY = "money"  # minor units in the database, major units with 2 decimals in the file
    PERCENT = "percent"  # a percentage as stored: 7 → 7 %
    SHARE = "share"  # a fraction: 0.4 → 40 %
    DECIMAL = "decimal"
    DATETIME = "datetime"  # UTC in the database, store time in the file
    DATE = "date"
    FLAG = "flag"
    PERSON = "person"  # a Telegram id, written as the person's name when the labels know it
    BRANCH = "branch"  # a branch id, written as the branch's name


@dataclass(frozen=True)
class Field:
    key: str
    kind: Kind
    decimals: int = 0
    width: int | None = None


@dataclass(frozen=True)
class Table:
    name: str
    fields: list[Field]
    query: Select[Any]


# The KPI summary, in the order /stats shows it: (path into `kpi.Kpis`, how to write it).
TRIALS = ("winback", "birthday")  # `Kpis` fields of the offers with a control group
SUMMARY_ROWS: tuple[Field, ...] = (
    Field("first", Kind.DATE),
    Field("last", Kind.DATE),
    Field("cards_issued", Kind.COUNT),
    Field("cards_issued_in_period", Kind.COUNT),
    Field("cards_bound", Kind.COUNT),
    Field("active_cards", Kind.COUNT),
    Field("activity_rate", Kind.SHARE, 1),
    Field("purchases", Kind.COUNT),
    Field("revenue", Kind.MONEY),
    Field("discount_total", Kind.MONEY),
    Field("average_check", Kind.MONEY),
    Field("average_discount_pct", Kind.PERCENT, 1),
    Field("frequency", Kind.DECIMAL, 2),
    Field("repeat_rate", Kind.SHARE, 1),
    Field("retention_rate", Kind.SHARE, 1),
    Field("spend_per_active_card", Kind.MONEY),
    Field("new_buyers", Kind.COUNT),
    Field("ltv", Kind.MONEY),
    Field("roi_pct", Kind.PERCENT, 1),
    Field("program_costs", Kind.MONEY),
    Field("cards_total", Kind.COUNT),
    Field("nps.score", Kind.DECIMAL, 1),
    Field("nps.answers", Kind.COUNT),
    Field("nps.promoters", Kind.COUNT),
    Field("nps.passives", Kind.COUNT),
    Field("nps.detractors", Kind.COUNT),
    *(Field(f"rfm.{segment}", Kind.COUNT) for segment in kpi.RFM_SEGMENTS),
    *(
        Field(f"{group}.{key}.{name}", kind)
        for group, keys in (("by_segment", kpi.SEGMENTS), ("digital_vs_paper", kpi.WALLETS))
        for key in keys
        for name, kind in (
            ("active_cards", Kind.COUNT),
            ("purchases", Kind.COUNT),
            ("revenue", Kind.MONEY),
            ("average_check", Kind.MONEY),
        )
    ),
    # The automatic offers measured against their control groups (win-back, birthdays).
    *(
        Field(f"{trial}.{name}", kind, *places)
        for trial in TRIALS
        for name, kind, *places in (
            ("offered", Kind.COUNT),
            ("control", Kind.COUNT),
            ("redeemed", Kind.COUNT),
            ("redemption_rate", Kind.SHARE, 1),
            ("return_rate_offered", Kind.SHARE, 1),
            ("return_rate_control", Kind.SHARE, 1),
            ("lift", Kind.SHARE, 1),
            ("lift_low", Kind.SHARE, 1),
            ("lift_high", Kind.SHARE, 1),
        )
    ),
    Field("promotions.purchases", Kind.COUNT),
    Field("promotions.revenue", Kind.MONEY),
    Field("promotions.discount_total", Kind.MONEY),
    Field("referrals.joined", Kind.COUNT),
    Field("referrals.first_purchases", Kind.COUNT),
    Field("referrals.revenue", Kind.MONEY),
    Field("referrals.ambassadors", Kind.COUNT),
)
SUMMARY_FIELDS = (Field("kpi", Kind.TEXT), Field("value", Kind.TEXT))
# The per-branch summary's columns (attributes of `kpi.BranchFigures`).
BRANCH_FIELDS: tuple[Field, ...] = (
    Field("branch_id", Kind.BRANCH),
    Field("purchases", Kind.COUNT),
    Field("revenue", Kind.MONEY),
    Field("discount_total", Kind.MONEY),
    Field("active_cards", Kind.COUNT),
    Field("average_check", Kind.MONEY),
    Field("average_discount_pct", Kind.PERCENT, 1),
    Field("nps", Kind.DECIMAL, 1),
    Field("nps_answers", Kind.COUNT),
    Field("new_buyers", Kind.COUNT),
)


@dataclass(frozen=True)
class ExportLabels:
    """Every word and number style of an export, in the reader's language.

    `headers` and `values` are keyed `"<sheet>.<column>"` (or just `"<column>"` for every
    sheet); `values` maps a stored value (`"issued"`) to its text. `sheets` names the sheets,
    `kpis` the rows of the KPI summary (keys of `SUMMARY_ROWS`), `people` Telegram ids to
    names. Formats are Excel's (`dd.mm.yyyy hh:mm`).
    """

    sheets: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    kpis: Mapping[str, str] = field(default_factory=dict)
    people: Mapping[int, str] = field(default_factory=dict)
    branches: Mapping[int, str] = field(default_factory=dict)  # set by the export itself
    datetime_format: str = "yyyy-mm-dd hh:mm"
    date_format: str = "yyyy-mm-dd"
    csv_delimiter: str = ","
    decimal_mark: str = "."

    def sheet(self, name: str) -> str:
        return _sheet_title(self.sheets.get(name) or name)

    def header(self, table: str, key: str) -> str:
        return self.headers.get(f"{table}.{key}") or self.headers.get(key) or key

    def value_names(self, table: str, key: str) -> Mapping[str, str]:
        return self.values.get(f"{table}.{key}") or self.values.get(key) or {}


# Excel refuses these in a sheet name, and names longer than 31 characters.
_SHEET_FORBIDDEN = str.maketrans(dict.fromkeys("[]:*?/\\", " "))


def _sheet_title(name: str) -> str:
    return name.translate(_SHEET_FORBIDDEN).strip()[:31] or "Sheet"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """A CSV cell that Excel or LibreOffice would read as a formula gets a leading `'`
    (OWASP "CSV injection"); anything else is left as it is."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _tables(
    settings: Settings, start: datetime, end: datetime, branches: bool = False
) -> list[Table]:
    in_period = (Purchase.created_at >= start) & (Purchase.created_at < end)
    client_fields = [
        (Client.id, Kind.NUMBER),
        (Client.tg_id, Kind.NUMBER),
        (Client.first_name, Kind.TEXT),
        (Client.last_name, Kind.TEXT),
        (Client.username, Kind.TEXT),
        (Client.language, Kind.TEXT),
        (Client.consent_at, Kind.DATETIME),
        (Client.consent_version, Kind.TEXT),
        (Client.reachable, Kind.FLAG),
        (Client.marketing_opt_out, Kind.FLAG),
        (Client.created_at, Kind.DATETIME),
        (Client.erased_at, Kind.DATETIME),
    ]
    if settings.reports.export_include_contacts:
        client_fields += [(Client.phone, Kind.TEXT), (Client.birthday, Kind.DATE)]

    def table(name: str, columns: list[tuple[Any, Kind]], query: Select[Any]) -> Table:
        return Table(name, [Field(column.key, kind) for column, kind in columns], query)

    purchases = [
        (Purchase.id, Kind.NUMBER),
        (Card.number.label("card_number"), Kind.TEXT),
        (Purchase.created_at, Kind.DATETIME),
        (Purchase.amount, Kind.MONEY),
        (Purchase.discount_pct, Kind.PERCENT),
        (Purchase.discount_amount, Kind.MONEY),
        (Purchase.paid_amount, Kind.MONEY),
        (Purchase.offer_id, Kind.NUMBER),
        (Purchase.cashier_id, Kind.PERSON),
        *([(Purchase.branch_id.label("branch"), Kind.BRANCH)] if branches else []),
        (Purchase.source, Kind.TEXT),
        (Purchase.voided_at, Kind.DATETIME),
    ]
    cards = [
        (Card.number, Kind.TEXT),
        (Card.base_pct, Kind.PERCENT),
        (Card.segment, Kind.TEXT),
        (Card.kind, Kind.TEXT),
        (Card.status, Kind.TEXT),
        (Card.issued_at, Kind.DATETIME),
        (Card.client_id, Kind.NUMBER),
        (Card.bound_at, Kind.DATETIME),
        (Card.blocked_at, Kind.DATETIME),
        (Card.block_reason, Kind.TEXT),
    ]
    surveys = [
        (Survey.id, Kind.NUMBER),
        (Survey.client_id, Kind.NUMBER),
        (Survey.purchase_id, Kind.NUMBER),
        (Survey.created_at, Kind.DATETIME),
        (Survey.score, Kind.NUMBER),
        (Survey.answered_at, Kind.DATETIME),
        (Survey.comment, Kind.TEXT),
    ]
    offers = [
        (Offer.id, Kind.NUMBER),
        (Offer.client_id, Kind.NUMBER),
        (Offer.kind, Kind.TEXT),
        (Offer.bonus_pct, Kind.PERCENT),
        (Offer.valid_from, Kind.DATETIME),
        (Offer.valid_until, Kind.DATETIME),
        (Offer.created_at, Kind.DATETIME),
        (Offer.redeemed_purchase_id, Kind.NUMBER),
        (Offer.redeemed_at, Kind.DATETIME),
        (Offer.cancelled_at, Kind.DATETIME),
    ]

    def columns(spec: list[tuple[Any, Kind]]) -> list[Any]:
        return [column for column, _kind in spec]

    return [
        table(
            "purchases",
            purchases,
            select(*columns(purchases))
            .join(Card, Card.id == Purchase.card_id)
            .where(in_period)
            .order_by(Purchase.created_at, Purchase.id),
        ),
        table("cards", cards, select(*columns(cards)).order_by(Card.number)),
        table("clients", client_fields, select(*columns(client_fields)).order_by(Client.id)),
        table(
            "surveys",
            surveys,
            select(*columns(surveys))
            .where(
                or_(
                    (Survey.created_at >= start) & (Survey.created_at < end),
                    (Survey.answered_at >= start) & (Survey.answered_at < end),
                )
            )
            .order_by(Survey.id),
        ),
        table(
            "offers",
            offers,
            select(*columns(offers))
            .where((Offer.created_at >= start) & (Offer.created_at < end))
            .order_by(Offer.id),
        ),
    ]


def cashier_ids(session: Session, settings: Settings, first: date, last: date) -> set[int]:
    """The Telegram ids of everyone who recorded a purchase in the period (the caller names
    them through `ExportLabels.people`)."""
    start, end = store_day_bounds(first, last, settings.store.tz)
    rows = session.scalars(
        select(Purchase.cashier_id)
        .where(Purchase.created_at >= start, Purchase.created_at < end)
        .where(Purchase.cashier_id.is_not(None))
        .distinct()
    )
    return {int(tg_id) for tg_id in rows}


# ------------------------------------------------------------------------------- values


def _lookup(kpis: kpi.Kpis, path: str) -> Any:
    value: Any = kpis
    for part in path.split("."):
        if value is None:
            return None
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
    return value


def _major(minor: float | int, exponent: int) -> Decimal:
    return Decimal(str(minor)).scaleb(-exponent).quantize(Decimal("0.01"))


def _fraction(value: float | int, kind: Kind) -> Decimal:
    """A percentage or a share as the fraction Excel's percent format shows (7 % → 0.07)."""
    number = Decimal(str(value))
    return number / 100 if kind is Kind.PERCENT else number


Convert = Callable[[Any], Any]


def _plain(item: Field, table: str, labels: ExportLabels, settings: Settings) -> Convert:
    """The value as Python data (numbers, datetimes, text): what both writers start from."""
    exponent = settings.store.currency_exponent
    tz = settings.store.tz
    names = labels.value_names(table, item.key)
    people = labels.people
    branches = labels.branches
    kind = item.kind

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if kind is Kind.MONEY:
            return _major(value, exponent)
        if kind in (Kind.PERCENT, Kind.SHARE):
            return _fraction(value, kind)
        if kind is Kind.DECIMAL:
            return Decimal(str(value)).quantize(Decimal(1).scaleb(-item.decimals))
        if kind is Kind.DATETIME and isinstance(value, datetime):
            return value.astimezone(tz).replace(tzinfo=None)
        if kind is Kind.PERSON:
            return people.get(int(value)) or str(value)
        if kind is Kind.BRANCH:
            return branches.get(int(value)) or str(value)
        if kind is Kind.TEXT and isinstance(value, str):
            return names.get(value, value)
        return value

    return convert


def _xlsx_format(item: Field, labels: ExportLabels) -> str | None:
    kind = item.kind
    if kind is Kind.MONEY:
        return "#,##0.00"
    if kind is Kind.COUNT:
        return "#,##0"
    if kind in (Kind.PERCENT, Kind.SHARE):
        return "0." + "0" * item.decimals + "%" if item.decimals else "0%"
    if kind is Kind.DECIMAL:
        return "0." + "0" * item.decimals if item.decimals else "0"
    if kind is Kind.DATETIME:
        return labels.datetime_format
    if kind is Kind.DATE:
        return labels.date_format
    return None


def _xlsx_cell(
    sheet: Any, item: Field, table: str, labels: ExportLabels, settings: Settings
) -> Convert:
    plain = _plain(item, table, labels, settings)
    number_format = _xlsx_format(item, labels)

    def convert(value: Any) -> Any:
        value = plain(value)
        if value is None:
            return None
        if isinstance(value, str):
            if not value.startswith("="):
                return value
            # openpyxl would store text starting with "=" as a formula: force a string.
            cell = WriteOnlyCell(sheet, value=value)
            cell.data_type = "s"
            return cell
        if number_format is None:
            return value
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = number_format
        return cell

    return convert


def _csv_cell(item: Field, table: str, labels: ExportLabels, settings: Settings) -> Convert:
    plain = _plain(item, table, labels, settings)
    mark = labels.decimal_mark
    kind = item.kind

    def decimal(number: Decimal, places: int) -> str:
        return f"{number:.{places}f}".replace(".", mark)

    def convert(value: Any) -> str:
        value = plain(value)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "1" if value else "0"
        if kind is Kind.MONEY:
            return decimal(value, 2)
        if kind in (Kind.PERCENT, Kind.SHARE):
            return decimal(value * 100, item.decimals) + "%"
        if kind is Kind.DECIMAL:
            return decimal(value, item.decimals)
        if isinstance(value, datetime):
            return value.isoformat(sep=" ", timespec="seconds")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, str):
            return neutralise(value)
        return str(value)

    return convert


_WIDTHS = {
    Kind.TEXT: 16,
    Kind.NUMBER: 10,
    Kind.COUNT: 10,
    Kind.MONEY: 14,
    Kind.PERCENT: 9,
    Kind.SHARE: 9,
    Kind.DECIMAL: 10,
    Kind.DATETIME: 17,
    Kind.DATE: 12,
    Kind.FLAG: 9,
    Kind.PERSON: 24,
    Kind.BRANCH: 20,
}
_WIDE_TEXT = {"comment": 60, "first_name": 20, "last_name": 20, "username": 20}


def _width(item: Field, header: str) -> int:
    base = item.width or _WIDE_TEXT.get(item.key) or _WIDTHS[item.kind]
    return min(max(base, len(header) + 2), 60)


# ----------------------------------------------------------------------------- writing


def _rows(session: Session, table: Table) -> Iterator[Any]:
    return iter(session.execute(table.query.execution_options(yield_per=_BATCH)))


def _temp_path(suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="loyalty-export-", suffix=suffix)
    os.close(fd)
    return Path(name)


def _summary(
    session: Session, settings: Settings, first: date, last: date, labels: ExportLabels
) -> list[tuple[str, Field, Any]]:
    kpis = kpi.compute(session, settings, first, last)
    return [
        (labels.kpis.get(item.key) or item.key, item, _lookup(kpis, item.key))
        for item in SUMMARY_ROWS
    ]


def _chain(session: Session, settings: Settings, labels: ExportLabels) -> ExportLabels | None:
    """In a chain, the labels with the branches' names (None for a one-shop install)."""
    chain = load(session, settings)
    if len(chain) <= 1:
        return None
    return replace(labels, branches={b.id: b.name for b in chain})


def _branch_rows(session: Session, settings: Settings, first: date, last: date) -> list[list[Any]]:
    """The per-branch summary's rows: `kpi.by_branch` for the period, highest revenue first."""
    return [
        [getattr(figures, item.key) for item in BRANCH_FIELDS]
        for figures in kpi.by_branch(session, settings, first, last)
    ]


def _start_sheet(workbook: Workbook, name: str, headers: list[str], widths: Iterable[int]) -> Any:
    sheet = workbook.create_sheet(name)
    # Both must be set before the first row: a write-only sheet streams its XML.
    sheet.freeze_panes = "A2"
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.append(headers)
    return sheet


def export_xlsx(
    session: Session,
    settings: Settings,
    first: date,
    last: date,
    labels: ExportLabels | None = None,
) -> Path:
    """An XLSX with the sheets of `SHEETS` for the store days `first`…`last`; a temp file."""
    labels = labels or ExportLabels()
    start, end = store_day_bounds(first, last, settings.store.tz)
    chain = _chain(session, settings, labels)
    labels = chain or labels
    path = _temp_path(".xlsx")
    try:
        workbook = Workbook(write_only=True)
        rows = _summary(session, settings, first, last, labels)
        headers = [labels.header(SUMMARY, item.key) for item in SUMMARY_FIELDS]
        label_width = max([len(label) for label, _item, _value in rows] + [len(headers[0])])
        summary = _start_sheet(
            workbook, labels.sheet(SUMMARY), headers, [min(label_width + 2, 60), 16]
        )
        for label, item, value in rows:
            summary.append([label, _xlsx_cell(summary, item, SUMMARY, labels, settings)(value)])
        if chain is not None:
            headers = [labels.header(BRANCHES, item.key) for item in BRANCH_FIELDS]
            widths = [_width(item, h) for item, h in zip(BRANCH_FIELDS, headers, strict=True)]
            sheet = _start_sheet(workbook, labels.sheet(BRANCHES), headers, widths)
            cells = [_xlsx_cell(sheet, item, BRANCHES, labels, settings) for item in BRANCH_FIELDS]
            for row in _branch_rows(session, settings, first, last):
                sheet.append([cell(value) for cell, value in zip(cells, row, strict=True)])
        for table in _tables(settings, start, end, branches=chain is not None):
            headers = [labels.header(table.name, item.key) for item in table.fields]
            widths = [_width(item, h) for item, h in zip(table.fields, headers, strict=True)]
            sheet = _start_sheet(workbook, labels.sheet(table.name), headers, widths)
            cells = [_xlsx_cell(sheet, item, table.name, labels, settings) for item in table.fields]
            for row in _rows(session, table):
                sheet.append([cell(value) for cell, value in zip(cells, row, strict=True)])
        workbook.save(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def export_csv_zip(
    session: Session,
    settings: Settings,
    first: date,
    last: date,
    labels: ExportLabels | None = None,
) -> Path:
    """A zip of `<sheet>.csv` files (UTF-8 with BOM, so Excel reads Cyrillic); a temp file."""
    labels = labels or ExportLabels()
    start, end = store_day_bounds(first, last, settings.store.tz)
    chain = _chain(session, settings, labels)
    labels = chain or labels
    path = _temp_path(".zip")

    def writer_for(raw: Any) -> tuple[io.TextIOWrapper, Any]:
        out = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        return out, csv.writer(out, delimiter=labels.csv_delimiter)

    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            with archive.open(f"{SUMMARY}.csv", "w") as raw:
                out, writer = writer_for(raw)
                writer.writerow(
                    [neutralise(labels.header(SUMMARY, item.key)) for item in SUMMARY_FIELDS]
                )
                for label, item, value in _summary(session, settings, first, last, labels):
                    writer.writerow(
                        [neutralise(label), _csv_cell(item, SUMMARY, labels, settings)(value)]
                    )
                out.flush()
                out.detach()
            if chain is not None:
                with archive.open(f"{BRANCHES}.csv", "w") as raw:
                    out, writer = writer_for(raw)
                    writer.writerow(
                        [neutralise(labels.header(BRANCHES, item.key)) for item in BRANCH_FIELDS]
                    )
                    cells = [_csv_cell(item, BRANCHES, labels, settings) for item in BRANCH_FIELDS]
                    for row in _branch_rows(session, settings, first, last):
                        writer.writerow(
                            [cell(value) for cell, value in zip(cells, row, strict=True)]
                        )
                    out.flush()
                    out.detach()
            for table in _tables(settings, start, end, branches=chain is not None):
                with archive.open(f"{table.name}.csv", "w") as raw:
                    out, writer = writer_for(raw)
                    writer.writerow(
                        [neutralise(labels.header(table.name, item.key)) for item in table.fields]
                    )
                    cells = [_csv_cell(item, table.name, labels, settings) for item in table.fields]
                    for row in _rows(session, table):
                        writer.writerow(
                            [cell(value) for cell, value in zip(cells, row, strict=True)]
                        )
                    out.flush()
                    out.detach()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
