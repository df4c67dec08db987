"""`python -m bot jobs run NAME [--at ISO]` — run one pass of a scheduled job now."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
from datetime import datetime

from bot.commands._common import database
from config import Settings, SettingsError, load_settings
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from services.clock import utc_now


class _JobNames:
    """`services.jobs.JOB_NAMES` for argparse's `choices`, imported only when a name is checked
    or the help is shown: `services.jobs` imports aiogram (through the outbox), seconds that
    every other CLI command would pay at start-up."""

    @staticmethod
    def _names() -> tuple[str, ...]:
        from services.jobs import JOB_NAMES

        return JOB_NAMES

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    jobs = sub.add_parser("jobs", help="scheduled jobs: run one pass now")
    actions = jobs.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=type(jobs)
    )
    run = actions.add_parser(
        "run",
        help="run one pass of a job now (or as of --at)",
        description="Run one pass of a scheduled job: a sweep enqueues or does the work; "
        "deliveries sends what is due (needs BOT_TOKEN). --at runs the pass as of that moment "
        "(ISO date-time, store time unless it has an offset).",
    )
    run.add_argument("name", choices=_JobNames(), metavar="NAME", help="%(choices)s")
    run.add_argument("--at", type=str, default=None, metavar="ISO-DATETIME")
    run.set_defaults(func=_run)


def parse_at(text: str | None, settings: Settings) -> datetime:
    if text is None:
        return utc_now()
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise SettingsError(
            f"--at: expected an ISO date-time such as 2026-11-23T09:00, got {text!r}"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=settings.store.tz)
    return moment


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    now = parse_at(args.at, settings)
    return asyncio.run(_run_async(args.name, settings, now, fixed=args.at is not None))


async def _run_async(name: str, settings: Settings, now: datetime, *, fixed: bool) -> int:
    from services.jobs import DELIVERIES, run_pass

    if name == DELIVERIES:
        return await _deliveries(settings, now if fixed else None)
    async with database(settings) as db:
        result = await run_pass(name, db, settings, now)
    counts = ", ".join(f"{key} {value}" for key, value in result.counts.items())
    line = f"{name} as of {now.astimezone(settings.store.tz):%Y-%m-%d %H:%M %Z}: {counts}"
    if result.path:
        line += f"; backup written to {result.path}"
    print(line)
    if result.note:
        print(result.note)
    if "enqueued" in result.counts:
        print(f"enqueued {result.enqueued}; the running bot will send them")
    return 0


async def _deliveries(settings: Settings, at: datetime | None) -> int:
    if not settings.telegram.bot_token.get_secret_value().strip():
        raise SettingsError("BOT_TOKEN is empty: sending deliveries needs the bot's token")
    from bot.app import create_bot
    from bot.scheduler import create_sender

    await upgrade(settings.database.url)
    engine = create_engine(settings.database.url)
    bot = create_bot(settings)
    try:
        clock = (lambda: at) if at is not None else utc_now
        sender = create_sender(bot, create_sessionmaker(engine), settings, clock=clock)
        stats = await sender.deliver_due()
    finally:
        await bot.session.close()
        await engine.dispose()
    print(
        f"deliveries: sent {stats.sent}, failed {stats.failed}, unreachable {stats.unreachable}, "
        f"skipped {stats.skipped}, retry later {stats.retried}, 429s {stats.rate_limited}, "
        f"deferred for quiet hours {stats.quiet_deferred}"
    )
    return 0
