"""`python -m bot purchases import` — load a purchase history (e.g. a POS export)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bot.commands._common import LineReporter
from config import load_settings
from db.migrate import upgrade
from services.clock import utc_now
from services.history_import import import_purchases


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    purchases = sub.add_parser("purchases", help="purchase history: import a CSV")
    actions = purchases.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=type(purchases)
    )
    imp = actions.add_parser(
        "import",
        help="import card_number,date,amount[,discount_pct]",
        description="Import purchases from a CSV with the header "
        "card_number,date,amount[,discount_pct]. date is YYYY-MM-DD, DD.MM.YYYY [HH:MM[:SS]] "
        "or an ISO date-time in store time; amount in major units (1234.50 or 1234,50). "
        "Unknown cards are created as issued printed cards. Atomic: any bad line → every bad "
        "line reported, nothing imported. The same file twice is refused; rows already "
        "imported by an earlier file are skipped. The tills keep working meanwhile.",
    )
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    imp.add_argument(
        "--pct", type=int, default=5, help="printed pct for cards not yet registered (default 5)"
    )
    imp.add_argument(
        "--skip-invalid",
        action="store_true",
        help="import the valid lines and report the invalid ones",
    )
    imp.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    settings = load_settings()
    reporter = LineReporter(args.file.name)
    asyncio.run(upgrade(settings.database.url))
    summary = import_purchases(
        settings.database.url,
        args.file,
        now=utc_now(),
        tz=settings.store.tz,
        exponent=settings.store.currency_exponent,
        max_amount_minor=settings.pricing.max_purchase,
        unknown_pct=args.pct,
        skip_invalid=args.skip_invalid,
        on_error=reporter,
    )
    span = present = ""
    if summary.first_at and summary.last_at:
        first = summary.first_at.astimezone(settings.store.tz).date()
        last = summary.last_at.astimezone(settings.store.tz).date()
        span = f", {first} to {last}"
    if summary.present:
        present = f"; {summary.present} already present"
    print(
        f"imported {summary.imported} purchases{span}{present}; {summary.new_cards} new cards; "
        f"{summary.skipped} invalid lines skipped"
    )
    return 0
