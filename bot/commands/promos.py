"""`python -m bot promos add|list|end` — happy hours (services.promotions).

    python -m bot promos add --name Morning --bonus-pct 3 --days mon,tue --from 10:00 --to 12:00
                             [--until 2026-12-31] [--branch Tartu]
    python -m bot promos list [--all]
    python -m bot promos end Morning

Days are English three-letter names, comma-separated, with ranges (`mon-fri`) or `all`; times
and the last day are the store's (TIMEZONE). In a chain of shops a promotion runs in every
branch, or with `--branch NAME` in that open branch only; `list` then names each one's branch.
Bad input (an unknown or closed branch too) is one `error:` line and nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio

from bot.commands._common import iso_date, with_database
from config import load_settings
from services.branches import BranchService
from services.clock import utc_now
from services.promotions import (
    InvalidPromotion,
    PromotionService,
    PromotionView,
    format_time,
    parse_days,
    parse_time,
)


def _days(text: str) -> int:
    try:
        return parse_days(text)
    except InvalidPromotion as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _time(text: str) -> int:
    try:
        return parse_time(text)
    except InvalidPromotion as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "promos",
        help="happy hours: +N %% at the till on some days and hours",
        description="Happy hours: the till adds a promotion's bonus by itself inside its window "
        "(store time), as its own line of the quote; the KPIs count its purchases.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="start a promotion")
    add.add_argument("--name", required=True, help="a name the owner recognises (unique)")
    add.add_argument("--bonus-pct", type=int, required=True, help="the bonus, 1-99")
    add.add_argument("--days", type=_days, required=True, help="mon,tue / mon-fri / all")
    add.add_argument("--from", dest="starts", type=_time, required=True, metavar="HH:MM")
    add.add_argument("--to", dest="ends", type=_time, required=True, metavar="HH:MM")
    add.add_argument("--until", type=iso_date, metavar="YYYY-MM-DD", help="the last day (store)")
    add.add_argument(
        "--branch",
        metavar="NAME",
        help="a chain of shops: run it in this open branch only (default: every branch)",
    )
    add.set_defaults(func=_add)
    listing = actions.add_parser("list", help="the running promotions")
    listing.add_argument("--all", action="store_true", help="the ended ones too")
    listing.set_defaults(func=_list)
    end = actions.add_parser("end", help="end a running promotion now")
    end.add_argument("name")
    end.set_defaults(func=_end)


def _service_run(work):  # type: ignore[no-untyped-def]
    """`work(promos, branches)` on a migrated database; its result and the branches' names
    (empty for a one-shop install, whose owner never reads the word "branch")."""
    settings = load_settings()

    async def run(db):  # type: ignore[no-untyped-def]
        branches = BranchService(db, settings, utc_now)
        result = await work(PromotionService(db, settings, utc_now), branches)
        return result, (await branches.names() if await branches.is_chain() else {})

    return asyncio.run(with_database(settings, run))


def _add(args: argparse.Namespace) -> int:
    async def add(promos: PromotionService, branches: BranchService) -> PromotionView:
        branch_id = None
        if args.branch is not None:
            branch_id = (await branches.named(args.branch)).id  # closed: the service refuses
        return await promos.add(
            args.name,
            bonus_pct=args.bonus_pct,
            weekdays=args.days,
            starts=args.starts,
            ends=args.ends,
            until=args.until,
            branch_id=branch_id,
        )

    view, names = _service_run(add)
    print(f"added {_line(view, names)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    views, names = _service_run(lambda promos, _branches: promos.listed(ended=args.all))
    if not views:
        print("no promotions" if args.all else "no running promotions")
    for view in views:
        print(_line(view, names))
    return 0


def _end(args: argparse.Namespace) -> int:
    view, names = _service_run(lambda promos, _branches: promos.end(args.name))
    print(f"ended {_line(view, names)}")
    return 0


def _line(view: PromotionView, names: dict[int, str]) -> str:
    """`Lunch: +3% mon,tue 12:00-14:00 until 2026-12-31`; in a chain (`names` not empty)
    followed by ` in Tartu` or ` in every branch`."""
    until = f" until {view.until.isoformat()}" if view.until else ""
    where = ""
    if names:
        where = (
            " in every branch"
            if view.branch_id is None
            else f" in {names.get(view.branch_id, f'branch #{view.branch_id}')}"
        )
    ended = f" (ended {view.ended_at:%Y-%m-%d %H:%M} UTC)" if view.ended_at else ""
    return (
        f"{view.name}: +{view.bonus_pct}% {','.join(view.days)} "
        f"{format_time(view.starts)}-{format_time(view.ends)}{until}{where}{ended}"
    )
