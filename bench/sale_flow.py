"""Benchmark: complete till sales through the real bot vs a bare aiogram echo bot (the floor).

    .venv/bin/python -m bench.sale_flow [--sales 300] [--cashiers 4] [--no-messages]

Both runs use the same fake Telegram Bot API server (tests/fakeapi.py) on 127.0.0.1, the real
`Bot` (aiohttp) and long polling, in this process:

* sales: each cashier (a staff member, private chat) scans a card (pastes the QR payload), types
  the amount and presses ✅ — three updates per sale — through `create_dispatcher` with every
  feature router, a migrated SQLite file (WAL, synchronous=FULL) and bound customers, so a
  confirm also logs to the staff chat and notifies the customer;
* echo: the same number of updates, each answered by a bare `Router` handler with one
  `sendMessage`, same cashiers in parallel.

Reported: updates/s of both and the per-update cost ratio (target: a sale's update ≤ 3× echo),
the CPU time per update (steadier than wall time on a busy machine), and the app's own floor:
a staff command answered with one line through every middleware and router of the real bot
(session, locale lookup, throttling, staff check), which shows how much of a sale's cost is the
till itself. `--no-messages` runs the sales without a staff chat (the cashiers are owners)
and without bound customers, so a confirm queues and sends nothing: what the receipt and the
staff-chat line cost a sale.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiogram import Dispatcher, Router
from aiogram.types import Message

from bot.app import create_bot, create_dispatcher
from bot.config import Settings
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.models import Card, CardStatus, Client
from services import qr_payload
from tests.fakeapi import FakeTelegram, FakeUser

STAFF_CHAT_ID = -1009000
FIRST_CASHIER = 2001
FIRST_CUSTOMER = 500000
FIRST_CARD = 100001
SECRET = "bench-secret-key-0123456789abcdef"


def make_settings(db_url: str, api_url: str, *, messages: bool = True) -> Settings:
    # Without messages: no staff chat (the cashiers are owners then) and no bound customers,
    # so a confirm queues and sends nothing — what the delivery outbox costs a sale.
    owners = [1001] if messages else [1001, *range(FIRST_CASHIER, FIRST_CASHIER + 64)]
    return Settings(
        _env_file=None,
        bot_token="123456:TEST",
        telegram_api_url=api_url,
        secret_key=SECRET,
        database_url=db_url,
        owner_ids=owners,
        staff_chat_id=STAFF_CHAT_ID if messages else None,
        quiet_hours="",
        scheduler_enabled=False,
        log_level="WARNING",
        flood_limit=1_000_000,  # the bench cashiers are faster than any person
    )


async def seed(db_url: str, cards: int, *, bound: bool = True) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)
    now = datetime.now(UTC)
    async with create_sessionmaker(engine)() as session:
        for i in range(cards):
            client = Client(
                tg_id=FIRST_CUSTOMER + i, first_name="Bench", language="ru", consent_at=now
            )
            session.add(client)
            await session.flush()
            session.add(
                Card(
                    number=str(FIRST_CARD + i),
                    base_pct=5,
                    status=CardStatus.ISSUED,
                    issued_at=now,
                    client_id=client.id if bound else None,
                    bound_at=now if bound else None,
                )
            )
        await session.commit()
    await engine.dispose()


async def run_polling(dp: Dispatcher, tg: FakeTelegram, settings: Settings):  # type: ignore[no-untyped-def]
    bot = create_bot(settings)
    task = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=1)
    )
    await tg.wait_for(lambda call: call.method == "getUpdates", timeout=10)
    return bot, task


async def stop_polling(dp: Dispatcher, bot, task) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(RuntimeError):
        await dp.stop_polling()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
    await bot.session.close()


async def one_cashier_sales(cashier: FakeUser, numbers: list[str]) -> None:
    for number in numbers:
        await cashier.send(qr_payload.sign(SECRET, number))
        await cashier.wait_message("сумму покупки")
        await cashier.send("2 500")
        quote = await cashier.wait_message("К оплате")
        await cashier.press(quote, "✅")
        await cashier.wait_message("проведена")


async def one_user_command(user: FakeUser, count: int) -> None:
    for _ in range(count):
        await user.send("/sale")
        await user.wait_message("/sale 100045")


async def one_user_echo(user: FakeUser, count: int) -> None:
    for i in range(count):
        await user.send(f"echo {i}")
        await user.wait_message(f"echo {i}")


async def bench(sales: int, cashiers: int, workdir: Path, messages: bool = True) -> None:
    db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await seed(db_url, sales, bound=messages)
    numbers = [str(FIRST_CARD + i) for i in range(sales)]

    async with FakeTelegram() as tg:
        settings = make_settings(db_url, tg.base_url, messages=messages)
        staff = [tg.user(FIRST_CASHIER + i, language_code="ru") for i in range(cashiers)]
        for user in staff:
            tg.set_member(STAFF_CHAT_ID, user.id, "member")

        # --- full sales through the real dispatcher -------------------------------------
        engine = create_engine(db_url)
        dp = create_dispatcher(settings, create_sessionmaker(engine))
        bot, task = await run_polling(dp, tg, settings)
        await one_cashier_sales(staff[0], numbers[:1])  # warm-up: imports, caches, getChatMember
        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(
            *(one_cashier_sales(user, numbers[1 + i :: cashiers]) for i, user in enumerate(staff))
        )
        sale_seconds = time.perf_counter() - started
        sale_cpu = time.process_time() - cpu_started
        # The app's own floor: a staff command answered with one line, no SQL of the till.
        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(
            *(one_user_command(user, (sales - 1) * 3 // cashiers) for user in staff)
        )
        app_seconds = time.perf_counter() - started
        app_cpu = time.process_time() - cpu_started
        app_updates = (sales - 1) * 3 // cashiers * cashiers
        await stop_polling(dp, bot, task)
        await engine.dispose()
        sale_updates = 3 * (sales - 1)

        # --- the floor: a bare echo handler on the same server ---------------------------
        router = Router(name="echo")

        @router.message()
        async def echo(message: Message) -> None:
            await message.answer(message.text or "")

        echo_dp = Dispatcher()
        echo_dp.include_router(router)
        bot, task = await run_polling(echo_dp, tg, settings)
        await one_user_echo(staff[0], 3)
        per_user = sale_updates // cashiers
        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one_user_echo(user, per_user) for user in staff))
        echo_seconds = time.perf_counter() - started
        echo_cpu = time.process_time() - cpu_started
        echo_updates = per_user * cashiers
        await stop_polling(echo_dp, bot, task)

    sale_rate = sale_updates / sale_seconds
    echo_rate = echo_updates / echo_seconds
    ratio = echo_rate / sale_rate
    print(f"sales: {sales - 1} sales = {sale_updates} updates in {sale_seconds:.2f} s")
    sales_per_s = (sales - 1) / sale_seconds
    print(f"  full sale flow  {sale_rate:8.1f} updates/s  ({sales_per_s:.1f} sales/s)")
    print(f"  bare echo floor {echo_rate:8.1f} updates/s  ({echo_updates} updates)")
    print(f"  per-update cost of a sale = {ratio:.2f}x the echo floor (target <= 3x)")
    sale_ms = sale_cpu / sale_updates * 1000
    echo_ms = echo_cpu / echo_updates * 1000
    app_ms = app_cpu / app_updates * 1000
    app_rate = app_updates / app_seconds
    print(f"  app floor       {app_rate:8.1f} updates/s  (/sale usage hint, the whole bot)")
    print(
        f"  CPU per update (bot + fake server): sale {sale_ms:.1f} ms, app floor {app_ms:.1f} ms,"
        f" echo {echo_ms:.1f} ms; sale = {sale_ms / echo_ms:.2f}x echo, {sale_ms / app_ms:.2f}x app"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sales", type=int, default=300)
    parser.add_argument("--cashiers", type=int, default=4)
    parser.add_argument(
        "--no-messages",
        action="store_true",
        help="no staff-chat line and no customer receipt per sale (shows what they cost)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cashiers = min(max(args.cashiers, 1), 64)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(max(args.sales, 2), cashiers, Path(tmp), not args.no_messages))


if __name__ == "__main__":
    main()
