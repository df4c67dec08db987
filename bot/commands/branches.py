"""`python -m bot branches add|list|edit|close` — the chain's shops (services.branches).

    python -m bot branches add --name Tartu --staff-chat -1001234567890 [--address "Rüütli 1"]
                               [--hours "9-21"] [--phone "+372 5555 0000"]
                               [--lat 58.3806 --lon 26.7251] [--manager 555 [666 …]]
    python -m bot branches list [--json]
    python -m bot branches edit Tartu [--name …] [--staff-chat …] [--address …] [--hours …]
                                [--phone …] [--lat … --lon … | --no-location]
                                [--manager TGID … | --no-managers]
    python -m bot branches close Tartu

The first shop is the one the settings describe (STORE_*, STAFF_CHAT_ID): its details change
in `.env`, only its managers here. A closed branch sells no more and keeps its history. Every
refusal is one `error:` line on stderr, exit code 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bot.commands._common import with_database
from config import load_settings
from services.branches import (
    BranchChanges,
    BranchDraft,
    BranchInfo,
    BranchService,
)
from services.clock import utc_now

T = TypeVar("T")

USAGE = 2  # the exit code of a usage problem; a refused change (BranchError) exits 1 (bot.cli)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "branches",
        help="a chain of shops: add, list, edit and close branches",
        description="Branches: each shop of a chain with its address, hours, phone, map "
        "location, staff group (its members are the branch's cashiers) and managers. The "
        "first shop is the one the settings (.env) describe. Bad input is refused with one "
        "line and nothing is written.",
    )
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=type(parser)
    )

    add = actions.add_parser(
        "add",
        help="add a branch with its staff group",
        description="Add a branch. Its staff group's members become its cashiers. Nothing is "
        "written when the name or the group is taken or a value is malformed.",
    )
    add.add_argument("--name", required=True, help="the branch's name customers see (unique)")
    add.add_argument(
        "--staff-chat",
        required=True,
        metavar="ID",
        help="the numeric id of the branch's staff group, e.g. -1001234567890",
    )
    _details(add)
    add.add_argument(
        "--manager",
        dest="managers",
        action="extend",
        nargs="+",
        default=[],
        metavar="TGID",
        help="Telegram user ids of the branch's managers (they see its figures)",
    )
    add.set_defaults(func=_add)

    listing = actions.add_parser("list", help="every branch, closed ones too")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=_list)

    edit = actions.add_parser(
        "edit",
        help="change a branch's details, staff group or managers",
        description="Change what is given, keep the rest. The first shop's details come from "
        "the settings (.env); only its managers change here.",
    )
    edit.add_argument("branch", metavar="NAME", help="the branch's current name")
    edit.add_argument("--name", help="a new name")
    edit.add_argument("--staff-chat", metavar="ID", help="a new staff group id")
    _details(edit)
    edit.add_argument("--no-location", action="store_true", help="remove the map location")
    managers = edit.add_mutually_exclusive_group()
    managers.add_argument(
        "--manager",
        dest="managers",
        action="extend",
        nargs="+",
        metavar="TGID",
        help="the branch's managers from now on (replaces the list)",
    )
    managers.add_argument("--no-managers", action="store_true", help="remove every manager")
    edit.set_defaults(func=_edit)

    close = actions.add_parser(
        "close",
        help="close a branch (it keeps its history)",
        description="Close a branch: it sells no more; its sales and figures stay. The last "
        "open branch cannot be closed.",
    )
    close.add_argument("branch", metavar="NAME")
    close.set_defaults(func=_close)


def _details(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="street address")
    parser.add_argument("--hours", help='opening hours, e.g. "Mon-Fri 9-21, Sat-Sun 10-18"')
    parser.add_argument("--phone", help="phone number")
    parser.add_argument("--lat", metavar="LATITUDE", help="map location: latitude (with --lon)")
    parser.add_argument("--lon", metavar="LONGITUDE", help="map location: longitude (with --lat)")


def _run(work: Callable[[BranchService], Awaitable[T]]) -> T:
    settings = load_settings()
    return asyncio.run(
        with_database(settings, lambda db: work(BranchService(db, settings, utc_now)))
    )


def _add(args: argparse.Namespace) -> int:
    draft = BranchDraft(
        name=args.name,
        staff_chat_id=args.staff_chat,
        address=args.address or "",
        hours=args.hours or "",
        phone=args.phone or "",
        latitude=args.lat,
        longitude=args.lon,
        managers=args.managers,
    )
    branch = _run(lambda branches: branches.add(draft))
    print(f"added branch {branch.name!r} (id {branch.id}, staff group {branch.staff_chat_id})")
    return 0


def _edit(args: argparse.Namespace) -> int:
    changes = BranchChanges(
        name=args.name,
        staff_chat_id=args.staff_chat,
        address=args.address,
        hours=args.hours,
        phone=args.phone,
        latitude=args.lat,
        longitude=args.lon,
        clear_location=args.no_location,
        managers=() if args.no_managers else args.managers,
    )
    if changes == BranchChanges():
        print("error: nothing to change: give at least one option (see --help)", file=sys.stderr)
        return USAGE
    branch = _run(lambda branches: branches.edit(args.branch, changes))
    print(f"changed branch {branch.name!r}: {_summary(branch)}")
    return 0


def _close(args: argparse.Namespace) -> int:
    branch = _run(lambda branches: branches.close(args.branch))
    print(f"closed branch {branch.name!r}: it sells no more; its history stays")
    return 0


def _list(args: argparse.Namespace) -> int:
    found = _run(lambda branches: branches.listed())
    if args.json:
        print(json.dumps([_as_json(b) for b in found], ensure_ascii=False, indent=2))
        return 0
    header = (
        "id",
        "name",
        "staff group",
        "address",
        "hours",
        "phone",
        "location",
        "managers",
        "status",
    )
    rows = [header] + [_row(b) for b in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _location(branch: BranchInfo) -> str:
    if not branch.located:
        return "-"
    return f"{branch.latitude:.6g},{branch.longitude:.6g}"


def _row(branch: BranchInfo) -> tuple[str, ...]:
    return (
        str(branch.id),
        branch.name,
        "-" if branch.staff_chat_id is None else str(branch.staff_chat_id),
        branch.address or "-",
        branch.hours or "-",
        branch.phone or "-",
        _location(branch),
        ",".join(str(m) for m in branch.managers) or "-",
        "open" if branch.is_open else f"closed {branch.closed_at:%Y-%m-%d}",
    )


def _summary(branch: BranchInfo) -> str:
    parts = [
        f"staff group {branch.staff_chat_id}",
        f"address {branch.address or '-'}",
        f"hours {branch.hours or '-'}",
        f"phone {branch.phone or '-'}",
        f"location {_location(branch)}",
        f"managers {','.join(str(m) for m in branch.managers) or '-'}",
    ]
    return ", ".join(parts)


def _as_json(branch: BranchInfo) -> dict[str, Any]:
    return {
        "id": branch.id,
        "name": branch.name,
        "staff_chat_id": branch.staff_chat_id,
        "address": branch.address,
        "hours": branch.hours,
        "phone": branch.phone,
        "latitude": branch.latitude,
        "longitude": branch.longitude,
        "managers": list(branch.managers),
        "open": branch.is_open,
        "closed_at": branch.closed_at.isoformat() if branch.closed_at else None,
    }
