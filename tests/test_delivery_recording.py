"""A message that was sent is never sent again because recording it failed: the database
locked for longer than `busy_timeout` (a real lock, taken by another connection), or any other
error in the unit that records it. The record is retried until it succeeds, and a graceful
stop flushes the records still pending."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

import db.engine
from bot.demo.emulator import FakeTelegram
from config import Settings
from db.models import DeliveryStatus
from services import delivery
from tests.conftest import FrozenClock
from tests.engagement_helpers import bot_for, deliveries, fast_limiter, outbox_for, sender_for

pytestmark = pytest.mark.manual_delivery


class FailingRecords:
    """Fault injection around the unit that records a send: the next `times` tries (of the
    rows `only`, if given) hold a write lock from another connection (a backup, another
    process) so SQLite answers "database is locked", or raise a plain error
    (`kind="error"`, a bug in the unit)."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        db_path: Path,
        kind: str,
        times: int,
        only: set[int] | None = None,
    ) -> None:
        self.db_path = db_path
        self.kind = kind
        self.left = times
        self.only = only
        self.tries = 0
        real: Callable[..., Any] = delivery._record_sent

        def record(session: Session, sent: delivery.SentMessage) -> None:
            self.tries += 1
            if self.left <= 0 or (self.only is not None and not self.only & set(sent.ids)):
                return real(session, sent)
            self.left -= 1
            if self.kind == "error":
                raise RuntimeError("the recording unit failed")
            blocker = sqlite3.connect(self.db_path)
            try:
                blocker.execute("BEGIN IMMEDIATE")
                return real(session, sent)
            finally:
                blocker.rollback()
                blocker.close()

        monkeypatch.setattr(delivery, "_record_sent", record)

    def release(self) -> None:
        self.left = 0


@pytest.fixture(autouse=True)
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # The lock outlasts busy_timeout in a few milliseconds instead of 15 s.
    monkeypatch.setattr(db.engine, "SQLITE_BUSY_TIMEOUT_MS", 20)


@pytest.fixture
async def bot(tg: FakeTelegram, settings: Settings) -> AsyncIterator[Bot]:
    bot = bot_for(tg, settings)
    yield bot
    await bot.session.close()


async def _queue(sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    outbox = outbox_for(sessionmaker, clock)
    await outbox.post(key="a", kind="text", chat_id=4001, payload={"text": "hello a"})


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll until `check()` holds (the background worker is doing the work)."""
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


@pytest.mark.parametrize("kind", ["locked", "error"])
async def test_a_sent_message_whose_record_fails_is_recorded_later_and_never_sent_again(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    await _queue(sessionmaker, clock)
    failing = FailingRecords(monkeypatch, db_path, kind, times=3)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    with caplog.at_level(logging.WARNING, logger="services.delivery"):
        stats = await sender.deliver_due()
    assert stats.sent == 1
    assert failing.tries == 4  # three failed records, then the one that stuck
    [row] = await deliveries(session)
    [call] = tg.sent(method="sendMessage")
    assert row.status == DeliveryStatus.SENT
    assert row.message_id == call.messages[0].message_id and row.attempts == 1
    assert len(caplog.records) == 1  # logged once for the row, not once per try
    # Past the lease, by this sender or a fresh one: nothing goes out again.
    clock.advance(seconds=delivery.DEFAULT_LEASE.total_seconds() + 1)
    assert (await sender.deliver_due()).sent == 0
    fresh = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    assert (await fresh.deliver_due()).sent == 0
    assert len(tg.sent(method="sendMessage")) == 1


async def test_the_worker_goes_on_while_a_record_is_retried_and_a_stop_flushes_it(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record of "a" keeps failing: the worker still sends "b"; a graceful stop waits
    until "a" is recorded (the database lets go while it is stopping)."""
    outbox = outbox_for(sessionmaker, clock)
    await outbox.post(key="a", kind="text", chat_id=4001, payload={"text": "hello a"})
    [a] = await deliveries(session, key="a")
    failing = FailingRecords(monkeypatch, db_path, "locked", times=10**6, only={a.id})
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    outbox.start(sender)
    try:
        await tg.user(4001).wait_message("hello a")
        await outbox.post(key="b", kind="text", chat_id=4002, payload={"text": "hello b"})
        await tg.user(4002).wait_message("hello b")

        async def b_recorded() -> bool:
            return (await deliveries(session, key="b"))[0].status == DeliveryStatus.SENT

        await _until(b_recorded)
        [row] = await deliveries(session, key="a")
        assert row.status == DeliveryStatus.PENDING  # sent, its record still being retried
        stopping = asyncio.ensure_future(outbox.stop())
        tries = failing.tries

        async def retried_twice() -> bool:  # still failing while the stop waits
            return failing.tries >= tries + 2

        await _until(retried_twice)
        assert not stopping.done()
        failing.release()
        await asyncio.wait_for(stopping, 10)
    finally:
        await outbox.stop()
    [row] = await deliveries(session, key="a")
    assert row.status == DeliveryStatus.SENT
    # A restart after the lease: nothing is sent twice.
    clock.advance(seconds=delivery.DEFAULT_LEASE.total_seconds() + 1)
    fresh = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    assert (await fresh.deliver_due()).sent == 0
    assert sorted(c.chat_id for c in tg.sent(method="sendMessage")) == [4001, 4002]
