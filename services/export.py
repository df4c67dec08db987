"""Data export for the owner: one XLSX (openpyxl write-only) or a zip of CSVs.

Both stream: rows come from the database in batches (`session.stream` + `yield_per`) and go
straight to a temporary file, so a million purchases never sit in memory. The caller sends the
file and deletes it. Column names are stable machine identifiers (like the import CSV headers),
money is in major units, times are in store time. Phone numbers and birthdays are exported
only with EXPORT_INCLUDE_CONTACTS=true.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpyxl import Workbook
from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Card, Client, Offer, Purchase, Survey
from services import kpi
from services.clock import store_day_bounds

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from bot.config import Settings

SHEETS = ("kpi_summary", "purchases", "cards", "clients", "surveys", "offers")
_BATCH = 2_000


@dataclass(frozen=True)
class Table:
    name: str
    header: list[str]
    query: Select[Any] | None
    money: frozenset[str] = frozenset()


def _tables(settings: Settings, start: datetime, end: datetime) -> list[Table]:
    in_p_purchase = (Purchase.created_at >= start) & (Purchase.created_at < end)
    client_cols: list[Any] = [
        Client.id,
        Client.tg_id,
        Client.first_name,
        Client.last_name,
        Client.username,
        Client.language,
        Client.consent_at,
        Client.consent_version,
        Client.reachable,
        Client.marketing_opt_out,
        Client.created_at,
        Client.erased_at,
    ]
    if settings.export_include_contacts:
        client_cols += [Client.phone, Client.birthday]
    return [
        Table(
            "purchases",
            [
                "id",
                "card_number",
                "created_at",
                "amount",
                "discount_pct",
                "discount_amount",
                "paid_amount",
                "offer_id",
                "cashier_id",
                "source",
                "voided_at",
            ],
            select(
                Purchase.id,
                Card.number,
                Purchase.created_at,
                Purchase.amount,
                Purchase.discount_pct,
                Purchase.discount_amount,
                Purchase.paid_amount,
                Purchase.offer_id,
                Purchase.cashier_id,
                Purchase.source,
                Purchase.voided_at,
            )
            .join(Card, Card.id == Purchase.card_id)
            .where(in_p_purchase)
            .order_by(Purchase.created_at, Purchase.id),
            frozenset({"amount", "discount_amount", "paid_amount"}),
        ),
        Table(
            "cards",
            [
                "number",
                "base_pct",
                "segment",
                "kind",
                "status",
                "issued_at",
                "client_id",
                "bound_at",
                "blocked_at",
                "block_reason",
            ],
            select(
                Card.number,
                Card.base_pct,
                Card.segment,
                Card.kind,
                Card.status,
                Card.issued_at,
                Card.client_id,
                Card.bound_at,
                Card.blocked_at,
                Card.block_reason,
            ).order_by(Card.number),
        ),
        Table("clients", [c.key for c in client_cols], select(*client_cols).order_by(Client.id)),
        Table(
            "surveys",
            ["id", "client_id", "purchase_id", "created_at", "score", "answered_at", "comment"],
            select(
                Survey.id,
                Survey.client_id,
                Survey.purchase_id,
                Survey.created_at,
                Survey.score,
                Survey.answered_at,
                Survey.comment,
            )
            .where(
                or_(
                    (Survey.created_at >= start) & (Survey.created_at < end),
                    (Survey.answered_at >= start) & (Survey.answered_at < end),
                )
            )
            .order_by(Survey.id),
        ),
        Table(
            "offers",
            [
                "id",
                "client_id",
                "kind",
                "bonus_pct",
                "valid_from",
                "valid_until",
                "created_at",
                "redeemed_purchase_id",
                "redeemed_at",
                "cancelled_at",
            ],
            select(
                Offer.id,
                Offer.client_id,
                Offer.kind,
                Offer.bonus_pct,
                Offer.valid_from,
                Offer.valid_until,
                Offer.created_at,
                Offer.redeemed_purchase_id,
                Offer.redeemed_at,
                Offer.cancelled_at,
            )
            .where((Offer.created_at >= start) & (Offer.created_at < end))
            .order_by(Offer.id),
        ),
    ]


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


async def _rows(
    session: AsyncSession, table: Table, convert: Callable[[str, Any], Any]
) -> AsyncIterator[list[Any]]:
    assert table.query is not None
    result = await session.stream(table.query.execution_options(yield_per=_BATCH))
    async for row in result:
        yield [convert(name, value) for name, value in zip(table.header, row, strict=True)]


def _converter(settings: Settings, table: Table, *, text: bool) -> Callable[[str, Any], Any]:
    exponent = settings.currency_exponent

    def convert(name: str, value: Any) -> Any:
        if value is None:
            return "" if text else None
        if name in table.money:
            return Decimal(value).scaleb(-exponent)
        if isinstance(value, datetime):
            local = value.astimezone(settings.tz).replace(tzinfo=None)
            return local.isoformat(sep=" ", timespec="seconds") if text else local
        if isinstance(value, date):
            return value.isoformat() if text else value
        if isinstance(value, bool):
            return int(value) if text else value
        return value

    return convert


def _temp_path(suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="loyalty-export-", suffix=suffix)
    os.close(fd)
    return Path(name)


async def _summary(session: AsyncSession, settings: Settings, first: date, last: date) -> Any:
    kpis = await kpi.compute(session, settings, first, last)
    return _flatten(kpi.to_json(kpis, settings.currency_exponent))


async def export_xlsx(session: AsyncSession, settings: Settings, first: date, last: date) -> Path:
    """An XLSX with the sheets of `SHEETS` for the store days `first`…`last`; a temp file."""
    start, end = store_day_bounds(first, last, settings.tz)
    path = _temp_path(".xlsx")
    try:
        workbook = Workbook(write_only=True)
        summary = workbook.create_sheet("kpi_summary")
        summary.append(["kpi", "value"])
        for key, value in await _summary(session, settings, first, last):
            summary.append([key, value])
        for table in _tables(settings, start, end):
            sheet = workbook.create_sheet(table.name)
            sheet.append(table.header)
            async for row in _rows(session, table, _converter(settings, table, text=False)):
                sheet.append(row)
        workbook.save(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def export_csv_zip(
    session: AsyncSession, settings: Settings, first: date, last: date
) -> Path:
    """A zip of `<sheet>.csv` files (UTF-8 with BOM, so Excel reads Cyrillic); a temp file."""
    start, end = store_day_bounds(first, last, settings.tz)
    path = _temp_path(".zip")
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            with archive.open("kpi_summary.csv", "w") as raw:
                out = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                writer = csv.writer(out)
                writer.writerow(["kpi", "value"])
                for key, value in await _summary(session, settings, first, last):
                    writer.writerow([key, "" if value is None else value])
                out.flush()
                out.detach()
            for table in _tables(settings, start, end):
                with archive.open(f"{table.name}.csv", "w") as raw:
                    out = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                    writer = csv.writer(out)
                    writer.writerow(table.header)
                    async for row in _rows(session, table, _converter(settings, table, text=True)):
                        writer.writerow(row)
                    out.flush()
                    out.detach()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
