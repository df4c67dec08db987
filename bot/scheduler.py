"""Scheduled engagement: APScheduler 3 jobs + the delivery worker, started with the dispatcher.

Every job is an idempotent sweep over database state (`services.jobs`), registered with a
fixed id, `coalesce=True`, a large misfire grace and `replace_existing=True`. The scheduler
keeps no job store: "a job missed while the bot was down runs once on start" is done by
running each sweep once at start-up (the sweeps decide from the database whether anything is
due: cooldowns, keys, the digest's week key, the newest backup's age).

Deliveries are not a job: `DeliveryWorker` is a loop (a pass, then a 2 s nap or an early
wake-up) so that messages go out seconds after they are due, not on a cron tick.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from aiogram import Bot
from aiogram.utils.i18n import I18n
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import create_i18n
from bot.telegram_transport import TelegramTransport
from config import Settings
from db.database import Database
from handlers.outbox import create_renderer
from services import backup, jobs
from services.clock import Clock, utc_now
from services.delivery import DeliverySender, DeliveryWorker, Outbox

log = logging.getLogger(__name__)

MISFIRE_GRACE = 6 * 3600


def create_sender(
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    clock: Clock = utc_now,
    i18n: I18n | None = None,
) -> DeliverySender:
    """The delivery sender of this process: rows rendered by `handlers.outbox`, sent through
    the Bot API (`bot.telegram_transport`), in units of work on the engine's `Database`."""
    i18n = i18n or create_i18n(settings.store.default_language)
    render = create_renderer(i18n, settings.store.default_language)
    db = Database.of(sessionmaker.kw["bind"])
    return DeliverySender(TelegramTransport(bot), db, settings, render, clock=clock)


async def run_job(
    name: str,
    db: Database,
    settings: Settings,
    clock: Clock,
    worker: DeliveryWorker | None = None,
) -> jobs.JobResult | None:
    try:
        result = await jobs.run_pass(name, db, settings, clock())
    except Exception:  # a failed pass is retried by the next tick; never kill the scheduler
        log.exception("scheduled job %s failed", name)
        return None
    log.info("job %s: %s%s", name, result.counts, f" ({result.path})" if result.path else "")
    if worker is not None and result.enqueued:
        worker.notify()
    return result


def create_scheduler(
    settings: Settings,
    db: Database,
    *,
    clock: Clock = utc_now,
    worker: DeliveryWorker | None = None,
) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(
        timezone=settings.store.tz,
        job_defaults={"coalesce": True, "misfire_grace_time": MISFIRE_GRACE, "max_instances": 1},
    )

    def add(name: str, trigger: CronTrigger | IntervalTrigger) -> None:
        scheduler.add_job(
            run_job,
            trigger,
            args=(name, db, settings, clock, worker),
            id=name,
            name=name,
            replace_existing=True,
        )

    tz = settings.store.tz
    add("surveys", IntervalTrigger(minutes=1, timezone=tz))
    add("winback", CronTrigger(hour=settings.engagement.winback_hour, minute=0, timezone=tz))
    add("birthdays", CronTrigger(hour=settings.engagement.winback_hour, minute=5, timezone=tz))
    add("campaigns", IntervalTrigger(minutes=10, timezone=tz))
    add("digest", CronTrigger(day_of_week="mon", hour=settings.engagement.digest_hour, timezone=tz))
    add("backup", CronTrigger(hour=settings.backup.hour, minute=0, timezone=tz))
    add("retention", CronTrigger(hour=settings.backup.hour, minute=30, timezone=tz))
    return scheduler


def catch_up_jobs(settings: Settings, now: datetime) -> list[str]:
    """The sweeps to run once at start-up (each is idempotent over the database)."""
    # The digest pass checks the week key and Monday's hour; the campaigns pass finishes a send
    # the stop cut short.
    names = ["surveys", "campaigns", "digest"]
    local = now.astimezone(settings.store.tz)
    if (
        local.hour >= settings.engagement.winback_hour
    ):  # today's run is due; the trigger runs it otherwise
        names += ["winback", "birthdays"]
    newest = backup.backups(settings.backup.dir)
    stale = not newest or (
        datetime.fromtimestamp(newest[0].stat().st_mtime, tz=now.tzinfo) < now - timedelta(days=1)
    )
    if stale:
        names.append("backup")
    if settings.privacy.retention_months is not None:
        names.append("retention")
    return names


class Engagement:
    """What the leader process runs (bot/leader.py): the delivery worker and, unless
    `jobs=False` (SCHEDULER_ENABLED=false), the scheduler. Jobs enqueue; the worker sends — the
    dispatcher's outbox (see bot/app.py) when given, so that its updates wake it, else one of
    its own (a process that runs jobs without a dispatcher)."""

    def __init__(
        self,
        bot: Bot,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        clock: Clock = utc_now,
        outbox: Outbox | None = None,
        jobs: bool = True,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.sessionmaker = sessionmaker
        self.db = Database.of(sessionmaker.kw["bind"])  # the jobs' units of work
        self.clock = clock
        self.outbox = outbox or Outbox(Database.of(sessionmaker.kw["bind"]), clock=clock)
        self.bot = bot
        self.scheduler: AsyncIOScheduler | None = None

    async def start(self) -> None:
        # The dispatcher's worker when it runs one; otherwise a worker of our own.
        worker = self.outbox.worker or self.outbox.start(
            create_sender(self.bot, self.sessionmaker, self.settings, clock=self.clock)
        )
        if not self.jobs:
            return
        self.scheduler = create_scheduler(self.settings, self.db, clock=self.clock, worker=worker)
        for name in catch_up_jobs(self.settings, self.clock()):
            await run_job(name, self.db, self.settings, self.clock, worker)
        self.scheduler.start()
        log.info("scheduler started")

    async def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.outbox.stop()
