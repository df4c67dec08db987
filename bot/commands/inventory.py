"""`python -m bot cards add|import|list` — register the printed cards, count them.

    python -m bot cards add --from 100001 --to 110000 --pct 5 [--segment b2b] [--branch Tartu]
    python -m bot cards import cards.csv [--branch Tartu]
    python -m bot cards list

`--branch` tags the range (or the file's cards) with the branch that hands them out (their
home branch, shown by `cards list` in a chain); a card works at its tier in every branch
either way.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bot.commands._common import LineReporter, with_database
from config import Settings, load_settings
from db.database import Database
from db.models import MAIN_BRANCH_ID
from services import inventory
from services.branches import BranchInfo, BranchService
from services.clock import utc_now
from services.errors import InventoryError
from services.inventory import InventorySummary


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
    add.add_argument(
        "--branch",
        metavar="NAME",
        help="the branch that hands these cards out (a chain of shops; default: the first shop)",
    )
    add.set_defaults(func=_add)

    listing = actions.add_parser(
        "list",
        help="how many cards there are, by status, pct and segment",
        description="The card inventory: how many cards are in stock, issued and blocked, by "
        "printed pct and segment (and, in a chain of shops, by the branch that hands them out).",
    )
    listing.set_defaults(func=_list)

    imp = actions.add_parser(
        "import",
        help="import cards from a CSV: number,pct[,segment][,pin]",
        description="Import cards from a CSV with the header number,pct[,segment][,pin] "
        "(UTF-8, ',' or ';'). Any bad or duplicate line: every one is reported and nothing "
        "is written.",
    )
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    imp.add_argument(
        "--branch",
        metavar="NAME",
        help="the branch that hands these cards out (a chain of shops; default: the first shop)",
    )
    imp.set_defaults(func=_import)


async def _branch(db: Database, settings: Settings, name: str | None) -> BranchInfo | None:
    """The open branch `--branch` names (None without the option); refused otherwise."""
    if name is None:
        return None
    branch = await BranchService(db, settings, utc_now).named(name)
    if not branch.is_open:
        raise InventoryError(
            f"the branch {branch.name!r} is closed: it hands out no cards; nothing written"
        )
    return branch


def _home(branch: BranchInfo | None) -> int:
    return MAIN_BRANCH_ID if branch is None else branch.id


def _for(branch: BranchInfo | None) -> str:
    return "" if branch is None else f" for the branch {branch.name!r}"


def _add(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def work(db: Database) -> tuple[InventorySummary, BranchInfo | None]:
        branch = await _branch(db, settings, args.branch)
        summary = await inventory.add_range(
            db,
            args.start,
            args.end,
            args.pct,
            segment=args.segment,
            now=utc_now(),
            branch_id=_home(branch),
        )
        return summary, branch

    summary, branch = asyncio.run(with_database(settings, work))
    print(
        f"added {summary.added} cards {args.start}-{args.end} at {args.pct}% ({args.segment})"
        f"{_for(branch)}"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def work(db: Database) -> tuple[list[tuple[int, str, int, str, int]], list[BranchInfo]]:
        found = await inventory.inventory_by_branch(db)
        return found, await BranchService(db, settings, utc_now).listed()

    counts, branches = asyncio.run(with_database(settings, work))
    if not counts:
        print("no cards registered yet: add them with python -m bot cards add")
        return 0
    chain = len(branches) > 1
    names = {b.id: b.name for b in branches}
    header = (["branch"] if chain else []) + ["status", "pct", "segment", "cards"]
    rows = [header]
    merged: dict[tuple[str, ...], int] = {}
    for branch_id, status, pct, segment, n in counts:
        key = ((names.get(branch_id, f"#{branch_id}"),) if chain else ()) + (
            status,
            f"{pct}%",
            segment,
        )
        merged[key] = merged.get(key, 0) + n
    rows += [[*key, str(n)] for key, n in merged.items()]
    rows.append([""] * (len(header) - 2) + ["total", str(sum(merged.values()))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _import(args: argparse.Namespace) -> int:
    settings = load_settings()
    reporter = LineReporter(args.file.name)

    async def work(db: Database) -> tuple[InventorySummary, BranchInfo | None]:
        branch = await _branch(db, settings, args.branch)
        summary = await inventory.import_cards(
            db, args.file, now=utc_now(), on_error=reporter, branch_id=_home(branch)
        )
        return summary, branch

    summary, branch = asyncio.run(with_database(settings, work))
    tiers = ", ".join(f"{n} at {pct}%" for pct, n in sorted(summary.by_pct.items()))
    print(f"imported {summary.added} cards ({tiers}){_for(branch)}")
    return 0
