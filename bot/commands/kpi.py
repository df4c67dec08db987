"""`python -m bot kpi --from YYYY-MM-DD --to YYYY-MM-DD [--branch NAME] [--json]` — the KPI
set of a period, of the whole chain or of one branch.

The JSON always has `by_branch`: one row per branch that is open or sold in the period (a
one-shop install has one row), money in major units like the rest. With `--branch` the
figures are that branch's (`services.kpi`, "One branch") and the JSON says `"branch": NAME`.
The text output adds the branch table only when there is more than one branch. An unknown
branch name is one `error:` line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from bot.commands._common import iso_date
from config import Settings, load_settings
from db.database import Database
from db.engine import create_engine
from db.migrate import upgrade
from services import branches, kpi
from services.branches import BranchError, BranchInfo


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "kpi",
        help="the program's KPIs for a period (store-time dates, inclusive)",
        description="Print every KPI of the period FROM…TO (store-time dates, inclusive); "
        "with --json one object: money in major units, a ratio that divides by zero is null. "
        "With --branch NAME, the figures of that branch of the chain.",
    )
    parser.add_argument("--from", dest="first", type=iso_date, required=True, metavar="YYYY-MM-DD")
    parser.add_argument("--to", dest="last", type=iso_date, required=True, metavar="YYYY-MM-DD")
    parser.add_argument(
        "--branch",
        metavar="NAME",
        help="one branch's figures (python -m bot branches list shows the names)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run, parser=parser)


@dataclass
class Report:
    kpis: kpi.Kpis
    rows: list[kpi.BranchFigures]
    branches: list[BranchInfo]
    branch: BranchInfo | None


def _run(args: argparse.Namespace) -> int:
    if args.first > args.last:
        args.parser.error(f"--from ({args.first}) is after --to ({args.last})")
    settings = load_settings()
    try:
        report = asyncio.run(_report(settings, args.first, args.last, args.branch))
    except BranchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    exponent = settings.store.currency_exponent
    name = None if report.branch is None else report.branch.name
    data = kpi.to_json(report.kpis, exponent, report.rows, name)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    store = settings.store
    which = "" if name is None else f", branch {name}"
    print(f"KPIs {args.first} to {args.last}{which} ({store.timezone}, {store.currency})")
    for key, value in _flatten(data):
        print(f"  {key:<42} {_human(value)}")
    if len(report.branches) > 1:
        print()
        for line in _table(data["by_branch"]):
            print(line)
    return 0


async def _report(settings: Settings, first: date, last: date, branch: str | None) -> Report:
    """The KPI set and the branch table as one report unit, on a migrated database (SQLite or
    PostgreSQL)."""
    await upgrade(settings.database.url)
    engine = create_engine(settings.database.url)
    try:
        return await Database.of(engine).report(_figures, settings, first, last, branch)
    finally:
        await engine.dispose()


def _figures(
    session: Session, settings: Settings, first: date, last: date, name: str | None
) -> Report:
    known = branches.load(session, settings)
    chosen = None if name is None else branches.find(known, name)
    branch_id = None if chosen is None else chosen.id
    kpis = kpi.compute(session, settings, first, last, branch_id=branch_id)
    return Report(kpis, kpi.by_branch(session, settings, first, last), known, chosen)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if key in ("period", "by_branch", "branch"):
            continue
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


_COLUMNS = (
    ("purchases", "purchases"),
    ("revenue", "revenue"),
    ("active_cards", "active cards"),
    ("average_check", "average check"),
    ("average_discount_pct", "discount %"),
    ("nps", "NPS"),
    ("nps_answers", "answers"),
    ("new_buyers", "new buyers"),
)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    """The branch table, biggest revenue first, in fixed-width columns."""
    width = max([len("branch"), *(len(row["name"]) for row in rows)])
    cells = [[_human(row[key]) for key, _label in _COLUMNS] for row in rows]
    sizes = [
        max(len(label), *(len(line[i]) for line in cells)) if cells else len(label)
        for i, (_key, label) in enumerate(_COLUMNS)
    ]
    head = "  ".join(label.rjust(size) for (_key, label), size in zip(_COLUMNS, sizes, strict=True))
    lines = ["Branches by revenue:", f"  {'branch':<{width}}  {head}"]
    for row, line in zip(rows, cells, strict=True):
        body = "  ".join(cell.rjust(size) for cell, size in zip(line, sizes, strict=True))
        lines.append(f"  {row['name']:<{width}}  {body}")
    return lines


def _human(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
