"""Purchase history import (e.g. a POS export): `card_number,date,amount[,discount_pct]`.

Atomic by default: every bad line is reported with its number and nothing is written. With
`skip_invalid` the good lines are imported and the bad ones reported. The same file (by
SHA-256) is refused the second time. Rows stream from disk in batches, so a file of millions
of rows never sits in memory; the ledger rows go in through one `executemany` per batch.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    SQLITE_DATETIME_FORMAT,
    Card,
    CardKind,
    CardStatus,
    Import,
    Purchase,
    PurchaseSource,
    Segment,
)
from services import audit
from services.cards import normalize_number, refresh_totals
from services.csvfile import CsvHeader, CsvRow, file_sha256, read_csv
from services.errors import (
    DomainError,
    ImportFileError,
    ImportRowsInvalid,
    InvalidAmount,
    InvalidCardNumber,
)
from services.money import parse_amount
from services.pricing import discount_for

ErrorSink = Callable[[int, str], None]
BATCH_ROWS = 10_000

_AMOUNT_REASONS = {
    "empty": "amount is missing",
    "format": "amount is not a number",
    "zero": "amount must be greater than zero",
    "negative": "amount must be greater than zero",
    "precision": "amount has too many decimal places",
    "too_large": "amount is too large",
}

_INSERT_PURCHASE = (
    "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, paid_amount, "
    "source, import_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# Fast paths for what POS exports almost always contain; anything else takes the full parsers.
_SIMPLE_AMOUNT = re.compile(r"(\d{1,13})(?:[.,](\d{1,2}))?")
_SIMPLE_NUMBER = re.compile(r"\d{4,19}")


class BadRow(DomainError):
    pass


@dataclass(frozen=True)
class ImportSummary:
    import_id: int | None
    imported: int
    skipped: int
    new_cards: int
    first_at: datetime | None
    last_at: datetime | None


class _Dates:
    """Store-time dates and datetimes → UTC text, with a cache: POS exports repeat dates."""

    def __init__(self, tz: ZoneInfo, now: datetime) -> None:
        self.tz = tz
        self.now = now
        self.cache: dict[str, str] = {}

    def parse(self, raw: str) -> str:
        hit = self.cache.get(raw)
        if hit is not None:
            return hit
        try:
            if len(raw) == 10:
                moment = datetime.combine(date.fromisoformat(raw), time(), self.tz)
            else:
                moment = datetime.fromisoformat(raw)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=self.tz)
        except ValueError as exc:
            raise BadRow(f"date {raw!r} is not YYYY-MM-DD or an ISO date-time") from exc
        utc = moment.astimezone(UTC)
        if utc > self.now:
            raise BadRow(f"date {raw} is in the future")
        result = utc.replace(tzinfo=None).strftime(SQLITE_DATETIME_FORMAT)
        if len(raw) == 10:  # only date-only keys repeat often enough to be worth caching
            if len(self.cache) > 100_000:
                self.cache.clear()
            self.cache[raw] = result
        return result


class _RowParser:
    """Turns one CSV row into (card number, UTC timestamp text, amount minor, pct or None)."""

    def __init__(
        self, header: CsvHeader, tz: ZoneInfo, now: datetime, exponent: int, max_minor: int
    ) -> None:
        self.i_number = header.at("card_number")
        self.i_date = header.at("date")
        self.i_amount = header.at("amount")
        self.i_pct = header.index("discount_pct")
        self.dates = _Dates(tz, now)
        self.exponent = exponent
        self.scale = 10**exponent
        self.max_minor = max_minor

    def parse(self, row: CsvRow) -> tuple[str, str, int, int | None]:
        if row.extra:
            raise BadRow("more cells than header columns")
        cells = row.cells
        raw_number = cells[self.i_number]
        if not _SIMPLE_NUMBER.fullmatch(raw_number) or not raw_number.isascii():
            if not raw_number:
                raise BadRow("card_number is missing")
            try:
                raw_number = normalize_number(raw_number)
            except InvalidCardNumber as exc:
                raise BadRow(f"card_number {raw_number!r} is not a card number") from exc
        raw_date = cells[self.i_date]
        if not raw_date:
            raise BadRow("date is missing")
        created_text = self.dates.parse(raw_date)
        return raw_number, created_text, self._amount(cells[self.i_amount]), self._pct(cells)

    def _amount(self, raw: str) -> int:
        simple = _SIMPLE_AMOUNT.fullmatch(raw)
        if simple is not None and raw.isascii() and self.exponent == 2:
            whole, cents = simple.groups()
            amount = int(whole) * 100 + (int(cents.ljust(2, "0")) if cents else 0)
            if 0 < amount <= self.max_minor:
                return amount
        try:
            return parse_amount(raw, self.exponent, self.max_minor)
        except InvalidAmount as exc:
            raise BadRow(_AMOUNT_REASONS.get(exc.reason, "amount is invalid")) from exc

    def _pct(self, cells: list[str]) -> int | None:
        raw = cells[self.i_pct] if self.i_pct is not None else ""
        if not raw:
            return None
        try:
            pct = int(raw.replace(",", ".").removesuffix("%").removesuffix(".0"))
        except ValueError as exc:
            raise BadRow(f"discount_pct {raw!r} is not a whole number") from exc
        if not 0 <= pct <= 99:
            raise BadRow(f"discount_pct {pct} is outside 0-99")
        return pct


async def import_purchases(
    session: AsyncSession,
    path: Path,
    *,
    now: datetime,
    tz: ZoneInfo,
    exponent: int,
    max_amount_minor: int,
    unknown_pct: int = 5,
    skip_invalid: bool = False,
    on_error: ErrorSink,
) -> ImportSummary:
    if not 1 <= unknown_pct <= 99:
        raise ImportFileError(f"--pct must be between 1 and 99, not {unknown_pct}")
    header, rows = read_csv(
        path, required=["card_number", "date", "amount"], optional=["discount_pct"]
    )
    try:
        sha = file_sha256(path)
        previous = await session.scalar(select(Import).where(Import.file_sha256 == sha))
        if previous is not None:
            raise ImportFileError(
                f"{path.name}: this file was already imported "
                f"(import #{previous.id} of {previous.created_at:%Y-%m-%d %H:%M} UTC, "
                f"{previous.rows} rows)"
            )

        cards: dict[str, tuple[int, int]] = {
            number: (card_id, pct)
            for number, card_id, pct in (
                await session.execute(select(Card.number, Card.id, Card.base_pct))
            ).all()
        }
        imp = Import(kind="purchases", file_name=path.name[:255], file_sha256=sha, created_at=now)
        session.add(imp)
        await session.flush()
        import_id = imp.id
        conn = await session.connection()
        parser = _RowParser(header, tz, now, exponent, max_amount_minor)
        now_text = now.astimezone(UTC).replace(tzinfo=None).strftime(SQLITE_DATETIME_FORMAT)
        source = PurchaseSource.IMPORT.value

        batch: list[tuple[object, ...]] = []
        pending: asyncio.Task[object] | None = None  # the previous batch, inserting meanwhile
        imported = skipped = new_cards = 0
        first_at = last_at = ""

        for row in rows:
            try:
                number, created_text, amount, pct = parser.parse(row)
            except BadRow as exc:
                skipped += 1
                on_error(row.line, str(exc))
                continue
            if skipped and not skip_invalid:
                continue  # keep validating to report every bad line; nothing will be written

            card = cards.get(number)
            if card is None:
                if pending is not None:  # one statement at a time on the connection
                    await pending
                    pending = None
                result = await conn.execute(
                    text(
                        "INSERT INTO cards (number, base_pct, segment, kind, status, created_at, "
                        "issued_at, bind_failures) VALUES (:n, :p, :s, :k, :st, :c, :i, 0)"
                    ),
                    {
                        "n": number,
                        "p": unknown_pct,
                        "s": Segment.B2C.value,
                        "k": CardKind.PRINTED.value,
                        "st": CardStatus.ISSUED.value,
                        "c": now_text,
                        "i": created_text,
                    },
                )
                card = (int(result.lastrowid), unknown_pct)  # type: ignore[attr-defined]
                cards[number] = card
                new_cards += 1
            card_pct = card[1] if pct is None else pct
            discount = discount_for(amount, card_pct)
            batch.append(
                (
                    card[0],
                    amount,
                    card_pct,
                    discount,
                    amount - discount,
                    source,
                    import_id,
                    created_text,
                )
            )
            imported += 1
            # The text form sorts like the moment it encodes: no datetime objects per row.
            if not first_at or created_text < first_at:
                first_at = created_text
            if created_text > last_at:
                last_at = created_text
            if len(batch) >= BATCH_ROWS:
                if pending is not None:
                    await pending
                # Parse the next batch while SQLite writes this one (sqlite3 releases the GIL).
                pending = asyncio.ensure_future(conn.exec_driver_sql(_INSERT_PURCHASE, batch))
                batch = []

        if pending is not None:
            await pending
        if skipped and not skip_invalid:
            await session.rollback()
            raise ImportRowsInvalid(skipped)
        if batch:
            await conn.exec_driver_sql(_INSERT_PURCHASE, batch)  # type: ignore[arg-type]
        if not imported:
            await session.rollback()
            raise ImportFileError(f"{path.name}: no purchases to import")

        # A card becomes issued at its first use, whichever comes first: stock cards seen in the
        # history become issued at their first imported purchase, and an issue date later than
        # that purchase moves back to it.
        await conn.execute(
            text(
                "UPDATE cards SET "
                "status = CASE WHEN status = :stock THEN :issued ELSE status END, "
                "issued_at = (SELECT min(p.created_at) FROM purchases p "
                "             WHERE p.card_id = cards.id AND p.import_id = :imp) "
                "WHERE id IN (SELECT card_id FROM purchases WHERE import_id = :imp) "
                "AND (issued_at IS NULL OR issued_at > (SELECT min(p.created_at) FROM purchases p "
                "     WHERE p.card_id = cards.id AND p.import_id = :imp))"
            ),
            {
                "stock": CardStatus.IN_STOCK.value,
                "issued": CardStatus.ISSUED.value,
                "imp": import_id,
            },
        )
        await refresh_totals(
            session, select(Purchase.card_id).where(Purchase.import_id == import_id)
        )
        imp.rows = imported
        imp.skipped = skipped
        audit.record(
            session,
            "purchases.imported",
            at=now,
            file=path.name,
            import_id=imp.id,
            rows=imported,
            skipped=skipped,
            new_cards=new_cards,
        )
        await session.commit()
        return ImportSummary(
            import_id, imported, skipped, new_cards, _from_text(first_at), _from_text(last_at)
        )
    finally:
        rows.close()  # also when refused before reading a row


def _from_text(value: str) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, SQLITE_DATETIME_FORMAT).replace(tzinfo=UTC)
