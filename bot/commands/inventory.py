"""`python -m bot cards add|import` — register the printed cards."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bot.commands._common import LineReporter, with_database
from config import load_settings
from services import inventory
from services.clock import utc_now


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cards = sub.add_parser("cards", help="card inventory: register printed ranges or a CSV list")
    actions = cards.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=type(cards)
    )

    add = actions.add_parser(
        "add",
        help="register a printed range, e.g. --from 100001 --to 110000 --pct 5",
        description="Register printed cards FROM..TO (inclusive) at PCT %%. Overlapping an "
        "existing card is refused and nothing is written.",
    )
    add.add_argument(
        "--from", dest="start", type=int, required=True, metavar="N", help="first card number"
    )
    add.add_argument(
        "--to",
        dest="end",
        type=int,
        required=True,
        metavar="M",
        help="last card number (inclusive)",
    )
    add.add_argument("--pct", type=int, required=True, help="printed discount, 1-99")
    add.add_argument(
        "--segment",
        choices=["b2c", "b2b"],
        default="b2c",
        help="retail (b2c, default) or business (b2b) clients",
    )
    add.set_defaults(func=_add)

    imp = actions.add_parser(
        "import",
        help="import cards from a CSV: number,pct[,segment][,pin]",
        description="Import cards from a CSV with the header number,pct[,segment][,pin] "
        "(UTF-8, ',' or ';'). Any bad or duplicate line: every one is reported and nothing "
        "is written.",
    )
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    imp.set_defaults(func=_import)


def _add(args: argparse.Namespace) -> int:
    settings = load_settings()
    summary = asyncio.run(
        with_database(
            settings,
            lambda db: inventory.add_range(
                db, args.start, args.end, args.pct, segment=args.segment, now=utc_now()
            ),
        )
    )
    print(f"added {summary.added} cards {args.start}-{args.end} at {args.pct}% ({args.segment})")
    return 0


def _import(args: argparse.Namespace) -> int:
    settings = load_settings()
    reporter = LineReporter(args.file.name)
    summary = asyncio.run(
        with_database(
            settings,
            lambda db: inventory.import_cards(db, args.file, now=utc_now(), on_error=reporter),
        )
    )
    tiers = ", ".join(f"{n} at {pct}%" for pct, n in sorted(summary.by_pct.items()))
    print(f"imported {summary.added} cards ({tiers})")
    return 0
