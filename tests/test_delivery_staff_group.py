"""The staff group's 20 messages a minute: due sale lines go out together, one message for as
many as fit in 4096 characters (every line exactly once, oldest first, each row recorded with
its message's id), and messages the till sends there itself (`Outbox.note_sent`) use up the
same budget, so the staff log waits and the till's replies come first."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from aiogram import Bot
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from config import Settings
from db.database import Database
from db.models import DeliveryStatus
from services import delivery
from services.delivery import MESSAGE_LIMIT, OutboxMessage, Outgoing, RateLimiter, Rendered
from tests.conftest import STAFF_CHAT_ID, FrozenClock
from tests.engagement_helpers import bot_for, deliveries, fast_limiter, outbox_for, sender_for
from tests.test_delivery import FakeTime

pytestmark = pytest.mark.manual_delivery


@pytest.fixture
async def bot(tg: FakeTelegram, settings: Settings) -> AsyncIterator[Bot]:
    bot = bot_for(tg, settings)
    yield bot
    await bot.session.close()


def _line(i: int) -> str:
    """How sale `i` reads in the staff group (the store's language, Russian)."""
    amounts = "1\xa0250\xa0₽ − 5 % (62,50\xa0₽) = 1\xa0187,50\xa0₽"
    return f"🧾 №{i} · Карта 100 {i % 1000:03d} · {amounts} · Cashier {i % 5}"


def _staff_log(numbers: range) -> list[OutboxMessage]:
    """Sale lines for the staff group, as the till queues them: facts."""
    return [
        OutboxMessage(
            f"stafflog:{i}",
            "staff_log",
            STAFF_CHAT_ID,
            {
                "event": "sale",
                "purchase_id": i,
                "number": f"100{i % 1000:03d}",
                "amount": 125_000,
                "discount_pct": 5,
                "discount_amount": 6_250,
                "paid_amount": 118_750,
                "cashier": f"Cashier {i % 5}",
            },
        )
        for i in numbers
    ]


async def _lines_by_message(session: AsyncSession, tg: FakeTelegram) -> dict[int, list[str]]:
    """The staff group's messages (by message id) as their lines, checked against the rows:
    each row is `sent` with the id of the message that carries its line."""
    carried = {
        call.messages[0].message_id: call.params["text"].split("\n")
        for call in tg.sent(chat_id=STAFF_CHAT_ID)
    }
    for row in await deliveries(session, kind="staff_log"):
        assert row.status == DeliveryStatus.SENT, row.key
        line = _line(row.payload["purchase_id"])
        assert any(shown.startswith(line) for shown in carried[row.message_id]), row.key
    return carried


async def test_a_rush_of_staff_lines_catches_up_in_a_few_messages(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """400 sale lines queued for a group Telegram holds to 20 messages a minute: one line a
    message would take 20 minutes; combined they take a handful of messages, 3 s apart."""
    tg.set_group_rate_limit(20)
    lines = _staff_log(range(400))
    await outbox_for(sessionmaker, clock).post_many(lines)
    fake = FakeTime()
    limiter = RateLimiter(1000, 1, 20, monotonic=fake)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=limiter, sleep=fake.sleep)
    async with asyncio.timeout(30):  # one line a message would run into 429s for minutes
        stats = await sender.deliver_due()
    assert stats.sent == 400 and stats.rate_limited == 0
    carried = await _lines_by_message(session, tg)
    texts = [call.params["text"] for call in tg.sent(chat_id=STAFF_CHAT_ID)]
    assert all(len(text) <= MESSAGE_LIMIT for text in texts)
    total = sum(len(_line(i)) + 1 for i in range(400))
    assert len(texts) <= math.ceil(total / MESSAGE_LIMIT) + 1  # a few full messages
    # Every line exactly once, oldest first.
    assert [line for text in texts for line in text.split("\n")] == [_line(i) for i in range(400)]
    assert len(carried) == len(texts)
    assert sum(fake.slept) == pytest.approx(3.0 * (len(texts) - 1), abs=0.01)


async def test_a_combined_message_that_fails_is_retried_whole(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    await outbox_for(sessionmaker, clock).post_many(_staff_log(range(5)))
    tg.fail_next("sendMessage", 502, chat_id=STAFF_CHAT_ID)
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    stats = await sender.deliver_due()
    assert stats.retried == 5 and stats.sent == 0
    rows = await deliveries(session)
    assert {(r.status, r.attempts, r.next_attempt_at) for r in rows} == {
        (DeliveryStatus.PENDING, 1, clock() + timedelta(seconds=1))
    }
    clock.advance(seconds=1)
    assert (await sender.deliver_due()).sent == 5
    [text] = [call.params["text"] for call in tg.sent(chat_id=STAFF_CHAT_ID)]
    assert text.split("\n") == [_line(i) for i in range(5)]
    await _lines_by_message(session, tg)


async def test_combined_lines_claimed_by_a_crashed_sender_go_once_after_the_lease(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    await outbox_for(sessionmaker, clock).post_many(_staff_log(range(3)))
    sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
    first = (await deliveries(session))[0]
    head = delivery._Head(first.id, STAFF_CHAT_ID, "staff_log", combine=True)
    jobs, _skipped = await sender.db.write(sender._claim, [head], clock(), frozenset())
    assert [len(job.items) for job in jobs] == [3]  # the crashed sender took all three
    assert (await sender.deliver_due()).sent == 0
    clock.advance(seconds=delivery.DEFAULT_LEASE.total_seconds())
    assert (await sender.deliver_due()).sent == 3
    [text] = [call.params["text"] for call in tg.sent(chat_id=STAFF_CHAT_ID)]
    assert text.split("\n") == [_line(i) for i in range(3)]


async def test_lines_that_do_not_fit_after_rendering_are_given_back(
    tg: FakeTelegram,
    bot: Bot,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """The claim reckons a line's length before rendering it (`LINE_ESTIMATE`); lines that
    turn out longer get fewer in: the rest are released as they were (not counted as an
    attempt) and go next."""
    lines = _staff_log(range(120))
    await outbox_for(sessionmaker, clock).post_many(lines)

    def longer_line(i: int) -> str:
        return f"{_line(i)} · {'x' * 150}"

    async def longer(db: Database, item: Outgoing, settings: Settings, now: datetime) -> Rendered:
        return Rendered(longer_line(item.payload["purchase_id"]))

    fake = FakeTime()
    limiter = RateLimiter(1000, 1, 20, monotonic=fake)
    sender = sender_for(
        bot, sessionmaker, settings, clock, limiter=limiter, sleep=fake.sleep, render=longer
    )
    assert (await sender.deliver_due()).sent == 120
    texts = [call.params["text"] for call in tg.sent(chat_id=STAFF_CHAT_ID)]
    assert all(len(text) <= MESSAGE_LIMIT for text in texts)
    total = sum(len(longer_line(i)) + 1 for i in range(120))
    assert len(texts) >= math.ceil(total / MESSAGE_LIMIT) > 1  # no message over the limit
    assert [line for text in texts for line in text.split("\n")] == [
        longer_line(i) for i in range(120)
    ]
    rows = await deliveries(session)
    assert {(r.status, r.attempts) for r in rows} == {(DeliveryStatus.SENT, 1)}
    await _lines_by_message(session, tg)


# -------------------------------------------------------------------- leaving room for the till


def test_messages_sent_outside_the_sender_use_up_the_group_bucket() -> None:
    fake = FakeTime()
    limiter = RateLimiter(global_rate=1000, chat_rate=1, group_per_min=20, monotonic=fake)
    assert limiter.chat_delay(STAFF_CHAT_ID) == 0
    for _ in range(3):  # the till answered three times in the group
        limiter.note_sent(STAFF_CHAT_ID)
    assert limiter.chat_delay(STAFF_CHAT_ID) == pytest.approx(9.0)  # 2 owed + the next, 3 s each
    fake.t += 9.0
    assert limiter.chat_delay(STAFF_CHAT_ID) == 0
    for _ in range(100):  # a flood owes at most a minute's worth
        limiter.note_sent(STAFF_CHAT_ID)
    assert limiter.chat_delay(STAFF_CHAT_ID) == pytest.approx(63.0)
    assert limiter.chat_delay(4001) == 0  # other chats are not charged


async def test_the_till_replies_in_the_group_come_before_the_staff_log(
    tg: FakeTelegram,
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """After three messages the till sent to the group (`note_sent`), the worker holds the
    next staff line until the group's bucket has room again; a customer's receipt still goes
    at once. Without a worker, `note_sent` charges nothing here (on PostgreSQL it tells the
    leader's worker, and none listens yet)."""
    outbox = outbox_for(sessionmaker, clock)
    outbox.note_sent(STAFF_CHAT_ID)  # no worker yet: nothing to charge, no error
    await outbox.relayed()  # told before this process's worker listens: nobody heard it
    fake = FakeTime()
    limiter = RateLimiter(1000, 1, 20, monotonic=fake)
    outbox.start(sender_for(bot, sessionmaker, settings, clock, limiter=limiter))
    try:
        for _ in range(3):
            outbox.note_sent(STAFF_CHAT_ID)
        await outbox.post_many(_staff_log(range(1)))
        await outbox.post(key="receipt:1", kind="receipt", chat_id=4001, payload={"text": "r"})
        await tg.user(4001).wait_message("r")
        assert tg.sent(chat_id=STAFF_CHAT_ID) == []  # the till used the group's room
        fake.t += 6.0  # 3 s of the 9 s still owed
        outbox.notify()
        await tg.user(4001).send("ping")  # a round trip to the fake server meanwhile
        assert tg.sent(chat_id=STAFF_CHAT_ID) == []
        fake.t += 3.0
        outbox.notify()
        message = await tg.group(STAFF_CHAT_ID).wait_message("№0")
        assert message.text == _line(0)
    finally:
        await outbox.stop()
