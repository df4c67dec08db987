"""`python -m bot kpi --from YYYY-MM-DD --to YYYY-MM-DD [--json]` — the KPI set of a period."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import date
from typing import Any

from bot.commands._common import iso_date
from config import Settings, load_settings
from db.database import Database
from db.engine import create_engine
from db.migrate import upgrade
from services import kpi
from services.reports import ReportService


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "kpi",
        help="the program's KPIs for a period (store-time dates, inclusive)",
        description="Print every KPI of the period FROM…TO (store-time dates, inclusive); "
        "with --json one object: money in major units, a ratio that divides by zero is null.",
    )
    parser.add_argument("--from", dest="first", type=iso_date, required=True, metavar="YYYY-MM-DD")
    parser.add_argument("--to", dest="last", type=iso_date, required=True, metavar="YYYY-MM-DD")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run, parser=parser)


def _run(args: argparse.Namespace) -> int:
    if args.first > args.last:
        args.parser.error(f"--from ({args.first}) is after --to ({args.last})")
    settings = load_settings()
    kpis = asyncio.run(_kpis(settings, args.first, args.last))
    data = kpi.to_json(kpis, settings.store.currency_exponent)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        store = settings.store
        print(f"KPIs {args.first} to {args.last} ({store.timezone}, {store.currency})")
        for key, value in _flatten(data):
            print(f"  {key:<42} {_human(value)}")
    return 0


async def _kpis(settings: Settings, first: date, last: date) -> kpi.Kpis:
    """The KPI set as a report unit, on a migrated database (SQLite or PostgreSQL)."""
    await upgrade(settings.database.url)
    engine = create_engine(settings.database.url)
    try:
        return await ReportService(Database.of(engine), settings).kpis(first, last)
    finally:
        await engine.dispose()


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if key == "period":
            continue
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _human(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
