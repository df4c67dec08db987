"""The scheduled jobs as plain passes over database state, shared by the scheduler and the CLI.

Every pass is idempotent (keys, cooldowns, conditional updates), so running one twice, late,
or once more at start-up after a downtime never doubles anything. Each returns a `JobResult`
whose `counts` say what it did; sending is the delivery worker's business, not theirs.
"""

from __future__ import annotations

import asyncio
import importlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import backup, delivery, offers, surveys

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

DIGEST_KIND = "digest"


@dataclass
class JobResult:
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    path: str | None = None
    note: str | None = None

    @property
    def enqueued(self) -> int:
        return self.counts.get("enqueued", 0)


def iso_week(now: datetime, settings: Settings) -> str:
    year, week, _ = now.astimezone(settings.store.tz).isocalendar()
    return f"{year}-W{week:02d}"


def digest_moment(now: datetime, settings: Settings) -> datetime:
    """Monday `DIGEST_HOUR` (store time) of the week `now` falls in, as UTC."""
    local = now.astimezone(settings.store.tz)
    monday = local.date() - timedelta(days=local.weekday())
    return datetime.combine(
        monday, time(settings.engagement.digest_hour), settings.store.tz
    ).astimezone(UTC)


async def digest_pass(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """Enqueue this week's digest to every owner once we are past Monday DIGEST_HOUR.

    The key `digest:<ISO year-week>:<owner>` makes it exactly once per week, across restarts
    and however many times the pass runs. Commits; returns how many were enqueued now."""
    if now < digest_moment(now, settings):
        return 0
    week = iso_week(now, settings)
    added = 0
    for owner_id in settings.telegram.owner_ids:
        added += await delivery.enqueue(
            session,
            key=f"digest:{week}:{owner_id}",
            kind=DIGEST_KIND,
            chat_id=owner_id,
            payload={"week": week},
            due_at=now,
        )
    await session.commit()
    return added


def retention_available() -> bool:
    try:
        privacy = importlib.import_module("services.privacy")
    except ImportError:
        return False
    return hasattr(privacy, "anonymise_inactive")


Pass = Callable[[async_sessionmaker[AsyncSession], "Settings", datetime], Awaitable[JobResult]]


async def _surveys(sm: async_sessionmaker[AsyncSession], s: Settings, now: datetime) -> JobResult:
    async with sm() as session:
        return JobResult("surveys", {"enqueued": await surveys.sweep(session, s, now)})


async def _winback(
    sm: async_sessionmaker[AsyncSession],
    s: Settings,
    now: datetime,
    rng: random.Random | None = None,
) -> JobResult:
    async with sm() as session:
        result = await offers.winback_sweep(session, s, now, rng)
    return JobResult(
        "winback",
        {"eligible": result.eligible, "control": result.control, "enqueued": result.offered},
    )


async def _birthdays(sm: async_sessionmaker[AsyncSession], s: Settings, now: datetime) -> JobResult:
    async with sm() as session:
        return JobResult("birthdays", {"enqueued": await offers.birthday_sweep(session, s, now)})


async def _digest(sm: async_sessionmaker[AsyncSession], s: Settings, now: datetime) -> JobResult:
    async with sm() as session:
        added = await digest_pass(session, s, now)
    note = None
    if not added and now < digest_moment(now, s):
        note = "not yet: the digest goes out on Monday at DIGEST_HOUR"
    return JobResult("digest", {"enqueued": added}, note=note)


async def _backup(sm: async_sessionmaker[AsyncSession], s: Settings, now: datetime) -> JobResult:
    path = await asyncio.to_thread(
        backup.backup_database,
        s.database.url,
        s.backup.dir,
        s.backup.keep,
        now,
    )
    return JobResult(
        "backup", {"kept": min(len(backup.backups(s.backup.dir)), s.backup.keep)}, path=str(path)
    )


async def _retention(sm: async_sessionmaker[AsyncSession], s: Settings, now: datetime) -> JobResult:
    if s.privacy.retention_months is None:
        return JobResult("retention", {"erased": 0}, note="RETENTION_MONTHS is not set")
    privacy: Any = importlib.import_module("services.privacy")
    async with sm() as session:
        erased = await privacy.anonymise_inactive(
            session, now, s.privacy.retention_months, default_language=s.store.default_language
        )
    return JobResult("retention", {"erased": erased})


PASSES: dict[str, Pass] = {
    "surveys": _surveys,
    "winback": _winback,
    "birthdays": _birthdays,
    "digest": _digest,
    "backup": _backup,
}
if retention_available():
    PASSES["retention"] = _retention


async def run_pass(
    name: str, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> JobResult:
    return await PASSES[name](sessionmaker, settings, now)
