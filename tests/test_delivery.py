"""The delivery service: outbox rows, quiet hours, rate limits, 429/5xx/403, crash recovery."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram import Bot
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from bot.demo.emulator import FakeTelegram
from config import Settings
from db.database import Database
from db.engine import create_engine
from db.models import Client, DeliveryStatus
from services import delivery
from services.delivery import (
    DeliveryWorker,
    Outbox,
    OutboxMessage,
    RateLimiter,
    TokenBucket,
    queue_messages,
    quiet_until,
)
from tests.conftest import STAFF_CHAT_ID, FrozenClock, make_settings, on_postgres
from tests.engagement_helpers import (
    bot_for,
    deliveries,
    fast_limiter,
    make_client,
    outbox_for,
    sender_for,
)
from tests.wallet_helpers import eventually

# These tests run delivery passes by hand: no background worker racing for the rows.
pytestmark = pytest.mark.manual_delivery

MSK = ZoneInfo("Europe/Moscow")


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


# ------------------------------------------------------------------------- pure helpers


def test_token_bucket_paces_to_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, capacity=1.0, now=0.0)
    assert bucket.delay(0.0) == 0
    bucket.take(0.0)
    assert bucket.delay(0.0) == pytest.approx(0.5)
    assert bucket.delay(0.25) == pytest.approx(0.25)
    assert bucket.delay(0.5) == 0


def test_rate_limiter_global_chat_and_group_limits() -> None:
    clock = FakeTime()
    limiter = RateLimiter(global_rate=10, chat_rate=1, group_per_min=20, monotonic=clock)
    # Per chat: 1 msg/s.
    limiter.take(5)
    assert limiter.chat_delay(5) == pytest.approx(1.0)
    assert limiter.chat_delay(6) == 0
    # Per group: 20/min → one every 3 s.
    limiter.take(-100)
    assert limiter.chat_delay(-100) == pytest.approx(3.0)
    # Global: 10/s with a burst of one (10/10): the next send waits 0.1 s.
    assert limiter.global_delay() == pytest.approx(0.2)  # two taken from a 1-token bucket
    clock.t += 0.2
    assert limiter.global_delay() == 0
    # A 429 pauses every send.
    limiter.pause(3)
    assert limiter.global_delay() == pytest.approx(3.0)


def test_quiet_window_wraps_midnight() -> None:
    window = (time(21), time(9))
    evening = datetime(2026, 11, 16, 22, 0, tzinfo=MSK)
    assert quiet_until(evening, window, MSK) == datetime(2026, 11, 17, 9, 0, tzinfo=MSK)
    night = datetime(2026, 11, 17, 3, 0, tzinfo=MSK)
    assert quiet_until(night, window, MSK) == datetime(2026, 11, 17, 9, 0, tzinfo=MSK)
    assert quiet_until(datetime(2026, 11, 17, 9, 0, tzinfo=MSK), window, MSK) is None
    assert quiet_until(datetime(2026, 11, 17, 20, 59, tzinfo=MSK), window, MSK) is None
    lunch = (time(13), time(14))
    assert quiet_until(datetime(2026, 11, 17, 13, 30, tzinfo=MSK), lunch, MSK) == datetime(
        2026, 11, 17, 14, 0, tzinfo=MSK
    )
    assert quiet_until(evening, None, MSK) is None


# ------------------------------------------------------------------------------ sending


@pytest.fixture
async def bot(tg: FakeTelegram, settings: Settings) -> AsyncIterator[Bot]:
    bot = bot_for(tg, settings)
    yield bot
    await bot.session.close()


async def _text(
    sessionmaker: async_sessionmaker[AsyncSession],
    key: str,
    chat_id: int,
    due: datetime,
    **kw: Any,
) -> None:
    """Queue a message of finished text (the kind rows had before facts: the sender's
    mechanics do not depend on the kind)."""
    message = OutboxMessage(key, "text", chat_id, {"text": f"hello {key}"}, **kw)

    def queue(session: Session) -> None:
        queue_messages(session, [message], due)
        session.commit()

    await Database.of(sessionmaker.kw["bind"]).write(queue)


async def test_enqueue_is_idempotent_by_key(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    for _ in range(2):
        await _text(sessionmaker, "k1", 42, clock())
    assert len(await deliveries(session)) == 1


async def test_due_rows_are_sent_once_and_recorded(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    await _text(sessionmaker, "now", 4001, clock())
    await _text(sessionmaker, "later", 4002, clock() + timedelta(hours=1))
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    stats = await sender.deliver_due()
    assert stats.sent == 1
    [sent] = tg.sent()
    assert sent.chat_id == 4001 and sent.text == "hello now"
    row = (await deliveries(session, key="now"))[0]
    assert row.status == DeliveryStatus.SENT
    assert row.sent_at == clock() and row.message_id == sent.messages[0].message_id
    assert (await sender.deliver_due()).sent == 0  # nothing repeated
    clock.advance(hours=1)
    assert (await sender.deliver_due()).sent == 1
    assert [c.chat_id for c in tg.sent()] == [4001, 4002]


async def test_quiet_hours_hold_messages_until_the_morning(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    db_url: str,
) -> None:
    settings = make_settings(db_url, quiet_hours="21-09")
    clock = FrozenClock(datetime(2026, 11, 16, 22, 30, tzinfo=MSK).astimezone(UTC))
    await _text(sessionmaker, "evening", 4001, clock())
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    stats = await sender.deliver_due()
    assert stats.sent == 0 and stats.quiet_deferred == 1
    row = (await deliveries(session))[0]
    assert row.next_attempt_at == datetime(2026, 11, 17, 9, 0, tzinfo=MSK)
    clock.set(datetime(2026, 11, 17, 8, 59, tzinfo=MSK).astimezone(UTC))
    assert (await sender.deliver_due()).sent == 0
    assert tg.sent() == []
    clock.set(datetime(2026, 11, 17, 9, 0, tzinfo=MSK).astimezone(UTC))
    assert (await sender.deliver_due()).sent == 1
    assert len(tg.sent(chat_id=4001)) == 1


async def test_429_pauses_all_sending_and_retries_the_same_message(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    await _text(sessionmaker, "a", 4001, clock())
    await _text(sessionmaker, "b", 4002, clock())
    tg.fail_next("sendMessage", 429, retry_after=7)
    fake = FakeTime()
    limiter = RateLimiter(100, 100, 100, monotonic=fake)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=limiter, sleep=fake.sleep)
    stats = await sender.deliver_due()
    assert stats.rate_limited == 1 and stats.sent == 2
    assert sum(fake.slept) >= 7  # the whole sender waited retry_after
    rows = await deliveries(session)
    assert [r.status for r in rows] == [DeliveryStatus.SENT] * 2
    assert [r.attempts for r in rows] == [1, 1]  # a 429 is not a failed attempt
    assert sorted(c.chat_id for c in tg.sent()) == [4001, 4002]


async def test_server_errors_back_off_then_fail(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    db_url: str,
    clock: FrozenClock,
) -> None:
    settings = make_settings(db_url, delivery_max_attempts=3)
    await _text(sessionmaker, "x", 4001, clock())
    tg.fail_next("sendMessage", 502, times=10)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    assert (await sender.deliver_due()).retried == 1
    row = (await deliveries(session))[0]
    assert row.status == DeliveryStatus.PENDING and row.attempts == 1
    assert row.next_attempt_at == clock() + timedelta(seconds=1)
    assert (await sender.deliver_due()).retried == 0  # not due yet: no busy retry
    clock.advance(seconds=1)
    await sender.deliver_due()
    row = (await deliveries(session))[0]
    assert row.attempts == 2 and row.next_attempt_at == clock() + timedelta(seconds=2)
    clock.advance(seconds=2)
    assert (await sender.deliver_due()).failed == 1
    row = (await deliveries(session))[0]
    assert row.status == DeliveryStatus.FAILED and "Bad Gateway" in (row.last_error or "")


async def test_a_5xx_then_success_sends_exactly_once(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    await _text(sessionmaker, "x", 4001, clock())
    tg.fail_next("sendMessage", 500)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    await sender.deliver_due()
    clock.advance(seconds=5)
    await sender.deliver_due()
    await sender.deliver_due()
    assert len(tg.sent(chat_id=4001)) == 1


async def test_a_message_telegram_refuses_fails_without_retries(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """A 400 (here: a chat that does not exist) would be refused again: `failed` at once."""
    await _text(sessionmaker, "x", 4001, clock())
    await _text(sessionmaker, "y", 4002, clock())
    tg.fail_next("sendMessage", 400, "Bad Request: chat not found", chat_id=4001)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    stats = await sender.deliver_due()
    assert (stats.failed, stats.retried, stats.sent) == (1, 0, 1)
    [row] = await deliveries(session, key="x")
    assert row.status == DeliveryStatus.FAILED and row.next_attempt_at is None
    assert "chat not found" in (row.last_error or "")
    clock.advance(hours=2)
    assert (await sender.deliver_due()).sent == 0


async def test_rows_queued_as_text_by_an_older_version_still_go_out(
    tg: FakeTelegram,
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """Receipts and staff lines were queued as finished text before they were facts: those
    still pending at the upgrade are sent as they are, a staff line combined with new ones."""
    old_line = OutboxMessage("stafflog:1", "staff_log", STAFF_CHAT_ID, {"text": "🧾 №1 · old"})
    new_line = OutboxMessage(
        "voidlog:1",
        "staff_log",
        STAFF_CHAT_ID,
        {
            "event": "void",
            "purchase_id": 1,
            "number": "100045",
            "amount": 250000,
            "cashier": "Olga",
        },
    )
    receipt = OutboxMessage("receipt:1", "receipt", 4001, {"text": "Покупка 2 500 ₽"})
    await outbox_for(sessionmaker, clock).post_many([old_line, new_line, receipt])
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    assert (await sender.deliver_due()).sent == 3
    assert [c.text for c in tg.sent(chat_id=4001)] == ["Покупка 2 500 ₽"]
    assert [c.text for c in tg.sent(chat_id=STAFF_CHAT_ID)] == [
        "🧾 №1 · old\n↩️ №1 отменена · Карта 100 045 · 2\xa0500\xa0₽ · Olga"
    ]


async def test_403_marks_the_client_unreachable(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    client = await make_client(session, 4100)
    await _text(sessionmaker, "blocked", 4100, clock(), client_id=client.id)
    tg.block(4100)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    assert (await sender.deliver_due()).unreachable == 1
    row = (await deliveries(session))[0]
    assert row.status == DeliveryStatus.UNREACHABLE
    await session.refresh(client)
    assert client.reachable is False
    # Later messages to them are not even tried.
    await _text(sessionmaker, "again", 4100, clock(), client_id=client.id)
    assert (await sender.deliver_due()).skipped == 1
    assert len([c for c in tg.calls if c.method == "sendMessage"]) == 1


async def test_marketing_respects_opt_out_and_erasure(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    out = await make_client(session, 4201, opt_out=True)
    erased = await make_client(session, 4202, erased=True)
    fine = await make_client(session, 4203)
    for client in (out, erased, fine):
        await _text(
            sessionmaker, f"m{client.id}", 4201, clock(), client_id=client.id, marketing=True
        )
    # A service (non-marketing) message still reaches the opted-out client.
    await _text(sessionmaker, "service", 4201, clock(), client_id=out.id)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    stats = await sender.deliver_due()
    assert stats.skipped == 2 and stats.sent == 2
    expected = {f"m{out.id}": "opted out", f"m{erased.id}": "erased"}
    reasons = {r.key: r.last_error for r in await deliveries(session, status="skipped")}
    assert reasons == expected


async def test_per_chat_limit_lets_other_chats_go_first(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    await _text(sessionmaker, "a1", 4001, clock())
    await _text(sessionmaker, "a2", 4001, clock())
    await _text(sessionmaker, "b1", 4002, clock())
    fake = FakeTime()
    limiter = RateLimiter(1000, 1, 20, monotonic=fake)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=limiter, sleep=fake.sleep)
    assert (await sender.deliver_due()).sent == 3
    assert [c.text for c in tg.sent()] == ["hello a1", "hello b1", "hello a2"]
    assert fake.slept and sum(fake.slept) == pytest.approx(1.0, abs=0.01)


def _staff_lines(numbers: Iterable[int]) -> list[OutboxMessage]:
    return [
        OutboxMessage(f"staff:{i}", "text", STAFF_CHAT_ID, {"text": f"line {i}"}) for i in numbers
    ]


async def test_a_chat_backlog_does_not_keep_other_chats_out_of_the_batch(
    tg: FakeTelegram,
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """More staff-group lines are due than a batch holds (the group takes 20 a minute): a
    customer's message queued after them still goes out in the first pass."""
    backlog = _staff_lines(range(delivery._BATCH + 10))
    receipt = OutboxMessage("receipt:1", "text", 4001, {"text": "your receipt"})
    await outbox_for(sessionmaker, clock).post_many([*backlog, receipt])
    fake = FakeTime()
    sender = sender_for(
        bot,
        sessionmaker,
        settings,
        clock,
        limiter=RateLimiter(1000, 1, 20, monotonic=fake),
        sleep=fake.sleep,
    )

    async def stop_at_the_first_wait(seconds: float) -> None:
        sender.stopping = True  # the group's next slot is 3 s away: enough seen
        await fake.sleep(seconds)

    sender.sleep = stop_at_the_first_wait
    stats = await sender.deliver_due()
    assert sorted(c.text for c in tg.sent()) == ["line 0", "your receipt"]
    assert stats.sent == 2 and fake.slept == [pytest.approx(3.0)]


async def test_a_message_queued_while_the_worker_waits_for_a_group_goes_at_once(
    tg: FakeTelegram,
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """The worker waits for the staff group's next slot (one line per 3 s); a receipt queued
    meanwhile does not wait with it."""
    outbox = outbox_for(sessionmaker, clock)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=RateLimiter(1000, 1, 20))
    outbox.start(sender)
    try:
        await outbox.post_many(_staff_lines((1, 2)))
        await tg.group(STAFF_CHAT_ID).wait_message("line 1")
        await asyncio.sleep(0.5)  # the worker is now waiting for the group's next slot
        await outbox.post(key="receipt:1", kind="text", chat_id=4001, payload={"text": "receipt"})
        await tg.user(4001).wait_message("receipt", timeout=1.5)
        await tg.group(STAFF_CHAT_ID).wait_message("line 2", timeout=5)
    finally:
        await outbox.stop()
    assert [c.text for c in tg.sent()] == ["line 1", "receipt", "line 2"]


async def test_a_claimed_row_waits_for_its_lease_after_a_crash(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """A sender died after claiming (before or during the API call): nobody else sends the
    row until the lease ends; then it is sent once (at-least-once, see services.delivery)."""
    await _text(sessionmaker, "x", 4001, clock())
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    row = (await deliveries(session))[0]
    head = delivery._Head(row.id, row.chat_id, row.kind, combine=False)
    jobs, _skipped = await sender.db.write(sender._claim, [head], clock(), frozenset())
    assert [item.id for job in jobs for item in job.items] == [row.id]  # the crashed claim
    assert (await sender.deliver_due()).sent == 0
    clock.advance(seconds=delivery.DEFAULT_LEASE.total_seconds())
    assert (await sender.deliver_due()).sent == 1
    row = (await deliveries(session))[0]
    assert row.status == DeliveryStatus.SENT and row.attempts == 2


async def test_a_graceful_stop_gives_back_the_rows_it_had_not_begun(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """A stop comes while one message is on its way and two more are claimed behind it: the
    one in flight is sent and recorded, the other two are given back as they were (not an
    attempt, due at once), so the next process sends them without waiting out the lease."""
    for key in ("a", "b", "c"):
        await _text(sessionmaker, key, 4101 + ord(key), clock())
    tg.set_latency(0.5)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter(), concurrency=1)
    worker = DeliveryWorker(sender, interval=0.05)
    worker.start()
    await asyncio.sleep(0.25)  # the first message is on its way, the others wait their turn
    await worker.stop()
    tg.set_latency(0)
    rows = {row.key: row for row in await deliveries(session)}
    assert rows["a"].status == DeliveryStatus.SENT and rows["a"].attempts == 1
    for key in ("b", "c"):
        assert rows[key].status == DeliveryStatus.PENDING
        assert (rows[key].attempts, rows[key].next_attempt_at) == (0, None)
    # The next process (no clock moved: no lease to wait out) sends them, once each.
    again = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    assert (await again.deliver_due()).sent == 2
    assert sorted(c.text for c in tg.sent()) == ["hello a", "hello b", "hello c"]


async def test_the_worker_sends_in_the_background(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    worker = DeliveryWorker(
        sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter()), interval=0.05
    )
    worker.start()
    try:
        await _text(sessionmaker, "bg", 4001, clock())
        worker.notify()
        message = await tg.user(4001).wait_message("hello bg")
        assert message.chat_id == 4001
    finally:
        await worker.stop()
    assert worker.stats.sent == 1


@contextlib.asynccontextmanager
async def _another_process(
    worker: DeliveryWorker, db_url: str, clock: FrozenClock
) -> AsyncIterator[Outbox]:
    """This process's `worker`, started and listening, and the outbox of another process on
    the same database (its own engine and `Database`, no worker: nothing in it reaches this
    worker directly)."""
    worker.start()
    other_engine = create_engine(db_url)
    try:
        assert worker.listener is not None
        await worker.listener.ready.wait()
        other = Outbox(Database.of(other_engine), clock=clock)
        assert other.worker is None
        yield other
    finally:
        await worker.stop()
        await other_engine.dispose()


@pytest.mark.skipif(not on_postgres(), reason="one SQLite process wakes its own worker")
async def test_a_message_queued_by_another_process_wakes_the_worker_at_once(
    tg: FakeTelegram,
    bot: Bot,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """Another worker (its own engine and `Database`, no delivery worker of its own) queues a
    message: its commit NOTIFYs, and this process's worker, idle for an hour of polling
    interval, sends it without waiting for the poll."""
    worker = DeliveryWorker(
        sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter()), interval=3600
    )
    async with _another_process(worker, db_url, clock) as other:
        await worker.idle.wait()  # its passes done, asleep until woken
        await other.post(key="far", kind="text", chat_id=4001, payload={"text": "from afar"})
        message = await tg.user(4001).wait_message("from afar")
        assert message.chat_id == 4001
    assert worker.stats.sent == 1


@pytest.mark.skipif(not on_postgres(), reason="one SQLite process charges its own buckets")
async def test_what_another_worker_sends_to_a_group_is_charged_to_the_leaders_budget(
    bot: Bot,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """A worker that is not the leader answers in the staff group: the leader's sender hears
    of it (NOTIFY) and its bucket for that group waits a slot, as if it had sent it itself."""
    worker = DeliveryWorker(sender_for(bot, sessionmaker, settings, clock), interval=3600)
    limiter = worker.sender.limiter
    async with _another_process(worker, db_url, clock) as other:
        assert limiter.chat_delay(-100500) == 0
        other.note_sent(-100500)
        await other.relayed()
        async with asyncio.timeout(10):
            while limiter.chat_delay(-100500) == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert limiter.chat_delay(-100500) > 2.0  # a full slot of the group's 20 a minute


async def test_blocking_and_unblocking_the_bot_flips_reachable(app, session: AsyncSession) -> None:  # type: ignore[no-untyped-def]
    client_id = (await make_client(session, 4300)).id
    user = app.tg.user(4300)

    async def reachable() -> bool | None:
        # The handler makes no Bot API call, so "idle" cannot say its write landed: poll.
        await session.rollback()  # a fresh read each time
        return await session.scalar(select(Client.reachable).where(Client.id == client_id))

    async def is_(expected: bool) -> bool:
        return await reachable() is expected

    await user.block()
    await eventually(lambda: is_(False))
    assert await reachable() is False
    await user.unblock()
    await eventually(lambda: is_(True))
    assert await reachable() is True
