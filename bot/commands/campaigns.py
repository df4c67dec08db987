"""`python -m bot campaigns create|list|report` — the owner's campaigns (services.campaigns).

    python -m bot campaigns create --name Spring --audience all|rfm:<segment>|inactive:<days>|
                                  birthday:<month> | --branch NAME
                                  --bonus-pct 10 --days 14 --text "…"
                                  [--text-ru …] [--text-en …] [--text-et …]
                                  [--holdout-pct 10] [--dry-run]
    python -m bot campaigns list
    python -m bot campaigns report ID

`--branch NAME` (a chain of shops) takes the members whose usual shop is that branch: where
most of their non-voided purchases were made. `create` prints the preview (audience, hold-out
and offered sizes, the texts); with `--dry-run` nothing is written, without it the campaign is
sent: its offers are written and its messages queued for the running bot. Bad input is one
`error:` line and nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
from functools import cache

from bot.commands._common import with_database
from config import LANGUAGES, load_settings
from db.database import Database
from services import campaigns
from services.branches import BranchService
from services.campaigns import (
    DEFAULT_TEXT,
    CampaignDraft,
    CampaignResult,
    CampaignView,
    InvalidCampaign,
    parse_audience,
)
from services.clock import utc_now


def _audience(text: str) -> campaigns.Audience:
    try:
        return parse_audience(text)
    except InvalidCampaign as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "campaigns",
        help="campaigns: an offer and a message to an audience, with a hold-out group",
        description="Campaigns: +N %% for D days and a message to an audience; a random "
        "hold-out share gets nothing, so the results show what the campaign caused.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="preview and send a campaign")
    create.add_argument("--name", required=True, help="a name the owner recognises")
    audience = create.add_mutually_exclusive_group(required=True)
    audience.add_argument(
        "--audience",
        type=_audience,
        metavar="AUDIENCE",
        help="all | rfm:<segment> | inactive:<days> | birthday:<month>",
    )
    audience.add_argument(
        "--branch",
        metavar="NAME",
        help="a chain of shops: the members whose usual shop (most purchases) is this branch",
    )
    create.add_argument("--bonus-pct", type=int, required=True, help="the offer's bonus, 1-99")
    create.add_argument("--days", type=int, required=True, help="days the offer is valid")
    create.add_argument("--text", required=True, help="the message, for every language")
    for code in LANGUAGES:
        create.add_argument(f"--text-{code}", help=f"the message for {code} speakers")
    create.add_argument(
        "--holdout-pct",
        type=int,
        default=None,
        help="the hold-out share, 0-50 (default: CAMPAIGN_HOLDOUT_PCT)",
    )
    create.add_argument("--dry-run", action="store_true", help="preview only, write nothing")
    create.set_defaults(func=_create)
    listing = actions.add_parser("list", help="every campaign with its figures")
    listing.set_defaults(func=_list)
    report = actions.add_parser("report", help="one campaign's results")
    report.add_argument("id", type=int)
    report.set_defaults(func=_report)


def _create(args: argparse.Namespace) -> int:
    settings = load_settings()
    texts = {DEFAULT_TEXT: args.text}
    for code in LANGUAGES:
        if (text := getattr(args, f"text_{code}")) is not None:
            texts[code] = text
    holdout = settings.growth.campaign_holdout_pct if args.holdout_pct is None else args.holdout_pct

    async def work(
        db: Database,
    ) -> tuple[CampaignView, campaigns.SendResult | None, dict[int, str]]:
        now = utc_now()
        branches = BranchService(db, settings, utc_now)
        audience = args.audience
        if args.branch is not None:
            branch = await branches.named(args.branch)
            audience = campaigns.check_audience("branch", str(branch.id))
        draft = CampaignDraft(
            name=args.name,
            audience=audience,
            bonus_pct=args.bonus_pct,
            valid_days=args.days,
            holdout_pct=holdout,
            texts=texts,
        )
        names = await branches.names()
        view = await campaigns.create(db, draft, now, dry_run=args.dry_run)
        if args.dry_run:
            return view, None, names
        pace = settings.delivery.rate_global
        return view, await campaigns.send(db, view.id, now, pace=pace), names

    view, sent, names = asyncio.run(with_database(settings, work))
    print(_preview(view, names))
    if sent is None:
        print("dry run: nothing written")
    else:
        final = sent.campaign
        print(
            f"sent campaign {final.id}: {sent.queued} offers queued, {final.holdout_size} "
            "in the hold-out; the running bot will send them"
        )
    return 0


def _audience_text(audience: campaigns.Audience, names: dict[int, str]) -> str:
    """`rfm:loyal`; a branch audience by its branch's name."""
    if audience.kind == "branch":
        return f"branch:{names.get(int(audience.arg or 0), audience.arg)}"
    return str(audience)


def _preview(view: CampaignView, names: dict[int, str]) -> str:
    lines = [
        f"campaign {view.name!r}: audience {_audience_text(view.audience, names)} = "
        f"{view.audience_size} members, "
        f"hold-out {view.holdout_size} ({view.holdout_pct}%), offered {view.offered_size}; "
        f"offer +{view.bonus_pct}% for {view.valid_days} days"
    ]
    for key, text in view.texts.items():
        label = "all languages" if key == DEFAULT_TEXT else key
        lines.append(f"message ({label}): {text}")
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def work(db: Database) -> tuple[list[CampaignResult], dict[int, str]]:
        resumed = await campaigns.finish_interrupted(db, utc_now(), settings.delivery.rate_global)
        if resumed:
            print(f"finished an interrupted send: {resumed} offers queued")
        names = await BranchService(db, settings, utc_now).names()
        return await db.report(campaigns.results), names

    found, names = asyncio.run(with_database(settings, work))
    if not found:
        print("no campaigns")
    for result in found:
        print(_line(result, names))
    return 0


def _report(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def work(db: Database) -> tuple[CampaignResult, dict[int, str]]:
        names = await BranchService(db, settings, utc_now).names()
        return await db.report(campaigns.result, args.id), names

    result, names = asyncio.run(with_database(settings, work))
    print(_line(result, names))
    view = result.campaign
    if view.sent_at is None or view.window_until is None:
        return 0
    print(
        f"window: {view.sent_at:%Y-%m-%d %H:%M} to {view.window_until:%Y-%m-%d %H:%M} UTC; "
        f"audience {view.audience_size}, hold-out {view.holdout_size} ({view.holdout_pct}%)"
    )
    print(
        f"came back: offered {result.returned_offered} of {result.offered} "
        f"({_share(result.return_rate_offered)}), hold-out {result.returned_control} of "
        f"{result.control} ({_share(result.return_rate_control)})"
    )
    print(f"lift: {_lift(result)}")
    print(f"redeemed: {result.redeemed} of {result.offered} ({_share(result.redemption_rate)})")
    print(
        f"revenue in the window: offered {_money(result.revenue_offered)} "
        f"({_money(result.revenue_per_offered)} per member), hold-out "
        f"{_money(result.revenue_control)} ({_money(result.revenue_per_control)} per member)"
    )
    return 0


def _line(result: CampaignResult, names: dict[int, str]) -> str:
    view = result.campaign
    head = (
        f"{view.id} {view.name} [{view.status}] {_audience_text(view.audience, names)} "
        f"+{view.bonus_pct}% "
        f"{view.valid_days}d"
    )
    if view.sent_at is None:
        return head
    return (
        f"{head} sent {view.sent_at:%Y-%m-%d}: offered {result.offered}, hold-out "
        f"{result.control}; came back {_share(result.return_rate_offered)} vs "
        f"{_share(result.return_rate_control)}; lift {_lift(result)}; redeemed "
        f"{_share(result.redemption_rate)}; revenue {_money(result.revenue_offered)} vs "
        f"{_money(result.revenue_control)}"
    )


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _points(value: float) -> str:
    return f"{value * 100:+.1f} pp"


def _lift(result: CampaignResult) -> str:
    lift = result.lift
    if lift.lift is None or lift.low is None or lift.high is None:
        return "n/a (a group is empty)"
    return f"{_points(lift.lift)} (95% CI {_points(lift.low)} to {_points(lift.high)})"


@cache
def _exponent() -> int:
    return load_settings().store.currency_exponent


def _money(minor: float | None) -> str:
    """Major units with 2 decimals (the store's exponent is 2 for the usual currencies)."""
    if minor is None:
        return "n/a"
    exponent = _exponent()
    return f"{minor / 10**exponent:.{exponent}f}"
