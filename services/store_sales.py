"""The store's daily totals for every customer (`store-sales import`): `date,revenue,checks`.

What the till reports per store day — revenue in major units, the number of checks — for all
customers, cardholders or not; the KPIs set the card purchases against them
(`services.kpi`, `impact.store`). A file from a chain may carry a fourth column, `branch`:
the project has no branches yet, so it is read and the branches' figures of a day are added
up (the same day and branch twice is a bad line).

The file is read as the purchase import reads one (`services.csvfile`: UTF-8 with or without
a BOM, `,`/`;`/tab, one line per refusal with its number); dates are `2026-09-01` or
`01.09.2026` (`services.dates`), revenue any form the till accepts (`1234,50`, `1 234.50`,
`services.money`). All or nothing: every bad line is reported and nothing is written unless
the whole file is good. A day already stored is replaced by the file's figures — importing a
corrected file is the normal case — in the same unit of work that adds the new days.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.database import Database
from db.models import MAIN_BRANCH_ID, StoreDay
from db.sql import upsert
from services import audit
from services.csvfile import ambiguous, read_csv, shown
from services.dates import DateOutOfRange, parse_date
from services.errors import DomainError, ImportFileError, ImportRowsInvalid, InvalidAmount
from services.money import parse_amount

ErrorSink = Callable[[int, str], None]
MAX_REVENUE_MINOR = 10**14  # per line: far above any store's day, far below 64-bit sums
MAX_CHECKS = 10_000_000  # per line
_CHUNK = 500  # days per look-up of the days already stored
_GROUPING = re.compile(r"[\s\u00a0\u202f]")
_REVENUE_REASONS = {
    "empty": "revenue is missing",
    "format": "revenue is not a number",
    "negative": "revenue must not be negative",
    "precision": "revenue has too many decimal places",
    "too_large": "revenue is too large",
}


class _BadLine(DomainError):
    pass


@dataclass(frozen=True)
class StoreSalesSummary:
    days: int
    added: int
    replaced: int
    first: date
    last: date
    branches: int  # distinct non-empty names in a `branch` column (0: no such column)
    has_branch: bool


def _day(raw: str, today: date) -> date:
    if not raw:
        raise _BadLine("date is missing")
    try:
        day = parse_date(raw)
    except DateOutOfRange as exc:
        raise _BadLine(f"date {shown(raw)} is out of range") from exc
    except ValueError as exc:
        raise _BadLine(f"date {shown(raw)} is not YYYY-MM-DD or DD.MM.YYYY") from exc
    if day > today:
        raise _BadLine(f"date {day.isoformat()} is in the future")
    return day


def _revenue(raw: str, exponent: int) -> int:
    try:
        return parse_amount(raw, exponent, MAX_REVENUE_MINOR)
    except InvalidAmount as exc:
        if exc.reason == "zero":  # a day without sales is a real day
            return 0
        if exc.reason == "ambiguous":
            raise _BadLine(ambiguous("revenue", raw, exc)) from exc
        raise _BadLine(_REVENUE_REASONS.get(exc.reason, "revenue is invalid")) from exc


def _checks(raw: str) -> int:
    if not raw:
        raise _BadLine("checks is missing")
    digits = _GROUPING.sub("", raw)
    if not (digits.isascii() and digits.isdigit()):
        if digits.startswith(("-", "−")) and digits[1:].isdigit():
            raise _BadLine("checks must not be negative")
        raise _BadLine(f"checks {shown(raw)} is not a whole number")
    checks = int(digits)
    if checks > MAX_CHECKS:
        raise _BadLine("checks is too large")
    return checks


async def import_store_days(
    db: Database,
    path: Path,
    *,
    now: datetime,
    today: date,
    exponent: int,
    on_error: ErrorSink,
) -> StoreSalesSummary:
    """Import `date,revenue,checks[,branch]` (`today`: the store's date now — later days are
    refused). Bad lines go to `on_error(line, reason)`; any bad line → `ImportRowsInvalid`
    and nothing is written."""
    header, rows = read_csv(path, required=["date", "revenue", "checks"], optional=["branch"])
    with rows:
        i_date, i_revenue, i_checks = header.at("date"), header.at("revenue"), header.at("checks")
        i_branch = header.index("branch")
        totals: dict[date, tuple[int, int]] = {}
        seen: dict[tuple[date, str], int] = {}
        branches: set[str] = set()
        bad = 0
        for row in rows:
            cells = row.cells
            try:
                if row.extra:
                    raise _BadLine("more cells than header columns")
                day = _day(cells[i_date], today)
                revenue = _revenue(cells[i_revenue], exponent)
                checks = _checks(cells[i_checks])
                if revenue and not checks:
                    raise _BadLine("revenue without checks: checks is 0")
                if checks and not revenue:
                    raise _BadLine("checks without revenue: revenue is 0")
                branch = cells[i_branch] if i_branch is not None else ""
                if (day, branch) in seen:
                    also = f", branch {shown(branch)}," if branch else ""
                    raise _BadLine(f"date {day.isoformat()}{also} repeats line {seen[day, branch]}")
            except _BadLine as exc:
                bad += 1
                on_error(row.line, str(exc))
                continue
            seen[day, branch] = row.line
            if branch:
                branches.add(branch)
            had_revenue, had_checks = totals.get(day, (0, 0))
            totals[day] = (had_revenue + revenue, had_checks + checks)
    if bad:
        raise ImportRowsInvalid(bad)
    if not totals:
        raise ImportFileError(f"{path.name}: no days in the file")
    added, replaced = await db.write(_write_days, totals, path.name, now)
    return StoreSalesSummary(
        days=len(totals),
        added=added,
        replaced=replaced,
        first=min(totals),
        last=max(totals),
        branches=len(branches),
        has_branch=i_branch is not None,
    )


def _write_days(
    session: Session, totals: dict[date, tuple[int, int]], file_name: str, now: datetime
) -> tuple[int, int]:
    """Every day of `totals` stored with its figures, in one transaction: (added, replaced)."""
    days = sorted(totals)
    stored: set[date] = set()
    for i in range(0, len(days), _CHUNK):
        chunk = days[i : i + _CHUNK]
        stored.update(
            session.scalars(
                select(StoreDay.day).where(
                    StoreDay.day.in_(chunk), StoreDay.branch_id == MAIN_BRANCH_ID
                )
            )
        )
    dialect = session.get_bind().dialect.name
    for day in days:
        revenue, checks = totals[day]
        values = {
            "day": day,
            "branch_id": MAIN_BRANCH_ID,
            "revenue": revenue,
            "checks": checks,
            "imported_at": now,
        }
        session.execute(upsert(StoreDay.__table__, values, ("day", "branch_id"), dialect=dialect))
    added, replaced = len(days) - len(stored), len(stored)
    audit.record(
        session,
        "store_sales.imported",
        at=now,
        file=file_name,
        first=days[0].isoformat(),
        last=days[-1].isoformat(),
        added=added,
        replaced=replaced,
    )
    session.commit()
    return added, replaced
