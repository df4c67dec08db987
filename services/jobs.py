"""The scheduled jobs as plain passes over database state, shared by the scheduler and the CLI.

Every pass is idempotent (keys, cooldowns, conditional updates), so running one twice, late,
or once more at start-up after a downtime never doubles anything. Each returns a `JobResult`
whose `counts` say what it did; sending is the delivery worker's business, not theirs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from db.database import Database
from services import backup, branches, campaigns, motivation, offers, privacy
from services.delivery import OutboxMessage, queue_messages

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

# The weekly digest goes out as two messages: its text (up to Telegram's 4096 characters, where a
# photo's caption allows 1024) and then its chart; in a chain the owners' digest has a third, the
# branch comparison chart. A branch manager's digest (its payload names the branch) is that
# branch's text and chart.
DIGEST_KIND = "digest"
DIGEST_CHART_KIND = "digest_chart"
DIGEST_BRANCHES_KIND = "digest_branches"


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


async def digest_pass(db: Database, settings: Settings, now: datetime) -> int:
    """Enqueue this week's digest (text, then chart) to every owner once we are past Monday
    DIGEST_HOUR; in a chain also the branch chart to the owners, and to each manager of an open
    branch that branch's digest (text and chart).

    The keys `digest:<ISO year-week>:<owner>`, `digest_chart:…`, `digest_branches:…` and, for
    a manager, `digest:<ISO year-week>:<manager>:<branch id>` make it exactly once per week
    and recipient, across restarts and however many times the pass runs. Returns how many
    digests (texts) were enqueued now."""
    if now < digest_moment(now, settings):
        return 0
    return await db.write(_queue_digests, settings, now)


def _queue_digests(session: Session, settings: Settings, now: datetime) -> int:
    week = iso_week(now, settings)
    chain = branches.load(session, settings)
    is_chain = len(chain) > 1
    kinds = (DIGEST_KIND, DIGEST_CHART_KIND, *((DIGEST_BRANCHES_KIND,) if is_chain else ()))
    messages = [
        OutboxMessage(
            key=f"{kind}:{week}:{owner_id}", kind=kind, chat_id=owner_id, payload={"week": week}
        )
        for owner_id in settings.telegram.owner_ids
        for kind in kinds
    ]
    if is_chain:  # a one-shop install's managers read the owner's figures with /digest
        messages += [
            OutboxMessage(
                key=f"{kind}:{week}:{manager}:{branch.id}",
                kind=kind,
                chat_id=manager,
                payload={"week": week, "branch_id": branch.id},
            )
            for branch in chain
            if branch.is_open
            for manager in branch.managers
            if not settings.telegram.is_owner(manager)
            for kind in (DIGEST_KIND, DIGEST_CHART_KIND)
        ]
    added = queue_messages(session, messages, now)
    session.commit()
    return sum(1 for m, new in zip(messages, added, strict=True) if new and m.kind == DIGEST_KIND)


Pass = Callable[[Database, "Settings", datetime], Awaitable[JobResult]]


async def _surveys(db: Database, s: Settings, now: datetime) -> JobResult:
    """The motivation questions that are due, then the NPS surveys (one unit of work)."""
    asked = await motivation.ask_due(db, s, now)
    return JobResult("surveys", {"enqueued": asked.total, "motivation": asked.motivation})


async def _winback(
    db: Database, s: Settings, now: datetime, rng: random.Random | None = None
) -> JobResult:
    result = await offers.winback_sweep(db, s, now, rng)
    return JobResult(
        "winback",
        {"eligible": result.eligible, "control": result.control, "enqueued": result.offered},
    )


async def _birthdays(db: Database, s: Settings, now: datetime) -> JobResult:
    return JobResult("birthdays", {"enqueued": await offers.birthday_sweep(db, s, now)})


async def _campaigns(db: Database, s: Settings, now: datetime) -> JobResult:
    """Finish a campaign's send that a stopped process cut short (services.campaigns)."""
    resumed = await campaigns.finish_interrupted(db, now, s.delivery.rate_global)
    return JobResult("campaigns", {"enqueued": resumed})


async def _digest(db: Database, s: Settings, now: datetime) -> JobResult:
    added = await digest_pass(db, s, now)
    note = None
    if not added and now < digest_moment(now, s):
        note = "not yet: the digest goes out on Monday at DIGEST_HOUR"
    return JobResult("digest", {"enqueued": added}, note=note)


async def _backup(db: Database, s: Settings, now: datetime) -> JobResult:
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


async def _retention(db: Database, s: Settings, now: datetime) -> JobResult:
    if s.privacy.retention_months is None:
        return JobResult("retention", {"erased": 0}, note="RETENTION_MONTHS is not set")
    erased = await privacy.anonymise_inactive(
        db, now, s.privacy.retention_months, default_language=s.store.default_language
    )
    return JobResult("retention", {"erased": erased})


PASSES: dict[str, Pass] = {
    "surveys": _surveys,
    "winback": _winback,
    "birthdays": _birthdays,
    "campaigns": _campaigns,
    "digest": _digest,
    "backup": _backup,
    "retention": _retention,
}
# Sending what is due is a job too (`python -m bot jobs run deliveries`), but it needs the bot
# to send with: the bot layer runs it (`bot/commands/jobs.py`), not `run_pass`.
DELIVERIES = "deliveries"
JOB_NAMES: tuple[str, ...] = (*PASSES, DELIVERIES)


async def run_pass(name: str, db: Database, settings: Settings, now: datetime) -> JobResult:
    return await PASSES[name](db, settings, now)
