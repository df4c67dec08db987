"""Benchmark: complete till sales through the real bot vs a bare aiogram echo bot (the floor).

    .venv/bin/python -m bench.sale_flow [--sales 300] [--cashiers 4] [--no-messages]

Both runs use the same fake Telegram Bot API server (bot/demo/emulator.py) on 127.0.0.1, the real
`Bot` (aiohttp) and long polling, in this process:

* sales: each cashier (a staff member, private chat) scans a card (pastes the QR payload), types
  the amount and presses ✅ — three updates per sale — through `create_dispatcher` with every
  feature router, a migrated SQLite file (WAL, synchronous=FULL) and bound customers, so a
  confirm also logs to the staff chat and notifies the customer;
* echo: the same number of updates, each answered by a bare `Router` handler with one
  `sendMessage`, same cashiers in parallel.

The echo floor is measured in two halves, one before and one after the sales, so that a shared
machine that speeds up or slows down meanwhile weighs on both sides of the ratio; both halves'
rates are printed.

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
import gc
import logging
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.types import Message

from bot.app import create_bot, create_dispatcher
from bot.commands.run import freeze_startup_heap
from bot.demo.emulator import FakeTelegram, FakeUser
from config import Settings, load_settings
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.models import Card, CardStatus, Client
from services import qr_payload

STAFF_CHAT_ID = -1009000
FIRST_CASHIER = 2001
FIRST_CUSTOMER = 500000
FIRST_CARD = 100001
SECRET = "bench-secret-key-0123456789abcdef"


def make_settings(db_url: str, api_url: str, *, messages: bool = True) -> Settings:
    # Without messages: no staff chat (the cashiers are owners then) and no bound customers,
    # so a confirm queues and sends nothing — what the delivery outbox costs a sale.
    owners = [1001] if messages else [1001, *range(FIRST_CASHIER, FIRST_CASHIER + 64)]
    return load_settings(
        env_file=None,
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


@dataclass
class Phase:
    """What one kind of update cost, summed over its measurements."""

    updates: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    rates: list[float] = field(default_factory=list)  # updates/s of each measurement

    async def measure(self, updates: int, work: Awaitable[Any]) -> None:
        # What earlier phases left on the heap (the fake server keeps every call) must not
        # make this phase's garbage collections slower: each phase starts from a frozen heap.
        gc.collect()
        gc.freeze()
        started, cpu_started = time.perf_counter(), time.process_time()
        await work
        seconds = time.perf_counter() - started
        self.updates += updates
        self.seconds += seconds
        self.cpu += time.process_time() - cpu_started
        self.rates.append(updates / seconds)

    @property
    def rate(self) -> float:
        return self.updates / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.updates * 1000


async def bench(sales: int, cashiers: int, workdir: Path, messages: bool = True) -> None:
    db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await seed(db_url, sales, bound=messages)
    numbers = [str(FIRST_CARD + i) for i in range(sales)]
    sale, app, echo = Phase(), Phase(), Phase()

    # The floor: a bare echo handler, polling the same server with the same Bot setup.
    echo_router = Router(name="echo")

    @echo_router.message()
    async def on_text(message: Message) -> None:
        await message.answer(message.text or "")

    echo_dp = Dispatcher()
    echo_dp.include_router(echo_router)

    async with FakeTelegram() as tg:
        settings = make_settings(db_url, tg.base_url, messages=messages)
        staff = [tg.user(FIRST_CASHIER + i, language_code="ru") for i in range(cashiers)]
        for user in staff:
            tg.set_member(STAFF_CHAT_ID, user.id, "member")
        sale_updates = 3 * (sales - 1)
        per_user = sale_updates // cashiers

        async def echo_half() -> None:
            bot, task = await run_polling(echo_dp, tg, settings)
            await one_user_echo(staff[0], 3)  # warm-up
            half = per_user // 2
            await echo.measure(
                half * cashiers, asyncio.gather(*(one_user_echo(u, half) for u in staff))
            )
            await stop_polling(echo_dp, bot, task)

        # The echo floor is measured in two halves, before and after the sales, so that a
        # machine that speeds up or slows down meanwhile weighs on both sides of the ratio.
        await echo_half()

        engine = create_engine(db_url)
        dp = create_dispatcher(settings, create_sessionmaker(engine))
        freeze_startup_heap()  # as `python -m bot run` does
        bot, task = await run_polling(dp, tg, settings)
        await one_cashier_sales(staff[0], numbers[:1])  # warm-up: imports, caches, staff check
        await sale.measure(
            sale_updates,
            asyncio.gather(
                *(one_cashier_sales(u, numbers[1 + i :: cashiers]) for i, u in enumerate(staff))
            ),
        )
        # The app's own floor: a staff command answered with one line, no SQL of the till.
        await app.measure(
            per_user * cashiers,
            asyncio.gather(*(one_user_command(user, per_user) for user in staff)),
        )
        await stop_polling(dp, bot, task)
        await engine.dispose()

        await echo_half()

    sales_done = sale.updates // 3
    print(
        f"sales: {sales_done} sales = {sale.updates} updates in {sale.seconds:.2f} s,"
        f" {cashiers} cashiers"
    )
    sales_per_s = sales_done / sale.seconds
    print(f"  full sale flow  {sale.rate:8.1f} updates/s  ({sales_per_s:.1f} sales/s)")
    print(f"  bare echo floor {echo.rate:8.1f} updates/s  ({echo.updates} updates)")
    print(f"  app floor       {app.rate:8.1f} updates/s  (/sale usage hint, the whole bot)")
    before, after = echo.rates
    print(
        f"  per-update cost of a sale = {echo.rate / sale.rate:.2f}x the echo floor"
        f" (target <= 3x; echo before the sales {before:.1f}/s, after {after:.1f}/s)"
    )
    print(
        f"  CPU per update (bot + fake server): sale {sale.cpu_ms:.1f} ms,"
        f" app floor {app.cpu_ms:.1f} ms, echo {echo.cpu_ms:.1f} ms;"
        f" sale = {sale.cpu_ms / echo.cpu_ms:.2f}x echo, {sale.cpu_ms / app.cpu_ms:.2f}x app"
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
    sales = max(args.sales, cashiers + 1)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(sales, cashiers, Path(tmp), not args.no_messages))


if __name__ == "__main__":
    main()
