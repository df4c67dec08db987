"""Benchmark: the delivery service against the fake Bot API server enforcing a rate cap.

    .venv/bin/python -m bench.delivery [--messages 3000] [--cap 100] [--rate 100]

3,000 "text" deliveries to distinct chats are enqueued in a temporary, migrated SQLite database;
the fake server (tests/fakeapi.py) answers 429 to anything over `--cap` msg/s; the sender runs
with `DELIVERY_RATE_GLOBAL = --rate`. Reported: achieved rate / allowed rate (target ≥ 0.8), 429s
received, lost messages (rows not sent, or sent rows the server never accepted) and duplicated
messages (chats that received more than one). Targets: zero lost, zero duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select

from bot.app import create_bot
from bot.config import Settings
from bot.scheduler import create_sender
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.models import Delivery, DeliveryStatus
from tests.fakeapi import FakeTelegram

FIRST_CHAT = 10_000_000


async def run(messages: int, cap: float, rate: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await upgrade(url)
        engine = create_engine(url)
        sessionmaker = create_sessionmaker(engine)
        now = datetime.now(UTC)
        async with sessionmaker() as session:
            await session.execute(
                insert(Delivery),
                [
                    {
                        "key": f"bench:{i}",
                        "kind": "text",
                        "chat_id": FIRST_CHAT + i,
                        "payload": {"text": f"Message number {i}"},
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
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                bot_token=tg.token,
                telegram_api_url=tg.base_url,
                database_url=url,
                quiet_hours="",
                delivery_rate_global=rate,
            )
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
        await engine.dispose()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--cap", type=float, default=100.0, help="fake server msg/s cap")
    parser.add_argument("--rate", type=float, default=None, help="sender rate (default: cap)")
    args = parser.parse_args()
    result = asyncio.run(run(args.messages, args.cap, args.rate or args.cap))
    print(
        f"{result['messages']:.0f} messages in {result['seconds']:.1f} s: "
        f"{result['achieved_per_s']:.1f} msg/s of {result['allowed_per_s']:.0f} allowed "
        f"= {result['ratio']:.2f} of the cap (target >= 0.8); "
        f"429s: {result['429s']:.0f}; lost: {result['lost']:.0f}; "
        f"duplicated: {result['duplicated']:.0f}"
    )


if __name__ == "__main__":
    main()
