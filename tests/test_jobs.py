"""Scheduling: fixed jobs, the weekly digest once per week across restarts, start-up catch-up,
and `python -m bot jobs run NAME [--at]`."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.commands.jobs import parse_at
from bot.demo.emulator import FakeTelegram
from bot.scheduler import MISFIRE_GRACE, catch_up_jobs, create_scheduler, run_job
from config import PROJECT_ROOT, Settings
from db.database import Database
from services import jobs
from tests.cli_helpers import Cli
from tests.conftest import OWNER_ID, make_settings
from tests.engagement_helpers import (
    bot_for,
    buy,
    deliveries,
    fast_limiter,
    make_client,
    queue,
    sender_for,
)

SECOND_OWNER = 1002


def _msk(settings: Settings, *args: int) -> datetime:
    return datetime(*args, tzinfo=settings.store.tz)  # type: ignore[misc]


async def test_digest_once_per_week_across_restarts(
    db: Database, session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], db_url: str
) -> None:
    settings = make_settings(db_url, owner_ids=[OWNER_ID, SECOND_OWNER], digest_hour=9)
    sunday = _msk(settings, 2026, 11, 22, 20, 0)
    monday_early = _msk(settings, 2026, 11, 23, 8, 59)
    monday = _msk(settings, 2026, 11, 23, 9, 0)
    # Sunday: last week's digest (week 47) was never sent; the pass catches up with it.
    assert await jobs.digest_pass(db, settings, sunday) == 2
    assert await jobs.digest_pass(db, settings, sunday) == 0
    assert await jobs.digest_pass(db, settings, monday_early) == 0
    assert await jobs.digest_pass(db, settings, monday) == 2
    # The bot restarts (a new scheduler, the start-up catch-up runs the digest pass again).
    for _restart in range(2):
        create_scheduler(settings, db)
        assert "digest" in catch_up_jobs(settings, monday + timedelta(hours=3))
        result = await run_job("digest", db, settings, lambda: monday + timedelta(hours=3))
        assert result is not None and result.enqueued == 0
    # Down all Monday, back on Wednesday: this week's digest is still sent, once.
    rows = await deliveries(session, kind="digest")
    assert sorted(r.key for r in rows) == [
        f"digest:2026-W{week}:{o}" for week in (47, 48) for o in (OWNER_ID, SECOND_OWNER)
    ]
    charts = await deliveries(session, kind="digest_chart")
    assert sorted(r.key for r in charts) == [f"digest_chart{r.key[6:]}" for r in rows]
    assert await jobs.digest_pass(db, settings, _msk(settings, 2026, 11, 25, 12, 0)) == 0
    # Next week: a new one.
    assert await jobs.digest_pass(db, settings, _msk(settings, 2026, 11, 30, 9, 30)) == 2


async def test_missed_digest_runs_on_start_after_a_long_downtime(
    db: Database,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    wednesday = _msk(settings, 2026, 11, 25, 12, 0)
    result = await run_job("digest", db, settings, lambda: wednesday)
    assert result is not None and result.enqueued == 1


async def test_scheduler_jobs_have_fixed_ids_and_forgiving_defaults(settings: Settings) -> None:
    scheduler = create_scheduler(settings, None)  # type: ignore[arg-type]
    scheduler.start(paused=True)
    try:
        ids = {job.id for job in scheduler.get_jobs()}
        assert {"surveys", "winback", "birthdays", "campaigns", "digest", "backup"} <= ids
        for job in scheduler.get_jobs():
            assert job.coalesce is True and job.misfire_grace_time == MISFIRE_GRACE
        digest = scheduler.get_job("digest")
        assert "mon" in str(digest.trigger) and f"hour='{settings.engagement.digest_hour}'" in str(
            digest.trigger
        )
    finally:
        scheduler.shutdown(wait=False)


def test_catch_up_runs_todays_sweeps_once_they_are_due(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_changes(backup_dir=tmp_path / "none", winback_hour=11)
    early = catch_up_jobs(settings, _msk(settings, 2026, 11, 24, 10, 0))
    assert "winback" not in early and "surveys" in early and "backup" in early
    assert "campaigns" in early  # a campaign's send the stop cut short is finished at once
    late = catch_up_jobs(settings, _msk(settings, 2026, 11, 24, 12, 0))
    assert "winback" in late and "birthdays" in late


def test_at_is_store_time_unless_it_has_an_offset(settings: Settings) -> None:
    assert parse_at("2026-11-23T09:00", settings) == _msk(settings, 2026, 11, 23, 9, 0)
    assert parse_at("2026-11-23T09:00+00:00", settings).utcoffset() == timedelta(0)


# ------------------------------------------------------------------------------ the CLI


@pytest.fixture
def cli(db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("OWNER_IDS", str(OWNER_ID))
    monkeypatch.setenv("BOT_TOKEN", "")
    monkeypatch.setenv("BACKUP_DIR", str(db_path.parent / "backups"))
    return Cli(db_path, monkeypatch, capsys)


def test_cli_runs_a_pass_as_of_a_given_time(cli: Cli) -> None:
    result = cli("jobs", "run", "digest", "--at", "2026-11-23T08:00")
    assert result.code == 0, result.err
    assert "enqueued 0" in result.out and "not yet" in result.out
    result = cli("jobs", "run", "digest", "--at", "2026-11-23T09:00")
    assert result.code == 0 and "enqueued 1; the running bot will send them" in result.out
    assert cli.scalar("SELECT key FROM deliveries") == f"digest:2026-W48:{OWNER_ID}"
    again = cli("jobs", "run", "digest", "--at", "2026-11-23T10:00")
    assert "enqueued 0" in again.out


async def _seed_purchase(db_path: Path, settings: Settings, at: datetime) -> None:
    from db.engine import create_engine, create_sessionmaker

    engine = create_engine(f"sqlite+aiosqlite:///{db_path}")
    async with create_sessionmaker(engine)() as session:
        await buy(session, await make_client(session, 7001), at)
    await engine.dispose()


def test_cli_surveys_and_backup(cli: Cli, db_path: Path, settings: Settings) -> None:
    import asyncio

    asyncio.run(_seed_purchase(db_path, settings, _msk(settings, 2026, 11, 23, 10, 0)))
    early = cli("jobs", "run", "surveys", "--at", "2026-11-23T11:59")
    assert early.code == 0 and "enqueued 0" in early.out
    due = cli("jobs", "run", "surveys", "--at", "2026-11-23T12:00")
    assert "enqueued 1" in due.out
    assert cli.scalar("SELECT count(*) FROM surveys") == 1
    backup = cli("jobs", "run", "backup")
    assert backup.code == 0 and "backup written to" in backup.out
    assert len(list((db_path.parent / "backups").glob("loyalty-*.db"))) == 1


def test_the_cli_runs_every_job_of_the_one_list(cli: Cli) -> None:
    assert (*jobs.PASSES, "deliveries") == jobs.JOB_NAMES
    usage = cli("jobs", "run", "--help")
    assert all(name in usage.out for name in jobs.JOB_NAMES)
    retention = cli("jobs", "run", "retention")
    assert retention.code == 0 and "RETENTION_MONTHS is not set" in retention.out


def test_cli_refuses_bad_input(cli: Cli) -> None:
    bad_at = cli("jobs", "run", "digest", "--at", "next monday")
    assert bad_at.code == 2 and "--at" in bad_at.err
    unknown = cli("jobs", "run", "fireworks")
    assert unknown.code == 2
    no_token = cli("jobs", "run", "deliveries")
    assert no_token.code == 2 and "BOT_TOKEN" in no_token.err


async def test_the_digest_reaches_the_owner_as_text_then_its_chart(
    db: Database,
    tg: FakeTelegram,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    monday = _msk(settings, 2026, 11, 23, 9, 0)
    assert await jobs.digest_pass(db, settings, monday) == 1
    bot = bot_for(tg, settings)
    try:
        sender = sender_for(bot, sessionmaker, settings, lambda: monday, limiter=fast_limiter())
        assert (await sender.deliver_due()).sent == 2
    finally:
        await bot.session.close()
    text, chart = tg.sent(chat_id=OWNER_ID)
    # The owner has no client row: the store's default language, ru.
    assert text.method == "sendMessage" and "Недельная сводка" in (text.messages[0].text or "")
    assert chart.method == "sendPhoto" and chart.messages[0].photo is not None
    assert "12 недель" in (chart.messages[0].text or "")


async def test_engagement_starts_and_stops_with_the_bot(
    db: Database,
    tg: FakeTelegram,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    tmp_path: Path,
) -> None:
    from bot.scheduler import Engagement
    from services import delivery
    from services.clock import utc_now

    settings = settings.with_changes(backup_dir=tmp_path / "backups")
    await queue(db, delivery.OutboxMessage("hello", "text", 4444, {"text": "hi"}), due=utc_now())
    bot = bot_for(tg, settings)
    engagement = Engagement(bot, sessionmaker, settings)
    try:
        await engagement.start()
        assert engagement.scheduler.running
        assert (await tg.user(4444).wait_message("hi")).text == "hi"
        assert list((tmp_path / "backups").glob("loyalty-*"))  # the catch-up backup ran
    finally:
        await engagement.stop()
        await bot.session.close()
    assert not engagement.scheduler.running


def test_the_cli_starts_without_importing_aiogram() -> None:
    """The job names come from `services.jobs`, which imports aiogram (seconds): only
    `jobs run` pays for it, not every other command's start-up."""
    probe = (
        "import sys; from bot.cli import build_parser; "
        "build_parser().parse_args(['migrate']); print('aiogram' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT
    )
    assert done.stdout.strip() == "False"
