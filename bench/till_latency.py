"""Benchmark: what a cashier waits for at each till step, in round trips to the Bot API.

    .venv/bin/python -m bench.till_latency [--latency 0.1] [--sales 20] [--cashiers 4]

Telegram's Bot API is far away: every call the bot makes takes a round trip. A till step feels
instant when its answer needs one, and slow when the bot makes calls one after another that
could run side by side, or later. This benchmark gives every API call a fixed latency
(`--latency`, 100 ms: the fake Bot API server of the tests waits that long before a call takes
effect) and drives complete sales through the real dispatcher — several cashiers at once, each
scanning a card, typing the amount and pressing ✅ — measuring for every step the time from the
cashier's action to what they see:

* scan → the card and the amount prompt;
* amount → the quote;
* ✅ → the button's answer (the spinner stops: "Recorded.") and the receipt (the quote turned
  into the receipt with ↩️ Void).

Each is reported in round trips (time ÷ latency) at the median, p95 and the maximum. Target:
every step within 1.2 round trips at p95, i.e. no sequential Bot API call that could run
concurrently or later. The database and the bot's own work add the fraction above 1 — and so
does the harness itself: a bare aiogram bot answering each message once, as many users at once
as there are cashiers, run in the same process (the echo floor), shows what the fake server,
HTTP and long polling cost alone.

Like `python -m bot run`, the benchmark freezes the objects built at start-up out of the
garbage collector's full passes (`bot.commands.run.freeze_startup_heap`): without it, one
full collection in a run stopped every conversation for 200–300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aiogram import Dispatcher, Router
from aiogram.types import Message

from bench.sale_flow import (
    FIRST_CARD,
    FIRST_CASHIER,
    SECRET,
    STAFF_CHAT_ID,
    make_settings,
    run_polling,
    seed,
    stop_polling,
)
from bot.app import create_dispatcher
from bot.commands.run import freeze_startup_heap
from bot.demo.emulator import Call, FakeTelegram, FakeUser
from db.engine import create_engine, create_sessionmaker
from services import qr_payload

STEPS = ("scan", "amount", "✅ answer", "✅ receipt")


async def visible(tg: FakeTelegram, mark: int, predicate: Callable[[Call], bool]) -> float:
    """When the first call logged after index `mark` that matches took effect at the server."""
    call = await tg.wait_for(lambda c: c.ok and predicate(c), timeout=30, after=mark)
    return call.at


async def cashier_sales(
    tg: FakeTelegram, cashier: FakeUser, numbers: list[str], waits: dict[str, list[float]]
) -> None:
    chat = cashier.id

    def text_in_chat(fragment: str) -> Callable[[Call], bool]:
        return lambda c: c.chat_id == chat and fragment in (c.text or "")

    for number in numbers:
        started, mark = time.monotonic(), len(tg.calls)
        await cashier.send(qr_payload.sign(SECRET, number))
        waits["scan"].append(await visible(tg, mark, text_in_chat("сумму покупки")) - started)
        await cashier.wait_message("сумму покупки")

        started, mark = time.monotonic(), len(tg.calls)
        await cashier.send("2 500")
        waits["amount"].append(await visible(tg, mark, text_in_chat("К оплате")) - started)
        quote = await cashier.wait_message("К оплате")

        started, mark = time.monotonic(), len(tg.calls)
        await cashier.press(quote, "✅")
        answered = await visible(
            tg, mark, lambda c: c.method == "answerCallbackQuery" and c.chat_id is None
        )
        receipt = await visible(tg, mark, text_in_chat("проведена"))
        waits["✅ answer"].append(answered - started)
        waits["✅ receipt"].append(receipt - started)
        await cashier.wait_message("проведена")


async def echo_floor(latency: float, count: int, users: int) -> list[float]:
    """Round trips of a bare aiogram echo bot (one sendMessage per message) in the same
    harness, with as many users writing at once as there are cashiers: what the fake server,
    HTTP and long polling cost before any of the bot's work."""
    settings = make_settings("sqlite+aiosqlite:///:memory:", "http://unused")
    trips: list[float] = []
    async with FakeTelegram() as tg:
        settings = settings.with_changes(telegram_api_url=tg.base_url)
        dp, router = Dispatcher(), Router()

        async def echo(message: Message) -> None:
            await message.answer("echo")

        router.message.register(echo)
        dp.include_router(router)
        bot, task = await run_polling(dp, tg, settings)
        tg.set_latency(latency)

        async def pings(user_id: int) -> None:
            user = tg.user(user_id, language_code="ru")
            for i in range(count):
                started, mark = time.monotonic(), len(tg.calls)
                await user.send(f"ping {i}")
                echoed = await visible(
                    tg, mark, lambda c: c.method == "sendMessage" and c.chat_id == user_id
                )
                trips.append((echoed - started) / latency)

        try:
            await asyncio.gather(*(pings(FIRST_CASHIER + i) for i in range(users)))
        finally:
            tg.set_latency(0)
            await stop_polling(dp, bot, task)
    return sorted(trips)


async def bench(latency: float, sales: int, cashiers: int, workdir: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await seed(db_url, sales * cashiers)
    engine = create_engine(db_url)
    waits: dict[str, list[float]] = {step: [] for step in STEPS}
    async with FakeTelegram() as tg:
        settings = make_settings(db_url, tg.base_url)
        staff = [tg.user(FIRST_CASHIER + i, language_code="ru") for i in range(cashiers)]
        for user in staff:
            tg.set_member(STAFF_CHAT_ID, user.id, "member")
        dp = create_dispatcher(settings, create_sessionmaker(engine))
        freeze_startup_heap()  # as `python -m bot run` does
        bot, task = await run_polling(dp, tg, settings)
        # A cashier's first update after a start asks Telegram whether they are staff (one
        # more round trip, once): the shift starts before the measurement.
        for user in staff:
            await user.send("/sale")
            await user.wait_message("/sale")
        tg.set_latency(latency)
        try:
            numbers = [str(FIRST_CARD + i) for i in range(sales * cashiers)]
            await asyncio.gather(
                *(
                    cashier_sales(tg, user, numbers[i::cashiers], waits)
                    for i, user in enumerate(staff)
                )
            )
        finally:
            tg.set_latency(0)
            await stop_polling(dp, bot, task)
    await engine.dispose()

    floor = await echo_floor(latency, 40, cashiers)
    each = f"every Bot API call takes {latency * 1000:.0f} ms"
    print(f"{sales} sales by each of {cashiers} cashiers; {each}")
    print(f"{'step':12} {'median':>8} {'p95':>8} {'max':>8}   (round trips; target p95 <= 1.2)")

    def p95(trips: list[float]) -> float:
        return trips[min(len(trips) - 1, round(0.95 * (len(trips) - 1)))]

    for step in STEPS:
        trips = sorted(w / latency for w in waits[step])
        print(
            f"{step:12} {statistics.median(trips):8.2f} {p95(trips):8.2f} {trips[-1]:8.2f}"
            f"   {'ok' if p95(trips) <= 1.2 else 'OVER'}"
        )
    users = f"{cashiers} user{'s' if cashiers != 1 else ''}"
    print(
        f"{'echo floor':12} {statistics.median(floor):8.2f} {p95(floor):8.2f} {floor[-1]:8.2f}"
        f"   (a bare aiogram bot answering {users} at once, same harness)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per Bot API call")
    parser.add_argument("--sales", type=int, default=20, help="sales per cashier")
    parser.add_argument("--cashiers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="till-latency-") as tmp:
        asyncio.run(bench(args.latency, args.sales, args.cashiers, Path(tmp)))


if __name__ == "__main__":
    main()
