"""Purchase history import (e.g. a POS export): `card_number,date,amount[,discount_pct]`.

Atomic by default: every bad line is reported with its number and nothing is written. With
`skip_invalid` the good lines are imported and the bad ones reported. The same file (by
SHA-256) is refused the second time. Rows stream from disk in batches, so a file of millions
of rows never sits in memory; the ledger rows go in through one `executemany` per batch.
"""

from __future__ import annotations

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
    PurchaseSource,
    Segment,
)
from services import audit
from services.cards import normalize_number
from services.csvfile import file_sha256, read_csv
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

_INSERT_PURCHASE = text(
    "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, paid_amount, "
    "source, import_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


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
        self.cache: dict[str, tuple[str, datetime]] = {}

    def parse(self, raw: str) -> tuple[str, datetime]:
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
        result = (utc.replace(tzinfo=None).strftime(SQLITE_DATETIME_FORMAT), utc)
        if len(raw) == 10:  # only date-only keys repeat often enough to be worth caching
            if len(self.cache) > 100_000:
                self.cache.clear()
            self.cache[raw] = result
        return result


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
    _header, rows = read_csv(
        path, required=["card_number", "date", "amount"], optional=["discount_pct"]
    )
    sha = file_sha256(path)
    previous = await session.scalar(select(Import).where(Import.file_sha256 == sha))
    if previous is not None:
        raise ImportFileError(
            f"{path.name}: this file was already imported "
            f"(import #{previous.id} of {previous.created_at:%Y-%m-%d %H:%M} UTC, "
            f"{previous.rows} rows)"
        )

    cards: dict[str, tuple[int, int, str]] = {
        number: (card_id, pct, status)
        for number, card_id, pct, status in (
            await session.execute(select(Card.number, Card.id, Card.base_pct, Card.status))
        ).all()
    }
    imp = Import(kind="purchases", file_name=path.name[:255], file_sha256=sha, created_at=now)
    session.add(imp)
    await session.flush()
    conn = await session.connection()

    dates = _Dates(tz, now)
    batch: list[tuple[object, ...]] = []
    imported = skipped = new_cards = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    source = PurchaseSource.IMPORT.value
    now_text = now.astimezone(UTC).replace(tzinfo=None).strftime(SQLITE_DATETIME_FORMAT)

    for row in rows:
        values = row.values
        try:
            if row.extra:
                raise BadRow("more cells than header columns")
            raw_number = values["card_number"]
            if not raw_number:
                raise BadRow("card_number is missing")
            try:
                number = normalize_number(raw_number)
            except InvalidCardNumber as exc:
                raise BadRow(f"card_number {raw_number!r} is not a card number") from exc
            raw_date = values["date"]
            if not raw_date:
                raise BadRow("date is missing")
            created_text, created_at = dates.parse(raw_date)
            try:
                amount = parse_amount(values["amount"], exponent, max_amount_minor)
            except InvalidAmount as exc:
                raise BadRow(_AMOUNT_REASONS.get(exc.reason, "amount is invalid")) from exc
            raw_pct = values.get("discount_pct", "")
            pct: int | None = None
            if raw_pct:
                try:
                    pct = int(raw_pct.replace(",", ".").removesuffix(".0").removesuffix("%"))
                except ValueError as exc:
                    raise BadRow(f"discount_pct {raw_pct!r} is not a whole number") from exc
                if not 0 <= pct <= 99:
                    raise BadRow(f"discount_pct {pct} is outside 0-99")
        except BadRow as exc:
            skipped += 1
            on_error(row.line, str(exc))
            continue
        if skipped and not skip_invalid:
            continue  # keep validating to report every bad line; nothing will be written

        card = cards.get(number)
        if card is None:
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
            card = (int(result.lastrowid), unknown_pct, CardStatus.ISSUED.value)  # type: ignore[attr-defined]
            cards[number] = card
            new_cards += 1
        card_pct = card[1] if pct is None else pct
        discount = discount_for(amount, card_pct)
        batch.append(
            (card[0], amount, card_pct, discount, amount - discount, source, imp.id, created_text)
        )
        imported += 1
        if first_at is None or created_at < first_at:
            first_at = created_at
        if last_at is None or created_at > last_at:
            last_at = created_at
        if len(batch) >= BATCH_ROWS:
            await conn.exec_driver_sql(_INSERT_PURCHASE.text, batch)  # type: ignore[arg-type]
            batch = []

    if skipped and not skip_invalid:
        await session.rollback()
        raise ImportRowsInvalid(skipped)
    if batch:
        await conn.exec_driver_sql(_INSERT_PURCHASE.text, batch)  # type: ignore[arg-type]
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
        {"stock": CardStatus.IN_STOCK.value, "issued": CardStatus.ISSUED.value, "imp": imp.id},
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
    return ImportSummary(imp.id, imported, skipped, new_cards, first_at, last_at)
