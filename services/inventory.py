"""Card inventory: register printed ranges and CSV lists of cards.

Both operations are all-or-nothing: a single overlap or bad line and nothing is written. Each
is one unit of work (`db.database`): the check for cards that exist already and the inserts
run in one transaction, and a card registered by someone else at that very moment (another
`cards add` overlapping this one) refuses the whole operation as an overlap, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.database import Database
from db.models import MAIN_BRANCH_ID, Card, CardKind, CardStatus, Segment
from services import audit
from services.cards import MAX_DIGITS, normalize_number, numbers_between
from services.csvfile import read_csv
from services.errors import ImportRowsInvalid, InvalidCardNumber, InventoryError

MAX_RANGE = 1_000_000
_BATCH = 5_000

ErrorSink = Callable[[int, str], None]


@dataclass(frozen=True)
class InventorySummary:
    added: int
    by_pct: dict[int, int]


def parse_segment(text: str) -> Segment:
    value = (text or "b2c").strip().lower()
    try:
        return Segment(value)
    except ValueError as exc:
        raise InventoryError(f"segment must be b2c or b2b, not {text!r}") from exc


def check_pct(pct: int) -> int:
    if not 1 <= pct <= 99:
        raise InventoryError(f"pct must be between 1 and 99, not {pct}")
    return pct


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _existing(session: Session, numbers: list[str]) -> list[str]:
    found: list[str] = []
    for chunk in _chunks(numbers, 500):
        found += session.scalars(select(Card.number).where(Card.number.in_(chunk))).all()
    return found


def _insert_cards(session: Session, rows: list[dict[str, object]]) -> None:
    """Insert in batches; a number that exists by now (registered meanwhile) refuses all."""
    try:
        for i in range(0, len(rows), _BATCH):
            session.execute(insert(Card), rows[i : i + _BATCH])
    except IntegrityError as exc:
        session.rollback()
        raise InventoryError(
            "some of these cards were registered meanwhile by someone else; nothing written"
        ) from exc


async def add_range(
    db: Database,
    start: int,
    end: int,
    pct: int,
    *,
    segment: str = "b2c",
    now: datetime,
    actor_id: int | None = None,
    branch_id: int = MAIN_BRANCH_ID,
) -> InventorySummary:
    """Register printed cards `start`…`end` (inclusive) at `pct` %, all in stock, made for
    the branch `branch_id` (their home branch; the caller checked it is open)."""
    check_pct(pct)
    seg = parse_segment(segment)
    if start <= 0 or end <= 0:
        raise InventoryError("card numbers must be positive")
    if end < start:
        raise InventoryError(f"--to ({end}) is before --from ({start})")
    if end - start + 1 > MAX_RANGE:
        raise InventoryError(f"a range may hold at most {MAX_RANGE:,} cards")
    if len(str(end)) > MAX_DIGITS:
        raise InventoryError(f"card numbers have at most {MAX_DIGITS} digits")
    return await db.write(_add_range, start, end, pct, seg, now, actor_id, branch_id)


def _add_range(
    session: Session,
    start: int,
    end: int,
    pct: int,
    seg: Segment,
    now: datetime,
    actor_id: int | None,
    branch_id: int = MAIN_BRANCH_ID,
) -> InventorySummary:
    overlap = session.execute(
        select(func.count(), func.min(Card.number), func.max(Card.number)).where(
            numbers_between(start, end)
        )
    )
    count, first, last = overlap.one()
    if count:
        raise InventoryError(
            f"{count} card(s) in {start}-{end} already exist ({first}…{last}); nothing written"
        )
    rows = [
        {
            "number": str(n),
            "base_pct": pct,
            "segment": seg.value,
            "kind": CardKind.PRINTED.value,
            "status": CardStatus.IN_STOCK.value,
            "created_at": now,
            "bind_failures": 0,
            "branch_id": branch_id,
        }
        for n in range(start, end + 1)
    ]
    _insert_cards(session, rows)
    audit.record(
        session,
        "cards.added",
        at=now,
        actor_id=actor_id,
        start=start,
        end=end,
        pct=pct,
        segment=seg.value,
        **({} if branch_id == MAIN_BRANCH_ID else {"branch_id": branch_id}),
    )
    session.commit()
    return InventorySummary(added=len(rows), by_pct={pct: len(rows)})


async def import_cards(
    db: Database,
    path: Path,
    *,
    now: datetime,
    on_error: ErrorSink,
    branch_id: int = MAIN_BRANCH_ID,
) -> InventorySummary:
    """Import `number,pct[,segment][,pin]` as cards of the branch `branch_id` (their home
    branch; the caller checked it is open); any bad or duplicate line → nothing written."""
    header, rows = read_csv(path, required=["number", "pct"], optional=["segment", "pin"])
    try:
        i_number, i_pct = header.at("number"), header.at("pct")
        i_segment, i_pin = header.index("segment"), header.index("pin")
        pending: list[dict[str, object]] = []
        seen: dict[str, int] = {}
        bad = 0
        for row in rows:
            try:
                if row.extra:
                    raise InventoryError("more cells than header columns")
                try:
                    number = normalize_number(row.cells[i_number])
                except InvalidCardNumber as exc:
                    raise InventoryError(f"card number must be digits, not {exc.text!r}") from exc
                try:
                    pct = check_pct(int(row.cells[i_pct]))
                except ValueError as exc:
                    raise InventoryError(
                        f"pct must be a whole number, not {row.cells[i_pct]!r}"
                    ) from exc
                seg = parse_segment(row.cells[i_segment] if i_segment is not None else "")
                pin = (row.cells[i_pin] if i_pin is not None else "") or None
                if pin is not None and not (pin.isascii() and pin.isalnum() and len(pin) <= 16):
                    raise InventoryError("pin must be up to 16 letters or digits")
                if number in seen:
                    raise InventoryError(f"card {number} repeats line {seen[number]}")
            except InventoryError as exc:
                bad += 1
                on_error(row.line, str(exc))
                continue
            seen[number] = row.line
            pending.append(
                {
                    "number": number,
                    "base_pct": pct,
                    "segment": seg.value,
                    "kind": CardKind.PRINTED.value,
                    "status": CardStatus.IN_STOCK.value,
                    "pin": pin,
                    "created_at": now,
                    "bind_failures": 0,
                    "branch_id": branch_id,
                }
            )
    finally:
        rows.close()  # also when refused before reading a row
    if not bad and not pending:
        raise InventoryError(f"{path}: no cards in the file")
    # Written only when nothing is wrong; the cards that exist already are reported either way.
    existing = await db.write(_import_rows, pending, path.name, now, not bad, branch_id)
    for number in existing:
        bad += 1
        on_error(seen[number], f"card {number} already exists")
    if bad:
        raise ImportRowsInvalid(bad)
    by_pct: dict[int, int] = {}
    for item in pending:
        by_pct[int(item["base_pct"])] = by_pct.get(int(item["base_pct"]), 0) + 1  # type: ignore[call-overload]
    return InventorySummary(added=len(pending), by_pct=by_pct)


def _import_rows(
    session: Session,
    pending: list[dict[str, object]],
    file_name: str,
    now: datetime,
    write: bool,
    branch_id: int,
) -> list[str]:
    """The numbers of `pending` that exist already; when none do (and `write`), the cards go
    in."""
    existing = _existing(session, [str(item["number"]) for item in pending])
    if existing or not write:
        return existing
    _insert_cards(session, pending)
    audit.record(
        session,
        "cards.imported",
        at=now,
        file=file_name,
        added=len(pending),
        **({} if branch_id == MAIN_BRANCH_ID else {"branch_id": branch_id}),
    )
    session.commit()
    return []


async def inventory_counts(db: Database) -> list[tuple[str, int, str, int]]:
    """(status, pct, segment, count) for every combination present."""
    return await db.read(_inventory_counts)


def _inventory_counts(session: Session) -> list[tuple[str, int, str, int]]:
    result = session.execute(
        select(Card.status, Card.base_pct, Card.segment, func.count())
        .group_by(Card.status, Card.base_pct, Card.segment)
        .order_by(Card.status, Card.base_pct, Card.segment)
    )
    return [(s, p, seg, n) for s, p, seg, n in result.all()]


async def inventory_by_branch(db: Database) -> list[tuple[int, str, int, str, int]]:
    """(home branch id, status, pct, segment, count) for every combination present."""
    return await db.read(_inventory_by_branch)


def _inventory_by_branch(session: Session) -> list[tuple[int, str, int, str, int]]:
    result = session.execute(
        select(Card.branch_id, Card.status, Card.base_pct, Card.segment, func.count())
        .group_by(Card.branch_id, Card.status, Card.base_pct, Card.segment)
        .order_by(Card.branch_id, Card.status, Card.base_pct, Card.segment)
    )
    return [(b, s, p, seg, n) for b, s, p, seg, n in result.all()]
