"""The store's daily totals for every customer (`store-sales import`): `date,revenue,checks`.

What the till reports per store day — revenue in major units, the number of checks — for all
customers, cardholders or not; the KPIs set the card purchases against them
(`services.kpi`, `impact.store`). A chain's file may carry a fourth column, `branch`: the
name of the branch the line is about (`services.branches`, compared case-insensitively,
closed branches included: their history can be corrected). A file without the column, or a
line with an empty cell, is about the first shop (branch 1). A name that is no branch of the
chain is a bad line, and so is the same day and branch twice. Each (day, branch) is one row
of `store_days`; the chain's KPIs add up every branch's days, a branch's KPIs read its own.

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
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.database import Database
from db.models import MAIN_BRANCH_ID, StoreDay
from db.sql import upsert
from services import audit, branches
from services.csvfile import ambiguous, read_csv, shown
from services.dates import DateOutOfRange, parse_date
from services.errors import DomainError, ImportFileError, ImportRowsInvalid, InvalidAmount
from services.money import parse_amount

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

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
    days: int  # (day, branch) rows written
    added: int
    replaced: int
    first: date
    last: date
    branches: int  # distinct branches the file's lines are about
    has_branch: bool  # the file has a `branch` column


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
    settings: Settings,
) -> StoreSalesSummary:
    """Import `date,revenue,checks[,branch]` (`today`: the store's date now — later days are
    refused). Bad lines go to `on_error(line, reason)`; any bad line → `ImportRowsInvalid`
    and nothing is written."""
    header, rows = read_csv(path, required=["date", "revenue", "checks"], optional=["branch"])
    with rows:
        i_date, i_revenue, i_checks = header.at("date"), header.at("revenue"), header.at("checks")
        i_branch = header.index("branch")
        chain: dict[str, branches.BranchInfo] = {}
        if i_branch is not None:
            chain = {branches.name_key(b.name): b for b in await db.read(branches.load, settings)}
        totals: dict[tuple[date, int], tuple[int, int]] = {}
        seen: dict[tuple[date, int], int] = {}
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
                name = cells[i_branch].strip() if i_branch is not None else ""
                branch_id = MAIN_BRANCH_ID
                if name:
                    found = chain.get(branches.name_key(name))
                    if found is None:
                        raise _BadLine(
                            f"branch {shown(name)} is not a branch of the chain "
                            "(python -m bot branches list shows them)"
                        )
                    branch_id = found.id
                if (day, branch_id) in seen:
                    also = f", branch {shown(name)}," if name else ""
                    raise _BadLine(
                        f"date {day.isoformat()}{also} repeats line {seen[day, branch_id]}"
                    )
            except _BadLine as exc:
                bad += 1
                on_error(row.line, str(exc))
                continue
            seen[day, branch_id] = row.line
            totals[day, branch_id] = (revenue, checks)
    if bad:
        raise ImportRowsInvalid(bad)
    if not totals:
        raise ImportFileError(f"{path.name}: no days in the file")
    added, replaced = await db.write(_write_days, totals, path.name, now)
    days = [day for day, _branch in totals]
    return StoreSalesSummary(
        days=len(totals),
        added=added,
        replaced=replaced,
        first=min(days),
        last=max(days),
        branches=len({branch for _day, branch in totals}),
        has_branch=i_branch is not None,
    )


def _write_days(
    session: Session,
    totals: dict[tuple[date, int], tuple[int, int]],
    file_name: str,
    now: datetime,
) -> tuple[int, int]:
    """Every (day, branch) of `totals` stored with its figures, in one transaction: (added,
    replaced)."""
    keys = sorted(totals)
    stored: set[tuple[date, int]] = set()
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        found = session.execute(
            select(StoreDay.day, StoreDay.branch_id).where(
                StoreDay.day.in_(sorted({day for day, _branch in chunk})),
                StoreDay.branch_id.in_(sorted({branch for _day, branch in chunk})),
            )
        )
        stored.update((day, int(branch)) for day, branch in found.all())
    stored &= set(keys)
    dialect = session.get_bind().dialect.name
    for day, branch_id in keys:
        revenue, checks = totals[day, branch_id]
        values = {
            "day": day,
            "branch_id": branch_id,
            "revenue": revenue,
            "checks": checks,
            "imported_at": now,
        }
        session.execute(upsert(StoreDay.__table__, values, ("day", "branch_id"), dialect=dialect))
    added, replaced = len(keys) - len(stored), len(stored)
    audit.record(
        session,
        "store_sales.imported",
        at=now,
        file=file_name,
        first=min(day for day, _branch in keys).isoformat(),
        last=max(day for day, _branch in keys).isoformat(),
        added=added,
        replaced=replaced,
    )
    session.commit()
    return added, replaced
