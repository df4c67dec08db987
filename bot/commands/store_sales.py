"""`python -m bot store-sales import` — the till's daily totals for every customer, per
branch when the file has a `branch` column (`services.store_sales`)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bot.commands._common import LineReporter, with_database
from config import load_settings
from services.clock import utc_now
from services.store_sales import import_store_days


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sales = sub.add_parser(
        "store-sales", help="the store's daily totals (all customers): import a CSV"
    )
    actions = sales.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=type(sales)
    )
    imp = actions.add_parser(
        "import",
        help="import date,revenue,checks[,branch]",
        description="Import the till's daily totals for all customers from a CSV with the "
        "header date,revenue,checks[,branch]. date is YYYY-MM-DD or DD.MM.YYYY (a store "
        "day); revenue in major units (1234.50 or 1234,50); checks a whole number. branch, "
        "optional, names the branch of the chain the line is about (python -m bot branches "
        "list; an empty cell or no such column: the first shop). A day already imported for "
        "that branch is replaced. Atomic: any bad line → every bad line reported, nothing "
        "imported.",
    )
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    imp.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    settings = load_settings()
    reporter = LineReporter(args.file.name)
    now = utc_now()
    summary = asyncio.run(
        with_database(
            settings,
            lambda db: import_store_days(
                db,
                args.file,
                now=now,
                today=now.astimezone(settings.store.tz).date(),
                exponent=settings.store.currency_exponent,
                on_error=reporter,
                settings=settings,
            ),
        )
    )
    # The branches are named only when the file has a branch column (a chain's file).
    of = f" of {summary.branches} branch(es)" if summary.has_branch else ""
    print(
        f"imported {summary.days} store days{of}, {summary.first} to {summary.last}: "
        f"{summary.added} added, {summary.replaced} replaced"
    )
    return 0
