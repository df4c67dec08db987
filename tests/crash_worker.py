"""Subprocess for tests/test_crash_safety.py: confirms sales against one SQLite file and prints
`<purchase id> <draft id>` after each `confirm` returns — what the cashier would see as ✅.

Usage: python -m tests.crash_worker DB_PATH COUNT
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta

from config import load_settings
from db.database import Database
from db.engine import create_engine, create_sessionmaker
from services.sales import SalesService

CASHIER_ID = 2001


async def main(db_path: str, count: int) -> None:
    url = f"sqlite+aiosqlite:///{db_path}"
    settings = load_settings(
        env_file=None,
        bot_token="123456:TEST",
        secret_key="test-secret-key-0123456789abcdef",
        database_url=url,
        owner_ids=[1001],
        staff_chat_id=-1009000,
    )
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    start = datetime.now(UTC)
    try:
        for i in range(count):
            now = start + timedelta(milliseconds=i)
            async with sessionmaker() as session:
                sales = SalesService(Database.of(session.bind), settings, lambda now=now: now)
                card = await sales.identify_number(str(100000 + i % 20))
                draft = await sales.quote(card.card_id, 1000 + i, CASHIER_ID, CASHIER_ID, now)
                done = await sales.confirm(draft.id, CASHIER_ID, False, now)
            print(f"{done.purchase_id} {done.draft_id}", flush=True)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
