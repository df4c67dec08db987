"""Benchmark: the delivery service against the fake Bot API server enforcing rate caps.

    .venv/bin/python -m bench.delivery [--messages 3000] [--cap 100] [--rate 100]
                                       [--rush-minutes 10] [--speedup 20]

Throughput: 3,000 customers' receipts to distinct chats are enqueued (facts, rendered when
sent, as the till queues them) in a temporary, migrated SQLite database; the fake server
(bot/demo/emulator.py) answers 429 to anything over `--cap` msg/s; the sender runs with
`DELIVERY_RATE_GLOBAL = --rate`. Reported: achieved rate / allowed
rate (target ≥ 0.8), 429s received, lost messages (rows not sent, or sent rows the server never
accepted) and duplicated messages (chats that received more than one). Targets: zero lost,
zero duplicated.

Staff-group rush: five cashiers sell 18 times a minute for `--rush-minutes`, each sale a
`staff_log` line (facts) for the staff group, while the till itself answers 10 times a minute
in that group (sent straight through the bot and reported with `Outbox.note_sent`); the fake
server holds the group to 20 messages a minute. The bot's own worker sends the lines. Time runs
`--speedup` times faster (the group cap, the sender's group rate and both paces scaled
alike); lags are reported in store time. Reported: the largest lag of a line (queued → in the
group), messages used per line, 429s (the till's replies, the log's messages), lost and
duplicated lines. Targets: a lag of seconds, not minutes; 0 for the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiogram.exceptions import TelegramRetryAfter
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import create_bot
from bot.demo.emulator import FakeTelegram
from bot.scheduler import create_sender
from config import Settings, load_settings
from db.database import Database
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.models import Delivery, DeliveryStatus
from services.delivery import Outbox, OutboxMessage

FIRST_CHAT = 10_000_000
STAFF_CHAT = -1_009_000
CASHIERS = 5
SALES_PER_MIN = 18
TILL_REPLIES_PER_MIN = 10
GROUP_PER_MIN = 20


@asynccontextmanager
async def _database() -> AsyncIterator[tuple[str, async_sessionmaker[AsyncSession]]]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await upgrade(url)
        engine = create_engine(url)
        try:
            yield url, create_sessionmaker(engine)
        finally:
            await engine.dispose()


def _settings(tg: FakeTelegram, url: str, **values: Any) -> Settings:
    return load_settings(
        env_file=None,
        bot_token=tg.token,
        telegram_api_url=tg.base_url,
        database_url=url,
        quiet_hours="",
        **values,
    )


def _receipt(i: int) -> dict[str, Any]:
    return {
        "event": "sale",
        "purchase_id": i,
        "amount": 125_000 + i,
        "discount_pct": 5,
        "discount_amount": 6_250,
    }


def _sale_line(i: int) -> OutboxMessage:
    facts = {
        "event": "sale",
        "purchase_id": i,
        "number": str(100_001 + i),
        "amount": 125_000,
        "discount_pct": 5,
        "discount_amount": 6_250,
        "paid_amount": 118_750,
        "cashier": f"Cashier {i % CASHIERS}",
    }
    return OutboxMessage(f"stafflog:{i}", "staff_log", STAFF_CHAT, facts)


_PURCHASE = re.compile(r"№(\d+) ")  # a sale line in the store's language (Russian)


async def run(messages: int, cap: float, rate: float) -> dict[str, float]:
    async with _database() as (url, sessionmaker):
        now = datetime.now(UTC)
        async with sessionmaker() as session:
            await session.execute(
                insert(Delivery),
                [
                    {
                        "key": f"receipt:{i}",
                        "kind": "receipt",
                        "chat_id": FIRST_CHAT + i,
                        "payload": _receipt(i),
                        "status": DeliveryStatus.PENDING,
                        "due_at": now,
                        "attempts": 0,
                        "marketing": False,
                    }
                    for i in range(messages)
                ],
            )
            await session.commit()
        async with FakeTelegram() as tg:
            tg.set_rate_limit(cap)
            settings = _settings(tg, url, delivery_rate_global=rate)
            bot = create_bot(settings)
            sender = create_sender(bot, sessionmaker, settings)
            started = time.perf_counter()
            stats = await sender.deliver_due()
            elapsed = time.perf_counter() - started
            await bot.session.close()
            accepted = Counter(call.chat_id for call in tg.sent())
            got_429 = sum(1 for call in tg.calls if call.status == 429)
        async with sessionmaker() as session:
            rows = (await session.execute(select(Delivery.chat_id, Delivery.status))).all()
    sent_rows = {chat for chat, status in rows if status == DeliveryStatus.SENT}
    lost = sum(1 for chat, _status in rows if chat not in sent_rows or chat not in accepted)
    duplicated = sum(n - 1 for n in accepted.values() if n > 1)
    achieved = stats.sent / elapsed
    return {
        "messages": messages,
        "seconds": elapsed,
        "achieved_per_s": achieved,
        "allowed_per_s": cap,
        "ratio": achieved / cap,
        "429s": got_429,
        "lost": lost,
        "duplicated": duplicated,
    }


async def rush(minutes: float, speedup: float) -> dict[str, float]:
    """The staff group during a rush (see the module docstring); real time = store time /
    `speedup`."""
    sales = round(minutes * SALES_PER_MIN)
    sale_every = 60.0 / SALES_PER_MIN / speedup
    reply_every = 60.0 / TILL_REPLIES_PER_MIN / speedup
    async with _database() as (url, sessionmaker), FakeTelegram() as tg:
        tg.set_group_rate_limit(GROUP_PER_MIN, window=60.0 / speedup)
        settings = _settings(
            tg,
            url,
            staff_chat_id=STAFF_CHAT,
            delivery_rate_group_per_min=round(GROUP_PER_MIN * speedup),
        )
        bot = create_bot(settings)
        outbox = Outbox(Database.of(sessionmaker.kw["bind"]))
        outbox.start(create_sender(bot, sessionmaker, settings))
        queued: dict[int, float] = {}  # purchase id → when its line was queued
        replies: list[int] = []
        refused: list[float] = []  # the till's replies that got a 429

        async def till() -> None:
            while True:
                await asyncio.sleep(reply_every)
                try:
                    message = await bot.send_message(STAFF_CHAT, f"till reply {len(replies)}")
                except TelegramRetryAfter as exc:
                    refused.append(exc.retry_after)
                    continue
                outbox.note_sent(STAFF_CHAT)
                replies.append(message.message_id)

        answering = asyncio.create_task(till())
        try:
            for i in range(sales):
                await outbox.post_many([_sale_line(i)])
                queued[i] = time.monotonic()
                await asyncio.sleep(sale_every)
            received: Counter[int] = Counter()
            arrived: dict[int, float] = {}
            for _ in range(int(60 * 60 / speedup / 0.05)):  # an hour of store time at most
                received.clear()
                for call in tg.sent(chat_id=STAFF_CHAT):
                    for text in (call.text or "").split("\n"):
                        if (found := _PURCHASE.search(text)) and int(found[1]) in queued:
                            received[int(found[1])] += 1
                            arrived.setdefault(int(found[1]), call.at)
                if len(received) == len(queued):
                    break
                await asyncio.sleep(0.05)
        finally:
            answering.cancel()
            await outbox.stop()
            await bot.session.close()
        log_messages = sum(
            1 for call in tg.sent(chat_id=STAFF_CHAT) if not (call.text or "").startswith("till")
        )
        log_429 = sum(
            1
            for call in tg.calls
            if call.status == 429 and not (call.text or "").startswith("till")
        )
        async with sessionmaker() as session:
            unrecorded = await session.scalar(
                select(func.count()).where(Delivery.status != DeliveryStatus.SENT)
            )
    lags = [arrived[line] - at for line, at in queued.items() if line in arrived]
    return {
        "lines": sales,
        "minutes": minutes,
        "max_lag_s": max(lags, default=0.0) * speedup,
        "messages": log_messages,
        "till_replies": len(replies),
        "till_429s": len(refused),
        "log_429s": log_429,
        "lost": sum(1 for line in queued if line not in received) + (unrecorded or 0),
        "duplicated": sum(n - 1 for n in received.values() if n > 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--cap", type=float, default=100.0, help="fake server msg/s cap")
    parser.add_argument("--rate", type=float, default=None, help="sender rate (default: cap)")
    parser.add_argument("--rush-minutes", type=float, default=10.0, help="0: skip the rush")
    parser.add_argument("--speedup", type=float, default=20.0, help="store time / real time")
    args = parser.parse_args()
    result = asyncio.run(run(args.messages, args.cap, args.rate or args.cap))
    print(
        f"{result['messages']:.0f} messages in {result['seconds']:.1f} s: "
        f"{result['achieved_per_s']:.1f} msg/s of {result['allowed_per_s']:.0f} allowed "
        f"= {result['ratio']:.2f} of the cap (target >= 0.8); "
        f"429s: {result['429s']:.0f}; lost: {result['lost']:.0f}; "
        f"duplicated: {result['duplicated']:.0f}"
    )
    if args.rush_minutes > 0:
        staff = asyncio.run(rush(args.rush_minutes, args.speedup))
        print(
            f"staff group rush: {staff['lines']:.0f} sale lines in {staff['minutes']:g} min "
            f"beside {staff['till_replies']:.0f} till replies, group capped at "
            f"{GROUP_PER_MIN}/min: largest lag {staff['max_lag_s']:.1f} s, "
            f"{staff['messages']:.0f} messages "
            f"({staff['messages'] / max(staff['lines'], 1):.2f} per line); "
            f"429s: {staff['till_429s']:.0f} to the till, {staff['log_429s']:.0f} to the log; "
            f"lost: {staff['lost']:.0f}; "
            f"duplicated: {staff['duplicated']:.0f}"
        )


if __name__ == "__main__":
    main()
